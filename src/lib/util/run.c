/*
 * run.c - fork + execvp with captured output and a timeout.
 *
 * Design: three pipes, all O_CLOEXEC: stdout, stderr and an "exec status"
 * pipe on which the child writes errno if execvp fails.  A successful exec
 * closes that pipe, so the parent reading EOF on it knows the program
 * started.  The parent polls stdout/stderr until both reach EOF or the
 * deadline passes (then SIGKILL), and reaps the child with waitpid, looping
 * on EINTR.  The program is looked up in PATH by the parent before the
 * fork, so between fork and exec the child only calls async-signal-safe
 * functions (sigaction, sigprocmask, dup2, open, execv, write, _exit): safe
 * in a multi-threaded daemon.  The child gets default signal dispositions
 * and an empty signal mask whatever the caller had (a daemon ignoring
 * SIGPIPE or blocking signals in its threads must not pass that on).  The
 * pipe ends are kept above fd 2, so a caller with closed stdio still works.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmsnap/error.h"
#include "vmsnap/run.h"

typedef struct buf {
	char *data;
	size_t len, cap;
} buf;

static int buf_append(buf *b, const char *p, size_t n)
{
	if (b->len + n + 1 > VMS_RUN_MAX_OUTPUT)
		return vms_error_set(VMS_EIO, "command output exceeds %u bytes", VMS_RUN_MAX_OUTPUT);
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
		if (!d)
			return vms_error_set(VMS_ENOMEM, "out of memory capturing command output");
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static int buf_finish(buf *b)
{
	if (!b->data)
		return buf_append(b, "", 0);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

void vms_run_result_free(vms_run_result *r)
{
	if (!r)
		return;
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
	r->out_len = r->err_len = 0;
}

const char *vms_run_first_line(const vms_run_result *r, char *dst, size_t n)
{
	const char *src = (r->err && r->err_len) ? r->err : (r->out ? r->out : "");
	size_t i = 0;

	if (n == 0)
		return dst;
	/* skip leading blank lines */
	while (*src == '\n' || *src == '\r')
		src++;
	while (src[i] && src[i] != '\n' && i + 1 < n) {
		dst[i] = src[i];
		i++;
	}
	dst[i] = '\0';
	return dst;
}

/* The program to exec: argv0 itself when it has a '/', else the first
 * executable regular file PATH/argv0. */
static int resolve(char out[PATH_MAX], const char *argv0)
{
	const char *path = getenv("PATH"), *p;
	struct stat st;

	if (strchr(argv0, '/')) {
		if (strlen(argv0) >= PATH_MAX)
			return vms_error_set(VMS_EINVAL, "run: program path too long");
		strcpy(out, argv0);
		return 0;
	}
	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (p = path; *p;) {
		size_t n = strcspn(p, ":");
		int len = n ? snprintf(out, PATH_MAX, "%.*s/%s", (int)n, p, argv0)
		            : snprintf(out, PATH_MAX, "./%s", argv0);
		if (len > 0 && len < PATH_MAX && stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(out, X_OK) == 0)
			return 0;
		p += n;
		if (*p == ':')
			p++;
	}
	return vms_error_set(VMS_ENOTFOUND, "cannot run %s: not found in PATH", argv0);
}

/* Move a pipe end above the standard descriptors. */
static int above_stdio(int *fd)
{
	if (*fd > 2)
		return 0;
	int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
	if (nfd < 0)
		return -1;
	close(*fd);
	*fd = nfd;
	return 0;
}

