/*
 * Stress test for SEMANTICS.md G3 (CONTRACT.md "Serial groups"): EV_FORCEONESHOT
 * on a member of a held group is returned exactly once, after the release,
 * with EV_ONESHOT set, and then the knote is gone; a member closed before
 * that is never returned, nor is anything for a new file reusing its number.
 *
 * BREAKS: G3
 *
 * Connection slots (2, 8 and 32 handler threads on one kqueue, plus one
 * "timeout" thread): a connection is a socketpair end's READ (default group)
 * and an idle timer that never fires by itself (one hour), joined to the
 * socket's group by ext[1] = the fd.  Every registration carries (slot,
 * generation, member) in udata.
 * - Handlers hold the group (busy flag: a member returned while another
 *   call holds the group is a violation), read and answer through the
 *   peer so the READ stays ready, often sleep while holding, and release
 *   with EV_ENABLE of the READ in their next call.  A forced event (EV_ONESHOT
 *   set) means "timed out": the handler tears the connection down (deletes
 *   the timer, closes both ends) and opens a new one, which gets the lowest
 *   free fd numbers, i.e. most often the ones just closed.  Now and then a
 *   handler tears down a connection it holds whose members were forced but
 *   not yet returned: those must never be returned.
 * - The timeout thread picks connections, preferably held ones, and forces
 *   the READ, the timer or both, racing the handler.
 * A forced event must have been forced (not a new file's knote at a reused
 * number), be returned once, and never for a generation already torn down.
 * After the timeout thread stops, every forced member of a live connection
 * must be returned within a quiet period.
 */
#include "stress_util.h"

#include <sched.h>

#define NSLOT 8
#define MAXEV 4
#define QUIET_MS 3000.0

enum { ST_OPEN, ST_FORCING, ST_CLOSING };
#define W_READ 1u
#define W_TIMER 2u

struct slot {
	atomic_int state;    /* ST_*: who may touch the registrations */
	atomic_uint gen;     /* the live connection's generation */
	atomic_int fd, peer;
	_Atomic uintptr_t tident;
	atomic_uint forced;    /* W_* forced in this generation */
	atomic_uint delivered; /* W_* returned as forced in this generation */
	atomic_int busy;       /* 0, or 1 + the thread holding the group */
	atomic_long holds;
};

struct ctx {
	int kq;
	struct slot s[NSLOT];
	long rounds;
	atomic_int stop_forcer, stop;
	atomic_long forces, forces_held, forced_returned, teardowns, closed_pending;
	double deadline;
};

struct targ {
	struct ctx *c;
	int id;
	uint32_t seed;
	long calls;
};

static void *ud(int slot, unsigned gen, unsigned w)
{
	return (void *)(((uintptr_t)slot << 56) | ((uintptr_t)gen << 8) | w);
}

static void ud_parse(void *p, int *slot, unsigned *gen, unsigned *w)
{
	uintptr_t u = (uintptr_t)p;
	*slot = (int)(u >> 56);
	*gen = (unsigned)((u >> 8) & 0xffffffffu);
	*w = (unsigned)(u & 0xff);
}

static uintptr_t timer_ident(int slot, unsigned gen)
{
	return ((uintptr_t)(slot + 1) << 40) | gen;
}

/* Opens a connection for slot at generation gen and registers it. */
static void conn_open(struct ctx *c, int i, unsigned gen)
{
	struct slot *s = &c->s[i];
	int sv[2];
	stress_socketpair(sv);
	SCHECK(write(sv[1], "x", 1) == 1);
	atomic_store(&s->fd, sv[0]);
	atomic_store(&s->peer, sv[1]);
	atomic_store(&s->tident, timer_ident(i, gen));
	atomic_store(&s->forced, 0);
	atomic_store(&s->delivered, 0);
	atomic_store(&s->gen, gen);
	CHANGE_OK(c->kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD | EV_SERIAL, 0, 0,
		  ud(i, gen, W_READ));
	struct kevent ch, out;
	EV_SET(&ch, timer_ident(i, gen), EVFILT_TIMER, EV_ADD | EV_SERIAL | EV_RECEIPT,
	       NOTE_SECONDS, 3600, ud(i, gen, W_TIMER));
	ch.ext[1] = (uint64_t)sv[0];
	SCHECK(kevent(c->kq, &ch, 1, &out, 1, NULL) == 1);
	SCHECK((out.flags & EV_ERROR) && out.data == 0);
}

