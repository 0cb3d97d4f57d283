// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "keymap.h"

int keymap_init(struct keymap *m)
{
	m->e = calloc(KEYMAP_CAP, sizeof(*m->e));
	m->len = 0;
	return m->e ? 0 : -ENOMEM;
}

void keymap_free(struct keymap *m)
{
	free(m->e);
	m->e = NULL;
	m->len = 0;
}

void keymap_clear(struct keymap *m)
{
	memset(m->e, 0, KEYMAP_CAP * sizeof(*m->e));
	m->len = 0;
}

static int key_eq(const struct proc_key *a, const struct proc_key *b)
{
	return a->pid == b->pid && a->start_ns == b->start_ns && a->exec_id == b->exec_id;
}

/* The entry of k, or the free slot where it would go (the table is never full). */
static struct keymap_entry *keymap_slot(struct keymap *m, const struct proc_key *k)
{
	uint64_t h = (k->pid * 0x9E3779B97F4A7C15ULL) ^ (k->start_ns * 0xC2B2AE3D27D4EB4FULL) ^
		     (k->exec_id * 0x165667B19E3779F9ULL);
	size_t i = (size_t)(h >> 40) & (KEYMAP_CAP - 1);

	for (;; i = (i + 1) & (KEYMAP_CAP - 1)) {
		struct keymap_entry *e = &m->e[i];

		if (!e->used || key_eq(&e->k, k))
			return e;
	}
}

int keymap_get(struct keymap *m, const struct proc_key *k, int64_t *ret)
{
	struct keymap_entry *e = keymap_slot(m, k);

	if (!e->used)
		return 0;
	*ret = e->value;
	return 1;
}

void keymap_put(struct keymap *m, const struct proc_key *k, int64_t value)
{
	struct keymap_entry *e;

	if (m->len >= KEYMAP_CAP / 4 * 3)
		keymap_clear(m);
	e = keymap_slot(m, k);
	if (!e->used)
		m->len++;
	*e = (struct keymap_entry){ .k = *k, .used = 1, .value = value };
}
