/*
 * Stress test for SEMANTICS.md I1 "one at a time": an EV_DISPATCH knote is
 * returned to at most one thread between two EV_ENABLEs; an EV_ONESHOT
 * knote is returned at most once, ever.
 *
 * BREAKS: I1
 *
 * Phase "dispatch": 2, 8 and 32 threads share one kqueue holding EV_DISPATCH
 * knotes that are ready again as soon as they are enabled: READ of
 * socketpairs whose handler reads and writes the next byte back, triggered
 * EVFILT_USER events without EV_CLEAR, and a fast periodic timer.  Each
 * thread loops on kevent(re-enable what it handled, wait for 1..4 events).
 * A handler marks its item busy (an atomic exchange: already busy means two
 * threads hold it at once) and disarmed (already disarmed means a second
 * delivery without an EV_ENABLE in between); it re-arms the item just
 * before handing the EV_ENABLE to its next kevent() call.
 *
 * Phase "oneshot": EV_ONESHOT user events (added with NOTE_TRIGGER) and
 * socket READs (always readable); every registration carries a fresh
 * generation number in udata and is re-added by whoever receives it, with
 * a new generation.  A generation returned twice is a violation.
 */
#include "stress_util.h"

#include <sched.h>

#define NSOCK 8
#define NUSER 4
#define NTIMER 2
#define NITEMS (NSOCK + NUSER + NTIMER)
#define MAXEV 4

enum kind { K_SOCK, K_USER, K_TIMER };

struct item {
	enum kind kind;
	int fd;         /* K_SOCK: the registered end */
	int peer;       /* K_SOCK: the end the handler writes to */
	uintptr_t ident;
	short filter;
	atomic_int holder;     /* 0, or 1 + the thread that handles it */
	atomic_int armed;      /* 1 from an EV_ENABLE until a delivery */
	atomic_long deliveries;
};

struct dctx {
	int kq;
	struct item items[NITEMS];
	atomic_long done;
	long rounds;
	atomic_int stop;
	double deadline;
};

struct targ {
	struct dctx *c;
	int id;
	uint32_t seed;
	long calls;
};

static void handle_sock(struct item *it)
{
	char buf[64];
	ssize_t r;
	while ((r = read(it->fd, buf, sizeof buf)) > 0) {
	}
	/* keep the traffic going: ready again as soon as it is enabled */
	if (write(it->peer, "x", 1) < 0)
		SCHECK(errno == EAGAIN);
}

static void *dispatch_worker(void *p)
{
	struct targ *t = p;
	struct dctx *c = t->c;
	struct kevent ch[MAXEV], ev[MAXEV];
	int nch = 0;
	struct timespec to = ts_ms(100);
	while (!atomic_load(&c->stop)) {
		int nev = 1 + (int)(stress_rand(&t->seed) % MAXEV);
		int n = kevent(c->kq, ch, nch, ev, nev, &to);
		t->calls++;
		nch = 0;
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n >= 0);
		SCHECK(n <= nev);
		stress_no_errors(ev, n);
		/* claim everything first, so that one item returned twice in
		 * the same eventlist is caught too */
		for (int i = 0; i < n; i++) {
			struct item *it = ev[i].udata;
			SCHECK(it >= c->items && it < c->items + NITEMS);
			if (ev[i].ident != it->ident || ev[i].filter != it->filter)
				VIOLATION("I1", "event {%lu, %d} carries the udata of {%lu, %d}",
					  (unsigned long)ev[i].ident, ev[i].filter,
					  (unsigned long)it->ident, it->filter);
			int other = atomic_exchange(&it->holder, t->id + 1);
			if (other != 0)
				VIOLATION("I1",
					  "EV_DISPATCH knote {%lu, %d} returned to thread %d "
					  "while thread %d still handles it (delivery %ld)",
					  (unsigned long)it->ident, it->filter, t->id,
					  other - 1, atomic_load(&it->deliveries));
			if (atomic_exchange(&it->armed, 0) != 1)
				VIOLATION("I1",
					  "EV_DISPATCH knote {%lu, %d} returned to thread %d "
					  "a second time without an EV_ENABLE in between "
					  "(delivery %ld)",
					  (unsigned long)it->ident, it->filter, t->id,
					  atomic_load(&it->deliveries));
			atomic_fetch_add(&it->deliveries, 1);
		}
		for (int i = 0; i < n; i++) {
			struct item *it = ev[i].udata;
			if (it->kind == K_SOCK)
				handle_sock(it);
		}
		/* let another thread run while we hold the items */
		if (stress_rand(&t->seed) % 4 == 0)
			sched_yield();
		for (int i = 0; i < n; i++) {
			struct item *it = ev[i].udata;
			int h = atomic_exchange(&it->holder, 0);
			if (h != t->id + 1)
				VIOLATION("I1",
					  "EV_DISPATCH knote {%lu, %d} was taken by thread %d "
					  "while thread %d handled it",
					  (unsigned long)it->ident, it->filter, h - 1, t->id);
			atomic_store(&it->armed, 1);
			EV_SET(&ch[nch], it->ident, it->filter, EV_ENABLE, 0, 0, it);
			nch++;
		}
		long d = atomic_fetch_add(&c->done, n) + n;
		if (d >= c->rounds || ((t->calls & 63) == 0 && now_ms() > c->deadline))
			atomic_store(&c->stop, 1);
	}
	return NULL;
}

