/*
 * B2-serial: T threads on one event queue serve S socketpairs ping-pong,
 * one connection (socket) in one thread at a time.
 *
 * Both ends of every socketpair are watched for reading, and for writing
 * while output is pending.  -m bytes are in flight per pair (default 1).
 * (-S sets SO_SNDBUF: with -m well above it, writes come back short and
 * the WRITE path runs; with -m 1 it never does.)  A thread that gets
 * socket x:
 *   WRITE  flushes x's pending output;
 *   READ   reads what is there (one read(), up to -m bytes) and writes it
 *          back (so x's peer becomes readable); what the write did not take
 *          stays pending and x is watched for writing until it is flushed.
 * Then it releases x.  Baton: EVFILT_READ and EVFILT_WRITE are EV_SERIAL in
 * x's default group (the fd), released by EV_ENABLE folded into the thread's
 * next kevent() call.  epoll: EPOLLONESHOT (EPOLLIN, | EPOLLOUT while output
 * is pending), a per-connection mutex around the handler, EPOLL_CTL_MOD to
 * re-arm.  The per-socket work (b2s_on_read, b2s_on_write) is the same code
 * for both.
 *
 * events_per_s counts socket deliveries (one socket returned to a thread,
 * whatever it was ready for).  Checks:
 *   g1_violations  the per-socket atomic "busy" flag, set from delivery to
 *                  release, was already set: a connection in two threads, or
 *                  returned again before its release (must be 0);
 *   empty_reads    a READ found nothing (NOTE_NODATA allows spurious events);
 *   write_events   deliveries for pending output (0 with -m 1).
 *
 * Each program defines b2s_setup_queue() and b2s_worker() and calls
 * b2s_main().
 */
#ifndef BENCH_B2S_SERIAL_H
#define BENCH_B2S_SERIAL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "common.h"

struct b2s_sock {
	_Alignas(64) int fd;
	atomic_int busy;        /* delivered and not released yet */
	int pending;            /* bytes of out[] not written yet */
	int out_on;             /* watched for writing */
	pthread_mutex_t mu;     /* epoll: the connection's lock */
	char *out;              /* -m bytes */
};

struct b2s_thread {
	_Alignas(64) pthread_t tid;
	atomic_long events;
	long g1, empty, wev, errors, bytes;
};

static struct {
	int threads, pairs, batch, msg, sndbuf;
	long duration_ms, warmup_ms, max_events;
	struct b2s_sock *socks; /* 2 * pairs, both ends */
	struct b2s_thread *th;
	atomic_int stop;
	atomic_long total; /* only with max_events */
	int nodata_ok;     /* set by a program that has -N (Baton) */
	int nodata;        /* -N: register with NOTE_NODATA */
	int uring;         /* -U: BATON_URING_WAIT=1 (re-arms go with the wait) */
} b2s;

static void b2s_setup_queue(void);
static void *b2s_worker(void *arg);

/* A delivery of s: G1 check. */
static inline void b2s_acquire(struct b2s_thread *t, struct b2s_sock *s)
{
	if (atomic_exchange_explicit(&s->busy, 1, memory_order_acquire))
		t->g1++;
}

/* Right before the release is handed to the queue. */
static inline void b2s_release(struct b2s_sock *s)
{
	atomic_store_explicit(&s->busy, 0, memory_order_release);
}

/* Write what is pending; returns 1 if output is still pending. */
static inline int b2s_flush(struct b2s_thread *t, struct b2s_sock *s)
{
	ssize_t w;

	while (s->pending) {
		w = write(s->fd, s->out, (size_t)s->pending);
		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR)
				t->errors++;
			if (errno == EINTR)
				continue;
			return 1;
		}
		s->pending -= (int)w;
		if (s->pending)
			memmove(s->out, s->out + w, (size_t)s->pending);
	}
	return 0;
}

static inline void b2s_on_write(struct b2s_thread *t, struct b2s_sock *s)
{
	t->wev++;
	(void)b2s_flush(t, s);
}

