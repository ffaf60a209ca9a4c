/*
 * Stress test for SEMANTICS.md I3 "no lost wakeups" with level knotes and
 * many threads: a level knote that is ready is returned to every call that
 * asks, however many threads ask at once.  FreeBSD keeps it on its queue
 * (a thread that finds it in another's hands waits for it), so a poll,
 * kevent() with a zero timeout, never comes back empty while it is ready.
 *
 * 2, 8 and 32 threads poll one kqueue with nevents = 1; a socket with unread
 * data and room to write is watched for READ and WRITE (both level, never
 * consumed).  Every call must return one of them.  A call that returns
 * nothing means the ready report went to threads that could not take it.
 */
#include "stress_util.h"

struct ctx {
	int kq, fd;
	atomic_long calls, empty;
	atomic_int stop;
	double deadline;
	long rounds;
};

static void *poller(void *p)
{
	struct ctx *c = p;
	long mine = 0;
	while (!atomic_load(&c->stop)) {
		struct kevent ev;
		int n = kevent(c->kq, NULL, 0, &ev, 1, &(struct timespec){0, 0});
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n == 0 || n == 1);
		if (n == 0) {
			atomic_fetch_add(&c->empty, 1);
		} else {
			stress_no_errors(&ev, 1);
			SCHECK(ev.ident == (uintptr_t)c->fd);
			SCHECK(ev.filter == EVFILT_READ || ev.filter == EVFILT_WRITE);
		}
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
	int sv[2];
	stress_socketpair(sv);
	SCHECK(write(sv[1], "r", 1) == 1); /* never read */
	c->fd = sv[0];
	CHANGE_OK(c->kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	CHANGE_OK(c->kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	pthread_t tids[32];
	c->rounds = stress_rounds(100000);
	double t0 = now_ms();
	c->deadline = t0 + STRESS_PHASE_MS / 2;
	for (int i = 0; i < nthreads; i++)
		SCHECK(pthread_create(&tids[i], NULL, poller, c) == 0);
	stress_join(tids, nthreads);
	long calls = atomic_load(&c->calls), empty = atomic_load(&c->empty);
	fprintf(stderr, "   %2d threads: %ld polls, %ld empty, %.0f ms\n", nthreads, calls, empty,
	        now_ms() - t0);
	if (empty > 0)
		VIOLATION("I3",
		          "%d threads polling (nevents 1, timeout 0) a kqueue whose READ and "
		          "WRITE knotes of one socket are ready all the time: %ld of %ld calls "
		          "returned nothing",
		          nthreads, empty, calls);
	close(sv[0]);
	close(sv[1]);
	close(c->kq);
	free(c);
}

int main(void)
{
	stress_phases("level knotes, many threads polling", run);
	alarm(0);
	fprintf(stderr, "stress_i3_level_many_threads: no violation\n");
	return 0;
}
