/*
 * raw.h - raw-file exports given on the command line (--raw NAME=PATH).
 */
#ifndef VMSD_RAW_H
#define VMSD_RAW_H

#include <stddef.h>

#include "export.h"

typedef struct vmsd_raw vmsd_raw;

int vmsd_raw_new(vmsd_raw **out, int readonly);
/* Add "NAME=PATH" (the file must exist and be a regular file), served
 * read-only when `readonly`. */
int vmsd_raw_add(vmsd_raw *r, const char *spec, int readonly);
size_t vmsd_raw_count(const vmsd_raw *r);
void vmsd_raw_free(vmsd_raw *r);
/* The source that serves these exports (valid while r lives). */
vmsd_source vmsd_raw_source(vmsd_raw *r);

#endif
