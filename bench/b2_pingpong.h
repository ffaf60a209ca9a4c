/*
 * B2: T threads on one event queue serve S socketpairs ping-pong.
 *
 * Both ends of every socketpair are watched, one-shot style (EV_DISPATCH in
 * Baton, EPOLLONESHOT in epoll).  One byte is in flight per pair.  A thread
 * that gets watched fd x reads the byte and writes it back (so x's peer
 * becomes readable), then re-arms x.  We count events per second over a
 * fixed wall-clock window (or stop after -e events, for callgrind).
 *
 * Invariant checks (I1: a dispatched knote is never returned to two threads
 * at once):
 *   i1_violations   the per-socket atomic "in handler" flag was already set
 *                   when an event for it arrived;
 *   dup_deliveries  an event arrived while the socket was not re-armed;
 *   empty_reads     an event arrived but there was nothing to read.
 *
 * Each program defines b2_setup_queue() and b2_worker() and calls b2_main().
 */
#ifndef BENCH_B2_PINGPONG_H
#define BENCH_B2_PINGPONG_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "common.h"

struct b2_sock {
	_Alignas(64) int fd;
	atomic_int in_handler;
	atomic_int armed;
};

struct b2_thread {
	_Alignas(64) pthread_t tid;
	atomic_long events;
	long i1, dup, empty, errors;
};

static struct {
	int threads, pairs, batch;
	long duration_ms, warmup_ms, max_events;
	struct b2_sock *socks; /* 2 * pairs, both ends */
	struct b2_thread *th;
	atomic_int stop;
	atomic_long total; /* only with max_events */
	int nodata_ok;     /* set by a program that has -N (Baton) */
	int nodata;        /* -N: register with NOTE_NODATA */
	int uring;         /* -U: BATON_URING_WAIT=1 (re-arms go with the wait) */
} b2;

static void b2_setup_queue(void);
static void *b2_worker(void *arg);

/* The per-event work, identical for every implementation.  Returns after
 * the socket may be re-armed by the caller. */
static inline void b2_handle(struct b2_thread *t, struct b2_sock *s)
{
	char ch;

	if (atomic_exchange_explicit(&s->in_handler, 1, memory_order_acquire))
		t->i1++;
	if (!atomic_exchange_explicit(&s->armed, 0, memory_order_relaxed))
		t->dup++;
	if (read(s->fd, &ch, 1) == 1) {
		if (write(s->fd, &ch, 1) != 1)
			t->errors++;
	} else {
		t->empty++;
	}
	atomic_store_explicit(&s->in_handler, 0, memory_order_release);
}

static inline void b2_count(struct b2_thread *t, int n)
{
	atomic_store_explicit(&t->events,
			      atomic_load_explicit(&t->events, memory_order_relaxed) + n,
			      memory_order_relaxed);
	if (b2.max_events &&
	    atomic_fetch_add_explicit(&b2.total, n, memory_order_relaxed) + n >=
		    b2.max_events)
		atomic_store(&b2.stop, 1);
}

static inline int b2_stopped(void)
{
	return atomic_load_explicit(&b2.stop, memory_order_relaxed);
}

static long b2_sum_events(void)
{
	long s = 0;
	int i;

	for (i = 0; i < b2.threads; i++)
		s += atomic_load_explicit(&b2.th[i].events, memory_order_relaxed);
	return s;
}

