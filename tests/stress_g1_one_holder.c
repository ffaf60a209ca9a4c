/*
 * Stress test for SEMANTICS.md G1 (CONTRACT.md "Serial groups"): at most one
 * kevent() call holds a serial group.  Returning a member makes the group
 * held by that call until an EV_ENABLE of any member releases it.
 *
 * BREAKS: G1
 *
 * 2, 8 and 32 threads share one kqueue holding serial groups that are ready
 * again as soon as they are released:
 * - connections: READ and WRITE of one socketpair end, default group
 *   (ext[1] = 0, so the group id is the fd); WRITE is always ready, and the
 *   READ handler writes the next byte back through the peer;
 * - proxies: the READs of two socketpair ends in one explicit group (an id
 *   no fd can have); each handler forwards a byte to the other side;
 * - some groups also have a fast periodic timer and an EV_CLEAR user event
 *   that joined by ext[1] = the group id; handlers trigger their own
 *   group's user event while they hold it.
 * Each thread loops on kevent(release what it handled, wait for 1..4
 * events).  A handler marks the group busy with an atomic exchange (already
 * busy: two calls hold the group at once), does its work, sometimes yields
 * or sleeps while still holding, unmarks, and releases the group by passing
 * EV_ENABLE of one of its members (chosen at random) in its next kevent()
 * call.  Every returned event must also carry its group id in ext[1] and
 * EV_SERIAL in flags; and every group must have been served.
 */
#include "stress_util.h"

#include <sched.h>

#define NCONN 12
#define NPROXY 6
#define NGROUPS (NCONN + NPROXY)
#define GID_BASE ((uint64_t)1 << 40) /* explicit ids: no fd is that large */
#define MAXEV 4

enum mkind { M_READ_A, M_WRITE_A, M_READ_B, M_TIMER, M_USER, NMEM };
static const char *mkind_name[] = {"READ", "WRITE", "READ(b)", "TIMER", "USER"};

struct group;

struct member {
	struct group *g;
	enum mkind kind;
	uintptr_t ident;
	short filter;
	int present;
};

struct group {
	int idx;
	uint64_t gid; /* what ext[1] of a returned event must be */
	int proxy;
	int a[2], b[2];
	struct member m[NMEM];
	atomic_int busy; /* 0, or 1 + the thread that holds it */
	atomic_long deliveries;
	atomic_long calls; /* calls that returned a member */
};

struct ctx {
	int kq;
	struct group g[NGROUPS];
	long rounds;
	atomic_long done;
	atomic_int stop;
	double deadline;
};

struct targ {
	struct ctx *c;
	int id;
	uint32_t seed;
	long calls;
};

static void drain(int fd)
{
	char buf[256];
	ssize_t r;
	while ((r = read(fd, buf, sizeof buf)) > 0) {
	}
	SCHECK(r == 0 || errno == EAGAIN);
}

static void put(int fd)
{
	if (write(fd, "x", 1) < 0)
		SCHECK(errno == EAGAIN);
}

/* The work of one member's event; the caller holds the group. */
static void handle(struct ctx *c, struct targ *t, struct member *m)
{
	struct group *g = m->g;
	switch (m->kind) {
	case M_READ_A:
		drain(g->a[0]);
		if (g->proxy) {
			put(g->b[1]); /* forward: b becomes readable */
			if (stress_rand(&t->seed) & 1)
				put(g->a[1]);
		} else {
			put(g->a[1]); /* the peer answers: readable again */
		}
		break;
	case M_READ_B:
		drain(g->b[0]);
		put(g->a[1]);
		if (stress_rand(&t->seed) & 1)
			put(g->b[1]);
		break;
	case M_WRITE_A:
		put(g->a[0]);
		drain(g->a[1]); /* the peer consumes: writable again */
		break;
	default:
		break;
	}
	/* trigger our own group's user event while we hold it */
	if (g->m[M_USER].present && stress_rand(&t->seed) % 4 == 0) {
		int err = stress_change(c->kq, g->m[M_USER].ident, EVFILT_USER, 0, NOTE_TRIGGER,
					0, &g->m[M_USER]);
		SCHECK(err == 0);
	}
}

static struct member *pick_member(struct group *g, uint32_t *seed)
{
	for (;;) {
		struct member *m = &g->m[stress_rand(seed) % NMEM];
		if (m->present)
			return m;
	}
}

