/*
 * Stress test for SEMANTICS.md G2 (CONTRACT.md "Serial groups"), the way a
 * server streams a large response and stops gracefully: a level WRITE that
 * is enabled while its group is held, or released, keeps firing until the
 * socket stops being writable, however the group's idle timer is forced,
 * re-added and used for the release meanwhile.  (baton-httpd's graceful
 * stop: a download trickled along only on its forced timers, once in a
 * few ThreadSanitizer runs.)
 *
 * BREAKS: G1
 *
 * Connections (2, 8 and 32 handler threads on one kqueue, one "stopper"
 * thread, one reader thread): a TCP loopback pair whose server end has a
 * small send buffer; its group (ext[1] = the connection's id) holds the
 * READ (disabled: no request comes), the WRITE (level, enabled) and an idle
 * timer (ident = the id, one hour: it fires only when forced), all
 * NOTE_NODATA as a server asks.
 * - Handlers hold the group (a busy flag: a member returned while another
 *   call holds it is a G1 violation), write until EAGAIN or a budget, now
 *   and then sleep while holding, and release with EV_ENABLE of the timer
 *   in their next call, after an EV_ADD of the timer when a forced one was
 *   returned (it is gone) and, now and then, to move it.
 * - The stopper forces every connection's timer (EV_FORCEONESHOT |
 *   EV_KEEPUDATA, ENOENT when it was returned and not yet added again),
 *   again and again for a burst, then stops.
 * - The reader drains the client ends as fast as it can.
 * After each burst, with nothing forced any more, every connection must
 * move on by WRITE alone: PROGRESS_BYTES more read from each within
 * QUIET_MS.  A WRITE lost in a release leaves its connection flat.
 */
#include "stress_util.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>

#define NCONN 6
#define MAXEV 4
#define BUDGET (64 * 1024)
#define BURST_MS 25.0
#define QUIET_MS 3000.0
#define PROGRESS_BYTES (1024 * 1024)

struct conn {
	int fd, peer;          /* constant while the threads run */
	uint64_t id;           /* group id and timer ident */
	atomic_int busy;       /* 0, or 1 + the handler holding the group */
	atomic_llong received; /* read by the reader thread */
	atomic_long writes, forced_seen;
	/* the holder's: */
	atomic_int timer_on; /* atomic only so the stopper may peek */
};

struct ctx {
	int kq;
	struct conn c[NCONN];
	atomic_int stop, stop_reader;
	atomic_long forces, releases, moves;
};

struct targ {
	struct ctx *c;
	int id;
	uint32_t seed;
};

