/*
 * Stress test for SEMANTICS.md G2 (CONTRACT.md "Serial groups"): nothing that
 * happens while a serial group is held is lost.  Level knotes stay level,
 * EV_CLEAR edges, timer expirations and user triggers are kept and returned
 * after the release.
 *
 * BREAKS: G2
 *
 * Groups (2, 8 and 32 handler threads on one kqueue, 2 producer threads):
 * each group is a socket's READ (default group; level in half of them,
 * EV_CLEAR in the other half) with, joined by ext[1] = the fd, an EV_CLEAR
 * user event, a chain of EV_ONESHOT timers (each delivery re-adds the next
 * one, 0.1-3 ms, while the group is held) and a 5 ms periodic timer.
 * - Producers write sequence-numbered bytes to the group's peer, and
 *   trigger the user event with data = the trigger's number, the next one
 *   only once the last one was seen.  Timers fire by themselves.
 * - Handlers hold a group (a busy flag, as in G1), read until EAGAIN and
 *   check that every byte is the next of the sequence, record the trigger
 *   numbers and timer counts, often sleep while they hold it (so events
 *   arrive during holds), then release it with EV_ENABLE of the READ in
 *   their next call.
 * After the producers finish and the timer chains stop being re-armed, the
 * handlers must catch up within a quiet period: every byte read, the last
 * trigger seen, every oneshot timer returned (once).  Then, with the
 * handlers gone, one thread releases every group and checks that the
 * periodic timers' returned counts add up to the time they ran.
 */
#include "stress_util.h"

#include <sched.h>

#define NGROUPS 8
#define NPROD 2
#define MAXEV 4
#define PERIOD_MS 5
#define QUIET_MS 3000.0

enum mkind { M_READ, M_USER, M_CHAIN, M_PERIODIC, NMEM };

struct group;

struct member {
	struct group *g;
	enum mkind kind;
	uintptr_t ident;
	short filter;
};

struct group {
	int idx;
	int s[2]; /* s[0] registered, s[1] written by the producer */
	uint64_t gid;
	struct member m[NMEM];
	atomic_int busy;
	/* producer side */
	atomic_long tx;        /* bytes written */
	atomic_long trig_sent; /* last trigger number */
	/* handler side */
	atomic_long rx;        /* bytes read, each checked */
	atomic_long trig_seen; /* highest trigger number returned */
	atomic_long chain_armed, chain_seen;
	atomic_long periodic_sum; /* expirations returned */
	atomic_long periodic_calls;
	double periodic_add0, periodic_add1; /* around its EV_ADD */
	atomic_long holds;
};

struct ctx {
	int kq;
	struct group g[NGROUPS];
	long prod_rounds;
	atomic_int chain_stop; /* do not re-arm the oneshot chains */
	atomic_int stop;
	double prod_deadline;
};

struct targ {
	struct ctx *c;
	int id;
	uint32_t seed;
	long calls;
	int slow; /* handlers sleep while holding */
};

static uint8_t seq_byte(long i)
{
	return (uint8_t)(i * 37 + (i >> 8));
}

static void chain_arm(struct ctx *c, struct group *g, uint32_t *seed)
{
	atomic_fetch_add(&g->chain_armed, 1);
	struct kevent ch, out;
	EV_SET(&ch, g->m[M_CHAIN].ident, EVFILT_TIMER,
	       EV_ADD | EV_ONESHOT | EV_SERIAL | EV_RECEIPT, NOTE_USECONDS,
	       100 + stress_rand(seed) % 2900, &g->m[M_CHAIN]);
	ch.ext[1] = g->gid;
	SCHECK(kevent(c->kq, &ch, 1, &out, 1, NULL) == 1);
	SCHECK((out.flags & EV_ERROR) && out.data == 0);
}

