/* B3 peers: two eventfds.  -m block: each thread blocks in read() on its
 * own eventfd and write()s the other's.  -m epoll: each thread waits in
 * epoll_wait() on its own epoll fd holding its eventfd, then read()s it to
 * reset it (the shape of an event loop's wake-up). */
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "b3_pingpong.h"

static int efd_a, efd_b, ep_a, ep_b, use_epoll;

static void b3_setup(void)
{
	struct epoll_event ev = { .events = EPOLLIN };

	efd_a = eventfd(0, EFD_CLOEXEC | (use_epoll ? EFD_NONBLOCK : 0));
	efd_b = eventfd(0, EFD_CLOEXEC | (use_epoll ? EFD_NONBLOCK : 0));
	if (efd_a < 0 || efd_b < 0)
		die("eventfd");
	if (!use_epoll)
		return;
	ep_a = epoll_create1(EPOLL_CLOEXEC);
	ep_b = epoll_create1(EPOLL_CLOEXEC);
	if (ep_a < 0 || ep_b < 0 || epoll_ctl(ep_a, EPOLL_CTL_ADD, efd_a, &ev) ||
	    epoll_ctl(ep_b, EPOLL_CTL_ADD, efd_b, &ev))
		die("epoll");
}

static void wake(int efd)
{
	uint64_t one = 1;

	if (write(efd, &one, sizeof one) != sizeof one)
		die("eventfd write");
}

static void wait_on(int efd, int ep)
{
	struct epoll_event ev;
	uint64_t v;

	if (use_epoll) {
		int n;

		do
			n = epoll_wait(ep, &ev, 1, -1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			die("epoll_wait");
	}
	while (read(efd, &v, sizeof v) != sizeof v)
		if (errno != EINTR)
			die("eventfd read");
}

static void b3_wake_b(void) { wake(efd_b); }
static void b3_wait_a(void) { wait_on(efd_a, ep_a); }
static void b3_wake_a(void) { wake(efd_a); }
static void b3_wait_b(void) { wait_on(efd_b, ep_b); }

int main(int argc, char **argv)
{
	char *args[16];
	int i, n = 0;

	/* take -m here, pass the rest on */
	for (i = 0; i < argc && n < 15; i++) {
		if (!strcmp(argv[i], "-m") && i + 1 < argc) {
			use_epoll = !strcmp(argv[++i], "epoll");
			continue;
		}
		args[n++] = argv[i];
	}
	args[n] = NULL;
	return b3_main(n, args, use_epoll ? "eventfd_epoll" : "eventfd");
}
