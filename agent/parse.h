/* SPDX-License-Identifier: MIT */
#ifndef NT_PARSE_H
#define NT_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Strict decimal: digits only, no sign, no spaces, within [min, max]. 0 or -EINVAL/-ERANGE. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* A byte size: decimal with an optional K, M or G suffix (powers of 1024). */
int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* A duration: a number and a unit, ms s m h d or w (500ms, 30d). In ns; 0 or -EINVAL/-ERANGE. */
int parse_duration(const char *s, int64_t *ret_ns);

/* --since AGE: a positive duration back from now, as wall-clock ns; 0 or -EINVAL/-ERANGE. */
int parse_since(const char *s, int64_t *ret_wall_ns);

/* A scope name: 1-64 of [A-Za-z0-9_.-], not starting with '.' (it becomes a directory). */
int parse_scope(const char *s);

#endif /* NT_PARSE_H */