static void run_dispatch(int nthreads)
{
	struct dctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	c->rounds = stress_rounds(100000);
	for (int i = 0; i < NITEMS; i++) {
		struct item *it = &c->items[i];
		atomic_init(&it->holder, 0);
		atomic_init(&it->armed, 1);
		atomic_init(&it->deliveries, 0);
		if (i < NSOCK) {
			int sv[2];
			stress_socketpair(sv);
			it->kind = K_SOCK;
			it->fd = sv[0];
			it->peer = sv[1];
			it->ident = (uintptr_t)sv[0];
			it->filter = EVFILT_READ;
			SCHECK(write(it->peer, "x", 1) == 1);
			CHANGE_OK(c->kq, it->ident, it->filter, EV_ADD | EV_DISPATCH, 0, 0, it);
		} else if (i < NSOCK + NUSER) {
			it->kind = K_USER;
			it->ident = 1000 + (uintptr_t)i;
			it->filter = EVFILT_USER;
			/* no EV_CLEAR: stays triggered, ready whenever enabled */
			CHANGE_OK(c->kq, it->ident, it->filter, EV_ADD | EV_DISPATCH,
				  NOTE_TRIGGER, 0, it);
		} else {
			it->kind = K_TIMER;
			it->ident = 2000 + (uintptr_t)i;
			it->filter = EVFILT_TIMER;
			CHANGE_OK(c->kq, it->ident, it->filter, EV_ADD | EV_DISPATCH,
				  NOTE_USECONDS, 200, it);
		}
	}
	pthread_t tids[32];
	struct targ args[32];
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct targ){c, i, 0x1234567u * (uint32_t)(i + 1) + 7u, 0};
	double t0 = now_ms();
	c->deadline = t0 + STRESS_PHASE_MS;
	stress_start(tids, nthreads, dispatch_worker, args, sizeof args[0]);
	stress_join(tids, nthreads);
	long calls = 0;
	for (int i = 0; i < nthreads; i++)
		calls += args[i].calls;
	fprintf(stderr,
		"   dispatch: %2d threads, %ld deliveries in %ld calls, %.0f ms (",
		nthreads, atomic_load(&c->done), calls, now_ms() - t0);
	for (int i = 0; i < NITEMS; i++)
		fprintf(stderr, "%s%ld", i ? " " : "", atomic_load(&c->items[i].deliveries));
	fprintf(stderr, ")\n");
	/* the sockets and user events all took part (timers may be slow) */
	for (int i = 0; i < NSOCK + NUSER; i++)
		SCHECK(atomic_load(&c->items[i].deliveries) > 0);
	for (int i = 0; i < NSOCK; i++) {
		close(c->items[i].fd);
		close(c->items[i].peer);
	}
	close(c->kq);
	free(c);
}

/* ---- EV_ONESHOT ---- */

#define OS_USER 8
#define OS_SOCK 8

struct octx {
	int kq;
	long maxgen;
	atomic_long next_gen;
	atomic_uchar *seen;      /* [maxgen]: returned already */
	_Atomic uintptr_t *gen_ident; /* [maxgen]: what the generation was added for */
	atomic_short *gen_filter;
	int sock[OS_SOCK][2];
	atomic_long done;
	atomic_int stop;
	double deadline;
};

struct oarg {
	struct octx *c;
	int id;
	uint32_t seed;
	long calls;
};

/* Fills *ch with a fresh oneshot registration of (ident, filter), or
 * returns 0 when the generations are used up. */
static int oneshot_readd(struct octx *c, uintptr_t ident, short filter,
			 struct kevent *ch)
{
	long g = atomic_fetch_add(&c->next_gen, 1);
	if (g >= c->maxgen)
		return 0;
	atomic_store(&c->gen_ident[g], ident);
	atomic_store(&c->gen_filter[g], filter);
	EV_SET(ch, ident, filter, EV_ADD | EV_ONESHOT,
	       filter == EVFILT_USER ? NOTE_TRIGGER : 0, 0, (void *)(uintptr_t)g);
	return 1;
}

