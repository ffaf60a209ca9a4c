/*
 * B3: cross-thread wake-up ping-pong between two threads.  Thread A wakes
 * B and waits to be woken; B waits, then wakes A.  One round trip = two
 * cross-thread wake-ups.  We report the mean round-trip time over -n
 * round trips (after -W warm-up round trips).  With -p both threads are
 * pinned to one CPU (the first CPU we may run on), which takes the cost of
 * waking an idle vCPU out of the figure.
 *
 * Each program defines b3_setup(), b3_wake_b(), b3_wait_a(), b3_wake_a(),
 * b3_wait_b() and calls b3_main() with its name.
 */
#ifndef BENCH_B3_PINGPONG_H
#define BENCH_B3_PINGPONG_H

#include <pthread.h>
#include <sched.h>

#include "common.h"

static struct {
	long iters, warmup;
	int pin, cpu;
} b3;

static void b3_setup(void);
static void b3_wake_b(void); /* called by A */
static void b3_wait_a(void); /* A waits to be woken */
static void b3_wake_a(void); /* called by B */
static void b3_wait_b(void); /* B waits to be woken */

static void b3_pin_self(void)
{
	cpu_set_t set;

	if (!b3.pin)
		return;
	CPU_ZERO(&set);
	CPU_SET(b3.cpu, &set);
	if (sched_setaffinity(0, sizeof set, &set))
		die("sched_setaffinity");
}

static void *b3_thread_b(void *arg)
{
	long i, n = b3.iters + b3.warmup;

	(void)arg;
	b3_pin_self();
	for (i = 0; i < n; i++) {
		b3_wait_b();
		b3_wake_a();
	}
	return NULL;
}

BENCH_NOINLINE static int64_t b3_timed(long n)
{
	int64_t t0 = now_ns();
	long i;

	for (i = 0; i < n; i++) {
		b3_wake_b();
		b3_wait_a();
	}
	return now_ns() - t0;
}

static int b3_main(int argc, char **argv, const char *impl)
{
	pthread_t tb;
	cpu_set_t set;
	int64_t t;
	int i;

	b3.iters = 100000;
	b3.warmup = 10000;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-p"))
			b3.pin = 1;
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			b3.iters = arg_long(argv[++i], "-n");
		else if (!strcmp(argv[i], "-W") && i + 1 < argc)
			b3.warmup = arg_long(argv[++i], "-W");
		else {
			fprintf(stderr, "usage: b3_* [-p] [-n round_trips] [-W warmup]\n");
			return 2;
		}
	}
	if (b3.iters < 1)
		return 2;
	if (sched_getaffinity(0, sizeof set, &set))
		die("sched_getaffinity");
	for (b3.cpu = 0; b3.cpu < CPU_SETSIZE && !CPU_ISSET(b3.cpu, &set); b3.cpu++)
		;
	b3_setup();
	b3_pin_self();
	if (pthread_create(&tb, NULL, b3_thread_b, NULL))
		die("pthread_create");
	(void)b3_timed(b3.warmup);
	t = b3_timed(b3.iters);
	pthread_join(tb, NULL);
	printf("RESULT cfg=b3/%s impl=%s rtt_ns=%.1f round_trips=%ld\n",
	       b3.pin ? "pinned" : "unpinned", impl, (double)t / (double)b3.iters,
	       b3.iters);
	fflush(stdout);
	return 0;
}

#endif /* BENCH_B3_PINGPONG_H */
