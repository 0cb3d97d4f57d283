// SPDX-License-Identifier: MIT
/* The per-thread process map: exact keys, bounded memory, forgetting that is total. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "keymap.h"

static int setup(void **state)
{
	static struct keymap m;

	assert_int_equal(keymap_init(&m), 0);
	*state = &m;
	return 0;
}

static int teardown(void **state)
{
	keymap_free(*state);
	return 0;
}

/* A process image is (pid, start, exec): each field alone tells two apart. */
static void test_key_fields_all_count(void **state)
{
	struct keymap *m = *state;
	struct proc_key a = { .pid = 10, .start_ns = 100, .exec_id = 0 };
	struct proc_key other_pid = { .pid = 11, .start_ns = 100, .exec_id = 0 };
	struct proc_key other_start = { .pid = 10, .start_ns = 101, .exec_id = 0 };
	struct proc_key other_exec = { .pid = 10, .start_ns = 100, .exec_id = 1 };
	int64_t v = 0;

	assert_int_equal(keymap_get(m, &a, &v), 0);
	keymap_put(m, &a, 7);
	assert_int_equal(keymap_get(m, &a, &v), 1);
	assert_int_equal(v, 7);
	assert_int_equal(keymap_get(m, &other_pid, &v), 0);
	assert_int_equal(keymap_get(m, &other_start, &v), 0);
	assert_int_equal(keymap_get(m, &other_exec, &v), 0);
	keymap_put(m, &other_exec, 8);
	assert_int_equal(keymap_get(m, &other_exec, &v), 1);
	assert_int_equal(v, 8);
	assert_int_equal(keymap_get(m, &a, &v), 1);
	assert_int_equal(v, 7);
	assert_int_equal(m->len, 2);
}

/* Putting a key again updates it in place: no second slot. */
static void test_put_updates(void **state)
{
	struct keymap *m = *state;
	struct proc_key a = { .pid = 1, .start_ns = 2, .exec_id = 3 };
	int64_t v;

	keymap_put(m, &a, 1);
	keymap_put(m, &a, 2);
	assert_int_equal(m->len, 1);
	assert_int_equal(keymap_get(m, &a, &v), 1);
	assert_int_equal(v, 2);
}

/* Many keys that collide in the hash's high bits are still all found (linear probing). */
static void test_many_keys(void **state)
{
	struct keymap *m = *state;
	int64_t v;

	for (uint32_t i = 0; i < 40000; i++)
		keymap_put(m, &(struct proc_key){ .pid = i, .start_ns = 5 }, i);
	for (uint32_t i = 0; i < 40000; i++) {
		assert_int_equal(keymap_get(m, &(struct proc_key){ .pid = i, .start_ns = 5 }, &v), 1);
		assert_int_equal(v, i);
	}
	assert_int_equal(m->len, 40000);
}

/* At 3/4 full it forgets everything at once, and memory never grows. */
static void test_forgets_when_full(void **state)
{
	struct keymap *m = *state;
	const uint32_t limit = KEYMAP_CAP / 4 * 3;
	int64_t v;

	for (uint32_t i = 0; i < limit; i++)
		keymap_put(m, &(struct proc_key){ .pid = i + 1 }, 1);
	assert_int_equal(m->len, limit);
	assert_int_equal(keymap_get(m, &(struct proc_key){ .pid = 1 }, &v), 1);
	keymap_put(m, &(struct proc_key){ .pid = limit + 1 }, 2);
	assert_int_equal(m->len, 1);
	assert_int_equal(keymap_get(m, &(struct proc_key){ .pid = 1 }, &v), 0);
	assert_int_equal(keymap_get(m, &(struct proc_key){ .pid = limit + 1 }, &v), 1);
	assert_int_equal(v, 2);
}

static void test_clear(void **state)
{
	struct keymap *m = *state;
	int64_t v;

	keymap_put(m, &(struct proc_key){ .pid = 9 }, 1);
	keymap_clear(m);
	assert_int_equal(m->len, 0);
	assert_int_equal(keymap_get(m, &(struct proc_key){ .pid = 9 }, &v), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_key_fields_all_count, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_updates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forgets_when_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clear, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
