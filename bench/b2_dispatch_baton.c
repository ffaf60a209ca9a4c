/* B2 on Baton: T threads on one kqueue, EVFILT_READ|EV_DISPATCH on both
 * ends of every socketpair.  A handled socket is re-enabled with EV_ENABLE
 * folded into the changelist of the thread's next kevent() call, together
 * with the wait.  -N registers with NOTE_NODATA (impl=baton_nodata). */
#include <sys/event.h>

#include "b2_pingpong.h"

static int kq;

static void b2_setup_queue(void)
{
	struct kevent kev;
	int i;

	kq = kqueue();
	if (kq < 0)
		die("kqueue");
	for (i = 0; i < 2 * b2.pairs; i++) {
		EV_SET(&kev, b2.socks[i].fd, EVFILT_READ, EV_ADD | EV_DISPATCH,
		       b2.nodata ? NOTE_NODATA : 0, 0, &b2.socks[i]);
		if (kevent(kq, &kev, 1, NULL, 0, NULL) < 0)
			die("kevent(EV_ADD)");
	}
}

static void *b2_worker(void *arg)
{
	struct b2_thread *t = arg;
	struct kevent chg[1024], evs[1024];
	const struct timespec tmo = { 0, 10 * 1000000 };
	struct b2_sock *s;
	int i, n, nchg = 0;

	while (!b2_stopped()) {
		n = kevent(kq, chg, nchg, evs, b2.batch, &tmo);
		nchg = 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("kevent");
		}
		for (i = 0; i < n; i++) {
			s = evs[i].udata;
			if (evs[i].flags & EV_ERROR) {
				fprintf(stderr, "b2 baton: EV_ERROR fd %d: %s\n",
					(int)evs[i].ident,
					strerror((int)evs[i].data));
				t->errors++;
				continue;
			}
			b2_handle(t, s);
			/* armed before the enable can take effect */
			atomic_store_explicit(&s->armed, 1, memory_order_relaxed);
			EV_SET(&chg[nchg], s->fd, EVFILT_READ, EV_ENABLE, 0, 0, s);
			nchg++;
		}
		if (n > 0)
			b2_count(t, n);
	}
	/* leave nothing disabled behind for the other threads */
	if (nchg && kevent(kq, chg, nchg, NULL, 0, NULL) < 0)
		die("kevent(EV_ENABLE)");
	return NULL;
}

int main(int argc, char **argv)
{
	b2.nodata_ok = 1;
	return b2_main(argc, argv, "baton");
}