/* READ: one read(), write back what came in (after what is pending). */
static inline void b2s_on_read(struct b2s_thread *t, struct b2s_sock *s)
{
	ssize_t r;

	if (s->pending == b2s.msg) { /* cannot happen unless spurious */
		t->empty++;
		return;
	}
	r = read(s->fd, s->out + s->pending, (size_t)(b2s.msg - s->pending));
	if (r > 0) {
		t->bytes += r;
		s->pending += (int)r;
		(void)b2s_flush(t, s);
	} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
		t->errors++;
	} else {
		t->empty++;
	}
}

static inline void b2s_count(struct b2s_thread *t, int n)
{
	atomic_store_explicit(&t->events,
			      atomic_load_explicit(&t->events, memory_order_relaxed) + n,
			      memory_order_relaxed);
	if (b2s.max_events &&
	    atomic_fetch_add_explicit(&b2s.total, n, memory_order_relaxed) + n >=
		    b2s.max_events)
		atomic_store(&b2s.stop, 1);
}

static inline int b2s_stopped(void)
{
	return atomic_load_explicit(&b2s.stop, memory_order_relaxed);
}

static long b2s_sum_events(void)
{
	long s = 0;
	int i;

	for (i = 0; i < b2s.threads; i++)
		s += atomic_load_explicit(&b2s.th[i].events, memory_order_relaxed);
	return s;
}