static void *oneshot_worker(void *p)
{
	struct oarg *t = p;
	struct octx *c = t->c;
	struct kevent ch[MAXEV], ev[MAXEV];
	int nch = 0;
	struct timespec to = ts_ms(100);
	while (!atomic_load(&c->stop)) {
		int nev = 1 + (int)(stress_rand(&t->seed) % MAXEV);
		int n = kevent(c->kq, ch, nch, ev, nev, &to);
		t->calls++;
		nch = 0;
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n >= 0);
		stress_no_errors(ev, n);
		for (int i = 0; i < n; i++) {
			long g = (long)(uintptr_t)ev[i].udata;
			SCHECK(g >= 0 && g < c->maxgen);
			if (atomic_exchange(&c->seen[g], 1))
				VIOLATION("I1",
					  "EV_ONESHOT knote {%lu, %d} generation %ld returned "
					  "a second time (thread %d)",
					  (unsigned long)ev[i].ident, ev[i].filter, g, t->id);
			if (ev[i].ident != atomic_load(&c->gen_ident[g]) ||
			    ev[i].filter != atomic_load(&c->gen_filter[g]))
				VIOLATION("I1",
					  "event {%lu, %d} carries generation %ld of {%lu, %d}",
					  (unsigned long)ev[i].ident, ev[i].filter, g,
					  (unsigned long)atomic_load(&c->gen_ident[g]),
					  atomic_load(&c->gen_filter[g]));
			if (!(ev[i].flags & EV_ONESHOT))
				VIOLATION("I1", "oneshot event returned without EV_ONESHOT (flags %#x)",
					  ev[i].flags);
		}
		if (stress_rand(&t->seed) % 4 == 0)
			sched_yield();
		for (int i = 0; i < n; i++)
			if (oneshot_readd(c, ev[i].ident, ev[i].filter, &ch[nch]))
				nch++;
		atomic_fetch_add(&c->done, n);
		if (atomic_load(&c->next_gen) >= c->maxgen ||
		    ((t->calls & 63) == 0 && now_ms() > c->deadline))
			atomic_store(&c->stop, 1);
	}
	return NULL;
}

static void run_oneshot(int nthreads)
{
	struct octx *c = calloc(1, sizeof *c);
	SCHECK(c);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	c->maxgen = stress_rounds(60000) + OS_USER + OS_SOCK;
	c->seen = calloc((size_t)c->maxgen, sizeof *c->seen);
	c->gen_ident = calloc((size_t)c->maxgen, sizeof *c->gen_ident);
	c->gen_filter = calloc((size_t)c->maxgen, sizeof *c->gen_filter);
	SCHECK(c->seen && c->gen_ident && c->gen_filter);
	atomic_init(&c->next_gen, 0);
	struct kevent ch;
	for (int i = 0; i < OS_USER; i++) {
		SCHECK(oneshot_readd(c, 3000 + (uintptr_t)i, EVFILT_USER, &ch));
		SCHECK(kevent(c->kq, &ch, 1, NULL, 0, NULL) == 0);
	}
	for (int i = 0; i < OS_SOCK; i++) {
		stress_socketpair(c->sock[i]);
		/* never read: always readable */
		SCHECK(write(c->sock[i][1], "x", 1) == 1);
		SCHECK(oneshot_readd(c, (uintptr_t)c->sock[i][0], EVFILT_READ, &ch));
		SCHECK(kevent(c->kq, &ch, 1, NULL, 0, NULL) == 0);
	}
	pthread_t tids[32];
	struct oarg args[32];
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct oarg){c, i, 0x7654321u * (uint32_t)(i + 3) + 1u, 0};
	double t0 = now_ms();
	c->deadline = t0 + STRESS_PHASE_MS;
	stress_start(tids, nthreads, oneshot_worker, args, sizeof args[0]);
	stress_join(tids, nthreads);
	long calls = 0;
	for (int i = 0; i < nthreads; i++)
		calls += args[i].calls;
	fprintf(stderr, "   oneshot:  %2d threads, %ld deliveries in %ld calls, %.0f ms\n",
		nthreads, atomic_load(&c->done), calls, now_ms() - t0);
	SCHECK(atomic_load(&c->done) > 0);
	/* what is left registered is returned exactly once more */
	long left = 0;
	struct kevent ev[16];
	int n;
	while ((n = kevent(c->kq, NULL, 0, ev, 16, &(struct timespec){0, 0})) > 0) {
		for (int i = 0; i < n; i++) {
			long g = (long)(uintptr_t)ev[i].udata;
			SCHECK(g >= 0 && g < c->maxgen);
			if (atomic_exchange(&c->seen[g], 1))
				VIOLATION("I1", "EV_ONESHOT generation %ld returned twice (drain)", g);
		}
		left += n;
		SCHECK(left <= OS_USER + OS_SOCK);
	}
	SCHECK(n == 0);
	for (int i = 0; i < OS_SOCK; i++) {
		close(c->sock[i][0]);
		close(c->sock[i][1]);
	}
	close(c->kq);
	free(c->seen);
	free(c->gen_ident);
	free(c->gen_filter);
	free(c);
}

int main(void)
{
	stress_phases("dispatch", run_dispatch);
	stress_phases("oneshot", run_oneshot);
	alarm(0);
	fprintf(stderr, "stress_i1_dispatch_one_thread: no violation\n");
	return 0;
}
