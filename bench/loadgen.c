// SPDX-License-Identifier: MIT
/*
 * Load for nettrail's benchmarks, loopback only.
 *
 *   loadgen connect N        N TCP connects (connect + RST close) to a listener of its own on
 *                            127.0.0.1; prints connects/s
 *   loadgen events RATE SECS connect() calls on a UDP socket (one event each, no packet sent)
 *                            at RATE per second for SECS seconds; prints the count and the rate
 *                            achieved
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *accept_loop(void *arg)
{
	int lfd = *(int *)arg;

	for (;;) {
		int c = accept(lfd, NULL, NULL);

		if (c >= 0)
			close(c);
	}
	return NULL;
}

static int bench_connect(long n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	socklen_t len = sizeof(sa);
	pthread_t th;
	double t0, dt;
	int lfd;

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
		perror("loadgen: listener");
		return 1;
	}
	pthread_create(&th, NULL, accept_loop, &lfd);
	t0 = now_s();
	for (long i = 0; i < n; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			perror("loadgen: connect");
			return 1;
		}
		/* RST on close: no TIME_WAIT, so the ephemeral ports never run out. */
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
	}
	dt = now_s() - t0;
	printf("%.0f\n", (double)n / dt);
	return 0;
}

static int bench_events(double rate, double secs)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	double t0 = now_s(), t;
	long sent = 0;

	if (fd < 0) {
		perror("loadgen: socket");
		return 1;
	}
	/* Paced in 1 ms steps: at each step, catch up to rate * elapsed. */
	while ((t = now_s() - t0) < secs) {
		long due = (long)(rate * t);

		for (; sent < due; sent++) {
			sa.sin_port = htons((uint16_t)(1024 + sent % 60000));
			if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != ECONNREFUSED) {
				perror("loadgen: connect");
				return 1;
			}
		}
		if (sent >= due)
			usleep(1000);
	}
	printf("%ld %.0f\n", sent, (double)sent / (now_s() - t0));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "connect"))
		return bench_connect(strtol(argv[2], NULL, 10));
	if (argc == 4 && !strcmp(argv[1], "events"))
		return bench_events(strtod(argv[2], NULL), strtod(argv[3], NULL));
	fprintf(stderr, "usage: loadgen connect N | loadgen events RATE SECS\n");
	return 2;
}