int vms_run(vms_run_result *out, const char *const *argv, unsigned timeout_ms)
{
	char prog[PATH_MAX];
	int pout[2] = {-1, -1}, perr[2] = {-1, -1}, pexec[2] = {-1, -1};
	buf bo = {0}, be = {0};
	pid_t pid = -1;
	int rc = 0, status = 0, killed = 0;

	memset(out, 0, sizeof(*out));
	if (!argv || !argv[0] || !argv[0][0])
		return vms_error_set(VMS_EINVAL, "run: empty command");
	if ((rc = resolve(prog, argv[0])) < 0)
		return rc;
	if (pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0 || pipe2(pexec, O_CLOEXEC) < 0 ||
	    above_stdio(&pout[0]) < 0 || above_stdio(&pout[1]) < 0 || above_stdio(&perr[0]) < 0 ||
	    above_stdio(&perr[1]) < 0 || above_stdio(&pexec[0]) < 0 || above_stdio(&pexec[1]) < 0) {
		rc = vms_error_set_errno(errno, "run %s: pipe", argv[0]);
		goto done;
	}
	pid = fork();
	if (pid < 0) {
		rc = vms_error_set_errno(errno, "run %s: fork", argv[0]);
		goto done;
	}
	if (pid == 0) {
		int e, devnull;
		struct sigaction dfl;
		sigset_t none;

		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		for (int sig = 1; sig < NSIG; sig++)
			sigaction(sig, &dfl, NULL);      /* fails harmlessly for KILL/STOP */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(pout[1], 1) < 0 || dup2(perr[1], 2) < 0) {
			e = errno;
			if (write(pexec[1], &e, sizeof(e)) < 0) { /* nothing more to do */ }
			_exit(127);
		}
		/* execvp's argv is char *const[]; it does not modify the strings. */
		execv(prog, (char *const *)(uintptr_t)argv);
		e = errno;
		if (write(pexec[1], &e, sizeof(e)) < 0) { /* nothing more to do */ }
		_exit(127);
	}
	close_fd(&pout[1]);
	close_fd(&perr[1]);
	close_fd(&pexec[1]);

	{
		int child_errno = 0;
		ssize_t n;
		do
			n = read(pexec[0], &child_errno, sizeof(child_errno));
		while (n < 0 && errno == EINTR);
		close_fd(&pexec[0]);
		if (n == (ssize_t)sizeof(child_errno)) {
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			pid = -1;
			rc = vms_error_set_errno(child_errno, "cannot run %s", argv[0]);
			goto done;
		}
	}

	{
		int64_t deadline = timeout_ms ? now_ms() + timeout_ms : 0;
		while (pout[0] >= 0 || perr[0] >= 0) {
			struct pollfd pfd[2];
			int nfds = 0, wait_ms = -1;
			char chunk[65536];

			if (pout[0] >= 0)
				pfd[nfds++] = (struct pollfd){.fd = pout[0], .events = POLLIN};
			if (perr[0] >= 0)
				pfd[nfds++] = (struct pollfd){.fd = perr[0], .events = POLLIN};
			if (deadline) {
				int64_t left = deadline - now_ms();
				if (left <= 0) {
					kill(pid, SIGKILL);
					killed = 1;
					break;
				}
				wait_ms = left > INT32_MAX ? INT32_MAX : (int)left;
			}
			int pr = poll(pfd, nfds, wait_ms);
			if (pr < 0) {
				if (errno == EINTR)
					continue;
				rc = vms_error_set_errno(errno, "run %s: poll", argv[0]);
				kill(pid, SIGKILL);
				goto done;
			}
			for (int i = 0; i < nfds; i++) {
				if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
					continue;
				int *fdp = pfd[i].fd == pout[0] ? &pout[0] : &perr[0];
				buf *b = fdp == &pout[0] ? &bo : &be;
				ssize_t n = read(*fdp, chunk, sizeof(chunk));
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0) {
					close_fd(fdp);
					continue;
				}
				if ((rc = buf_append(b, chunk, (size_t)n)) < 0) {
					kill(pid, SIGKILL);
					goto done;
				}
			}
		}
	}

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			rc = vms_error_set_errno(errno, "run %s: waitpid", argv[0]);
			pid = -1;
			goto done;
		}
	}
	pid = -1;
	if ((rc = buf_finish(&bo)) < 0 || (rc = buf_finish(&be)) < 0)
		goto done;
	out->exit_status = WIFEXITED(status) ? WEXITSTATUS(status)
	                 : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
	out->timed_out = killed;
	out->out = bo.data;
	out->out_len = bo.len;
	out->err = be.data;
	out->err_len = be.len;
	bo.data = be.data = NULL;
	if (killed)
		rc = vms_error_set(VMS_EIO, "%s did not finish within %u ms and was killed",
		                   argv[0], timeout_ms);

done:
	if (pid > 0) {
		/* an error after fork: the child was killed above; reap it */
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	close_fd(&pout[0]); close_fd(&pout[1]);
	close_fd(&perr[0]); close_fd(&perr[1]);
	close_fd(&pexec[0]); close_fd(&pexec[1]);
	free(bo.data);
	free(be.data);
	return rc;
}
