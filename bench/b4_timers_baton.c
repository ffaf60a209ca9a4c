/* B4 on Baton: every timer is an EVFILT_TIMER knote (EV_ONESHOT,
 * NOTE_NSECONDS, relative) on one kqueue; adds and cancels go in
 * changelists of -b entries. */
#include <sys/event.h>

#include "b4_timers.h"

static int kq;
static struct kevent *chg;

static void b4_init(void)
{
	kq = kqueue();
	if (kq < 0)
		die("kqueue");
	chg = calloc((size_t)b4.batch, sizeof *chg);
	if (!chg)
		die("calloc");
}

static long b4_add(long first, long n)
{
	int64_t now = now_ns(), rel;
	long i;

	for (i = 0; i < n; i++) {
		rel = b4.deadline[first + i] - now;
		EV_SET(&chg[i], (uintptr_t)(first + i), EVFILT_TIMER,
		       EV_ADD | EV_ONESHOT, NOTE_NSECONDS, rel > 0 ? rel : 0, NULL);
	}
	if (kevent(kq, chg, (int)n, NULL, 0, NULL) < 0) {
		perror("kevent(EVFILT_TIMER EV_ADD)");
		return 0;
	}
	return n;
}

static void b4_cancel(long first, long n)
{
	long i;

	for (i = 0; i < n; i++)
		EV_SET(&chg[i], (uintptr_t)(first + i), EVFILT_TIMER, EV_DELETE, 0,
		       0, NULL);
	if (kevent(kq, chg, (int)n, NULL, 0, NULL) < 0)
		die("kevent(EVFILT_TIMER EV_DELETE)");
}

static void b4_harvest(void)
{
	struct kevent evs[1024];
	int i, n;

	while (b4.nfired + b4.bad < b4.k) {
		n = kevent(kq, NULL, 0, evs, 1024, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("kevent");
		}
		for (i = 0; i < n; i++) {
			if (evs[i].filter != EVFILT_TIMER || (evs[i].flags & EV_ERROR)) {
				b4.bad++;
				continue;
			}
			b4_fired((long)evs[i].ident);
		}
	}
}

int main(int argc, char **argv)
{
	return b4_main(argc, argv, "baton");
}
