/* SPDX-License-Identifier: MIT */
#ifndef NT_KEYMAP_H
#define NT_KEYMAP_H

#include <stddef.h>
#include <stdint.h>

/*
 * A process image -> value map for one thread: open addressing over a fixed table, forgotten
 * wholesale once 3/4 full. Forgetting is safe for its users (they look the row up again, or
 * send the process again), so memory stays bounded with no eviction bookkeeping.
 */
#define KEYMAP_CAP (1 << 16)

struct proc_key {
	uint64_t start_ns;
	uint32_t pid;
	uint32_t exec_id;
};

struct keymap_entry {
	struct proc_key k;
	int64_t value;
	int used;
};

struct keymap {
	struct keymap_entry *e;
	size_t len;
};

int keymap_init(struct keymap *m);
void keymap_free(struct keymap *m);
/* 1 and the value if present, else 0. */
int keymap_get(struct keymap *m, const struct proc_key *k, int64_t *ret);
void keymap_put(struct keymap *m, const struct proc_key *k, int64_t value);
void keymap_clear(struct keymap *m);

#endif /* NT_KEYMAP_H */
