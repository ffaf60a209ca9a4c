/* B4 peer: libevent timers (evtimer_assign + event_add with a relative
 * timeval; libevent keeps them in a min-heap).  struct event storage is
 * allocated up front but only touched per timer, so RSS per timer counts it.
 * EVENT_BASE_FLAG_PRECISE_TIMER makes libevent wait with a timerfd instead
 * of epoll_wait's millisecond timeout, its most precise setting. */
#include <event2/event.h>
#include <event2/event_struct.h>

#include "b4_timers.h"

static struct event_base *base;
static struct event *evs;

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	b4_fired((long)(intptr_t)arg);
}

static void b4_init(void)
{
	struct event_config *cfg = event_config_new();

	if (!cfg || event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER))
		die("event_config");
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	evs = calloc((size_t)b4.k, sizeof *evs);
	if (!base || !evs)
		die("event_base_new/calloc");
}

static long b4_add(long first, long n)
{
	struct timeval tv;
	int64_t now = now_ns(), rel;
	long i, id;

	for (i = 0; i < n; i++) {
		id = first + i;
		rel = b4.deadline[id] - now;
		if (rel < 0)
			rel = 0;
		/* round up: libevent's resolution is 1 us */
		rel = (rel + 999) / 1000;
		tv.tv_sec = (time_t)(rel / 1000000);
		tv.tv_usec = (suseconds_t)(rel % 1000000);
		evtimer_assign(&evs[id], base, timer_cb, (void *)(intptr_t)id);
		if (evtimer_add(&evs[id], &tv))
			die("evtimer_add");
	}
	return n;
}

static void b4_cancel(long first, long n)
{
	long i;

	for (i = 0; i < n; i++)
		evtimer_del(&evs[first + i]);
}

static void b4_harvest(void)
{
	while (b4.nfired + b4.bad < b4.k)
		if (event_base_loop(base, EVLOOP_ONCE) < 0)
			die("event_base_loop");
}

int main(int argc, char **argv)
{
	return b4_main(argc, argv, "libevent");
}
