/* Unit tests for src/lib/util: errors and CRC-32C. */
#undef NDEBUG
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmsnap/crc32c.h"
#include "vmsnap/error.h"
#include "test.h"

TEST(crc32c_known_vectors)
{
	CHECK(vms_crc32c(0, "123456789", 9) == 0xE3069283u);
	CHECK(vms_crc32c(0, "", 0) == 0);
	unsigned char zeros[32] = {0};
	CHECK(vms_crc32c(0, zeros, 32) == 0x8A9136AAu);
	/* incremental == one shot */
	uint32_t a = vms_crc32c(0, "12345", 5);
	CHECK(vms_crc32c(a, "6789", 4) == 0xE3069283u);
}

TEST(error_message_and_code)
{
	vms_error_clear();
	CHECK(vms_error_last()[0] == 0);
	int rc = vms_error_set(VMS_EINVAL, "bad size %d", 7);
	CHECK(rc == VMS_EINVAL);
	CHECK(strcmp(vms_error_last(), "bad size 7") == 0);
	CHECK(vms_error_last_code() == VMS_EINVAL);
	rc = vms_error_wrap(VMS_EIO, "opening pool");
	CHECK(strcmp(vms_error_last(), "opening pool: bad size 7") == 0);
	rc = vms_error_set_errno(ENOSPC, "write");
	CHECK(rc == VMS_ENOSPC);
	CHECK(strstr(vms_error_last(), "write: ") == vms_error_last());
	CHECK(strcmp(vms_error_name(VMS_ENOTFOUND), "NOTFOUND") == 0);
	CHECK(vms_error_to_errno(VMS_ENOSPC) == ENOSPC);
}

TEST_MAIN()
