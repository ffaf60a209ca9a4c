/*
 * Stress test for SEMANTICS.md I3 "no lost wakeups": an event that becomes
 * ready while threads wait is returned; a thread blocked with timeout NULL
 * wakes for it; nevents = 1 never starves another ready knote.
 *
 * BREAKS: I3
 *
 * Phase "wake": 2, 8 and 32 threads block in kevent(timeout NULL) with
 * nevents 1 or 2.  A driver thread waits until all of them are inside
 * kevent(), then makes 1..4 knotes ready from outside: NOTE_TRIGGER of
 * EV_CLEAR user events, EV_ENABLE of disabled EV_DISPATCH knotes whose
 * socket has unread data, a byte written to a watched socket, and a new
 * 500 us EV_ONESHOT timer; in one change or in one changelist.  Every one
 * of them must be returned within 5 s; otherwise a wakeup was lost (or an
 * event dropped because nevents was small).
 *
 * With BATON_URING_WAIT=1 the waiters first take an io_uring each
 * (own_a_ring), so they sleep in it, as a server's threads do.
 *
 * Phase "quiet": the same with user events only, so that the waiters
 * sleep on the kqueue's futex rather than in epoll_wait() (src/quiet.c).
 *
 * Phase "pair": a socket that is readable and writable at once, watched
 * for READ and WRITE, polled with nevents = 1: both must come back in turn
 * (single thread: each within 4 calls; 2..32 threads over several such
 * sockets: every knote gets a fair share of the returns).
 */
#include "stress_util.h"

#include <sched.h>

#define NUSER 8
#define NENABLE 4
#define NWRITE 4
#define NTIMER 4
#define QUIT_IDENT 99

enum kind { K_USER, K_ENABLE, K_WRITE, K_TIMER, NKINDS };
static const char *kind_name[] = {"NOTE_TRIGGER of a user event",
				  "EV_ENABLE of a ready EV_DISPATCH socket",
				  "a write to a watched socket",
				  "a 500 us EV_ONESHOT timer"};

struct src {
	enum kind kind;
	uintptr_t ident;
	short filter;
	int fd, peer;
};

struct wctx {
	int kq;
	struct src user[NUSER], en[NENABLE], wr[NWRITE], tm[NTIMER];
	atomic_long got[NKINDS]; /* K_WRITE: bytes read */
	atomic_int idle;         /* threads inside kevent() */
	atomic_int quit;
	int quiet; /* user events only: the waiters sleep on the futex */
};

struct targ {
	struct wctx *c;
	int id;
	uint32_t seed;
};

/*
 * With BATON_URING_WAIT=1 a thread waits in an io_uring of its own once it
 * has queued a re-arm: one EV_DISPATCH knote that fires, is re-enabled in a
 * call that collects (the re-arm goes with that call's wait), on a kqueue
 * of its own.  The ring serves the thread's waits on every kqueue from then
 * on, so the waiters below sleep in their rings, as a server's threads do.
 */