static void b2_sleep_ms(long ms)
{
	struct timespec ts = ns_to_ts(ms * 1000000);

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void b2_usage(void)
{
	fprintf(stderr, "usage: b2_* [-T threads] [-s pairs] [-b batch] "
		"[-d duration_ms] [-W warmup_ms] [-e max_events]%s\n",
		b2.nodata_ok ? " [-N (NOTE_NODATA)] [-U (BATON_URING_WAIT=1)]" : "");
	exit(2);
}

/* Not inlined so that callgrind can count worker time only
 * (--toggle-collect=b2_run_worker). */
BENCH_NOINLINE static void *b2_run_worker(void *arg)
{
	return b2_worker(arg);
}

static int b2_main(int argc, char **argv, const char *impl)
{
	long i1 = 0, dup = 0, empty = 0, errors = 0, e0, e1;
	int64_t t0, t1;
	int i, sv[2];

	b2.threads = 1;
	b2.pairs = 64;
	b2.batch = 8;
	b2.duration_ms = 1000;
	b2.warmup_ms = 200;
	for (i = 1; i < argc; i++) {
		if (b2.nodata_ok && !strcmp(argv[i], "-N")) {
			b2.nodata = 1;
			continue;
		}
		if (b2.nodata_ok && !strcmp(argv[i], "-U")) {
			/* read at the first kevent() that re-arms */
			setenv("BATON_URING_WAIT", "1", 1);
			b2.uring = 1;
			continue;
		}
		if (i + 1 >= argc)
			b2_usage();
		if (!strcmp(argv[i], "-T"))
			b2.threads = (int)arg_long(argv[++i], "-T");
		else if (!strcmp(argv[i], "-s"))
			b2.pairs = (int)arg_long(argv[++i], "-s");
		else if (!strcmp(argv[i], "-b"))
			b2.batch = (int)arg_long(argv[++i], "-b");
		else if (!strcmp(argv[i], "-d"))
			b2.duration_ms = arg_long(argv[++i], "-d");
		else if (!strcmp(argv[i], "-W"))
			b2.warmup_ms = arg_long(argv[++i], "-W");
		else if (!strcmp(argv[i], "-e"))
			b2.max_events = arg_long(argv[++i], "-e");
		else
			b2_usage();
	}
	if (b2.threads < 1 || b2.pairs < 1 || b2.batch < 1 || b2.batch > 1024)
		b2_usage();
	raise_fd_limit();

	b2.socks = aligned_alloc(64, sizeof(struct b2_sock) * 2 * (size_t)b2.pairs);
	b2.th = aligned_alloc(64, sizeof(struct b2_thread) * (size_t)b2.threads);
	if (!b2.socks || !b2.th)
		die("aligned_alloc");
	memset(b2.socks, 0, sizeof(struct b2_sock) * 2 * (size_t)b2.pairs);
	memset(b2.th, 0, sizeof(struct b2_thread) * (size_t)b2.threads);
	for (i = 0; i < b2.pairs; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			die("socketpair");
		set_nonblock(sv[0]);
		set_nonblock(sv[1]);
		b2.socks[2 * i].fd = sv[0];
		b2.socks[2 * i + 1].fd = sv[1];
		atomic_init(&b2.socks[2 * i].armed, 1);
		atomic_init(&b2.socks[2 * i + 1].armed, 1);
	}
	b2_setup_queue();
	/* one byte in flight per pair */
	for (i = 0; i < b2.pairs; i++)
		if (write(b2.socks[2 * i].fd, "p", 1) != 1)
			die("priming write");

	for (i = 0; i < b2.threads; i++)
		if (pthread_create(&b2.th[i].tid, NULL, b2_run_worker, &b2.th[i]))
			die("pthread_create");
	if (b2.max_events) {
		t0 = now_ns();
		e0 = 0;
		for (i = 0; i < b2.threads; i++)
			pthread_join(b2.th[i].tid, NULL);
		t1 = now_ns();
		e1 = b2_sum_events();
	} else {
		b2_sleep_ms(b2.warmup_ms);
		e0 = b2_sum_events();
		t0 = now_ns();
		b2_sleep_ms(b2.duration_ms);
		e1 = b2_sum_events();
		t1 = now_ns();
		atomic_store(&b2.stop, 1);
		for (i = 0; i < b2.threads; i++)
			pthread_join(b2.th[i].tid, NULL);
	}
	for (i = 0; i < b2.threads; i++) {
		i1 += b2.th[i].i1;
		dup += b2.th[i].dup;
		empty += b2.th[i].empty;
		errors += b2.th[i].errors;
	}
	printf("RESULT cfg=b2/s%d/b%d/T%d impl=%s%s%s events_per_s=%.0f "
	       "i1_violations=%ld dup_deliveries=%ld empty_reads=%ld "
	       "errors=%ld events=%ld\n",
	       b2.pairs, b2.batch, b2.threads, impl, b2.nodata ? "_nodata" : "", b2.uring ? "_uring" : "",
	       (double)(e1 - e0) * 1e9 / (double)(t1 - t0), i1, dup, empty,
	       errors, e1 - e0);
	fflush(stdout);
	return errors ? 1 : 0;
}

#endif /* BENCH_B2_PINGPONG_H */
