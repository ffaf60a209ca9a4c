/* B1 pipe storm on libev: one ev_io watcher per watched fd on an epoll
 * loop, ev_run(EVRUN_ONCE) until the ring runs dry. */
#include <ev.h>

#include "b1_ring.h"

static struct ev_loop *loop;
static ev_io *ios;

static void read_cb(struct ev_loop *l, ev_io *w, int revents)
{
	(void)l;
	(void)revents;
	b1_event((int)(w - ios));
}

static void b1_register(void)
{
	int i;

	loop = ev_loop_new(EVBACKEND_EPOLL);
	if (!loop)
		die("ev_loop_new");
	ios = calloc((size_t)b1.n, sizeof *ios);
	if (!ios)
		die("calloc");
	for (i = 0; i < b1.n; i++) {
		ev_io_init(&ios[i], read_cb, b1.rfd[i], EV_READ);
		ev_io_start(loop, &ios[i]);
	}
}

static void b1_loop(void)
{
	while (b1.count != b1.fired)
		ev_run(loop, EVRUN_ONCE);
}

int main(int argc, char **argv)
{
	return b1_main(argc, argv, "libev");
}
