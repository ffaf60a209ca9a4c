/* B1 pipe storm on raw epoll: level-triggered, one epoll_wait per loop
 * iteration with a batch of events.  This is the floor. */
#include <sys/epoll.h>

#include "b1_ring.h"

#define BATCH 64

static int ep;

static void b1_register(void)
{
	struct epoll_event ev;
	int i;

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	for (i = 0; i < b1.n; i++) {
		ev.events = EPOLLIN;
		ev.data.u64 = (uint64_t)i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, b1.rfd[i], &ev))
			die("epoll_ctl");
	}
}

static void b1_loop(void)
{
	struct epoll_event evs[BATCH];
	int i, n;

	while (b1.count != b1.fired) {
		n = epoll_wait(ep, evs, BATCH, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (i = 0; i < n; i++)
			b1_event((int)evs[i].data.u64);
	}
}

int main(int argc, char **argv)
{
	return b1_main(argc, argv, "epoll");
}