static void own_a_ring(void)
{
	int sv[2], kq = kqueue();
	SCHECK(kq >= 0);
	struct kevent ch, ev;
	stress_socketpair(sv);
	SCHECK(write(sv[1], "r", 1) == 1);
	EV_SET(&ch, sv[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, NULL);
	SCHECK(kevent(kq, &ch, 1, NULL, 0, NULL) == 0);
	struct timespec five = {5, 0};
	int n;
	do
		n = kevent(kq, NULL, 0, &ev, 1, &five);
	while (n < 0 && errno == EINTR);
	SCHECK(n == 1 && ev.ident == (uintptr_t)sv[0] && ev.filter == EVFILT_READ);
	EV_SET(&ch, sv[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	do
		n = kevent(kq, &ch, 1, &ev, 1, &five);
	while (n < 0 && errno == EINTR);
	SCHECK(n == 1 && ev.ident == (uintptr_t)sv[0] && !(ev.flags & EV_ERROR));
	close(kq);
	close(sv[0]);
	close(sv[1]);
}

static void *wake_waiter(void *p)
{
	struct targ *t = p;
	struct wctx *c = t->c;
	struct kevent ev[2];
	if (!c->quiet)
		own_a_ring(); /* a quiet kqueue's waits never use the ring */
	for (;;) {
		int nev = 1 + (int)(stress_rand(&t->seed) % 2);
		atomic_fetch_add(&c->idle, 1);
		int n = kevent(c->kq, NULL, 0, ev, nev, NULL);
		atomic_fetch_sub(&c->idle, 1);
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n >= 0 && n <= nev);
		if (n == 0) {
			fprintf(stderr, "kevent(timeout NULL) returned 0 events\n");
			_exit(1);
		}
		stress_no_errors(ev, n);
		int leave = 0;
		for (int i = 0; i < n; i++) {
			if (ev[i].filter == EVFILT_USER && ev[i].ident == QUIT_IDENT) {
				leave = 1;
				continue;
			}
			struct src *s = ev[i].udata;
			SCHECK(s != NULL && s->ident == ev[i].ident && s->filter == ev[i].filter);
			if (s->kind == K_WRITE) {
				char buf[64];
				ssize_t r;
				while ((r = read(s->fd, buf, sizeof buf)) > 0)
					atomic_fetch_add(&c->got[K_WRITE], r);
				SCHECK(r < 0 && errno == EAGAIN);
			} else {
				atomic_fetch_add(&c->got[s->kind], 1);
			}
		}
		if (leave)
			return NULL;
	}
}

/* Makes src s ready: fills ch (a change) or writes; returns 1 if it put a
 * change in *ch. */
static int make_ready(struct wctx *c, struct src *s, struct kevent *ch)
{
	(void)c;
	switch (s->kind) {
	case K_USER:
		EV_SET(ch, s->ident, EVFILT_USER, 0, NOTE_TRIGGER, 0, s);
		return 1;
	case K_ENABLE:
		EV_SET(ch, s->ident, EVFILT_READ, EV_ENABLE, 0, 0, s);
		return 1;
	case K_TIMER:
		EV_SET(ch, s->ident, EVFILT_TIMER, EV_ADD | EV_ONESHOT, NOTE_USECONDS, 500, s);
		return 1;
	case K_WRITE:
		SCHECK(write(s->peer, "w", 1) == 1);
		return 0;
	default:
		return 0;
	}
}

static void run_wake(int nthreads, int quiet)
{
	struct wctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	c->quiet = quiet;
	for (int i = 0; i < NUSER; i++) {
		c->user[i] = (struct src){K_USER, 100 + (uintptr_t)i, EVFILT_USER, -1, -1};
		CHANGE_OK(c->kq, c->user[i].ident, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, &c->user[i]);
	}
	for (int i = 0; i < NENABLE && !quiet; i++) {
		int sv[2];
		stress_socketpair(sv);
		SCHECK(write(sv[1], "e", 1) == 1); /* never read: ready when enabled */
		c->en[i] = (struct src){K_ENABLE, (uintptr_t)sv[0], EVFILT_READ, sv[0], sv[1]};
		CHANGE_OK(c->kq, c->en[i].ident, EVFILT_READ, EV_ADD | EV_DISPATCH | EV_DISABLE,
			  0, 0, &c->en[i]);
	}
	for (int i = 0; i < NWRITE && !quiet; i++) {
		int sv[2];
		stress_socketpair(sv);
		c->wr[i] = (struct src){K_WRITE, (uintptr_t)sv[0], EVFILT_READ, sv[0], sv[1]};
		CHANGE_OK(c->kq, c->wr[i].ident, EVFILT_READ, EV_ADD, 0, 0, &c->wr[i]);
	}
	for (int i = 0; i < NTIMER; i++)
		c->tm[i] = (struct src){K_TIMER, 200 + (uintptr_t)i, EVFILT_TIMER, -1, -1};
	CHANGE_OK(c->kq, QUIT_IDENT, EVFILT_USER, EV_ADD, 0, 0, NULL);

	pthread_t tids[32];
	struct targ args[32];
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct targ){c, i, 0x51f15eedu * (uint32_t)(i + 1) + 3u};
	stress_start(tids, nthreads, wake_waiter, args, sizeof args[0]);

	long expect[NKINDS] = {0};
	long rounds = stress_rounds(3000), r;
	uint32_t seed = 0x2545f491u + (uint32_t)nthreads;
	double t0 = now_ms(), deadline = t0 + STRESS_PHASE_MS;
	for (r = 0; r < rounds && now_ms() < deadline; r++) {
		/* all waiters inside kevent(timeout NULL) */
		double until = now_ms() + 5000;
		while (atomic_load(&c->idle) < nthreads) {
			if (now_ms() > until) {
				fprintf(stderr, "round %ld: only %d of %d threads came back to kevent()\n",
					r, atomic_load(&c->idle), nthreads);
				_exit(1);
			}
			sched_yield();
		}
		stress_sleep_us(200 + (long)(stress_rand(&seed) % 300)); /* let them block */

		/* 1..4 distinct sources, each made ready once */
		int k = 1 + (int)(stress_rand(&seed) % 4);
		struct src *chosen[4];
		int nchosen = 0;
		int used[NKINDS] = {0};
		for (int i = 0; i < k; i++) {
			int kind = (int)(stress_rand(&seed) % NKINDS);
			if (quiet)
				kind = K_USER;
			struct src *s;
			switch (kind) {
			case K_USER: s = &c->user[used[K_USER]++]; break;
			case K_ENABLE: s = &c->en[used[K_ENABLE]++]; break;
			case K_WRITE: s = &c->wr[used[K_WRITE]++]; break;
			default: s = &c->tm[used[K_TIMER]++]; break;
			}
			chosen[nchosen++] = s;
			expect[kind]++;
		}
		int batch = stress_rand(&seed) % 2; /* all changes in one call? */
		struct kevent chl[4];
		int nch = 0;
		for (int i = 0; i < nchosen; i++) {
			struct kevent ch;
			if (!make_ready(c, chosen[i], &ch))
				continue;
			if (batch) {
				chl[nch++] = ch;
			} else {
				SCHECK(kevent(c->kq, &ch, 1, NULL, 0, NULL) == 0);
			}
		}
		if (nch)
			SCHECK(kevent(c->kq, chl, nch, NULL, 0, NULL) == 0);

		/* every one of them is returned */
		double t1 = now_ms();
		for (;;) {
			int done = 1;
			for (int kd = 0; kd < NKINDS; kd++) {
				long g = atomic_load(&c->got[kd]);
				if (g > expect[kd]) {
					fprintf(stderr, "round %ld: %ld events for %ld times %s\n",
						r, g, expect[kd], kind_name[kd]);
					_exit(1);
				}
				if (g < expect[kd])
					done = 0;
			}
			if (done)
				break;
			if (now_ms() - t1 > 5000) {
				char what[256] = "";
				for (int i = 0; i < nchosen; i++) {
					size_t l = strlen(what);
					snprintf(what + l, sizeof what - l, "%s%s", i ? "; " : "",
						 kind_name[chosen[i]->kind]);
				}
				char counts[256] = "";
				for (int kd = 0; kd < NKINDS; kd++) {
					size_t l = strlen(counts);
					snprintf(counts + l, sizeof counts - l, "%s%s: %ld of %ld",
						 kd ? ", " : "", kind_name[kd],
						 atomic_load(&c->got[kd]), expect[kd]);
				}
				VIOLATION("I3",
					  "round %ld, %d threads blocked in kevent(timeout NULL) "
					  "(%d inside kevent now): made %d knotes ready (%s; %s), "
					  "not all returned after 5 s; returned so far: %s",
					  r, nthreads, atomic_load(&c->idle), nchosen, what,
					  batch ? "one changelist" : "one change each", counts);
			}
			sched_yield();
		}
	}
	double t2 = now_ms();
	CHANGE_OK(c->kq, QUIT_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	stress_join(tids, nthreads);
	fprintf(stderr, "  %s: %2d threads, %ld rounds, %ld events, %.0f ms\n",
		quiet ? "quiet" : " wake", nthreads, r, expect[0] + expect[1] + expect[2] + expect[3],
		t2 - t0);
	for (int i = 0; i < NENABLE && !quiet; i++) {
		close(c->en[i].fd);
		close(c->en[i].peer);
	}
	for (int i = 0; i < NWRITE && !quiet; i++) {
		close(c->wr[i].fd);
		close(c->wr[i].peer);
	}
	close(c->kq);
	free(c);
}

/* ---- nevents = 1 with a socket readable and writable at once ---- */

static void pair_single(void)
{
	int kq = kqueue();
	SCHECK(kq >= 0);
	int sv[2];
	stress_socketpair(sv);
	SCHECK(write(sv[1], "r", 1) == 1); /* sv[0]: readable, and writable */
	CHANGE_OK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	CHANGE_OK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	long last[2] = {0, 0}; /* call index of the last READ, WRITE */
	long calls = stress_rounds(2000);
	for (long i = 1; i <= calls; i++) {
		struct kevent ev;
		int n = kevent(kq, NULL, 0, &ev, 1, &(struct timespec){1, 0});
		SCHECK(n >= 0);
		if (n == 0)
			VIOLATION("I3", "call %ld: nothing returned in 1 s while READ and WRITE "
				  "of a socket are ready", i);
		stress_no_errors(&ev, 1);
		SCHECK(ev.ident == (uintptr_t)sv[0]);
		SCHECK(ev.filter == EVFILT_READ || ev.filter == EVFILT_WRITE);
		last[ev.filter == EVFILT_WRITE] = i;
		for (int f = 0; f < 2; f++)
			if (i - last[f] >= 4)
				VIOLATION("I3",
					  "nevents = 1: %s of a socket that is readable and "
					  "writable not returned in %ld calls (last at call %ld)",
					  f ? "WRITE" : "READ", i - last[f], last[f]);
	}
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

#define PAIR_MAX 4

struct pctx {
	int kq;
	int nsock;
	int sv[PAIR_MAX][2];
	atomic_long count[PAIR_MAX][2];
	atomic_long total;
	atomic_int stop;
	long rounds;
	double deadline;
};

struct parg {
	struct pctx *c;
	int id;
	long calls;
};

static void *pair_worker(void *p)
{
	struct parg *t = p;
	struct pctx *c = t->c;
	/* Under a sanitizer 32 threads on 2 cores crawl: allow them longer. */
#ifdef BATON_SANITIZED
	struct timespec to = ts_ms(10000);
#else
	struct timespec to = ts_ms(1000);
#endif
	while (!atomic_load(&c->stop)) {
		struct kevent ev;
		int n = kevent(c->kq, NULL, 0, &ev, 1, &to);
		t->calls++;
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n >= 0);
		if (n == 0)
			VIOLATION("I3", "thread %d: nothing returned in time while %d knotes are ready",
				  t->id, 2 * c->nsock);
		stress_no_errors(&ev, 1);
		long s = (long)(intptr_t)ev.udata;
		SCHECK(s >= 0 && s < c->nsock && ev.ident == (uintptr_t)c->sv[s][0]);
		atomic_fetch_add(&c->count[s][ev.filter == EVFILT_WRITE], 1);
		long tot = atomic_fetch_add(&c->total, 1) + 1;
		if (tot >= c->rounds || ((t->calls & 63) == 0 && now_ms() > c->deadline))
			atomic_store(&c->stop, 1);
	}
	return NULL;
}

static void pair_threads(int nthreads, int nsock)
{
	struct pctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	c->nsock = nsock;
	c->rounds = stress_rounds(40000);
	for (int i = 0; i < nsock; i++) {
		stress_socketpair(c->sv[i]);
		SCHECK(write(c->sv[i][1], "r", 1) == 1);
		CHANGE_OK(c->kq, (uintptr_t)c->sv[i][0], EVFILT_READ, EV_ADD, 0, 0, (void *)(intptr_t)i);
		CHANGE_OK(c->kq, (uintptr_t)c->sv[i][0], EVFILT_WRITE, EV_ADD, 0, 0, (void *)(intptr_t)i);
	}
	pthread_t tids[32];
	struct parg args[32];
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct parg){c, i, 0};
	double t0 = now_ms();
	c->deadline = t0 + STRESS_PHASE_MS / 2;
	stress_start(tids, nthreads, pair_worker, args, sizeof args[0]);
	stress_join(tids, nthreads);
	long total = atomic_load(&c->total);
	fprintf(stderr, "   pair: %2d threads, %d sockets, %ld returns, %.0f ms (", nthreads, nsock,
		total, now_ms() - t0);
	for (int i = 0; i < nsock; i++)
		fprintf(stderr, "%s%ld/%ld", i ? " " : "", atomic_load(&c->count[i][0]),
			atomic_load(&c->count[i][1]));
	fprintf(stderr, ")\n");
	/* fair share: each of the 2 * nsock knotes about total / (2 * nsock) */
	long floor = total / (2 * nsock) / 8;
	for (int i = 0; i < nsock; i++)
		for (int f = 0; f < 2; f++)
			if (atomic_load(&c->count[i][f]) < floor)
				VIOLATION("I3",
					  "nevents = 1, %d threads: %s of socket %d returned %ld "
					  "times of %ld returns over %d ready knotes",
					  nthreads, f ? "WRITE" : "READ", i,
					  atomic_load(&c->count[i][f]), total, 2 * nsock);
	for (int i = 0; i < nsock; i++) {
		close(c->sv[i][0]);
		close(c->sv[i][1]);
	}
	close(c->kq);
	free(c);
}

int main(void)
{
	char name[64];
	stress_watchdog("pair, 1 thread", 60);
	pair_single();
	fprintf(stderr, "   pair: 1 thread ok\n");
	for (int i = 0; i < STRESS_NTHREADS; i++) {
		int n = stress_threads[i];
		snprintf(name, sizeof name, "wake, %d threads", n);
		stress_watchdog(name, 60);
		run_wake(n, 0);
		snprintf(name, sizeof name, "quiet, %d threads", n);
		stress_watchdog(name, 60);
		run_wake(n, 1);
		snprintf(name, sizeof name, "pair, %d threads", n);
		stress_watchdog(name, 60);
		pair_threads(n, 1);
		pair_threads(n, PAIR_MAX);
	}
	alarm(0);
	fprintf(stderr, "stress_i3_no_lost_wakeups: no violation\n");
	return 0;
}
