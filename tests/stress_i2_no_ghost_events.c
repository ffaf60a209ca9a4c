/*
 * Stress test for SEMANTICS.md I2 "no ghost events": once an EV_DELETE or
 * EV_DISABLE of a knote has returned, no kevent() call that starts
 * afterwards returns it (until it is re-added or re-enabled).
 *
 * BREAKS: I2
 *
 * The knotes are always ready: READ of socketpairs with unread data, WRITE
 * of idle sockets, triggered EVFILT_USER events without EV_CLEAR.  Waiting
 * threads call kevent() in a tight loop and never consume anything.
 * Controller threads (a quarter of 2, 8, 32 threads) each own some knotes
 * and turn them off with EV_DISABLE, EV_DELETE or EV_ADD|EV_DISABLE, then
 * back on.
 *
 * The ordering argument uses one global atomic clock.  After the change
 * that turns knote k off has returned, its controller stamps
 * off_at[k] = ++clock.  Each waiter reads s = clock just before its
 * kevent() call; if that call returns k while off_at[k] != 0 and
 * off_at[k] <= s, the increment (hence the disable) happened before the
 * call started: a ghost event.  Before turning k back on, the controller
 * sets off_at[k] = 0, so legitimate events after the re-enable are not
 * flagged.  The controller also polls the kqueue itself right after each
 * disable, a call that certainly starts afterwards.
 *
 * A short single-threaded prelude checks the same promise without races:
 * disabling or deleting a knote that is ready (queued) stops it at once,
 * and EV_ADD|EV_DISABLE of a ready source returns nothing.
 */
#include "stress_util.h"

#include <sched.h>

#define NSOCK 6  /* READ knotes, always readable */
#define NWRITE 4 /* WRITE knotes, always writable */
#define NUSER 6  /* user events, always triggered */
#define NK (NSOCK + NWRITE + NUSER)
#define MAXEV 8

struct knote_t {
	uintptr_t ident;
	short filter;
	atomic_long off_at; /* clock stamp of the last completed turn-off, 0 when on */
	atomic_long returned;
	long offs;          /* controller-owned */
};

struct ctx {
	int kq;
	struct knote_t k[NK];
	int socks[NSOCK + NWRITE][2];
	atomic_long clock;
	atomic_long calls; /* kevent() calls started by waiters */
	atomic_int stop;
	long rounds;       /* turn-offs per controller */
	int ncontrollers;
	int nwaiters;
};

struct targ {
	struct ctx *c;
	int id;
	uint32_t seed;
	long calls;
	long events;
};

static const char *op_name[] = {"EV_DISABLE", "EV_DELETE", "EV_ADD|EV_DISABLE"};

static void check_event(struct ctx *c, const struct kevent *e, long start,
			const char *who, int id)
{
	struct knote_t *k = e->udata;
	SCHECK(k >= c->k && k < c->k + NK);
	if (e->ident != k->ident || e->filter != k->filter)
		VIOLATION("I2", "event {%lu, %d} carries the udata of {%lu, %d}",
			  (unsigned long)e->ident, e->filter,
			  (unsigned long)k->ident, k->filter);
	long off = atomic_load(&k->off_at);
	if (off != 0 && off <= start)
		VIOLATION("I2",
			  "knote {%lu, %d} returned to %s %d by a kevent() call "
			  "that started (clock %ld) after the change turning it "
			  "off had returned (clock %ld)",
			  (unsigned long)k->ident, k->filter, who, id, start, off);
	atomic_fetch_add(&k->returned, 1);
}

static void *waiter(void *p)
{
	struct targ *t = p;
	struct ctx *c = t->c;
	struct kevent ev[MAXEV];
	struct timespec to = ts_ms(50);
	while (!atomic_load(&c->stop)) {
		int nev = 1 + (int)(stress_rand(&t->seed) % MAXEV);
		atomic_fetch_add(&c->calls, 1);
		long start = atomic_load(&c->clock);
		int n = kevent(c->kq, NULL, 0, ev, nev, &to);
		t->calls++;
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n >= 0 && n <= nev);
		stress_no_errors(ev, n);
		for (int i = 0; i < n; i++)
			check_event(c, &ev[i], start, "waiter", t->id);
		t->events += n;
	}
	return NULL;
}

/* Turns k off with op (0 disable, 1 delete, 2 add|disable). */
static void turn_off(struct ctx *c, struct knote_t *k, int op)
{
	static const unsigned short fl[] = {EV_DISABLE, EV_DELETE, EV_ADD | EV_DISABLE};
	unsigned fflags = k->filter == EVFILT_USER && op == 2 ? NOTE_TRIGGER : 0;
	CHANGE_OK(c->kq, k->ident, k->filter, fl[op], fflags, 0, k);
	long stamp = atomic_fetch_add(&c->clock, 1) + 1;
	atomic_store(&k->off_at, stamp);
}

