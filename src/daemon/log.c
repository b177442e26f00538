/*
 * log.c - level-filtered logging for vmsnapd (see log.h).
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

int vmsd_log_level = VMSD_LOG_INFO;
static int log_fd = 2;
static int log_syslog;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int vmsd_log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	if (strcmp(s, "warning") == 0)
		return VMSD_LOG_WARN;
	return -1;
}

void vmsd_log_setup(int level, int fd, int use_syslog)
{
	vmsd_log_level = level;
	log_fd = fd;
	log_syslog = use_syslog;
	if (use_syslog)
		openlog("vmsnapd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void vmsd_log(int level, const char *fmt, ...)
{
	if (level > vmsd_log_level)
		return;
	int saved = errno;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* Keep one event on one line whatever the message holds. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (log_syslog) {
		static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
		syslog(prio[level], "%s", msg);
	} else if (log_fd >= 0) {
		char line[2200];
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ vmsnapd[%ld] %s: %s\n",
		                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		                 tm.tm_sec, ts.tv_nsec / 1000000, (long)getpid(), level_names[level], msg);
		if (n > (int)sizeof line - 1) {
			n = (int)sizeof line - 1;
			line[n - 1] = '\n';
		}
		ssize_t w = write(log_fd, line, (size_t)n);
		(void)w; /* nowhere left to report a failing log */
	}
	errno = saved;
}