/* One event of a group the caller holds. */
static void handle(struct ctx *c, struct targ *t, struct member *m, const struct kevent *e)
{
	struct group *g = m->g;
	switch (m->kind) {
	case M_READ: {
		uint8_t buf[512];
		ssize_t r;
		long rx = atomic_load(&g->rx);
		while ((r = read(g->s[0], buf, sizeof buf)) > 0) {
			for (ssize_t k = 0; k < r; k++, rx++)
				if (buf[k] != seq_byte(rx))
					VIOLATION("G2",
						  "group %d: byte %ld read is %u, expected %u "
						  "(bytes lost or read twice)",
						  g->idx, rx, buf[k], seq_byte(rx));
		}
		SCHECK(r < 0 && errno == EAGAIN);
		atomic_store(&g->rx, rx);
		break;
	}
	case M_USER: {
		long k = (long)e->data, seen = atomic_load(&g->trig_seen);
		long sent = atomic_load(&g->trig_sent);
		if (k < seen || k > sent)
			VIOLATION("G2", "group %d: user event returned with trigger %ld, "
				  "%ld seen before, %ld sent", g->idx, k, seen, sent);
		atomic_store(&g->trig_seen, k);
		break;
	}
	case M_CHAIN: {
		if (!(e->flags & EV_ONESHOT) || e->data < 1)
			VIOLATION("G2", "group %d: oneshot timer returned with flags %#x data %lld",
				  g->idx, e->flags, (long long)e->data);
		long seen = atomic_fetch_add(&g->chain_seen, 1) + 1;
		if (seen != atomic_load(&g->chain_armed))
			VIOLATION("G2", "group %d: oneshot timer returned %ld times, armed %ld",
				  g->idx, seen, atomic_load(&g->chain_armed));
		if (!atomic_load(&c->chain_stop))
			chain_arm(c, g, &t->seed); /* joins the group we hold */
		break;
	}
	case M_PERIODIC:
		if (e->data < 1)
			VIOLATION("G2", "group %d: periodic timer returned with data %lld",
				  g->idx, (long long)e->data);
		atomic_fetch_add(&g->periodic_sum, e->data);
		atomic_fetch_add(&g->periodic_calls, 1);
		break;
	default:
		break;
	}
}

/* One kevent() call of a handler: claim, handle, unclaim; the releases go
 * into ch for the next call.  Returns the number of releases. */
static int handler_round(struct ctx *c, struct targ *t, struct kevent *ch, int nch,
			 long wait_ms)
{
	struct kevent ev[MAXEV];
	struct group *mine[MAXEV];
	struct timespec to = ts_ms(wait_ms);
	int nev = 1 + (int)(stress_rand(&t->seed) % MAXEV);
	int n = kevent(c->kq, ch, nch, ev, nev, &to);
	t->calls++;
	if (n < 0 && errno == EINTR)
		return 0;
	SCHECK(n >= 0 && n <= nev);
	stress_no_errors(ev, n);
	int nmine = 0;
	for (int i = 0; i < n; i++) {
		struct member *m = ev[i].udata;
		SCHECK(m && m->g >= c->g && m->g < c->g + NGROUPS);
		struct group *g = m->g;
		if (ev[i].ident != m->ident || ev[i].filter != m->filter ||
		    ev[i].ext[1] != g->gid)
			VIOLATION("G2", "event {%lu, %d} ext[1] %llu carries the udata of "
				  "{%lu, %d} of group %llu", (unsigned long)ev[i].ident,
				  ev[i].filter, (unsigned long long)ev[i].ext[1],
				  (unsigned long)m->ident, m->filter,
				  (unsigned long long)g->gid);
		int seen = 0;
		for (int k = 0; k < nmine; k++)
			seen |= mine[k] == g;
		if (!seen) {
			int other = atomic_exchange(&g->busy, t->id + 1);
			if (other != 0)
				VIOLATION("G1", "group %d returned to thread %d while thread %d "
					  "holds it", g->idx, t->id, other - 1);
			mine[nmine++] = g;
			atomic_fetch_add(&g->holds, 1);
		}
	}
	for (int i = 0; i < n; i++)
		handle(c, t, ev[i].udata, &ev[i]);
	/* a slow handler: what arrives now arrives during the hold */
	if (t->slow) {
		uint32_t r = stress_rand(&t->seed) % 8;
		if (r < 3)
			stress_sleep_us(100 + stress_rand(&t->seed) % 900);
		else if (r == 3)
			sched_yield();
	}
	int nrel = 0;
	for (int k = 0; k < nmine; k++) {
		struct group *g = mine[k];
		SCHECK(atomic_exchange(&g->busy, 0) == t->id + 1);
		EV_SET(&ch[nrel], (uintptr_t)g->s[0], EVFILT_READ, EV_ENABLE | EV_KEEPUDATA, 0, 0,
		       NULL);
		nrel++;
	}
	return nrel;
}

static void *worker(void *p)
{
	struct targ *t = p;
	struct ctx *c = t->c;
	struct kevent ch[MAXEV];
	int nch = 0;
	while (!atomic_load(&c->stop))
		nch = handler_round(c, t, ch, nch, 100);
	if (nch > 0) /* leave nothing held */
		SCHECK(kevent(c->kq, ch, nch, NULL, 0, NULL) == 0);
	return NULL;
}