static void *worker(void *p)
{
	struct targ *t = p;
	struct ctx *c = t->c;
	struct kevent ch[MAXEV], ev[MAXEV];
	struct group *mine[MAXEV];
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
		stress_no_errors(ev, n);
		/* claim each group once, before any work, so that a member of a
		 * group another call holds is caught even if it comes with others */
		int nmine = 0;
		for (int i = 0; i < n; i++) {
			struct member *m = ev[i].udata;
			SCHECK(m != NULL);
			struct group *g = m->g;
			SCHECK(g >= c->g && g < c->g + NGROUPS);
			if (ev[i].ident != m->ident || ev[i].filter != m->filter)
				VIOLATION("G1", "event {%lu, %d} carries the udata of {%lu, %d}",
					  (unsigned long)ev[i].ident, ev[i].filter,
					  (unsigned long)m->ident, m->filter);
			if (ev[i].ext[1] != g->gid || !(ev[i].flags & EV_SERIAL))
				VIOLATION("G1",
					  "%s member of group %d returned with ext[1] %llu flags %#x "
					  "(group id %llu, EV_SERIAL expected)",
					  mkind_name[m->kind], g->idx,
					  (unsigned long long)ev[i].ext[1], ev[i].flags,
					  (unsigned long long)g->gid);
			int seen = 0;
			for (int k = 0; k < nmine; k++)
				seen |= mine[k] == g;
			if (!seen) {
				int other = atomic_exchange(&g->busy, t->id + 1);
				if (other != 0)
					VIOLATION("G1",
						  "%s member of group %d (%s) returned to thread %d "
						  "while thread %d holds the group (its %ld-th call)",
						  mkind_name[m->kind], g->idx,
						  g->proxy ? "proxy" : "connection", t->id,
						  other - 1, atomic_load(&g->calls));
				mine[nmine++] = g;
				atomic_fetch_add(&g->calls, 1);
			}
			atomic_fetch_add(&g->deliveries, 1);
		}
		for (int i = 0; i < n; i++)
			handle(c, t, ev[i].udata);
		/* hold a little longer now and then: other threads are waiting */
		uint32_t r = stress_rand(&t->seed) % 16;
		if (r == 0)
			sched_yield();
		else if (r == 1)
			stress_sleep_us(50);
		for (int k = 0; k < nmine; k++) {
			struct group *g = mine[k];
			int h = atomic_exchange(&g->busy, 0);
			if (h != t->id + 1)
				VIOLATION("G1", "group %d was taken by thread %d while thread %d "
					  "held it", g->idx, h - 1, t->id);
			struct member *m = pick_member(g, &t->seed);
			EV_SET(&ch[nch], m->ident, m->filter, EV_ENABLE, 0, 0, m);
			nch++;
		}
		long d = atomic_fetch_add(&c->done, n) + n;
		if (d >= c->rounds || ((t->calls & 63) == 0 && now_ms() > c->deadline))
			atomic_store(&c->stop, 1);
	}
	return NULL;
}

static void add_member(struct ctx *c, struct group *g, enum mkind kind, uintptr_t ident,
		       short filter, unsigned short flags, unsigned fflags, int64_t data)
{
	struct member *m = &g->m[kind];
	m->g = g;
	m->kind = kind;
	m->ident = ident;
	m->filter = filter;
	m->present = 1;
	struct kevent ch, out;
	EV_SET(&ch, ident, filter, EV_ADD | EV_SERIAL | EV_RECEIPT | flags, fflags, data, m);
	/* a connection's READ/WRITE use the default group; all else names it */
	ch.ext[1] = (filter == EVFILT_READ || filter == EVFILT_WRITE) && !g->proxy ? 0 : g->gid;
	SCHECK(kevent(c->kq, &ch, 1, &out, 1, NULL) == 1);
	SCHECK((out.flags & EV_ERROR) && out.data == 0);
}

static void run(int nthreads)
{
	struct ctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	c->rounds = stress_rounds(100000);
	for (int i = 0; i < NGROUPS; i++) {
		struct group *g = &c->g[i];
		g->idx = i;
		g->proxy = i >= NCONN;
		atomic_init(&g->busy, 0);
		stress_socketpair(g->a);
		if (g->proxy) {
			stress_socketpair(g->b);
			g->gid = GID_BASE + (uint64_t)i;
			add_member(c, g, M_READ_A, (uintptr_t)g->a[0], EVFILT_READ, 0, 0, 0);
			add_member(c, g, M_READ_B, (uintptr_t)g->b[0], EVFILT_READ, 0, 0, 0);
			SCHECK(write(g->a[1], "x", 1) == 1);
		} else {
			g->b[0] = g->b[1] = -1;
			g->gid = (uint64_t)g->a[0];
			add_member(c, g, M_READ_A, (uintptr_t)g->a[0], EVFILT_READ, 0, 0, 0);
			add_member(c, g, M_WRITE_A, (uintptr_t)g->a[0], EVFILT_WRITE, 0, 0, 0);
			SCHECK(write(g->a[1], "x", 1) == 1);
		}
		if (i % 3 == 0) /* 1 ms */
			add_member(c, g, M_TIMER, 100000 + (uintptr_t)i, EVFILT_TIMER, 0,
				   NOTE_USECONDS, 1000);
		if (i % 2 == 0)
			add_member(c, g, M_USER, 200000 + (uintptr_t)i, EVFILT_USER, EV_CLEAR,
				   NOTE_TRIGGER, 0);
	}
	pthread_t tids[32];
	struct targ args[32];
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct targ){c, i, 0x2545f491u * (uint32_t)(i + 1) + 11u, 0};
	double t0 = now_ms();
	c->deadline = t0 + STRESS_PHASE_MS;
	stress_start(tids, nthreads, worker, args, sizeof args[0]);
	stress_join(tids, nthreads);
	long calls = 0;
	for (int i = 0; i < nthreads; i++)
		calls += args[i].calls;
	fprintf(stderr, "   %2d threads: %ld deliveries in %ld calls, %.0f ms (", nthreads,
		atomic_load(&c->done), calls, now_ms() - t0);
	for (int i = 0; i < NGROUPS; i++)
		fprintf(stderr, "%s%ld", i ? " " : "", atomic_load(&c->g[i].calls));
	fprintf(stderr, " holds per group)\n");
	/* every group was served: none was left held for good */
	for (int i = 0; i < NGROUPS; i++)
		if (atomic_load(&c->g[i].calls) == 0)
			VIOLATION("G1", "group %d was never returned", i);
	for (int i = 0; i < NGROUPS; i++) {
		close(c->g[i].a[0]);
		close(c->g[i].a[1]);
		if (c->g[i].proxy) {
			close(c->g[i].b[0]);
			close(c->g[i].b[1]);
		}
	}
	close(c->kq);
	free(c);
}

int main(void)
{
	stress_phases("one holder", run);
	alarm(0);
	fprintf(stderr, "stress_g1_one_holder: no violation\n");
	return 0;
}
