/* B1 pipe storm on libuv: one uv_poll_t (UV_READABLE) per watched fd,
 * uv_run(UV_RUN_ONCE) until the ring runs dry.  uv_poll is libuv's API for
 * "tell me when this fd is readable", which is what the protocol needs. */
#include <uv.h>

#include "b1_ring.h"

static uv_loop_t loop;
static uv_poll_t *polls;

static void read_cb(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	b1_event((int)(h - polls));
}

static void b1_register(void)
{
	int i;

	if (uv_loop_init(&loop))
		die("uv_loop_init");
	polls = calloc((size_t)b1.n, sizeof *polls);
	if (!polls)
		die("calloc");
	for (i = 0; i < b1.n; i++)
		if (uv_poll_init(&loop, &polls[i], b1.rfd[i]) ||
		    uv_poll_start(&polls[i], UV_READABLE, read_cb))
			die("uv_poll_init/start");
}

static void b1_loop(void)
{
	while (b1.count != b1.fired)
		uv_run(&loop, UV_RUN_ONCE);
}

int main(int argc, char **argv)
{
	return b1_main(argc, argv, "libuv");
}
