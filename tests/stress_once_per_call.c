/*
 * Stress test: a knote is returned at most once by one kevent() call, as
 * FreeBSD's kqueue_scan guarantees with its marker, however many threads
 * share the kqueue (the level knotes of I3/I5 come back in a later call, not
 * twice in one).
 *
 * 2, 4 and 8 threads take events with nevents 1..24 from one kqueue whose
 * knotes are ready all the time: user events left triggered (no EV_CLEAR),
 * READ of pipes with unread data and WRITE of sockets with room (level fd
 * knotes), and 1 us periodic timers (EV_CLEAR, re-activated while a call
 * runs).  Any (filter, ident) that appears twice in one result is a
 * violation.
 */
#include "stress_util.h"

#define NUSER  6
#define NPIPE  3
#define NSOCK  3
#define NTIMER 2
#define NKN    (NUSER + NPIPE + NSOCK + NTIMER)

struct ctx {
	int kq;
	atomic_long calls, events;
	atomic_int stop;
	double deadline;
	long rounds;
};

struct targ {
	struct ctx *c;
	uint32_t seed;
};

static void *taker(void *p)
{
	struct targ *t = p;
	struct ctx *c = t->c;
	struct kevent ev[24];
	long mine = 0;
	while (!atomic_load(&c->stop)) {
		int nev = 1 + (int)(stress_rand(&t->seed) % 24);
		int n = kevent(c->kq, NULL, 0, ev, nev, &(struct timespec){0, 50000000});
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n >= 0 && n <= nev);
		stress_no_errors(ev, n);
		for (int i = 0; i < n; i++)
			for (int j = 0; j < i; j++)
				if (ev[i].ident == ev[j].ident && ev[i].filter == ev[j].filter)
					VIOLATION("once per call",
					          "knote {%lu, %d} returned twice (at %d and %d) "
					          "by one kevent() call of %d events",
					          (unsigned long)ev[i].ident, ev[i].filter, j, i,
					          n);
		atomic_fetch_add(&c->events, n);
		long calls = atomic_fetch_add(&c->calls, 1) + 1;
		if (calls >= c->rounds || ((++mine & 63) == 0 && now_ms() > c->deadline))
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
	int fds[2 * (NPIPE + NSOCK)], nfds = 0;
	for (int i = 0; i < NUSER; i++) {
		CHANGE_OK(c->kq, 10 + (uintptr_t)i, EVFILT_USER, EV_ADD, 0, 0, NULL);
		CHANGE_OK(c->kq, 10 + (uintptr_t)i, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	}
	for (int i = 0; i < NPIPE; i++) {
		int pfd[2];
		SCHECK(pipe(pfd) == 0);
		SCHECK(write(pfd[1], "x", 1) == 1); /* never read: readable for good */
		CHANGE_OK(c->kq, (uintptr_t)pfd[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		fds[nfds++] = pfd[0];
		fds[nfds++] = pfd[1];
	}
	for (int i = 0; i < NSOCK; i++) {
		int sv[2];
		stress_socketpair(sv);
		CHANGE_OK(c->kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
		fds[nfds++] = sv[0];
		fds[nfds++] = sv[1];
	}
	for (int i = 0; i < NTIMER; i++)
		CHANGE_OK(c->kq, 50 + (uintptr_t)i, EVFILT_TIMER, EV_ADD, NOTE_USECONDS, 1, NULL);

	pthread_t tids[8];
	struct targ args[8];
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct targ){c, 0x9e3779b9u * (uint32_t)(i + 7)};
	c->rounds = stress_rounds(60000);
	double t0 = now_ms();
	c->deadline = t0 + STRESS_PHASE_MS / 2;
	stress_start(tids, nthreads, taker, args, sizeof args[0]);
	stress_join(tids, nthreads);
	fprintf(stderr, "   %d threads: %ld calls, %ld events over %d knotes, %.0f ms\n", nthreads,
	        atomic_load(&c->calls), atomic_load(&c->events), NKN, now_ms() - t0);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
	close(c->kq);
	free(c);
}

int main(void)
{
	static const int counts[] = {2, 4, 8};
	char name[64];
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof name, "once per call, %d threads", counts[i]);
		stress_watchdog(name, 60);
		run(counts[i]);
	}
	alarm(0);
	fprintf(stderr, "stress_once_per_call: no violation\n");
	return 0;
}
