/*
 * test_util_run.c - vms_run: argv passed verbatim (no shell), exit status,
 * captured stdout/stderr, timeout, missing program, large output, the
 * child's signal state, closed stdio in the caller, concurrent use.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vmsnap/error.h"
#include "vmsnap/run.h"
#include "test.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST(stdout_and_exit_status)
{
	const char *argv[] = {"echo", "hello", "world", NULL};
	vms_run_result r;
	REQUIRE(vms_run(&r, argv, 10000) == 0);
	CHECK(r.exit_status == 0 && !r.timed_out);
	CHECK(strcmp(r.out, "hello world\n") == 0 && r.out_len == 12);
	CHECK(r.err && r.err_len == 0 && r.err[0] == '\0');
	vms_run_result_free(&r);

	const char *fail[] = {"sh", "-c", "echo oops >&2; echo partial; exit 3", NULL};
	char line[64];
	REQUIRE(vms_run(&r, fail, 10000) == 0);
	CHECK(r.exit_status == 3);
	CHECK(strcmp(r.err, "oops\n") == 0 && strcmp(r.out, "partial\n") == 0);
	CHECK(strcmp(vms_run_first_line(&r, line, sizeof(line)), "oops") == 0);
	vms_run_result_free(&r);

	const char *abs[] = {"/bin/echo", "x", NULL};
	REQUIRE(vms_run(&r, abs, 10000) == 0);
	CHECK(strcmp(r.out, "x\n") == 0);
	vms_run_result_free(&r);
}

TEST(arguments_are_never_parsed_by_a_shell)
{
	const char *marker = "/tmp/vms-run-test-must-not-exist";
	char arg[256];
	vms_run_result r;
	unlink(marker);
	snprintf(arg, sizeof(arg), "$(touch %s); `touch %s` ; touch %s | x > y 'q\" *", marker, marker, marker);
	const char *argv[] = {"printf", "%s", arg, NULL};
	REQUIRE(vms_run(&r, argv, 10000) == 0);
	CHECK(strcmp(r.out, arg) == 0);
	CHECK(access(marker, F_OK) != 0);
	vms_run_result_free(&r);
}

TEST(missing_program_and_bad_argv)
{
	vms_run_result r;
	const char *argv[] = {"vms-no-such-program-xyz", NULL};
	CHECK(vms_run(&r, argv, 1000) == VMS_ENOTFOUND);
	CHECK(strstr(vms_error_last(), "vms-no-such-program-xyz") != NULL);
	vms_run_result_free(&r);
	const char *path[] = {"/nonexistent/dir/prog", NULL};
	CHECK(vms_run(&r, path, 1000) == VMS_ENOTFOUND);
	vms_run_result_free(&r);
	const char *empty[] = {"", NULL};
	CHECK(vms_run(&r, empty, 1000) == VMS_EINVAL);
	const char *none[] = {NULL};
	CHECK(vms_run(&r, none, 1000) == VMS_EINVAL);
	CHECK(vms_run(&r, NULL, 1000) == VMS_EINVAL);
	/* a directory is not a program */
	const char *dir[] = {"/tmp", NULL};
	CHECK(vms_run(&r, dir, 1000) < 0);
	vms_run_result_free(&r);
}

TEST(timeout_kills)
{
	vms_run_result r;
	const char *argv[] = {"sleep", "20", NULL};
	double t0 = now();
	CHECK(vms_run(&r, argv, 200) == VMS_EIO);
	CHECK(now() - t0 < 10);
	CHECK(r.timed_out == 1 && r.exit_status == 128 + SIGKILL);
	CHECK(strstr(vms_error_last(), "200 ms") != NULL);
	vms_run_result_free(&r);
}

