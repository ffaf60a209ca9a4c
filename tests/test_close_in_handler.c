/*
 * close() from a signal handler that interrupted a kevent() call: the
 * library takes no lock there and removes the knotes later, when the fd is
 * next touched.  Whatever the moment, the program sees FreeBSD's close: a
 * queued event of the closed fd is never returned, the knotes are gone
 * (ENOENT), and EV_ADD on the file that reuses the number registers it
 * (SEMANTICS I4, CONTRACT.md "Waiting").
 */
#include "util.h"

#include <pthread.h>
#include <signal.h>

static volatile sig_atomic_t victim = -1, reopened = -1;
static int reuse_pair[2] = {-1, -1};

static void on_usr1(int sig)
{
	(void)sig;
	int saved = errno;
	close(victim);
	/* the number is taken again at once, inside the handler */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, reuse_pair) == 0)
		reopened = reuse_pair[0];
	errno = saved;
}

static void *kicker(void *arg)
{
	struct timespec ts = {0, 100 * 1000000L};
	nanosleep(&ts, NULL);
	pthread_kill(*(pthread_t *)arg, SIGUSR1);
	return NULL;
}

static void closed_in_a_handler_during_kevent(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	CHECK_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
	int kq = kq_new(), other = kq_new();
	int sv[2];
	CHECK_EQ(socketpair_stream(sv), 0);
	write_n(sv[1], 2);
	/* READ level-triggered and ready, WRITE ready: both reported; READ
	 * left queued by a one-slot collect */
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(1));
	struct kevent ev;
	CHECK_EQ(kpoll(kq, &ev, 1, 1000), 1);
	CHECK(ev.udata == UD(1));
	victim = sv[0];
	CHECK_EQ(close(sv[1]), 0);
	pthread_t self = pthread_self(), t;
	CHECK_EQ(pthread_create(&t, NULL, kicker, &self), 0);
	/* blocked in kevent() on another kqueue when the handler runs */
	struct timespec ts = ts_ms(2000);
	int n = kevent(other, NULL, 0, &ev, 1, &ts);
	CHECK(n == -1 && errno == EINTR);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(reopened, victim);
	int fd = reopened;
	/* nothing of the old file comes back */
	EXPECT_NONE(kq, 50);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_WRITE, EV_DELETE, 0, 0), ENOENT);
	/* the new file at the number registers */
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	EXPECT_NONE(kq, 20);
	write_n(reuse_pair[1], 3);
	ev = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 1000);
	CHECK(ev.udata == UD(2));
	CHECK_EQ(ev.data, 3);
	close(reuse_pair[0]);
	close(reuse_pair[1]);
	close(other);
	close(kq);
}

int main(void)
{
	RUN(closed_in_a_handler_during_kevent);
	return 0;
}
