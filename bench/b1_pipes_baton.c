/* B1 pipe storm on Baton's kqueue API: EVFILT_READ, level-triggered, one
 * kevent() call per loop iteration with a batch of events.  -N registers
 * with NOTE_NODATA (no FIONREAD per event; reported as impl=baton_nodata). */
#include <sys/event.h>

#include "b1_ring.h"

#define BATCH 64

static int kq;

static void b1_register(void)
{
	struct kevent chg[256];
	int i, nchg = 0;

	kq = kqueue();
	if (kq < 0)
		die("kqueue");
	for (i = 0; i < b1.n; i++) {
		EV_SET(&chg[nchg], b1.rfd[i], EVFILT_READ, EV_ADD,
		       b1.nodata ? NOTE_NODATA : 0, 0,
		       (void *)(intptr_t)i);
		if (++nchg == 256 || i + 1 == b1.n) {
			if (kevent(kq, chg, nchg, NULL, 0, NULL) < 0)
				die("kevent(EV_ADD)");
			nchg = 0;
		}
	}
}

static void b1_loop(void)
{
	struct kevent evs[BATCH];
	int i, n;

	while (b1.count != b1.fired) {
		n = kevent(kq, NULL, 0, evs, BATCH, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("kevent");
		}
		for (i = 0; i < n; i++) {
			if (evs[i].flags & EV_ERROR) {
				errno = (int)evs[i].data;
				die("kevent returned EV_ERROR for fd %d",
				    (int)evs[i].ident);
			}
			b1_event((int)(intptr_t)evs[i].udata);
		}
	}
}

int main(int argc, char **argv)
{
	b1.nodata_ok = 1;
	return b1_main(argc, argv, "baton");
}
