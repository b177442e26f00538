/*
 * fault.h - vmsnapd's log of I/O errors on pool files, and its TEST-ONLY
 * fault injection (VMSNAPD_FAULT, see fault.c and docs/reliability.md).
 */
#ifndef VMSD_FAULT_H
#define VMSD_FAULT_H

/* Hook the pool files' I/O (vms_io_file_set_hook): failed reads, writes and
 * syncs are logged, and when the environment holds VMSNAPD_FAULT the fault
 * shim is armed under the matching pool files.  Call once from main(), after
 * the log is set up and before any other thread starts (it blocks SIGUSR2 in
 * the calling thread when a rule is armed by signal).  Returns 0, or -1 after
 * logging why (a bad VMSNAPD_FAULT): the daemon must not start then. */
int vmsd_fault_setup(void);

#endif
