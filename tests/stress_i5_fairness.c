/*
 * Stress test for SEMANTICS.md I5 "fairness": ready knotes are returned in
 * FIFO order; a busy knote cannot starve others.
 *
 * BREAKS: I5
 *
 * Order: user events triggered one after another come back in that order,
 * with nevents = 1 and with room for all of them.
 *
 * Bounded gap: 16 knotes that stay ready (READ of sockets with unread
 * data, triggered user events without EV_CLEAR) plus "busy" knotes that
 * other threads make ready again all the time (an EV_CLEAR user event
 * re-triggered in a loop, a socket written in a loop).  One thread takes
 * events with nevents = 1; every steady knote must come back within
 * 3 * (number of knotes) + 16 of its calls.  With 1, 7 and 31 busy-making
 * threads (so 2, 8, 32 threads on the kqueue).
 *
 * Shares: 2, 8 and 32 threads all take events with nevents = 1 or 2 while
 * a thread keeps the busy knotes busy; each steady knote must get at least
 * an eighth of its fair share of the returns.
 */
#include "stress_util.h"

#include <sched.h>

#define NSOCK 8
#define NUSER 8
#define NSTEADY (NSOCK + NUSER)
#define BUSY_USER NSTEADY       /* index of the busy user event */
#define BUSY_SOCK (NSTEADY + 1) /* index of the busy socket */
#define NALL (NSTEADY + 2)
#define BUSY_USER_IDENT 777

