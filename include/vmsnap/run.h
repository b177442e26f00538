/*
 * vmsnap/run.h - run an external command safely (used for zfs/zpool).
 *
 * The command is started with fork + execv from an argv array (argv[0] is
 * looked up in PATH first, as execvp would): no shell is ever involved, so
 * no argument is ever re-parsed.  The child starts with default signal
 * dispositions and an empty signal mask.  Standard input is
 * /dev/null; standard output and standard error are captured (each up to
 * VMS_RUN_MAX_OUTPUT bytes; more is an error, never a silent truncation).
 * A command still running after its timeout is killed with SIGKILL.
 *
 * The caller must not have SIGCHLD set to SIG_IGN (the child is reaped with
 * waitpid).  Safe to call from several threads at once.
 */
#ifndef VMSNAP_RUN_H
#define VMSNAP_RUN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VMS_RUN_MAX_OUTPUT (64u << 20)

typedef struct vms_run_result {
	int exit_status;   /* exit code 0..255, or 128+signal when killed by one */
	int timed_out;     /* 1 when the command was killed after the timeout */
	char *out;         /* captured stdout, NUL-terminated, malloc'd */
	size_t out_len;
	char *err;         /* captured stderr, NUL-terminated, malloc'd */
	size_t err_len;
} vms_run_result;

/*
 * Run argv[0] (looked up in PATH) with the NULL-terminated argv, waiting at
 * most timeout_ms milliseconds (0 = no limit).  Returns 0 when the command
 * ran (whatever its exit status: look at out->exit_status) and fills *out,
 * which the caller releases with vms_run_result_free().  Returns a negative
 * vms_error_code when it could not be started (VMS_ENOTFOUND when the
 * program does not exist), timed out (VMS_EIO, out still filled), or its
 * output was too large.
 */
int vms_run(vms_run_result *out, const char *const *argv, unsigned timeout_ms);

/* Free the buffers of a result (not the struct itself); safe on a zeroed one. */
void vms_run_result_free(vms_run_result *r);

/*
 * The first line of r->err (or of r->out when stderr is empty), without the
 * trailing newline, copied into buf of size n.  Returns buf.
 */
const char *vms_run_first_line(const vms_run_result *r, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
