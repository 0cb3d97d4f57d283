// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include "policy.h"
#include "queue.h"

int queue_init(struct queue *q, size_t cap)
{
	pthread_condattr_t ca;

	q->items = calloc(cap, sizeof(*q->items));
	if (!q->items)
		return -ENOMEM;
	q->cap = cap;
	q->head = q->len = 0;
	q->closed = 0;
	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->nonempty, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

void queue_destroy(struct queue *q)
{
	struct qitem it;

	/* Items still queued own memory. */
	while (queue_pop(q, &it, 1, 0) == 1) {
		if (it.type == QI_PROC)
			free(it.proc);
		else if (it.type == QI_STATS)
			free(it.stats);
		else if (it.type == QI_DNS)
			free(it.dns);
		else if (it.type == QI_POLICY)
			policy_unref(it.policy);
	}
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->nonempty);
	free(q->items);
	q->items = NULL;
}

int queue_push(struct queue *q, const struct qitem *it)
{
	int r = 0;

	pthread_mutex_lock(&q->lock);
	if (q->len == q->cap) {
		r = -ENOBUFS;
	} else {
		q->items[(q->head + q->len) % q->cap] = *it;
		if (q->len++ == 0)
			pthread_cond_signal(&q->nonempty);
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

int queue_pop(struct queue *q, struct qitem *out, size_t max, int timeout_ms)
{
	struct timespec until;
	size_t n = 0;
	int closed;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&q->lock);
	while (q->len == 0 && !q->closed && timeout_ms > 0)
		if (pthread_cond_timedwait(&q->nonempty, &q->lock, &until) == ETIMEDOUT)
			break;
	while (n < max && q->len > 0) {
		out[n++] = q->items[q->head];
		q->head = (q->head + 1) % q->cap;
		q->len--;
	}
	closed = q->closed;
	pthread_mutex_unlock(&q->lock);
	if (n == 0 && closed)
		return -EPIPE;
	return (int)n;
}

void queue_close(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = 1;
	pthread_cond_broadcast(&q->nonempty);
	pthread_mutex_unlock(&q->lock);
}

size_t queue_len(struct queue *q)
{
	size_t n;

	pthread_mutex_lock(&q->lock);
	n = q->len;
	pthread_mutex_unlock(&q->lock);
	return n;
}
