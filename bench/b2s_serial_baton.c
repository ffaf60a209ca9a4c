/* B2-serial on Baton: T threads on one kqueue; every socket has
 * EVFILT_READ (level) and EVFILT_WRITE (enabled only while output is
 * pending), both EV_SERIAL in the socket's default group (ext[1] = 0: the
 * fd), so a socket is in one kevent() call at a time.  The thread that got
 * it handles what was returned (one call may return READ and WRITE of the
 * same socket) and releases the group with EV_ENABLE folded into the
 * changelist of its next kevent() call.  No lock: the group is the lock.
 * -N registers with NOTE_NODATA (impl=baton_nodata). */
#include <sys/event.h>

#include "b2s_serial.h"

static int kq;

static void b2s_setup_queue(void)
{
	struct kevent kev[2];
	int i;

	kq = kqueue();
	if (kq < 0)
		die("kqueue");
	for (i = 0; i < 2 * b2s.pairs; i++) {
		struct b2s_sock *s = &b2s.socks[i];
		unsigned nd = b2s.nodata ? NOTE_NODATA : 0;

		EV_SET(&kev[0], s->fd, EVFILT_READ, EV_ADD | EV_SERIAL, nd, 0, s);
		EV_SET(&kev[1], s->fd, EVFILT_WRITE,
		       EV_ADD | EV_SERIAL | (s->out_on ? 0 : EV_DISABLE), nd, 0, s);
		if (kevent(kq, kev, 2, NULL, 0, NULL) < 0)
			die("kevent(EV_ADD)");
	}
}

static void *b2s_worker(void *arg)
{
	struct b2s_thread *t = arg;
	struct kevent chg[2048], evs[1024];
	struct b2s_sock *got[1024], *s;
	const struct timespec tmo = { 0, 10 * 1000000 };
	int i, j, n, ngot, nchg = 0, out;

	while (!b2s_stopped()) {
		n = kevent(kq, chg, nchg, evs, b2s.batch, &tmo);
		nchg = 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("kevent");
		}
		ngot = 0;
		for (i = 0; i < n; i++) {
			s = evs[i].udata;
			if (evs[i].flags & EV_ERROR) {
				fprintf(stderr, "b2s baton: EV_ERROR fd %d filter %d: %s\n",
					(int)evs[i].ident, evs[i].filter,
					strerror((int)evs[i].data));
				t->errors++;
				continue;
			}
			/* the group may come back with READ and WRITE */
			for (j = 0; j < ngot && got[j] != s; j++)
				;
			if (j == ngot) {
				got[ngot++] = s;
				b2s_acquire(t, s);
			}
			if (evs[i].filter == EVFILT_WRITE)
				b2s_on_write(t, s);
			else
				b2s_on_read(t, s);
		}
		for (j = 0; j < ngot; j++) {
			s = got[j];
			out = s->pending != 0;
			b2s_release(s);
			if (out != s->out_on) {
				s->out_on = out;
				EV_SET(&chg[nchg], s->fd, EVFILT_WRITE,
				       out ? EV_ENABLE : EV_DISABLE, 0, 0, s);
				nchg++;
				if (out) /* that EV_ENABLE releases the group */
					continue;
			}
			EV_SET(&chg[nchg], s->fd, EVFILT_READ, EV_ENABLE, 0, 0, s);
			nchg++;
		}
		if (ngot)
			b2s_count(t, ngot);
	}
	/* release what this thread still holds */
	if (nchg && kevent(kq, chg, nchg, NULL, 0, NULL) < 0)
		die("kevent(EV_ENABLE)");
	return NULL;
}

int main(int argc, char **argv)
{
	b2s.nodata_ok = 1;
	return b2s_main(argc, argv, "baton");
}