static void b2s_sleep_ms(long ms)
{
	struct timespec ts = ns_to_ts(ms * 1000000);

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void b2s_usage(void)
{
	fprintf(stderr, "usage: b2s_* [-T threads] [-s pairs] [-b batch] "
		"[-m bytes_in_flight] [-S SO_SNDBUF] [-d duration_ms] [-W warmup_ms] "
		"[-e max_events]%s\n",
		b2s.nodata_ok ? " [-N (NOTE_NODATA)] [-U (BATON_URING_WAIT=1)]" : "");
	exit(2);
}

/* Not inlined so that callgrind can count worker time only
 * (--toggle-collect=b2s_run_worker). */
BENCH_NOINLINE static void *b2s_run_worker(void *arg)
{
	return b2s_worker(arg);
}

static int b2s_main(int argc, char **argv, const char *impl)
{
	long g1 = 0, empty = 0, wev = 0, errors = 0, bytes = 0, e0, e1, m;
	int64_t t0, t1;
	int i, sv[2];

	b2s.threads = 1;
	b2s.pairs = 64;
	b2s.batch = 8;
	b2s.msg = 1;
	b2s.duration_ms = 1000;
	b2s.warmup_ms = 200;
	for (i = 1; i < argc; i++) {
		if (b2s.nodata_ok && !strcmp(argv[i], "-N")) {
			b2s.nodata = 1;
			continue;
		}
		if (b2s.nodata_ok && !strcmp(argv[i], "-U")) {
			/* read at the first kevent() that re-arms */
			setenv("BATON_URING_WAIT", "1", 1);
			b2s.uring = 1;
			continue;
		}
		if (i + 1 >= argc)
			b2s_usage();
		if (!strcmp(argv[i], "-T"))
			b2s.threads = (int)arg_long(argv[++i], "-T");
		else if (!strcmp(argv[i], "-s"))
			b2s.pairs = (int)arg_long(argv[++i], "-s");
		else if (!strcmp(argv[i], "-b"))
			b2s.batch = (int)arg_long(argv[++i], "-b");
		else if (!strcmp(argv[i], "-S"))
			b2s.sndbuf = (int)arg_long(argv[++i], "-S");
		else if (!strcmp(argv[i], "-m"))
			b2s.msg = (int)arg_long(argv[++i], "-m");
		else if (!strcmp(argv[i], "-d"))
			b2s.duration_ms = arg_long(argv[++i], "-d");
		else if (!strcmp(argv[i], "-W"))
			b2s.warmup_ms = arg_long(argv[++i], "-W");
		else if (!strcmp(argv[i], "-e"))
			b2s.max_events = arg_long(argv[++i], "-e");
		else
			b2s_usage();
	}
	if (b2s.threads < 1 || b2s.pairs < 1 || b2s.batch < 1 ||
	    b2s.batch > 1024 || b2s.msg < 1 || b2s.msg > (64 << 20))
		b2s_usage();
	raise_fd_limit();

	b2s.socks = aligned_alloc(64, sizeof(struct b2s_sock) * 2 * (size_t)b2s.pairs);
	b2s.th = aligned_alloc(64, sizeof(struct b2s_thread) * (size_t)b2s.threads);
	if (!b2s.socks || !b2s.th)
		die("aligned_alloc");
	memset(b2s.socks, 0, sizeof(struct b2s_sock) * 2 * (size_t)b2s.pairs);
	memset(b2s.th, 0, sizeof(struct b2s_thread) * (size_t)b2s.threads);
	for (i = 0; i < 2 * b2s.pairs; i++) {
		b2s.socks[i].out = malloc((size_t)b2s.msg);
		if (!b2s.socks[i].out)
			die("malloc");
		pthread_mutex_init(&b2s.socks[i].mu, NULL);
	}
	for (i = 0; i < b2s.pairs; i++) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			die("socketpair");
		set_nonblock(sv[0]);
		set_nonblock(sv[1]);
		if (b2s.sndbuf &&
		    (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &b2s.sndbuf, sizeof(int)) ||
		     setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &b2s.sndbuf, sizeof(int))))
			die("SO_SNDBUF");
		b2s.socks[2 * i].fd = sv[0];
		b2s.socks[2 * i + 1].fd = sv[1];
	}
	/* -m bytes in flight per pair: the first end's output; what does not
	 * fit stays pending (and the socket starts watched for writing) */
	for (i = 0; i < b2s.pairs; i++) {
		struct b2s_sock *s = &b2s.socks[2 * i];

		memset(s->out, 'p', (size_t)b2s.msg);
		s->pending = b2s.msg;
		s->out_on = b2s_flush(&b2s.th[0], s);
	}
	b2s_setup_queue();

	for (i = 0; i < b2s.threads; i++)
		if (pthread_create(&b2s.th[i].tid, NULL, b2s_run_worker, &b2s.th[i]))
			die("pthread_create");
	if (b2s.max_events) {
		t0 = now_ns();
		e0 = 0;
		for (i = 0; i < b2s.threads; i++)
			pthread_join(b2s.th[i].tid, NULL);
		t1 = now_ns();
		e1 = b2s_sum_events();
	} else {
		b2s_sleep_ms(b2s.warmup_ms);
		e0 = b2s_sum_events();
		t0 = now_ns();
		b2s_sleep_ms(b2s.duration_ms);
		e1 = b2s_sum_events();
		t1 = now_ns();
		atomic_store(&b2s.stop, 1);
		for (i = 0; i < b2s.threads; i++)
			pthread_join(b2s.th[i].tid, NULL);
	}
	for (i = 0; i < b2s.threads; i++) {
		g1 += b2s.th[i].g1;
		empty += b2s.th[i].empty;
		wev += b2s.th[i].wev;
		errors += b2s.th[i].errors;
		bytes += b2s.th[i].bytes;
	}
	/* conservation: what is in the sockets and pending adds up to -m per
	 * pair (nothing lost, nothing duplicated) */
	m = 0;
	for (i = 0; i < 2 * b2s.pairs; i++) {
		int q = 0;

		if (ioctl(b2s.socks[i].fd, FIONREAD, &q) == 0)
			m += q;
		m += b2s.socks[i].pending;
	}
	if (m != (long)b2s.msg * b2s.pairs) {
		fprintf(stderr, "b2s %s: %ld bytes in flight, expected %ld\n",
			impl, m, (long)b2s.msg * b2s.pairs);
		errors++;
	}
	printf("RESULT cfg=b2s/s%d/b%d/m%d/T%d impl=%s%s%s events_per_s=%.0f "
	       "g1_violations=%ld empty_reads=%ld write_events=%ld "
	       "errors=%ld events=%ld bytes=%ld\n",
	       b2s.pairs, b2s.batch, b2s.msg, b2s.threads, impl,
	       b2s.nodata ? "_nodata" : "", b2s.uring ? "_uring" : "",
	       (double)(e1 - e0) * 1e9 / (double)(t1 - t0), g1, empty, wev,
	       errors, e1 - e0, bytes);
	fflush(stdout);
	return errors ? 1 : 0;
}

#endif /* BENCH_B2S_SERIAL_H */