/* The holder of slot i's group tears the connection down and opens a new
 * one; the group is dissolved, so nothing is to be released. */
static void conn_teardown(struct ctx *c, struct targ *t, int i)
{
	struct slot *s = &c->s[i];
	int expect = ST_OPEN;
	while (!atomic_compare_exchange_weak(&s->state, &expect, ST_CLOSING)) {
		expect = ST_OPEN;
		sched_yield();
	}
	unsigned gen = atomic_load(&s->gen);
	unsigned forced = atomic_load(&s->forced), delivered = atomic_load(&s->delivered);
	/* from here on, an event of gen is a violation */
	atomic_store(&s->gen, gen + 1);
	struct kevent ch;
	EV_SET(&ch, atomic_load(&s->tident), EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	int r = kevent(c->kq, &ch, 1, NULL, 0, NULL);
	if (r != 0 && !(errno == ENOENT && (delivered & W_TIMER)))
		VIOLATION("G3", "slot %d gen %u: EV_DELETE of the timer gave %s "
			  "(forced %#x, returned %#x)", i, gen, strerror(errno), forced, delivered);
	if (r == 0 && (delivered & W_TIMER))
		VIOLATION("G3", "slot %d gen %u: the forced timer was returned but is "
			  "still registered", i, gen);
	if (forced & ~delivered)
		atomic_fetch_add(&c->closed_pending, 1);
#ifdef BATON_SANITIZED
	/*
	 * ThreadSanitizer's close() interceptor runs before Baton's close hook,
	 * so it sees the close before the hook takes the fd's lock, and would
	 * report the library's epoll_ctl() of this fd in another thread (a
	 * release re-arming it, which that lock orders before the close) as a
	 * race.  Under TSan the READ is deleted first, which takes the lock in
	 * the library; the plain build closes a registered member.
	 */
	EV_SET(&ch, (uintptr_t)atomic_load(&s->fd), EVFILT_READ, EV_DELETE, 0, 0, NULL);
	r = kevent(c->kq, &ch, 1, NULL, 0, NULL);
	if (r != 0 && !(errno == ENOENT && (delivered & W_READ)))
		VIOLATION("G3", "slot %d gen %u: EV_DELETE of the READ gave %s "
			  "(forced %#x, returned %#x)", i, gen, strerror(errno), forced, delivered);
#endif
	SCHECK(close(atomic_load(&s->fd)) == 0);
	SCHECK(close(atomic_load(&s->peer)) == 0);
	int h = atomic_exchange(&s->busy, 0);
	if (h != t->id + 1)
		VIOLATION("G3", "slot %d was taken by thread %d while thread %d tore it down",
			  i, h - 1, t->id);
	conn_open(c, i, gen + 1);
	atomic_fetch_add(&c->teardowns, 1);
	atomic_store(&s->state, ST_OPEN);
}

static void *worker(void *p)
{
	struct targ *t = p;
	struct ctx *c = t->c;
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
		SCHECK(n >= 0 && n <= nev);
		for (int k = 0; k < n; k++)
			if ((ev[k].flags & EV_ERROR) && ev[k].data == ENOENT &&
			    ev[k].filter == EVFILT_READ)
				VIOLATION("G3", "the release (EV_ENABLE) of READ fd %lu gave ENOENT: "
					  "the member was returned, as a forced oneshot, while "
					  "thread %d held its group", (unsigned long)ev[k].ident,
					  t->id);
		stress_no_errors(ev, n);
		int mine[MAXEV], nmine = 0;
		unsigned teardown[NSLOT] = {0};
		for (int k = 0; k < n; k++) {
			int i;
			unsigned gen, w;
			ud_parse(ev[k].udata, &i, &gen, &w);
			SCHECK(i >= 0 && i < NSLOT && (w == W_READ || w == W_TIMER));
			struct slot *s = &c->s[i];
			int forced = (ev[k].flags & EV_ONESHOT) != 0;
			unsigned cur = atomic_load(&s->gen);
			if (gen != cur)
				VIOLATION("G3", "%s%s of slot %d generation %u returned after that "
					  "connection was torn down (now generation %u, fd %d)",
					  forced ? "forced " : "", w == W_READ ? "READ" : "timer",
					  i, gen, cur, (int)ev[k].ident);
			uintptr_t want = w == W_READ ? (uintptr_t)atomic_load(&s->fd)
						     : atomic_load(&s->tident);
			if (ev[k].ident != want ||
			    ev[k].filter != (w == W_READ ? EVFILT_READ : EVFILT_TIMER) ||
			    ev[k].ext[1] != (uint64_t)atomic_load(&s->fd))
				VIOLATION("G3", "event {%lu, %d} ext[1] %llu does not match slot %d "
					  "gen %u", (unsigned long)ev[k].ident, ev[k].filter,
					  (unsigned long long)ev[k].ext[1], i, gen);
			int seen = 0;
			for (int m = 0; m < nmine; m++)
				seen |= mine[m] == i;
			if (!seen) {
				int other = atomic_exchange(&s->busy, t->id + 1);
				if (other != 0)
					VIOLATION(forced ? "G3" : "G1",
						  "%s%s of slot %d gen %u returned to thread %d "
						  "while thread %d holds its group",
						  forced ? "forced " : "",
						  w == W_READ ? "READ" : "timer", i, gen, t->id,
						  other - 1);
				mine[nmine++] = i;
				atomic_fetch_add(&s->holds, 1);
			}
			if (forced) {
				if (!(atomic_load(&s->forced) & w))
					VIOLATION("G3", "%s of slot %d gen %u (fd %d) returned with "
						  "EV_ONESHOT but was never forced",
						  w == W_READ ? "READ" : "timer", i, gen,
						  atomic_load(&s->fd));
				if (atomic_fetch_or(&s->delivered, w) & w)
					VIOLATION("G3", "forced %s of slot %d gen %u returned twice",
						  w == W_READ ? "READ" : "timer", i, gen);
				atomic_fetch_add(&c->forced_returned, 1);
				teardown[i] = 1;
			} else if (w == W_TIMER) {
				VIOLATION("G3", "the one-hour timer of slot %d gen %u returned "
					  "without EV_ONESHOT (flags %#x, data %lld)", i, gen,
					  ev[k].flags, (long long)ev[k].data);
			}
		}
		for (int m = 0; m < nmine; m++) {
			int i = mine[m];
			struct slot *s = &c->s[i];
			if (!teardown[i]) {
				char buf[64];
				ssize_t r;
				while ((r = read(atomic_load(&s->fd), buf, sizeof buf)) > 0) {
				}
				if (write(atomic_load(&s->peer), "x", 1) < 0)
					SCHECK(errno == EAGAIN);
			}
		}
		/* hold it a while: the timeout thread forces meanwhile */
		uint32_t r = stress_rand(&t->seed) % 8;
		if (r < 3)
			stress_sleep_us(50 + stress_rand(&t->seed) % 300);
		else if (r == 3)
			sched_yield();
		for (int m = 0; m < nmine; m++) {
			int i = mine[m];
			struct slot *s = &c->s[i];
			unsigned pending = atomic_load(&s->forced) & ~atomic_load(&s->delivered);
			/* torn down on a timeout; or, now and then, with a forced
			 * member not yet returned: it must never come */
			if (teardown[i] || (pending && stress_rand(&t->seed) % 2 == 0) ||
			    stress_rand(&t->seed) % 64 == 0) {
				conn_teardown(c, t, i);
				continue;
			}
			int h = atomic_exchange(&s->busy, 0);
			if (h != t->id + 1)
				VIOLATION("G1", "slot %d was taken by thread %d while thread %d "
					  "held it", i, h - 1, t->id);
			EV_SET(&ch[nch], (uintptr_t)atomic_load(&s->fd), EVFILT_READ,
			       EV_ENABLE | EV_KEEPUDATA, 0, 0, NULL);
			nch++;
		}
	}
	if (nch > 0)
		SCHECK(kevent(c->kq, ch, nch, NULL, 0, NULL) == 0);
	return NULL;
}

