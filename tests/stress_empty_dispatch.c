/*
 * Stress test for SEMANTICS.md I1 "one at a time" on EVFILT_EMPTY: an
 * EV_DISPATCH EMPTY knote is returned to at most one thread between two
 * EV_ENABLEs, while its send queue fills and drains under it.
 *
 * BREAKS: I1
 *
 * 2, 8 and 32 threads share one kqueue holding EMPTY|EV_DISPATCH knotes on
 * AF_UNIX sockets (their queue drains when the peer reads, which wakes an
 * EPOLLOUT edge) and on loopback TCP sockets (drained by acknowledgements,
 * looked at from the drain timer).  A handler claims its item (an atomic
 * exchange: already claimed means two threads hold it at once) and disarms
 * it (already disarmed means a second delivery without an EV_ENABLE), then
 * makes the queue fill and drain while it holds the item: it writes a byte
 * and has the peer read it, so a drain edge comes while the knote must stay
 * disabled.  It re-arms the item just before handing the EV_ENABLE to its
 * next kevent() call.
 */
#include "stress_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>

#define NUNIX 6
#define NTCP 2
#define NITEMS (NUNIX + NTCP)
#define MAXEV 4

struct item {
	int fd;   /* the registered end */
	int peer; /* reads what fd sends */
	atomic_int holder;
	atomic_int armed;
	atomic_long deliveries;
};

struct ctx {
	int kq;
	struct item items[NITEMS];
	atomic_long done;
	long rounds;
	atomic_int stop;
	double deadline;
};

struct targ {
	struct ctx *c;
	int id;
	uint32_t seed;
	long calls;
};

static void tcp_pair(int sv[2])
{
	struct sockaddr_in addr;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	SCHECK(l >= 0);
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	SCHECK(bind(l, (struct sockaddr *)&addr, sizeof addr) == 0);
	socklen_t len = sizeof addr;
	SCHECK(getsockname(l, (struct sockaddr *)&addr, &len) == 0);
	SCHECK(listen(l, 4) == 0);
	sv[0] = socket(AF_INET, SOCK_STREAM, 0);
	SCHECK(sv[0] >= 0);
	SCHECK(connect(sv[0], (struct sockaddr *)&addr, sizeof addr) == 0);
	sv[1] = accept(l, NULL, NULL);
	SCHECK(sv[1] >= 0);
	close(l);
	stress_nonblock(sv[0]);
	stress_nonblock(sv[1]);
}

/* Fill and drain the queue while the knote is held: a drain edge (or a
 * drain the timer finds) comes while it is disabled. */
static void churn(struct item *it, uint32_t *seed)
{
	char buf[64];
	int k = 1 + (int)(stress_rand(seed) % 8);
	if (write(it->fd, buf, (size_t)k) < 0)
		SCHECK(errno == EAGAIN);
	if (stress_rand(seed) % 4 == 0)
		sched_yield();
	while (read(it->peer, buf, sizeof buf) > 0) {
	}
}

static void claim(struct ctx *c, struct targ *t, const struct kevent *ev)
{
	struct item *it = ev->udata;
	SCHECK(it >= c->items && it < c->items + NITEMS);
	if (ev->ident != (uintptr_t)it->fd || ev->filter != EVFILT_EMPTY)
		VIOLATION("I1", "event {%lu, %d} carries the udata of {%d, EMPTY}",
			  (unsigned long)ev->ident, ev->filter, it->fd);
	int other = atomic_exchange(&it->holder, t->id + 1);
	if (other != 0)
		VIOLATION("I1",
			  "EV_DISPATCH EMPTY knote %d returned to thread %d while thread %d "
			  "still handles it (delivery %ld)",
			  it->fd, t->id, other - 1, atomic_load(&it->deliveries));
	if (atomic_exchange(&it->armed, 0) != 1)
		VIOLATION("I1",
			  "EV_DISPATCH EMPTY knote %d returned to thread %d a second time "
			  "without an EV_ENABLE in between (delivery %ld)",
			  it->fd, t->id, atomic_load(&it->deliveries));
	atomic_fetch_add(&it->deliveries, 1);
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
		stress_no_errors(ev, n);
		for (int i = 0; i < n; i++)
			claim(c, t, &ev[i]);
		for (int i = 0; i < n; i++)
			churn(ev[i].udata, &t->seed);
		for (int i = 0; i < n; i++) {
			struct item *it = ev[i].udata;
			int h = atomic_exchange(&it->holder, 0);
			if (h != t->id + 1)
				VIOLATION("I1", "EMPTY knote %d was taken by thread %d while "
					  "thread %d handled it", it->fd, h - 1, t->id);
			atomic_store(&it->armed, 1);
			EV_SET(&ch[nch], (uintptr_t)it->fd, EVFILT_EMPTY, EV_ENABLE, 0, 0, it);
			nch++;
		}
		long d = atomic_fetch_add(&c->done, n) + n;
		if (d >= c->rounds || ((t->calls & 63) == 0 && now_ms() > c->deadline))
			atomic_store(&c->stop, 1);
	}
	return NULL;
}

static void run(int nthreads)
{
	struct ctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	c->rounds = stress_rounds(40000);
	for (int i = 0; i < NITEMS; i++) {
		struct item *it = &c->items[i];
		int sv[2];
		if (i < NUNIX)
			stress_socketpair(sv);
		else
			tcp_pair(sv);
		it->fd = sv[0];
		it->peer = sv[1];
		atomic_init(&it->holder, 0);
		atomic_init(&it->armed, 1);
		atomic_init(&it->deliveries, 0);
		CHANGE_OK(c->kq, (uintptr_t)it->fd, EVFILT_EMPTY, EV_ADD | EV_DISPATCH, 0, 0, it);
	}
	pthread_t tids[32];
	struct targ args[32];
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct targ){c, i, 0x2545f491u * (uint32_t)(i + 1) + 3u, 0};
	double t0 = now_ms();
	c->deadline = t0 + STRESS_PHASE_MS;
	stress_start(tids, nthreads, worker, args, sizeof args[0]);
	stress_join(tids, nthreads);
	long calls = 0;
	for (int i = 0; i < nthreads; i++)
		calls += args[i].calls;
	fprintf(stderr, "   empty/dispatch: %2d threads, %ld deliveries in %ld calls, %.0f ms (",
		nthreads, atomic_load(&c->done), calls, now_ms() - t0);
	for (int i = 0; i < NITEMS; i++)
		fprintf(stderr, "%s%ld", i ? " " : "", atomic_load(&c->items[i].deliveries));
	fprintf(stderr, ")\n");
	/* every socket took part, TCP ones too */
	for (int i = 0; i < NITEMS; i++)
		SCHECK(atomic_load(&c->items[i].deliveries) > 0);
	for (int i = 0; i < NITEMS; i++) {
		close(c->items[i].fd);
		close(c->items[i].peer);
	}
	close(c->kq);
	free(c);
}

int main(void)
{
	stress_phases("empty/dispatch", run);
	return 0;
}
