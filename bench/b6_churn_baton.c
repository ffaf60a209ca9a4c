/* B6-churn on Baton: nginx's kqueue module's calls — READ and WRITE added
 * with EV_CLEAR in the changelist of the next wait. */
#include <sys/event.h>

#include "churn.h"

static int kq, lfd;

static void churn_setup(int listener)
{
	struct kevent kev;

	lfd = listener;
	if ((kq = kqueue()) < 0)
		die("kqueue");
	EV_SET(&kev, listener, EVFILT_READ, EV_ADD, 0, 0, NULL);
	if (kevent(kq, &kev, 1, NULL, 0, NULL))
		die("kevent(listener)");
}

static void wait_for(const struct kevent *ch, int nch, uintptr_t ident, short filter)
{
	struct kevent ev[8];

	for (;;) {
		int n = kevent(kq, ch, nch, ev, 8, NULL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("kevent");
		nch = 0;
		for (int i = 0; i < n; i++) {
			if (ev[i].flags & EV_ERROR)
				die("kevent: EV_ERROR %ld", (long)ev[i].data);
			if (ev[i].ident == ident && ev[i].filter == filter)
				return;
		}
	}
}

static void churn_wait_listener(void)
{
	wait_for(NULL, 0, (uintptr_t)lfd, EVFILT_READ);
}

static void churn_watch_and_wait(int conn)
{
	struct kevent ch[2];

	EV_SET(&ch[0], conn, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
	EV_SET(&ch[1], conn, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, NULL);
	wait_for(ch, 2, (uintptr_t)conn, EVFILT_READ);
}

int main(int argc, char **argv)
{
	return churn_main(argc, argv, "baton");
}
