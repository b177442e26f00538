/*
 * log.h - vmsnapd's logging: one line per event, by level, to stderr (or a
 * file) with a UTC timestamp, or to syslog.  Only the daemon logs; the
 * library never prints.  Safe to call from any thread (one write per line).
 */
#ifndef VMSD_LOG_H
#define VMSD_LOG_H

enum {
	VMSD_LOG_ERROR = 0,
	VMSD_LOG_WARN = 1,
	VMSD_LOG_INFO = 2,
	VMSD_LOG_DEBUG = 3
};

extern int vmsd_log_level;

/* Parse "error", "warn", "info", "debug"; -1 when unknown. */
int vmsd_log_level_parse(const char *s);

/* Direct the log: fd >= 0 writes lines there, use_syslog sends to syslog. */
void vmsd_log_setup(int level, int fd, int use_syslog);

void vmsd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define vmsd_error(...) vmsd_log(VMSD_LOG_ERROR, __VA_ARGS__)
#define vmsd_warn(...)  vmsd_log(VMSD_LOG_WARN, __VA_ARGS__)
#define vmsd_info(...)                                                          \
	do {                                                                    \
		if (vmsd_log_level >= VMSD_LOG_INFO)                            \
			vmsd_log(VMSD_LOG_INFO, __VA_ARGS__);                   \
	} while (0)
#define vmsd_debug(...)                                                         \
	do {                                                                    \
		if (vmsd_log_level >= VMSD_LOG_DEBUG)                           \
			vmsd_log(VMSD_LOG_DEBUG, __VA_ARGS__);                  \
	} while (0)

#endif
