/*
 * Stress test: a READ that EV_DISPATCH (or a serial group) hands over is
 * reported once per re-enable.  On FreeBSD a dispatch knote is checked when
 * it is re-enabled, so a READ event always finds the data it reports; with
 * NOTE_NODATA Baton may report a socket without data only when the kernel
 * did (the contract: "may be spurious"), never because it armed the same
 * registration twice: the second report then goes to another thread after
 * the first had drained the socket.
 *
 * That is what the io_uring wait (BATON_URING_WAIT=1, run as
 * stress_dispatch_no_stale_report_uring_wait) did: a queued re-arm that
 * another thread's later re-arm of the same fd had overtaken was made a
 * second time, and a serial group's turns collapsed into reports of drained
 * sockets.
 *
 * As B2: both ends of 48 AF_UNIX pairs are watched with NOTE_NODATA, one
 * byte is in flight per pair; a thread that gets end x reads the byte,
 * writes it back (its peer becomes readable) and re-enables x in its next
 * kevent() call, which waits.  2, 8 and 32 threads, in two modes:
 * EV_DISPATCH knotes, and EV_SERIAL ones (each socket its own group).  Every
 * event must find its byte.  (Each phase also checks I1 / G1 in passing: a
 * socket handled by two threads at once.)
 */
#include "stress_util.h"

#include <stdbool.h>

#define NPAIRS 48
#define NSOCK  (2 * NPAIRS)
#define MAXEV  8

struct sock {
	int fd;
	atomic_int busy;
};

struct ctx {
	int kq;
	bool serial;
	struct sock socks[NSOCK];
	atomic_long events;
	atomic_int stop;
};

struct targ {
	struct ctx *c;
	long events;
};

static void *worker(void *arg)
{
	struct targ *t = arg;
	struct ctx *c = t->c;
	struct kevent chg[MAXEV], ev[MAXEV];
	const struct timespec tmo = {0, 20 * 1000000};
	int nchg = 0;
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		int n = kevent(c->kq, chg, nchg, ev, MAXEV, &tmo);
		nchg = 0;
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n >= 0);
		stress_no_errors(ev, n);
		for (int i = 0; i < n; i++) {
			struct sock *s = ev[i].udata;
			char ch;
			if (atomic_exchange(&s->busy, 1))
				VIOLATION(c->serial ? "G1" : "I1",
				          "fd %d returned to two threads at once", s->fd);
			ssize_t r = read(s->fd, &ch, 1);
			if (r != 1)
				VIOLATION("one report per re-enable",
				          "READ on fd %d (%s) found nothing to read: %s", s->fd,
				          c->serial ? "serial" : "EV_DISPATCH",
				          r < 0 ? strerror(errno) : "EOF");
			SCHECK(write(s->fd, &ch, 1) == 1);
			atomic_store(&s->busy, 0);
			EV_SET(&chg[nchg++], s->fd, EVFILT_READ, EV_ENABLE, 0, 0, s);
		}
		t->events += n;
	}
	if (nchg) /* what this thread still holds goes back */
		SCHECK(kevent(c->kq, chg, nchg, NULL, 0, NULL) == 0);
	return NULL;
}

static void run(bool serial, int nthreads)
{
	static struct ctx c;
	memset(&c, 0, sizeof c);
	c.serial = serial;
	c.kq = kqueue();
	SCHECK(c.kq >= 0);
	for (int p = 0; p < NPAIRS; p++) {
		int sv[2];
		stress_socketpair(sv);
		for (int e = 0; e < 2; e++) {
			struct sock *s = &c.socks[2 * p + e];
			s->fd = sv[e];
			CHANGE_OK(c.kq, s->fd, EVFILT_READ,
			          EV_ADD | (serial ? EV_SERIAL : EV_DISPATCH), NOTE_NODATA, 0, s);
		}
		SCHECK(write(sv[0], "x", 1) == 1); /* the pair's byte */
	}
	pthread_t tids[32];
	struct targ args[32];
	memset(args, 0, sizeof args);
	for (int i = 0; i < nthreads; i++)
		args[i].c = &c;
	stress_start(tids, nthreads, worker, args, sizeof args[0]);
	/* long enough for thousands of re-enables per thread count */
	double end = now_ms() + (getenv("BATON_STRESS_QUICK") ? 300.0 : 1500.0);
	while (now_ms() < end)
		stress_sleep_us(20000);
	atomic_store(&c.stop, 1);
	stress_join(tids, nthreads);
	long events = 0;
	for (int i = 0; i < nthreads; i++)
		events += args[i].events;
	/* every pair's byte is still there: nothing was read twice or lost */
	int bytes = 0;
	for (int i = 0; i < NSOCK; i++) {
		char ch;
		while (read(c.socks[i].fd, &ch, 1) == 1)
			bytes++;
		close(c.socks[i].fd);
	}
	if (bytes != NPAIRS)
		VIOLATION("one byte per pair", "%d bytes left in %d pairs", bytes, NPAIRS);
	if (events < 100)
		VIOLATION("progress", "only %ld events with %d threads", events, nthreads);
	printf("%s, %d threads: %ld events, none without its byte\n",
	       serial ? "serial" : "EV_DISPATCH", nthreads, events);
	close(c.kq);
}

static void run_dispatch(int nthreads)
{
	run(false, nthreads);
}

static void run_serial(int nthreads)
{
	run(true, nthreads);
}

int main(void)
{
	stress_phases("EV_DISPATCH READ", run_dispatch);
	stress_phases("serial READ", run_serial);
	return 0;
}
