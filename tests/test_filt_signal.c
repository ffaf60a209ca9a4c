/*
 * EVFILT_SIGNAL with the signal blocked and left at SIG_DFL (a kqueue's
 * signalfd takes it: CONTRACT.md, "Signals"); data counts deliveries since
 * the last report; invalid signal numbers.  test_signal_dispositions.c has
 * the other dispositions.
 */
#include "util.h"

#include <signal.h>

#define SFLAGS(e) ((e).flags & ~EV_CLEAR) /* FreeBSD sets EV_CLEAR itself */

static void block(int sig)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, sig);
	CHECK(sigprocmask(SIG_BLOCK, &s, NULL) == 0);
}

/* Takes a still-pending instance of sig off the process, if any. */
static void drain(int sig)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, sig);
	struct timespec zero = {0, 0};
	while (sigtimedwait(&s, NULL, &zero) == sig)
		;
}

static void blocked_signal_is_reported(void)
{
	block(SIGUSR1);
	int kq = kq_new();
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(4));
	EXPECT_NONE(kq, 10);
	CHECK(kill(getpid(), SIGUSR1) == 0);
	struct kevent e = EXPECT_ONE(kq, SIGUSR1, EVFILT_SIGNAL, 200);
	CHECK_EQ(e.data, 1);
	CHECK(e.udata == UD(4));
	CHECK_EQ(SFLAGS(e), 0);
	/* reported once: the count restarts */
	EXPECT_NONE(kq, 20);
	CHECK(kill(getpid(), SIGUSR1) == 0);
	e = EXPECT_ONE(kq, SIGUSR1, EVFILT_SIGNAL, 200);
	CHECK_EQ(e.data, 1);
	close(kq);
	drain(SIGUSR1);
}

static void queued_signals_are_counted(void)
{
	int sig = SIGRTMIN + 1;
	block(sig);
	int kq = kq_new();
	KOK(kq, (uintptr_t)sig, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	union sigval v = {0};
	for (int i = 0; i < 3; i++)
		CHECK(sigqueue(getpid(), sig, v) == 0);
	usleep(20000);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)sig, EVFILT_SIGNAL, 200);
	CHECK_EQ(e.data, 3);
	EXPECT_NONE(kq, 20);
	close(kq);
	drain(sig);
}

static void two_signals_are_separate_knotes(void)
{
	block(SIGUSR1);
	block(SIGUSR2);
	int kq = kq_new();
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(1));
	KOK(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(2));
	CHECK(kill(getpid(), SIGUSR2) == 0);
	struct kevent e = EXPECT_ONE(kq, SIGUSR2, EVFILT_SIGNAL, 200);
	CHECK(e.udata == UD(2));
	EXPECT_NONE(kq, 20);
	close(kq);
	drain(SIGUSR1);
	drain(SIGUSR2);
}

static void disabled_signal_knote_reports_after_enable(void)
{
	block(SIGUSR1);
	int kq = kq_new();
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD | EV_DISABLE, 0, 0, NULL);
	CHECK(kill(getpid(), SIGUSR1) == 0);
	EXPECT_NONE(kq, 30);
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_ENABLE, 0, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, SIGUSR1, EVFILT_SIGNAL, 200);
	CHECK_EQ(e.data, 1);
	close(kq);
	drain(SIGUSR1);
}

static void deleted_signal_knote_reports_nothing(void)
{
	block(SIGUSR2);
	int kq = kq_new();
	KOK(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	KOK(kq, SIGUSR2, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
	CHECK(kill(getpid(), SIGUSR2) == 0);
	EXPECT_NONE(kq, 30);
	CHECK_EQ(kchange_err(kq, SIGUSR2, EVFILT_SIGNAL, EV_DELETE, 0, 0), ENOENT);
	close(kq);
	drain(SIGUSR2);
}

static void oneshot_signal_knote_is_removed(void)
{
	block(SIGUSR1);
	int kq = kq_new();
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD | EV_ONESHOT, 0, 0, NULL);
	CHECK(kill(getpid(), SIGUSR1) == 0);
	struct kevent e = EXPECT_ONE(kq, SIGUSR1, EVFILT_SIGNAL, 200);
	CHECK_EQ(SFLAGS(e), EV_ONESHOT);
	CHECK(kill(getpid(), SIGUSR1) == 0);
	EXPECT_NONE(kq, 30);
	CHECK_EQ(kchange_err(kq, SIGUSR1, EVFILT_SIGNAL, EV_DELETE, 0, 0), ENOENT);
	close(kq);
	drain(SIGUSR1);
}

static void invalid_signal_numbers_are_einval(void)
{
	int kq = kq_new();
	const uintptr_t bad[] = {0, 65, 128, 1000, (uintptr_t)-1};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK_EQ(kchange_err(kq, bad[i], EVFILT_SIGNAL, EV_ADD, 0, 0), EINVAL);
	/* the valid extremes are accepted */
	CHECK_EQ(kchange_err(kq, 1, EVFILT_SIGNAL, EV_ADD, 0, 0), 0);
	CHECK_EQ(kchange_err(kq, 64, EVFILT_SIGNAL, EV_ADD, 0, 0), 0);
	close(kq);
}

int main(void)
{
	RUN(blocked_signal_is_reported);
	RUN(queued_signals_are_counted);
	RUN(two_signals_are_separate_knotes);
	RUN(disabled_signal_knote_reports_after_enable);
	RUN(deleted_signal_knote_reports_nothing);
	RUN(oneshot_signal_knote_is_removed);
	RUN(invalid_signal_numbers_are_einval);
	return 0;
}