static void tcp_pair(int *srv, int *cli)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	SCHECK(l >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	SCHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 4) == 0);
	SCHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0);
	*cli = socket(AF_INET, SOCK_STREAM, 0);
	/* a fixed window: with a small send buffer and an autotuned one,
	 * loopback TCP waits on delayed ACKs (30 turns a second) */
	int win = 65536;
	SCHECK(*cli >= 0 && setsockopt(*cli, SOL_SOCKET, SO_RCVBUF, &win, sizeof win) == 0);
	SCHECK(connect(*cli, (struct sockaddr *)&a, sizeof a) == 0);
	*srv = accept(l, NULL, NULL);
	SCHECK(*srv >= 0);
	close(l);
	int small = 32768;
	SCHECK(setsockopt(*srv, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
	stress_nonblock(*srv);
	stress_nonblock(*cli);
}

static void member(struct kevent *ch, struct conn *k, uintptr_t ident, short filter,
                   unsigned short flags, int64_t data)
{
	EV_SET(ch, ident, filter, flags | EV_SERIAL,
	       filter == EVFILT_TIMER ? NOTE_SECONDS : NOTE_NODATA, data, k);
	ch->ext[1] = k->id;
}

static void *handler(void *p)
{
	struct targ *t = p;
	struct ctx *c = t->c;
	struct kevent ch[3 * MAXEV], ev[MAXEV];
	int nch = 0;
	static char junk[BUDGET];
	while (!atomic_load(&c->stop)) {
		struct timespec ts = {0, 20 * 1000 * 1000};
		int n = kevent(c->kq, ch, nch, ev, MAXEV, &ts);
		SCHECK(n >= 0);
		nch = 0;
		stress_no_errors(ev, n);
		struct conn *mine[MAXEV];
		bool forced[MAXEV];
		int nmine = 0;
		for (int i = 0; i < n; i++) {
			struct conn *k = ev[i].udata;
			int j = 0;
			while (j < nmine && mine[j] != k)
				j++;
			if (j == nmine) { /* a call may return several members */
				int h = atomic_exchange(&k->busy, t->id + 1);
				if (h != 0 && h != t->id + 1)
					VIOLATION("G1", "conn %lu returned to thread %d while "
					          "thread %d holds it", (unsigned long)k->id,
					          t->id, h - 1);
				mine[nmine] = k;
				forced[nmine++] = false;
			}
			if (ev[i].filter == EVFILT_TIMER) {
				if (!(ev[i].flags & EV_ONESHOT))
					VIOLATION("G2", "conn %lu: its timer fired unforced",
					          (unsigned long)k->id);
				forced[j] = true;
			}
		}
		uint32_t r = stress_rand(&t->seed) % 8;
		if (r < 2)
			stress_sleep_us(20 + stress_rand(&t->seed) % 200);
		else if (r == 2)
			sched_yield();
		for (int m = 0; m < nmine; m++) {
			struct conn *k = mine[m];
			for (long sent = 0; sent < BUDGET;) {
				ssize_t w = send(k->fd, junk, sizeof junk - (size_t)sent,
				                 MSG_NOSIGNAL);
				if (w < 0) {
					SCHECK(errno == EAGAIN);
					break;
				}
				sent += w;
			}
			atomic_fetch_add(&k->writes, 1);
			if (forced[m]) {
				atomic_fetch_add(&k->forced_seen, 1);
				atomic_store(&k->timer_on, 0); /* a forced oneshot is gone */
			}
			if (!atomic_load(&k->timer_on) || stress_rand(&t->seed) % 4 == 0) {
				member(&ch[nch++], k, k->id, EVFILT_TIMER, EV_ADD,
				       3600 + stress_rand(&t->seed) % 60);
				if (atomic_load(&k->timer_on))
					atomic_fetch_add(&c->moves, 1);
				atomic_store(&k->timer_on, 1);
			}
			int h = atomic_exchange(&k->busy, 0);
			if (h != t->id + 1)
				VIOLATION("G1", "conn %lu was taken by thread %d while thread %d "
				          "held it", (unsigned long)k->id, h - 1, t->id);
			/* the release: the last change of the connection */
			member(&ch[nch++], k, k->id, EVFILT_TIMER, EV_ENABLE | EV_KEEPUDATA, 0);
			atomic_fetch_add(&c->releases, 1);
		}
	}
	if (nch)
		SCHECK(kevent(c->kq, ch, nch, NULL, 0, NULL) == 0);
	return NULL;
}

static void *reader(void *p)
{
	struct ctx *c = ((struct targ *)p)->c;
	struct pollfd pf[NCONN];
	static char buf[1 << 16];
	for (int i = 0; i < NCONN; i++)
		pf[i] = (struct pollfd){.fd = c->c[i].peer, .events = POLLIN};
	while (!atomic_load(&c->stop_reader)) {
		SCHECK(poll(pf, NCONN, 20) >= 0 || errno == EINTR);
		for (int i = 0; i < NCONN; i++) {
			ssize_t r;
			while ((r = recv(pf[i].fd, buf, sizeof buf, 0)) > 0)
				atomic_fetch_add(&c->c[i].received, r);
			SCHECK(r < 0 && errno == EAGAIN);
		}
	}
	return NULL;
}

/* Forces every connection's timer for one burst. */
static void burst(struct ctx *c, struct targ *t)
{
	double end = now_ms() + BURST_MS;
	while (now_ms() < end) {
		for (int i = 0; i < NCONN; i++) {
			int err = stress_change(c->kq, c->c[i].id, EVFILT_TIMER,
			                        EV_FORCEONESHOT | EV_KEEPUDATA, 0, 0, NULL);
			if (err && err != ENOENT)
				VIOLATION("G2", "EV_FORCEONESHOT of conn %d's timer: %s", i,
				          strerror(err));
			if (!err)
				atomic_fetch_add(&c->forces, 1);
		}
		if (stress_rand(&t->seed) % 2)
			stress_sleep_us(stress_rand(&t->seed) % 200);
	}
}

static void run(int nthreads)
{
	struct ctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	for (int i = 0; i < NCONN; i++) {
		struct conn *k = &c->c[i];
		tcp_pair(&k->fd, &k->peer);
		k->id = 1000 + (uint64_t)i;
		atomic_init(&k->timer_on, 1);
		struct kevent ch[3];
		/* the inert members first: the WRITE hands the group out at once */
		member(&ch[0], k, k->id, EVFILT_TIMER, EV_ADD, 3600);
		member(&ch[1], k, (uintptr_t)k->fd, EVFILT_READ, EV_ADD | EV_DISABLE, 0);
		member(&ch[2], k, (uintptr_t)k->fd, EVFILT_WRITE, EV_ADD, 0);
		SCHECK(kevent(c->kq, ch, 3, NULL, 0, NULL) == 0);
	}
	pthread_t tids[34];
	struct targ args[34];
	for (int i = 0; i <= nthreads + 1; i++)
		args[i] = (struct targ){c, i, 0x2545f491u * (uint32_t)(i + 1) + 7u};
	stress_start(tids, nthreads, handler, args, sizeof args[0]);
	SCHECK(pthread_create(&tids[nthreads], NULL, reader, &args[nthreads]) == 0);
	double t0 = now_ms(), deadline = t0 + STRESS_PHASE_MS;
	long rounds = stress_rounds(400), done = 0;
	for (; done < rounds && now_ms() < deadline; done++) {
		burst(c, &args[nthreads + 1]);
		long long base[NCONN];
		for (int i = 0; i < NCONN; i++)
			base[i] = atomic_load(&c->c[i].received);
		/* nothing forced from here on: WRITE alone moves them */
		double quiet = now_ms();
		for (int i = 0; i < NCONN; i++) {
			struct conn *k = &c->c[i];
			while (atomic_load(&k->received) - base[i] < PROGRESS_BYTES) {
				if (now_ms() - quiet > QUIET_MS)
					VIOLATION("G2", "round %ld: conn %d got %lld bytes in %.0f ms "
					          "after the forcing stopped (its WRITE is lost; "
					          "busy %d, %ld turns, %ld forced)",
					          done, i, atomic_load(&k->received) - base[i],
					          QUIET_MS, atomic_load(&k->busy),
					          atomic_load(&k->writes),
					          atomic_load(&k->forced_seen));
				stress_sleep_us(500);
			}
		}
	}
	atomic_store(&c->stop, 1);
	stress_join(tids, nthreads);
	atomic_store(&c->stop_reader, 1);
	SCHECK(pthread_join(tids[nthreads], NULL) == 0);
	long forced_seen = 0;
	for (int i = 0; i < NCONN; i++)
		forced_seen += atomic_load(&c->c[i].forced_seen);
	fprintf(stderr,
	        "   %2d threads: %ld rounds, %ld forces, %ld forced returned, %ld releases "
	        "(%ld moving the timer) in %.0f ms\n",
	        nthreads, done, atomic_load(&c->forces), forced_seen,
	        atomic_load(&c->releases), atomic_load(&c->moves), now_ms() - t0);
	SCHECK(done > 0 && forced_seen > 0);
	for (int i = 0; i < NCONN; i++) {
		close(c->c[i].fd);
		close(c->c[i].peer);
	}
	close(c->kq);
	free(c);
}

int main(void)
{
	stress_phases("WRITE with forced timers", run);
	alarm(0);
	fprintf(stderr, "stress_g2_write_forced_timer: no violation\n");
	return 0;
}