struct parg {
	struct ctx *c;
	int id;
	uint32_t seed;
	long writes, triggers;
};

static void *producer(void *p)
{
	struct parg *a = p;
	struct ctx *c = a->c;
	for (long round = 0; round < c->prod_rounds; round++) {
		if ((round & 31) == 0 && now_ms() > c->prod_deadline)
			break;
		int gi = a->id + NPROD * (int)(stress_rand(&a->seed) % (NGROUPS / NPROD));
		struct group *g = &c->g[gi];
		uint32_t r = stress_rand(&a->seed) % 8;
		if (r < 5) {
			uint8_t buf[64];
			long tx = atomic_load(&g->tx);
			int k = 1 + (int)(stress_rand(&a->seed) % sizeof buf);
			for (int i = 0; i < k; i++)
				buf[i] = seq_byte(tx + i);
			ssize_t w = write(g->s[1], buf, (size_t)k);
			if (w < 0)
				SCHECK(errno == EAGAIN);
			else
				atomic_store(&g->tx, tx + w);
			a->writes++;
		} else if (r < 7) {
			long sent = atomic_load(&g->trig_sent);
			if (atomic_load(&g->trig_seen) == sent) {
				atomic_store(&g->trig_sent, sent + 1);
				SCHECK(stress_change(c->kq, g->m[M_USER].ident, EVFILT_USER,
						     EV_KEEPUDATA, NOTE_TRIGGER, sent + 1,
						     NULL) == 0);
				a->triggers++;
			}
		}
		if (stress_rand(&a->seed) % 4 == 0)
			stress_sleep_us(stress_rand(&a->seed) % 200);
	}
	return NULL;
}

static void add(struct ctx *c, struct group *g, enum mkind kind, uintptr_t ident, short filter,
		unsigned short flags, unsigned fflags, int64_t data)
{
	struct member *m = &g->m[kind];
	m->g = g;
	m->kind = kind;
	m->ident = ident;
	m->filter = filter;
	struct kevent ch, out;
	EV_SET(&ch, ident, filter, EV_ADD | EV_SERIAL | EV_RECEIPT | flags, fflags, data, m);
	ch.ext[1] = kind == M_READ ? 0 : g->gid;
	SCHECK(kevent(c->kq, &ch, 1, &out, 1, NULL) == 1);
	SCHECK((out.flags & EV_ERROR) && out.data == 0);
}

/* Has every group caught up with its producer and its timer chain? */
static int caught_up(struct ctx *c, char *why, size_t len)
{
	for (int i = 0; i < NGROUPS; i++) {
		struct group *g = &c->g[i];
		long tx = atomic_load(&g->tx), rx = atomic_load(&g->rx);
		long sent = atomic_load(&g->trig_sent), seen = atomic_load(&g->trig_seen);
		long armed = atomic_load(&g->chain_armed), cs = atomic_load(&g->chain_seen);
		if (rx != tx || seen != sent || cs != armed) {
			snprintf(why, len,
				 "group %d: %ld of %ld bytes read, trigger %ld of %ld seen, "
				 "%ld of %ld oneshot timers returned (busy %d)",
				 i, rx, tx, seen, sent, cs, armed, atomic_load(&g->busy));
			return 0;
		}
	}
	return 1;
}