static void *forcer(void *p)
{
	struct targ *t = p;
	struct ctx *c = t->c;
	for (long round = 0; round < c->rounds && !atomic_load(&c->stop_forcer); round++) {
		if ((round & 15) == 0 && now_ms() > c->deadline)
			break;
		int i = (int)(stress_rand(&t->seed) % NSLOT);
		/* mostly a connection some handler holds right now */
		if (stress_rand(&t->seed) % 4 != 0)
			for (int k = 0; k < 4 * NSLOT; k++) {
				int j = (int)(stress_rand(&t->seed) % NSLOT);
				if (atomic_load(&c->s[j].busy)) {
					i = j;
					break;
				}
			}
		struct slot *s = &c->s[i];
		int expect = ST_OPEN;
		if (!atomic_compare_exchange_strong(&s->state, &expect, ST_FORCING))
			continue;
		unsigned want = 1 + stress_rand(&t->seed) % 3;
		unsigned todo = want & ~atomic_load(&s->forced);
		int held = atomic_load(&s->busy) != 0;
		for (unsigned w = W_READ; w <= W_TIMER; w <<= 1) {
			if (!(todo & w))
				continue;
			atomic_fetch_or(&s->forced, w);
			uintptr_t ident = w == W_READ ? (uintptr_t)atomic_load(&s->fd)
						      : atomic_load(&s->tident);
			short filter = w == W_READ ? EVFILT_READ : EVFILT_TIMER;
			int err = stress_change(c->kq, ident, filter, EV_FORCEONESHOT | EV_KEEPUDATA, 0,
					       0, NULL);
			if (err != 0)
				VIOLATION("G3", "EV_FORCEONESHOT of %s of slot %d gen %u (a live, "
					  "unreturned member) failed: %s",
					  w == W_READ ? "READ" : "timer", i,
					  atomic_load(&s->gen), strerror(err));
			atomic_fetch_add(&c->forces, 1);
			if (held)
				atomic_fetch_add(&c->forces_held, 1);
		}
		atomic_store(&s->state, ST_OPEN);
		if (stress_rand(&t->seed) % 2)
			stress_sleep_us(stress_rand(&t->seed) % 300);
	}
	return NULL;
}