static void turn_on(struct ctx *c, struct knote_t *k, int op)
{
	atomic_store(&k->off_at, 0);
	if (op == 1) /* deleted: add it again, ready at once */
		CHANGE_OK(c->kq, k->ident, k->filter, EV_ADD,
			  k->filter == EVFILT_USER ? NOTE_TRIGGER : 0, 0, k);
	else
		CHANGE_OK(c->kq, k->ident, k->filter, EV_ENABLE, 0, 0, k);
}

static void *controller(void *p)
{
	struct targ *t = p;
	struct ctx *c = t->c;
	struct kevent ev[MAXEV];
	double deadline = now_ms() + STRESS_PHASE_MS;
	for (long r = 0; r < c->rounds && now_ms() < deadline; r++) {
		/* this controller owns knotes id, id + ncontrollers, ... */
		int nown = (NK - t->id + c->ncontrollers - 1) / c->ncontrollers;
		int idx = t->id + c->ncontrollers * (int)(stress_rand(&t->seed) % (uint32_t)nown);
		struct knote_t *k = &c->k[idx];
		int op = (int)(stress_rand(&t->seed) % 3);
		turn_off(c, k, op);
		k->offs++;
		/* a call that certainly starts after the turn-off returned */
		for (int j = 0; j < 2; j++) {
			long start = atomic_load(&c->clock);
			int n = kevent(c->kq, NULL, 0, ev, MAXEV, &(struct timespec){0, 0});
			SCHECK(n >= 0);
			stress_no_errors(ev, n);
			for (int i = 0; i < n; i++)
				check_event(c, &ev[i], start, "controller", t->id);
		}
		/* let the waiters make a few calls while k is off */
		long target = atomic_load(&c->calls) + c->nwaiters;
		double until = now_ms() + 2;
		while (atomic_load(&c->calls) < target && now_ms() < until)
			sched_yield();
		turn_on(c, k, op);
	}
	return NULL;
}

static void run(int nthreads)
{
	struct ctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	c->ncontrollers = nthreads / 4 > 0 ? nthreads / 4 : 1;
	c->nwaiters = nthreads - c->ncontrollers;
	c->rounds = stress_rounds(6000) / c->ncontrollers;
	atomic_init(&c->clock, 1);
	for (int i = 0; i < NK; i++) {
		struct knote_t *k = &c->k[i];
		atomic_init(&k->off_at, 0);
		atomic_init(&k->returned, 0);
		if (i < NSOCK + NWRITE) {
			stress_socketpair(c->socks[i]);
			if (i < NSOCK) {
				SCHECK(write(c->socks[i][1], "data", 4) == 4);
				k->ident = (uintptr_t)c->socks[i][0];
				k->filter = EVFILT_READ;
			} else {
				k->ident = (uintptr_t)c->socks[i][0];
				k->filter = EVFILT_WRITE;
			}
			CHANGE_OK(c->kq, k->ident, k->filter, EV_ADD, 0, 0, k);
		} else {
			k->ident = 500 + (uintptr_t)i;
			k->filter = EVFILT_USER;
			CHANGE_OK(c->kq, k->ident, k->filter, EV_ADD, NOTE_TRIGGER, 0, k);
		}
	}
	pthread_t tids[32];
	struct targ args[32];
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct targ){c, i < c->ncontrollers ? i : i - c->ncontrollers,
					0xabcdefu * (uint32_t)(i + 1) + 5u, 0, 0};
	double t0 = now_ms();
	stress_start(tids + c->ncontrollers, c->nwaiters, waiter,
		     args + c->ncontrollers, sizeof args[0]);
	stress_start(tids, c->ncontrollers, controller, args, sizeof args[0]);
	stress_join(tids, c->ncontrollers);
	atomic_store(&c->stop, 1);
	stress_join(tids + c->ncontrollers, c->nwaiters);
	long offs = 0, events = 0, calls = 0;
	for (int i = 0; i < NK; i++)
		offs += c->k[i].offs;
	for (int i = c->ncontrollers; i < nthreads; i++) {
		events += args[i].events;
		calls += args[i].calls;
	}
	fprintf(stderr,
		"   %2d threads (%d controllers): %ld turn-offs, %ld events in %ld waits, %.0f ms\n",
		nthreads, c->ncontrollers, offs, events, calls, now_ms() - t0);
	SCHECK(offs > 0 && events > 0);
	for (int i = 0; i < NK; i++)
		SCHECK(atomic_load(&c->k[i].returned) > 0);
	for (int i = 0; i < NSOCK + NWRITE; i++) {
		close(c->socks[i][0]);
		close(c->socks[i][1]);
	}
	close(c->kq);
	free(c);
}

