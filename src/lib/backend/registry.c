/*
 * registry.c - the adapter's table of backends: SR type name -> the
 * vms_backend strategy that implements it (the paper's "Snapshot Adapter").
 * The control layer calls vms_backend_find(sr.type) and never tests a type
 * itself; a new SR type is one more entry here.
 */
#include <string.h>

#include "vmsnap/backend.h"
#include "vmsnap/error.h"

static const vms_backend *const backends[] = {
	&vms_backend_native,
	&vms_backend_zfs,
	&vms_backend_reflink,
	NULL,
};

const vms_backend *vms_backend_find(const char *type)
{
	if (!type || !*type) {
		vms_error_set(VMS_EINVAL, "no SR type given");
		return NULL;
	}
	for (size_t i = 0; backends[i]; i++)
		if (strcmp(backends[i]->type, type) == 0)
			return backends[i];
	vms_error_set(VMS_ENOTFOUND, "unknown SR type '%.32s' (known: native, zfs, reflink)", type);
	return NULL;
}

const vms_backend *const *vms_backend_all(void)
{
	return backends;
}