static void run(int nthreads)
{
	struct ctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	c->prod_rounds = stress_rounds(40000);
	uint32_t seed = 0x51ed270bu + (uint32_t)nthreads;
	for (int i = 0; i < NGROUPS; i++) {
		struct group *g = &c->g[i];
		g->idx = i;
		atomic_init(&g->busy, 0);
		stress_socketpair(g->s);
		g->gid = (uint64_t)g->s[0];
		add(c, g, M_READ, (uintptr_t)g->s[0], EVFILT_READ, i % 2 ? EV_CLEAR : 0, 0, 0);
		add(c, g, M_USER, 300000 + (uintptr_t)i, EVFILT_USER, EV_CLEAR, 0, 0);
		g->m[M_CHAIN] = (struct member){g, M_CHAIN, 400000 + (uintptr_t)i, EVFILT_TIMER};
		chain_arm(c, g, &seed);
		g->periodic_add0 = now_ms();
		add(c, g, M_PERIODIC, 500000 + (uintptr_t)i, EVFILT_TIMER, 0, 0, PERIOD_MS);
		g->periodic_add1 = now_ms();
	}
	pthread_t tids[32], ptids[NPROD];
	struct targ args[32];
	struct parg pargs[NPROD];
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct targ){c, i, 0x3c6ef372u * (uint32_t)(i + 1) + 5u, 0, i % 4 != 3};
	for (int i = 0; i < NPROD; i++)
		pargs[i] = (struct parg){c, i, 0x9e3779b9u * (uint32_t)(i + 7), 0, 0};
	double t0 = now_ms();
	c->prod_deadline = t0 + STRESS_PHASE_MS;
	stress_start(tids, nthreads, worker, args, sizeof args[0]);
	stress_start(ptids, NPROD, producer, pargs, sizeof pargs[0]);
	stress_join(ptids, NPROD);
	double t1 = now_ms();
	atomic_store(&c->chain_stop, 1);
	/* the quiet period: the handlers must catch up */
	char why[256] = "";
	while (!caught_up(c, why, sizeof why)) {
		if (now_ms() - t1 > QUIET_MS)
			VIOLATION("G2", "%.0f ms after the producers stopped, an event is still "
				  "unreported: %s", QUIET_MS, why);
		stress_sleep_us(2000);
	}
	double t2 = now_ms();
	atomic_store(&c->stop, 1);
	stress_join(tids, nthreads);
	long calls = 0, writes = 0, triggers = 0, holds = 0, bytes = 0, chains = 0;
	for (int i = 0; i < nthreads; i++)
		calls += args[i].calls;
	for (int i = 0; i < NPROD; i++) {
		writes += pargs[i].writes;
		triggers += pargs[i].triggers;
	}
	for (int i = 0; i < NGROUPS; i++) {
		holds += atomic_load(&c->g[i].holds);
		bytes += atomic_load(&c->g[i].rx);
		chains += atomic_load(&c->g[i].chain_seen);
	}
	fprintf(stderr,
		"   %2d threads: %ld writes (%ld bytes), %ld triggers, %ld oneshot timers; "
		"%ld holds in %ld calls; %.0f ms + caught up in %.0f ms\n",
		nthreads, writes, bytes, triggers, chains, holds, calls, t1 - t0, t2 - t1);
	SCHECK(bytes > 0 && triggers > 0 && chains > 0);

	/* The periodic timers: one thread releases every group and collects
	 * until each timer was returned by a call that started after ta. */
	struct targ me = {c, nthreads, 0x12345u, 0, 0};
	struct kevent ch[MAXEV];
	int nch = 0;
	for (int i = 0; i < NGROUPS; i++) {
		struct kevent rel;
		EV_SET(&rel, (uintptr_t)c->g[i].s[0], EVFILT_READ, EV_ENABLE | EV_KEEPUDATA, 0, 0,
		       NULL);
		SCHECK(kevent(c->kq, &rel, 1, NULL, 0, NULL) == 0);
	}
	stress_sleep_us(3000 * PERIOD_MS);
	double ta = now_ms();
	long before[NGROUPS];
	for (int i = 0; i < NGROUPS; i++)
		before[i] = atomic_load(&c->g[i].periodic_calls);
	for (;;) {
		int all = 1;
		for (int i = 0; i < NGROUPS; i++)
			all &= atomic_load(&c->g[i].periodic_calls) > before[i];
		if (all)
			break;
		if (now_ms() - ta > QUIET_MS)
			VIOLATION("G2", "a periodic timer was not returned within %.0f ms "
				  "once every group was released", QUIET_MS);
		nch = handler_round(c, &me, ch, nch, 20);
	}
	double tb = now_ms();
	for (int i = 0; i < NGROUPS; i++) {
		struct group *g = &c->g[i];
		long sum = atomic_load(&g->periodic_sum);
		long lo = (long)((ta - g->periodic_add1) / PERIOD_MS) - 1;
		long hi = (long)((tb - g->periodic_add0) / PERIOD_MS) + 1;
		if (sum < lo || sum > hi)
			VIOLATION("G2", "group %d: the %d ms timer's returned counts add up to %ld "
				  "in %.0f ms, expected %ld..%ld", i, PERIOD_MS, sum,
				  ta - g->periodic_add1, lo, hi);
	}
	for (int i = 0; i < NGROUPS; i++) {
		close(c->g[i].s[0]);
		close(c->g[i].s[1]);
	}
	close(c->kq);
	free(c);
}

int main(void)
{
	stress_phases("nothing lost", run);
	alarm(0);
	fprintf(stderr, "stress_g2_nothing_lost: no violation\n");
	return 0;
}
