/* SPDX-License-Identifier: MIT */
#ifndef NT_UTIL_H
#define NT_UTIL_H

#include <stddef.h>
#include <stdlib.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* The cleanup attribute, for locals that own heap memory or a descriptor. */
#define _cleanup_(f) __attribute__((cleanup(f)))
static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

/*
 * Reads a whole file of at most max bytes into a NUL-terminated heap buffer (files in /proc
 * report size 0, so this reads until EOF). 0, or -errno; -EFBIG past max.
 */
int read_file(const char *path, size_t max, char **ret, size_t *ret_len);

#endif /* NT_UTIL_H */