static void run(int nthreads)
{
	struct ctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	c->rounds = stress_rounds(20000);
	for (int i = 0; i < NSLOT; i++) {
		atomic_init(&c->s[i].state, ST_OPEN);
		atomic_init(&c->s[i].busy, 0);
		conn_open(c, i, 1);
	}
	pthread_t tids[33];
	struct targ args[33];
	for (int i = 0; i <= nthreads; i++)
		args[i] = (struct targ){c, i, 0x6c8e9cf5u * (uint32_t)(i + 1) + 3u, 0};
	double t0 = now_ms();
	c->deadline = t0 + STRESS_PHASE_MS;
	stress_start(tids, nthreads, worker, args, sizeof args[0]);
	SCHECK(pthread_create(&tids[nthreads], NULL, forcer, &args[nthreads]) == 0);
	SCHECK(pthread_join(tids[nthreads], NULL) == 0);
	double t1 = now_ms();
	/* the quiet period: every forced member of a live connection comes */
	for (;;) {
		int left = -1;
		for (int i = 0; i < NSLOT && left < 0; i++)
			if (atomic_load(&c->s[i].forced) & ~atomic_load(&c->s[i].delivered))
				left = i;
		if (left < 0)
			break;
		if (now_ms() - t1 > QUIET_MS) {
			struct slot *s = &c->s[left];
			VIOLATION("G3", "%.0f ms after the last EV_FORCEONESHOT, slot %d gen %u "
				  "(fd %d) has forced %#x but only %#x returned (busy %d)",
				  QUIET_MS, left, atomic_load(&s->gen), atomic_load(&s->fd),
				  atomic_load(&s->forced), atomic_load(&s->delivered),
				  atomic_load(&s->busy));
		}
		stress_sleep_us(2000);
	}
	double t2 = now_ms();
	atomic_store(&c->stop, 1);
	stress_join(tids, nthreads);
	long calls = 0, holds = 0;
	for (int i = 0; i < nthreads; i++)
		calls += args[i].calls;
	for (int i = 0; i < NSLOT; i++)
		holds += atomic_load(&c->s[i].holds);
	fprintf(stderr,
		"   %2d threads: %ld forces (%ld on held groups), %ld forced returned, "
		"%ld teardowns (%ld with a forced member pending); %ld holds in %ld calls; "
		"%.0f ms + quiet in %.0f ms\n",
		nthreads, atomic_load(&c->forces), atomic_load(&c->forces_held),
		atomic_load(&c->forced_returned), atomic_load(&c->teardowns),
		atomic_load(&c->closed_pending), holds, calls, t1 - t0, t2 - t1);
	SCHECK(atomic_load(&c->forced_returned) > 0 && atomic_load(&c->forces_held) > 0);
	for (int i = 0; i < NSLOT; i++) {
		close(atomic_load(&c->s[i].fd));
		close(atomic_load(&c->s[i].peer));
	}
	close(c->kq);
	free(c);
}

int main(void)
{
	stress_phases("forced once", run);
	alarm(0);
	fprintf(stderr, "stress_g3_forced_once: no violation\n");
	return 0;
}
