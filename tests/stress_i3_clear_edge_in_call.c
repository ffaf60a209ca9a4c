/*
 * Stress test for SEMANTICS.md I3 "no lost wakeups", EV_CLEAR edges that
 * arrive inside one kevent() call: FreeBSD re-activates such a knote for a
 * later call, so a program that reads exactly `data` bytes per event never
 * stalls with bytes left unread.
 *
 * 300 sockets are watched with EV_CLEAR READ, each with one byte unread,
 * and one kevent() call with room for all of them collects them: more than
 * one epoll_wait() batch, so the call looks again after delivering the
 * first batch.  Meanwhile a second thread writes one more byte to every
 * socket, so some sockets delivered by the first batch get a new edge
 * before the call looks again.  Reading exactly `data` bytes per event,
 * every byte written must be read; a socket that still holds bytes when no
 * event comes for 1 s lost its edge.
 */
#include "stress_util.h"

#include <sys/ioctl.h>

#define NSOCK 300

struct ctx {
	int sv[NSOCK][2];
	atomic_int go, done;
};

static void *writer(void *p)
{
	struct ctx *c = p;
	while (!atomic_load(&c->go))
		;
	for (int i = 0; i < NSOCK; i++)
		SCHECK(write(c->sv[i][1], "b", 1) == 1);
	atomic_store(&c->done, 1);
	return NULL;
}

static void round_once(struct ctx *c, int kq, long round)
{
	static struct kevent ev[2 * NSOCK];
	long want = 2 * NSOCK, got = 0;
	for (int i = 0; i < NSOCK; i++)
		SCHECK(write(c->sv[i][1], "a", 1) == 1);
	atomic_store(&c->go, 0);
	atomic_store(&c->done, 0);
	pthread_t w;
	SCHECK(pthread_create(&w, NULL, writer, c) == 0);
	atomic_store(&c->go, 1);
	double last = now_ms();
	while (got < want) {
		int n = kevent(kq, NULL, 0, ev, 2 * NSOCK, &(struct timespec){0, 10000000});
		SCHECK(n >= 0);
		stress_no_errors(ev, n);
		for (int i = 0; i < n; i++) {
			char buf[16];
			SCHECK(ev[i].filter == EVFILT_READ && ev[i].data > 0 &&
			       ev[i].data <= (int64_t)sizeof buf);
			/* A program that reads exactly what was reported. */
			SCHECK(read((int)ev[i].ident, buf, (size_t)ev[i].data) == ev[i].data);
			got += ev[i].data;
		}
		if (n > 0 || !atomic_load(&c->done))
			last = now_ms();
		else if (now_ms() - last > 1000) {
			int fd = -1, unread = 0;
			for (int i = 0; i < NSOCK && fd < 0; i++)
				if (ioctl(c->sv[i][0], FIONREAD, &unread) == 0 && unread > 0)
					fd = c->sv[i][0];
			VIOLATION("I3",
			          "round %ld: %ld of %ld bytes read, no event for 1 s; socket %d "
			          "holds %d unread bytes (an EV_CLEAR edge that came during a "
			          "kevent() call was dropped)",
			          round, got, want, fd, unread);
		}
	}
	SCHECK(pthread_join(w, NULL) == 0);
}

int main(void)
{
	struct ctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	int kq = kqueue();
	SCHECK(kq >= 0);
	for (int i = 0; i < NSOCK; i++) {
		stress_socketpair(c->sv[i]);
		CHANGE_OK(kq, (uintptr_t)c->sv[i][0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
	}
	stress_watchdog("EV_CLEAR edges inside one call", 60);
	long rounds = stress_rounds(200), r;
	double t0 = now_ms();
	for (r = 0; r < rounds && now_ms() - t0 < STRESS_PHASE_MS; r++)
		round_once(c, kq, r);
	alarm(0);
	fprintf(stderr, "   %ld rounds of %d sockets, %.0f ms\n", r, NSOCK, now_ms() - t0);
	for (int i = 0; i < NSOCK; i++) {
		close(c->sv[i][0]);
		close(c->sv[i][1]);
	}
	close(kq);
	free(c);
	fprintf(stderr, "stress_i3_clear_edge_in_call: no violation\n");
	return 0;
}
