/* B1 pipe storm on libevent 2: one persistent EV_READ event per watched
 * fd, event_base_loop(EVLOOP_ONCE) until the ring runs dry. */
#include <event2/event.h>

#include "b1_ring.h"

static struct event_base *base;

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	b1_event((int)(intptr_t)arg);
}

static void b1_register(void)
{
	struct event *ev;
	int i;

	base = event_base_new();
	if (!base)
		die("event_base_new");
	for (i = 0; i < b1.n; i++) {
		ev = event_new(base, b1.rfd[i], EV_READ | EV_PERSIST, read_cb,
			       (void *)(intptr_t)i);
		if (!ev || event_add(ev, NULL))
			die("event_new/event_add");
	}
}

static void b1_loop(void)
{
	while (b1.count != b1.fired)
		if (event_base_loop(base, EVLOOP_ONCE) < 0)
			die("event_base_loop");
}

int main(int argc, char **argv)
{
	return b1_main(argc, argv, "libevent");
}
