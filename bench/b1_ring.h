/*
 * B1 pipe storm: the protocol of libevent's test/bench.c, written for Baton.
 *
 * N watched fds form a ring.  A of them are primed with one byte.  Each
 * event on watched fd i reads 1 byte and, while the write budget lasts,
 * writes 1 byte so that watched fd i+1 becomes readable.  A run ends when
 * every byte written has been read; we report the time per event.
 *
 * Transports (-t):
 *   pipe   N pipes, read end watched                  (2N fds)
 *   sock   N AF_UNIX socketpairs, one end watched     (2N fds)
 *   sock2  N/2 socketpairs, both ends watched          (N fds; the only way
 *          to reach N = 10 000 under a 20 000 fd limit)
 *   tcp    N loopback TCP connections (TCP_NODELAY), one end watched (2N
 *          fds): what servers watch, and the socket kind whose byte counts
 *          the kernel serves in a batch (io_uring); AF_UNIX and pipes it
 *          does not
 *
 * Each program defines b1_register() and b1_loop() (wait until
 * b1.count == b1.fired, calling b1_event(i) for every readable watched fd)
 * and calls b1_main().
 */
#ifndef BENCH_B1_RING_H
#define BENCH_B1_RING_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "common.h"

enum b1_kind { B1_PIPE, B1_SOCK, B1_SOCK2, B1_TCP, B1_NKIND };

static struct {
	int n, a, reps, kind;
	long writes;        /* write budget per run */
	int *rfd;           /* watched fd of ring slot i */
	int *wfd;           /* writing to wfd[i] makes rfd[i] readable */
	long count;         /* bytes read this run */
	long fired;         /* bytes written this run */
	long left;          /* write budget left */
	long failures;
	int nodata_ok;      /* set by a program that has -N (Baton) */
	int nodata;         /* -N: register with NOTE_NODATA */
} b1;

static const char *const b1_kind_name[] = { "pipe", "sock", "sock2", "tcp" };

/* One event: the whole per-event work of the protocol. */
static inline void b1_event(int i)
{
	char ch;
	int w;

	if (read(b1.rfd[i], &ch, 1) == 1)
		b1.count++;
	else
		b1.failures++;
	if (b1.left) {
		w = i + 1 == b1.n ? 0 : i + 1;
		if (write(b1.wfd[w], "e", 1) != 1)
			b1.failures++;
		b1.left--;
		b1.fired++;
	}
}

static void b1_register(void);
static void b1_loop(void);

static void b1_usage(void)
{
	fprintf(stderr, "usage: b1_* [-n watched_fds] [-a active] [-w writes] "
		"[-r timed_runs] [-t pipe|sock|sock2|tcp]%s\n",
		b1.nodata_ok ? " [-N (NOTE_NODATA)]" : "");
	exit(2);
}

