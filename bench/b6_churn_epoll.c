/* B6-churn on raw epoll: nginx's epoll module's calls — one EPOLL_CTL_ADD
 * of EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET per connection. */
#include <sys/epoll.h>

#include "churn.h"

static int ep, lfd;

static void churn_setup(int listener)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};

	lfd = listener;
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev))
		die("epoll");
}

static void wait_for(int fd, uint32_t bit)
{
	struct epoll_event ev[8];

	for (;;) {
		int n = epoll_wait(ep, ev, 8, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++)
			if (ev[i].data.fd == fd && (ev[i].events & bit))
				return;
	}
}

static void churn_wait_listener(void)
{
	wait_for(lfd, EPOLLIN);
}

static void churn_watch_and_wait(int conn)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
	                         .data.fd = conn};

	if (epoll_ctl(ep, EPOLL_CTL_ADD, conn, &ev))
		die("epoll_ctl");
	wait_for(conn, EPOLLIN);
}

int main(int argc, char **argv)
{
	return churn_main(argc, argv, "epoll");
}
