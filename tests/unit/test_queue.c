// SPDX-License-Identifier: MIT
/*
 * The consumer -> writer queue: bounded (a full queue refuses, so the producer can count the
 * loss), first in first out, never blocks the producer, drains before it reports closed.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>
#include <cmocka.h>
#include "queue.h"

static struct qitem conn_item(uint32_t pid)
{
	struct qitem it = { .type = QI_CONN };

	it.conn.pid = pid;
	return it;
}

static void test_fifo_and_bound(void **state)
{
	struct queue q;
	struct qitem out[8];
	struct qitem it;

	(void)state;
	assert_int_equal(queue_init(&q, 4), 0);
	for (uint32_t i = 1; i <= 4; i++) {
		it = conn_item(i);
		assert_int_equal(queue_push(&q, &it), 0);
	}
	it = conn_item(5);
	assert_int_equal(queue_push(&q, &it), -ENOBUFS);
	assert_int_equal(queue_len(&q), 4);
	assert_int_equal(queue_pop(&q, out, 3, 0), 3);
	assert_int_equal(out[0].conn.pid, 1);
	assert_int_equal(out[2].conn.pid, 3);
	/* Wraps around the ring. */
	it = conn_item(6);
	assert_int_equal(queue_push(&q, &it), 0);
	assert_int_equal(queue_pop(&q, out, 8, 0), 2);
	assert_int_equal(out[0].conn.pid, 4);
	assert_int_equal(out[1].conn.pid, 6);
	queue_destroy(&q);
}

/* An empty queue waits about the timeout, then reports nothing. */
static void test_pop_timeout(void **state)
{
	struct timespec a, b;
	struct queue q;
	struct qitem out;
	long ms;

	(void)state;
	assert_int_equal(queue_init(&q, 2), 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(queue_pop(&q, &out, 1, 50), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	assert_true(ms >= 45);
	queue_destroy(&q);
}

/* Closed: what is queued still comes out, then -EPIPE. */
static void test_close_drains_first(void **state)
{
	struct queue q;
	struct qitem out[2], it = conn_item(1);

	(void)state;
	assert_int_equal(queue_init(&q, 2), 0);
	assert_int_equal(queue_push(&q, &it), 0);
	queue_close(&q);
	assert_int_equal(queue_pop(&q, out, 2, 1000), 1);
	assert_int_equal(queue_pop(&q, out, 2, 1000), -EPIPE);
	queue_destroy(&q);
}

struct consumer {
	struct queue *q;
	uint64_t sum, n;
};

static void *consume(void *arg)
{
	struct consumer *c = arg;
	struct qitem out[64];
	int n;

	while ((n = queue_pop(c->q, out, 64, 100)) != -EPIPE)
		for (int i = 0; i < n; i++) {
			c->sum += out[i].conn.pid;
			c->n++;
		}
	return NULL;
}

/* Across threads: every pushed item arrives once, or was refused and counted. */
static void test_threads_lose_nothing_uncounted(void **state)
{
	struct queue q;
	struct consumer c = { .q = &q };
	uint64_t refused = 0, refused_sum = 0, total = 0;
	pthread_t th;

	(void)state;
	assert_int_equal(queue_init(&q, 128), 0);
	pthread_create(&th, NULL, consume, &c);
	for (uint32_t i = 1; i <= 200000; i++) {
		struct qitem it = conn_item(i);

		total += i;
		if (queue_push(&q, &it) < 0) {
			refused++;
			refused_sum += i;
		}
	}
	queue_close(&q);
	pthread_join(th, NULL);
	assert_int_equal(c.n + refused, 200000);
	assert_int_equal(c.sum + refused_sum, total);
	queue_destroy(&q);
}

/* Items that own memory are freed by destroy (ASan's leak check sees it). */
static void test_destroy_frees_owned_items(void **state)
{
	struct queue q;
	struct qitem p = { .type = QI_PROC }, s = { .type = QI_STATS };

	(void)state;
	assert_int_equal(queue_init(&q, 4), 0);
	p.proc = calloc(1, sizeof(*p.proc));
	s.stats = calloc(1, sizeof(*s.stats));
	assert_int_equal(queue_push(&q, &p), 0);
	assert_int_equal(queue_push(&q, &s), 0);
	queue_destroy(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo_and_bound),
		cmocka_unit_test(test_pop_timeout),
		cmocka_unit_test(test_close_drains_first),
		cmocka_unit_test(test_threads_lose_nothing_uncounted),
		cmocka_unit_test(test_destroy_frees_owned_items),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