/* A connected loopback TCP pair: p[0] the accepted end, p[1] the client. */
static int b1_tcp_pair(int p[2])
{
	static int lfd = -1;
	static struct sockaddr_in addr;
	socklen_t len = sizeof(addr);
	int one = 1;

	if (lfd < 0) {
		addr.sin_family = AF_INET;
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) ||
		    listen(lfd, 128) || getsockname(lfd, (struct sockaddr *)&addr, &len))
			return -1;
	}
	p[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p[1] < 0 || connect(p[1], (struct sockaddr *)&addr, sizeof(addr)))
		return -1;
	p[0] = accept(lfd, NULL, NULL);
	if (p[0] < 0)
		return -1;
	/* 1-byte writes must not wait for the peer's delayed ACK (Nagle) */
	setsockopt(p[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(p[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

static void b1_setup(void)
{
	int i, p[2];

	b1.rfd = calloc((size_t)b1.n, sizeof(int));
	b1.wfd = calloc((size_t)b1.n, sizeof(int));
	if (!b1.rfd || !b1.wfd)
		die("calloc");
	for (i = 0; i < b1.n; i++) {
		if (b1.kind == B1_SOCK2 && (i & 1)) {
			/* the other end of the previous pair */
			b1.rfd[i] = b1.wfd[i - 1];
			b1.wfd[i] = b1.rfd[i - 1];
			continue;
		}
		if (b1.kind == B1_PIPE   ? pipe(p)
		    : b1.kind == B1_TCP  ? b1_tcp_pair(p)
		                         : socketpair(AF_UNIX, SOCK_STREAM, 0, p))
			die("creating fd pair %d of %d", i, b1.n);
		set_nonblock(p[0]);
		set_nonblock(p[1]);
		b1.rfd[i] = p[0];
		b1.wfd[i] = p[1];
	}
}

/* The measured part: prime A slots, run the ring dry.  Not inlined, so that
 * callgrind can count exactly this (--toggle-collect=b1_timed_run). */
BENCH_NOINLINE static int64_t b1_timed_run(void)
{
	int64_t t0, t1;
	int i, space = b1.n / b1.a;

	b1.count = 0;
	b1.fired = 0;
	b1.left = b1.writes;
	for (i = 0; i < b1.a; i++) {
		if (write(b1.wfd[i * space], "e", 1) != 1)
			die("priming write");
		b1.fired++;
	}
	t0 = now_ns();
	b1_loop();
	t1 = now_ns();
	return t1 - t0;
}

static int b1_main(int argc, char **argv, const char *impl)
{
	double *per_event;
	double best = 0;
	int i, r;

	b1.n = 100;
	b1.a = 1;
	b1.writes = 100000;
	b1.reps = 5;
	b1.kind = B1_PIPE;
	for (i = 1; i < argc; i++) {
		if (b1.nodata_ok && !strcmp(argv[i], "-N")) {
			b1.nodata = 1;
			continue;
		}
		if (i + 1 >= argc)
			b1_usage();
		if (!strcmp(argv[i], "-n"))
			b1.n = (int)arg_long(argv[++i], "-n");
		else if (!strcmp(argv[i], "-a"))
			b1.a = (int)arg_long(argv[++i], "-a");
		else if (!strcmp(argv[i], "-w"))
			b1.writes = arg_long(argv[++i], "-w");
		else if (!strcmp(argv[i], "-r"))
			b1.reps = (int)arg_long(argv[++i], "-r");
		else if (!strcmp(argv[i], "-t")) {
			i++;
			for (b1.kind = 0; b1.kind < B1_NKIND; b1.kind++)
				if (!strcmp(argv[i], b1_kind_name[b1.kind]))
					break;
			if (b1.kind == B1_NKIND)
				b1_usage();
		} else
			b1_usage();
	}
	if (b1.n < 2 || b1.a < 1 || b1.a > b1.n || b1.reps < 1 ||
	    (b1.kind == B1_SOCK2 && b1.n % 2))
		b1_usage();
	raise_fd_limit();
	b1_setup();
	b1_register();

	per_event = calloc((size_t)b1.reps, sizeof(double));
	if (!per_event)
		die("calloc");
	(void)b1_timed_run(); /* warm-up run, not reported */
	for (r = 0; r < b1.reps; r++) {
		int64_t t = b1_timed_run();

		per_event[r] = (double)t / (double)b1.count;
		if (r == 0 || per_event[r] < best)
			best = per_event[r];
	}
	if (b1.failures)
		fprintf(stderr, "b1 %s: %ld failed reads/writes\n", impl, b1.failures);
	printf("RESULT cfg=b1/%s/n%d/a%d impl=%s%s ns_per_event=%.1f "
	       "ns_per_event_min=%.1f events=%ld failures=%ld fds=%ld\n",
	       b1_kind_name[b1.kind], b1.n, b1.a, impl,
	       b1.nodata ? "_nodata" : "",
	       median_d(per_event, b1.reps), best, b1.count, b1.failures,
	       count_fds());
	fflush(stdout);
	free(per_event);
	return b1.failures ? 1 : 0;
}

#endif /* BENCH_B1_RING_H */
