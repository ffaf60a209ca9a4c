/* B3 on Baton: each thread waits in kevent() on its own kqueue for its
 * EVFILT_USER event (EV_CLEAR) and wakes the other with NOTE_TRIGGER on the
 * other's kqueue. */
#include <sys/event.h>

#include "b3_pingpong.h"

static int kq_a, kq_b;

static void b3_setup(void)
{
	struct kevent kev;

	kq_a = kqueue();
	kq_b = kqueue();
	if (kq_a < 0 || kq_b < 0)
		die("kqueue");
	EV_SET(&kev, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	if (kevent(kq_a, &kev, 1, NULL, 0, NULL) || kevent(kq_b, &kev, 1, NULL, 0, NULL))
		die("kevent(EVFILT_USER EV_ADD)");
}

static void trigger(int kq)
{
	struct kevent kev;

	EV_SET(&kev, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	if (kevent(kq, &kev, 1, NULL, 0, NULL))
		die("kevent(NOTE_TRIGGER)");
}

static void wait_on(int kq)
{
	struct kevent ev;
	int n;

	do
		n = kevent(kq, NULL, 0, &ev, 1, NULL);
	while (n < 0 && errno == EINTR);
	if (n != 1 || ev.filter != EVFILT_USER || (ev.flags & EV_ERROR))
		die("kevent wait returned %d (filter %d flags %#x)", n,
		    n == 1 ? ev.filter : 0, n == 1 ? ev.flags : 0);
}

static void b3_wake_b(void) { trigger(kq_b); }
static void b3_wait_a(void) { wait_on(kq_a); }
static void b3_wake_a(void) { trigger(kq_a); }
static void b3_wait_b(void) { wait_on(kq_b); }

int main(int argc, char **argv)
{
	return b3_main(argc, argv, "baton");
}
