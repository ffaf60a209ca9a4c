/* B2 on raw epoll: T threads on one epoll fd, EPOLLIN|EPOLLONESHOT on both
 * ends of every socketpair; a handled socket is re-armed at once with
 * EPOLL_CTL_MOD (epoll cannot fold it into the next wait). */
#include <sys/epoll.h>

#include "b2_pingpong.h"

static int ep;

static void b2_setup_queue(void)
{
	struct epoll_event ev;
	int i;

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	for (i = 0; i < 2 * b2.pairs; i++) {
		ev.events = EPOLLIN | EPOLLONESHOT;
		ev.data.ptr = &b2.socks[i];
		if (epoll_ctl(ep, EPOLL_CTL_ADD, b2.socks[i].fd, &ev))
			die("epoll_ctl(ADD)");
	}
}

static void *b2_worker(void *arg)
{
	struct b2_thread *t = arg;
	struct epoll_event evs[1024], ev;
	struct b2_sock *s;
	int i, n;

	while (!b2_stopped()) {
		n = epoll_wait(ep, evs, b2.batch, 10);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (i = 0; i < n; i++) {
			s = evs[i].data.ptr;
			b2_handle(t, s);
			atomic_store_explicit(&s->armed, 1, memory_order_relaxed);
			ev.events = EPOLLIN | EPOLLONESHOT;
			ev.data.ptr = s;
			if (epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev)) {
				t->errors++;
				perror("epoll_ctl(MOD)");
			}
		}
		if (n > 0)
			b2_count(t, n);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	return b2_main(argc, argv, "epoll");
}