/* ---- single-threaded prelude ---- */

/* Polls kq a few times; returning {ident, filter} is a ghost. */
static void expect_silent(int kq, uintptr_t ident, short filter, const char *what)
{
	struct kevent ev[8];
	for (int j = 0; j < 3; j++) {
		int n = kevent(kq, NULL, 0, ev, 8, &(struct timespec){0, 0});
		SCHECK(n >= 0);
		for (int i = 0; i < n; i++)
			if (ev[i].ident == ident && ev[i].filter == filter)
				VIOLATION("I2", "%s: {%lu, %d} returned after that change returned",
					  what, (unsigned long)ident, filter);
	}
}

/* Waits (bounded) until {ident, filter} is returned. */
static void expect_event(int kq, uintptr_t ident, short filter, const char *what)
{
	struct kevent ev[8];
	double until = now_ms() + 5000;
	while (now_ms() < until) {
		int n = kevent(kq, NULL, 0, ev, 8, &(struct timespec){0, 50000000});
		SCHECK(n >= 0);
		for (int i = 0; i < n; i++)
			if (ev[i].ident == ident && ev[i].filter == filter)
				return;
	}
	fprintf(stderr, "%s: {%lu, %d} never returned\n", what, (unsigned long)ident, filter);
	_exit(1);
}

static void prelude(void)
{
	for (int op = 0; op < 3; op++) {
		int kq = kqueue();
		SCHECK(kq >= 0);
		int sv[2];
		stress_socketpair(sv);
		SCHECK(write(sv[1], "x", 1) == 1);
		char what[96];

		/* a triggered user event, queued but never returned yet */
		CHANGE_OK(kq, 7, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
		CHANGE_OK(kq, 7, EVFILT_USER, op == 1 ? EV_DELETE : op == 0 ? EV_DISABLE : EV_ADD | EV_DISABLE, 0, 0, NULL);
		snprintf(what, sizeof what, "%s of a triggered user event", op_name[op]);
		expect_silent(kq, 7, EVFILT_USER, what);

		/* a readable socket, returned once already (so it is queued) */
		CHANGE_OK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		expect_event(kq, (uintptr_t)sv[0], EVFILT_READ, "readable socket");
		CHANGE_OK(kq, (uintptr_t)sv[0], EVFILT_READ, op == 1 ? EV_DELETE : op == 0 ? EV_DISABLE : EV_ADD | EV_DISABLE, 0, 0, NULL);
		snprintf(what, sizeof what, "%s of a readable socket", op_name[op]);
		expect_silent(kq, (uintptr_t)sv[0], EVFILT_READ, what);

		/* a writable socket, returned once already */
		CHANGE_OK(kq, (uintptr_t)sv[1], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
		expect_event(kq, (uintptr_t)sv[1], EVFILT_WRITE, "writable socket");
		CHANGE_OK(kq, (uintptr_t)sv[1], EVFILT_WRITE, op == 1 ? EV_DELETE : op == 0 ? EV_DISABLE : EV_ADD | EV_DISABLE, 0, 0, NULL);
		snprintf(what, sizeof what, "%s of a writable socket", op_name[op]);
		expect_silent(kq, (uintptr_t)sv[1], EVFILT_WRITE, what);
		close(sv[0]);
		close(sv[1]);
		close(kq);
	}
	/* EV_ADD|EV_DISABLE of a source that is ready from the start */
	int kq = kqueue();
	SCHECK(kq >= 0);
	int sv[2];
	stress_socketpair(sv);
	SCHECK(write(sv[1], "x", 1) == 1);
	CHANGE_OK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD | EV_DISABLE, 0, 0, NULL);
	expect_silent(kq, (uintptr_t)sv[0], EVFILT_READ, "EV_ADD|EV_DISABLE of a readable socket");
	CHANGE_OK(kq, 9, EVFILT_USER, EV_ADD | EV_DISABLE, NOTE_TRIGGER, 0, NULL);
	expect_silent(kq, 9, EVFILT_USER, "EV_ADD|EV_DISABLE of a triggered user event");
	/* and enabling brings them back */
	CHANGE_OK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	expect_event(kq, (uintptr_t)sv[0], EVFILT_READ, "re-enabled socket");
	CHANGE_OK(kq, 9, EVFILT_USER, EV_ENABLE, 0, 0, NULL);
	expect_event(kq, 9, EVFILT_USER, "re-enabled user event");
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

int main(void)
{
	stress_watchdog("prelude", 60);
	prelude();
	fprintf(stderr, "   prelude: ok\n");
	stress_phases("ghosts", run);
	alarm(0);
	fprintf(stderr, "stress_i2_no_ghost_events: no violation\n");
	return 0;
}