TEST(large_output_and_stdin_is_devnull)
{
	vms_run_result r;
	const char *argv[] = {"head", "-c", "3000000", "/dev/zero", NULL};
	REQUIRE(vms_run(&r, argv, 20000) == 0);
	CHECK(r.exit_status == 0 && r.out_len == 3000000);
	vms_run_result_free(&r);
	const char *cat[] = {"cat", NULL};
	REQUIRE(vms_run(&r, cat, 5000) == 0);       /* would hang if stdin were a tty/pipe */
	CHECK(r.exit_status == 0 && r.out_len == 0 && !r.timed_out);
	vms_run_result_free(&r);
}

TEST(child_gets_default_signals)
{
	struct sigaction ign, old;
	sigset_t block, oldmask;
	vms_run_result r;

	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &ign, &old);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &oldmask);
	/* with SIGPIPE ignored, `yes` would complain of a broken pipe */
	const char *pipe_argv[] = {"sh", "-c", "yes | head -n 1", NULL};
	REQUIRE(vms_run(&r, pipe_argv, 10000) == 0);
	CHECK(strcmp(r.out, "y\n") == 0);
	CHECK(r.err_len == 0);
	vms_run_result_free(&r);
	/* with SIGTERM blocked, the shell would survive its own kill */
	const char *term[] = {"sh", "-c", "kill -TERM $$; echo survived", NULL};
	REQUIRE(vms_run(&r, term, 10000) == 0);
	CHECK(r.exit_status == 128 + SIGTERM);
	CHECK(strstr(r.out, "survived") == NULL);
	vms_run_result_free(&r);
	sigprocmask(SIG_SETMASK, &oldmask, NULL);
	sigaction(SIGPIPE, &old, NULL);
}

TEST(caller_with_closed_stdio)
{
	vms_run_result r;
	int saved[3], rc;

	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < 3; i++)
		saved[i] = dup(i);
	REQUIRE(saved[0] >= 0 && saved[1] >= 0 && saved[2] >= 0);
	for (int i = 0; i < 3; i++)
		close(i);       /* the pipes would land on fds 0..2 */
	const char *argv[] = {"sh", "-c", "echo out; echo err >&2", NULL};
	rc = vms_run(&r, argv, 10000);
	for (int i = 0; i < 3; i++) {
		dup2(saved[i], i);
		close(saved[i]);
	}
	REQUIRE(rc == 0);
	CHECK(strcmp(r.out, "out\n") == 0 && strcmp(r.err, "err\n") == 0);
	vms_run_result_free(&r);
}

TEST(first_line)
{
	vms_run_result r = {0};
	char buf[8];
	r.err = (char *)"\n\nfirst line\nsecond";
	r.err_len = strlen(r.err);
	CHECK(strcmp(vms_run_first_line(&r, buf, sizeof(buf)), "first l") == 0);
	r.err = (char *)"";
	r.err_len = 0;
	r.out = (char *)"from stdout\n";
	char big[64];
	CHECK(strcmp(vms_run_first_line(&r, big, sizeof(big)), "from stdout") == 0);
	vms_run_result z = {0};
	CHECK(strcmp(vms_run_first_line(&z, big, sizeof(big)), "") == 0);
	vms_run_result_free(&z);
}

static void *worker(void *arg)
{
	long id = (long)arg, bad = 0;
	for (int i = 0; i < 15; i++) {
		char want[32];
		vms_run_result r;
		snprintf(want, sizeof(want), "%ld-%d", id, i);
		const char *argv[] = {"printf", "%s", want, NULL};
		if (vms_run(&r, argv, 10000) != 0 || strcmp(r.out, want) != 0)
			bad++;
		vms_run_result_free(&r);
	}
	return (void *)bad;
}

TEST(concurrent_runs)
{
	pthread_t t[4];
	long bad = 0;
	for (long i = 0; i < 4; i++)
		REQUIRE(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
	for (int i = 0; i < 4; i++) {
		void *b;
		pthread_join(t[i], &b);
		bad += (long)b;
	}
	CHECK(bad == 0);
}

TEST_MAIN()
