/* B4 peer: one timerfd per timer (absolute CLOCK_MONOTONIC deadline), all
 * in one epoll set.  Needs one fd per timer, so it stops at the fd limit
 * (EMFILE) and reports how many it held. */
#include <sys/epoll.h>
#include <sys/timerfd.h>

#include "b4_timers.h"

static int ep;
static int *tfd;

static void b4_init(void)
{
	ep = epoll_create1(EPOLL_CLOEXEC);
	tfd = calloc((size_t)b4.k, sizeof *tfd);
	if (ep < 0 || !tfd)
		die("epoll_create1/calloc");
}

static long b4_add(long first, long n)
{
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };
	struct epoll_event ev;
	long i, id;

	for (i = 0; i < n; i++) {
		id = first + i;
		tfd[id] = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (tfd[id] < 0) {
			if (errno != EMFILE && errno != ENFILE)
				die("timerfd_create");
			errno = 0;
			return i;
		}
		its.it_value = ns_to_ts(b4.deadline[id]);
		ev.events = EPOLLIN;
		ev.data.u64 = (uint64_t)id;
		if (timerfd_settime(tfd[id], TFD_TIMER_ABSTIME, &its, NULL) ||
		    epoll_ctl(ep, EPOLL_CTL_ADD, tfd[id], &ev))
			die("timerfd_settime/epoll_ctl");
	}
	return n;
}

static void b4_cancel(long first, long n)
{
	long i;

	/* closing the only reference also removes it from the epoll set */
	for (i = 0; i < n; i++)
		close(tfd[first + i]);
}

static void b4_harvest(void)
{
	struct epoll_event evs[1024];
	uint64_t exp;
	int i, n;
	long id;

	while (b4.nfired + b4.bad < b4.k) {
		n = epoll_wait(ep, evs, 1024, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (i = 0; i < n; i++) {
			id = (long)evs[i].data.u64;
			if (read(tfd[id], &exp, sizeof exp) != sizeof exp)
				die("timerfd read");
			b4_fired(id);
			close(tfd[id]); /* one-shot: done with it */
		}
	}
}

int main(int argc, char **argv)
{
	return b4_main(argc, argv, "timerfd");
}