static void fifo_order(void)
{
	for (int room = 1; room <= 16; room *= 16) {
		int kq = kqueue();
		SCHECK(kq >= 0);
		const int n = 16;
		for (int i = 0; i < n; i++)
			CHANGE_OK(kq, 40 + (uintptr_t)i, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
		/* trigger in an order unlike the order of registration */
		int order[16];
		for (int i = 0; i < n; i++)
			order[i] = (i * 7 + 3) % n;
		for (int i = 0; i < n; i++)
			CHANGE_OK(kq, 40 + (uintptr_t)order[i], EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
		int next = 0;
		while (next < n) {
			struct kevent ev[16];
			int got = kevent(kq, NULL, 0, ev, room, &(struct timespec){1, 0});
			SCHECK(got > 0);
			stress_no_errors(ev, got);
			for (int i = 0; i < got; i++, next++) {
				SCHECK(next < n);
				if (ev[i].ident != 40 + (uintptr_t)order[next])
					VIOLATION("I5",
						  "nevents = %d: user event %lu returned as number %d; "
						  "triggered in order, event %d was triggered then",
						  room, (unsigned long)ev[i].ident - 40, next,
						  order[next]);
			}
		}
		close(kq);
	}
}

struct ctx {
	int kq;
	int sv[NSOCK + 1][2]; /* the last one is the busy socket */
	atomic_int stop;
	atomic_long count[NALL];
	atomic_long total;
	long rounds;
	double deadline;
};

struct targ {
	struct ctx *c;
	int id;
	uint32_t seed;
	long calls;
};

static void setup(struct ctx *c)
{
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	for (int i = 0; i <= NSOCK; i++) {
		stress_socketpair(c->sv[i]);
		int idx = i < NSOCK ? i : BUSY_SOCK;
		if (i < NSOCK) /* never read: stays ready */
			SCHECK(write(c->sv[i][1], "s", 1) == 1);
		CHANGE_OK(c->kq, (uintptr_t)c->sv[i][0], EVFILT_READ, EV_ADD, 0, 0,
			  (void *)(intptr_t)idx);
	}
	for (int i = 0; i < NUSER; i++) /* no EV_CLEAR: stays triggered */
		CHANGE_OK(c->kq, 60 + (uintptr_t)i, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0,
			  (void *)(intptr_t)(NSOCK + i));
	CHANGE_OK(c->kq, BUSY_USER_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, NOTE_TRIGGER, 0,
		  (void *)(intptr_t)BUSY_USER);
}

static void teardown(struct ctx *c)
{
	for (int i = 0; i <= NSOCK; i++) {
		close(c->sv[i][0]);
		close(c->sv[i][1]);
	}
	close(c->kq);
}

/* Keeps the busy knotes busy: re-trigger, write. */
static void *busy_maker(void *p)
{
	struct targ *t = p;
	struct ctx *c = t->c;
	struct kevent ch;
	while (!atomic_load(&c->stop)) {
		EV_SET(&ch, BUSY_USER_IDENT, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER, 0, NULL);
		SCHECK(kevent(c->kq, &ch, 1, NULL, 0, NULL) == 0);
		if (write(c->sv[NSOCK][1], "b", 1) < 0)
			SCHECK(errno == EAGAIN);
		if (stress_rand(&t->seed) % 8 == 0)
			sched_yield();
	}
	return NULL;
}

static void take(struct ctx *c, const struct kevent *e)
{
	long idx = (long)(intptr_t)e->udata;
	SCHECK(idx >= 0 && idx < NALL);
	if (idx == BUSY_SOCK) {
		char buf[256];
		while (read(c->sv[NSOCK][0], buf, sizeof buf) > 0) {
		}
	}
	atomic_fetch_add(&c->count[idx], 1);
}

static void run_gap(int nthreads)
{
	struct ctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	setup(c);
	int nbusy = nthreads - 1;
	pthread_t tids[32];
	struct targ args[32];
	for (int i = 0; i < nbusy; i++)
		args[i] = (struct targ){c, i, 0xfeed5u * (uint32_t)(i + 1) + 9u, 0};
	stress_start(tids, nbusy, busy_maker, args, sizeof args[0]);

	const long bound = 3 * NALL + 16;
	long last[NALL] = {0};
	long calls = stress_rounds(100000), i;
	double t0 = now_ms();
	for (i = 1; i <= calls; i++) {
		if ((i & 255) == 0 && now_ms() - t0 > STRESS_PHASE_MS)
			break;
		struct kevent ev;
		int n = kevent(c->kq, NULL, 0, &ev, 1, &(struct timespec){1, 0});
		SCHECK(n >= 0);
		if (n == 0)
			VIOLATION("I5", "call %ld: nothing returned in 1 s, %d knotes are ready", i,
				  NSTEADY);
		stress_no_errors(&ev, 1);
		take(c, &ev);
		last[(intptr_t)ev.udata] = i;
		for (int k = 0; k < NSTEADY; k++)
			if (i - last[k] > bound)
				VIOLATION("I5",
					  "nevents = 1, %d busy-making threads: ready knote %d (%s) "
					  "not returned in %ld calls (last at call %ld); returns so "
					  "far: busy user event %ld, busy socket %ld, this one %ld",
					  nbusy, k, k < NSOCK ? "socket READ" : "user event",
					  i - last[k], last[k], atomic_load(&c->count[BUSY_USER]),
					  atomic_load(&c->count[BUSY_SOCK]),
					  atomic_load(&c->count[k]));
	}
	atomic_store(&c->stop, 1);
	stress_join(tids, nbusy);
	fprintf(stderr, "   gap:    1 taker + %2d busy-makers, %ld calls, %.0f ms, busy knotes %ld/%ld\n",
		nbusy, i - 1, now_ms() - t0, atomic_load(&c->count[BUSY_USER]),
		atomic_load(&c->count[BUSY_SOCK]));
	teardown(c);
	free(c);
}

static void *taker(void *p)
{
	struct targ *t = p;
	struct ctx *c = t->c;
	struct timespec to = ts_ms(1000);
	while (!atomic_load(&c->stop)) {
		struct kevent ev[2];
		int nev = 1 + (int)(stress_rand(&t->seed) % 2);
		int n = kevent(c->kq, NULL, 0, ev, nev, &to);
		t->calls++;
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n >= 0);
		if (n == 0)
			VIOLATION("I5", "thread %d: nothing returned in 1 s, %d knotes are ready",
				  t->id, NSTEADY);
		stress_no_errors(ev, n);
		for (int i = 0; i < n; i++)
			take(c, &ev[i]);
		long tot = atomic_fetch_add(&c->total, n) + n;
		if (tot >= c->rounds || ((t->calls & 63) == 0 && now_ms() > c->deadline))
			atomic_store(&c->stop, 1);
	}
	return NULL;
}

static void run_shares(int nthreads)
{
	struct ctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	setup(c);
	c->rounds = stress_rounds(100000);
	pthread_t tids[33];
	struct targ args[33];
	for (int i = 0; i <= nthreads; i++)
		args[i] = (struct targ){c, i, 0xc0ffeeu * (uint32_t)(i + 1) + 1u, 0};
	double t0 = now_ms();
	c->deadline = t0 + STRESS_PHASE_MS;
	stress_start(tids, nthreads, taker, args, sizeof args[0]);
	stress_start(tids + nthreads, 1, busy_maker, args + nthreads, sizeof args[0]);
	stress_join(tids, nthreads + 1);
	long total = atomic_load(&c->total);
	fprintf(stderr, "   shares: %2d takers, %ld returns, %.0f ms (", nthreads, total,
		now_ms() - t0);
	for (int k = 0; k < NALL; k++)
		fprintf(stderr, "%s%ld", k ? " " : "", atomic_load(&c->count[k]));
	fprintf(stderr, ")\n");
	long floor = total / NALL / 8;
	for (int k = 0; k < NSTEADY; k++)
		if (atomic_load(&c->count[k]) < floor)
			VIOLATION("I5",
				  "%d threads, nevents 1..2: ready knote %d (%s) returned %ld "
				  "times of %ld returns over %d ready knotes (busy user event "
				  "%ld, busy socket %ld)",
				  nthreads, k, k < NSOCK ? "socket READ" : "user event",
				  atomic_load(&c->count[k]), total, NALL,
				  atomic_load(&c->count[BUSY_USER]),
				  atomic_load(&c->count[BUSY_SOCK]));
	teardown(c);
	free(c);
}

int main(void)
{
	stress_watchdog("fifo order", 60);
	fifo_order();
	fprintf(stderr, "   fifo order: ok\n");
	char name[64];
	for (int i = 0; i < STRESS_NTHREADS; i++) {
		snprintf(name, sizeof name, "gap, %d threads", stress_threads[i]);
		stress_watchdog(name, 60);
		run_gap(stress_threads[i]);
		snprintf(name, sizeof name, "shares, %d threads", stress_threads[i]);
		stress_watchdog(name, 60);
		run_shares(stress_threads[i]);
	}
	alarm(0);
	fprintf(stderr, "stress_i5_fairness: no violation\n");
	return 0;
}
