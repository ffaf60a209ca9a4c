/*
 * kevent()'s argument checking and per-change error reporting
 * (CONTRACT.md "Changes" and "Waiting").
 */
#include "util.h"

#include <signal.h>
#include <sys/time.h>

static void kevent_on_a_non_kqueue_fd_is_einval_a_closed_one_ebadf(void)
{
	struct kevent ev;
	struct timespec zero = {0, 0};
	errno = 0;
	CHECK_EQ(kevent(-1, NULL, 0, &ev, 1, &zero), -1);
	CHECK_EQ(errno, EBADF);

	int p[2];
	CHECK(pipe(p) == 0);
	errno = 0;
	CHECK_EQ(kevent(p[0], NULL, 0, &ev, 1, &zero), -1);
	CHECK_EQ(errno, EINVAL); /* open, but not a kqueue */
	close(p[0]);
	close(p[1]);

	/* p[0] is closed now */
	errno = 0;
	CHECK_EQ(kevent(p[0], NULL, 0, &ev, 1, &zero), -1);
	CHECK_EQ(errno, EBADF);
}

static void kevent_on_a_closed_kqueue_is_ebadf(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	CHECK_EQ(close(kq), 0);
	struct kevent ev;
	struct timespec zero = {0, 0};
	errno = 0;
	CHECK_EQ(kevent(kq, NULL, 0, &ev, 1, &zero), -1);
	CHECK_EQ(errno, EBADF);
}

static void negative_counts_are_einval(void)
{
	int kq = kq_new();
	struct kevent ch, ev;
	struct timespec zero = {0, 0};
	EV_SET(&ch, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
	errno = 0;
	CHECK_EQ(kevent(kq, &ch, -1, &ev, 1, &zero), -1);
	CHECK_EQ(errno, EINVAL);
	errno = 0;
	CHECK_EQ(kevent(kq, &ch, 1, &ev, -1, &zero), -1);
	CHECK_EQ(errno, EINVAL);
	close(kq);
}

static void null_lists_with_counts_are_efault(void)
{
	int kq = kq_new();
	struct kevent ev;
	struct timespec zero = {0, 0};
	errno = 0;
	CHECK_EQ(kevent(kq, NULL, 1, &ev, 1, &zero), -1);
	CHECK_EQ(errno, EFAULT);
	errno = 0;
	CHECK_EQ(kevent(kq, NULL, 0, NULL, 1, &zero), -1);
	CHECK_EQ(errno, EFAULT);
	/* NULL with count 0 is fine */
	CHECK_EQ(kevent(kq, NULL, 0, NULL, 0, &zero), 0);
	close(kq);
}

static void failed_change_is_reported_with_its_fields_copied(void)
{
	int kq = kq_new();
	struct kevent ch, ev;
	struct timespec zero = {0, 0};
	EV_SET(&ch, 77, EVFILT_USER, EV_DELETE, 0x123, 99, UD(0xabcd));
	ch.ext[0] = 11;
	ch.ext[1] = 0; /* ext[1] is the serial group id: keep it 0 */
	ch.ext[2] = 33;
	ch.ext[3] = 44;
	memset(&ev, 0x5a, sizeof ev);
	CHECK_EQ(kevent(kq, &ch, 1, &ev, 1, &zero), 1);
	CHECK_EQ(ev.ident, 77);
	CHECK_EQ(ev.filter, EVFILT_USER);
	CHECK_EQ(ev.flags, EV_ERROR);
	CHECK_EQ(ev.data, ENOENT);
	CHECK_EQ(ev.fflags, 0x123);
	CHECK(ev.udata == UD(0xabcd));
	CHECK_EQ(ev.ext[0], 11);
	CHECK_EQ(ev.ext[2], 33);
	CHECK_EQ(ev.ext[3], 44);
	close(kq);
}

static void each_failing_change_gets_its_own_error_event_in_order(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	int closed = p[1];
	close(p[1]);
	struct kevent ch[4], ev[8];
	struct timespec zero = {0, 0};
	EV_SET(&ch[0], 5, EVFILT_USER, EV_ENABLE, 0, 0, UD(1));     /* ENOENT */
	EV_SET(&ch[1], 6, EVFILT_USER, EV_ADD, 0, 0, UD(2));        /* ok */
	EV_SET(&ch[2], closed, EVFILT_READ, EV_ADD, 0, 0, UD(3));   /* EBADF */
	EV_SET(&ch[3], 1, EVFILT_TIMER, EV_ADD, 0, -5, UD(4));      /* EINVAL */
	CHECK_EQ(kevent(kq, ch, 4, ev, 8, &zero), 3);
	CHECK_EQ(ev[0].ident, 5);
	CHECK_EQ(ev[0].data, ENOENT);
	CHECK(ev[0].udata == UD(1));
	CHECK_EQ(ev[1].ident, closed);
	CHECK_EQ(ev[1].filter, EVFILT_READ);
	CHECK_EQ(ev[1].data, EBADF);
	CHECK(ev[1].udata == UD(3));
	CHECK_EQ(ev[2].filter, EVFILT_TIMER);
	CHECK_EQ(ev[2].data, EINVAL);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(ev[i].flags, EV_ERROR);
	/* the good change in the middle was applied */
	KOK(kq, 6, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(2));
	struct kevent e = EXPECT_ONE(kq, 6, EVFILT_USER, 0);
	CHECK(e.udata == UD(2));
	close(p[0]);
	close(kq);
}

static void error_without_room_returns_minus_one_and_stops(void)
{
	int kq = kq_new();
	struct kevent ch[3];
	EV_SET(&ch[0], 1, EVFILT_USER, EV_ADD, 0, 0, NULL);    /* applied */
	EV_SET(&ch[1], 2, EVFILT_USER, EV_DELETE, 0, 0, NULL); /* ENOENT */
	EV_SET(&ch[2], 3, EVFILT_USER, EV_ADD, 0, 0, NULL);    /* not applied */
	errno = 0;
	CHECK_EQ(kevent(kq, ch, 3, NULL, 0, NULL), -1);
	CHECK_EQ(errno, ENOENT);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_DELETE, 0, 0), 0);
	CHECK_EQ(kchange_err(kq, 3, EVFILT_USER, EV_DELETE, 0, 0), ENOENT);
	close(kq);
}

static void error_after_the_eventlist_is_full_returns_minus_one(void)
{
	int kq = kq_new();
	struct kevent ch[3], ev[1];
	struct timespec zero = {0, 0};
	int p[2];
	CHECK(pipe(p) == 0);
	int closed = p[0];
	close(p[0]);
	EV_SET(&ch[0], 1, EVFILT_USER, EV_DELETE, 0, 0, NULL);     /* ENOENT, fills */
	EV_SET(&ch[1], closed, EVFILT_READ, EV_ADD, 0, 0, NULL);   /* EBADF, no room */
	EV_SET(&ch[2], 3, EVFILT_USER, EV_ADD, 0, 0, NULL);        /* not applied */
	errno = 0;
	memset(ev, 0, sizeof ev);
	CHECK_EQ(kevent(kq, ch, 3, ev, 1, &zero), -1);
	CHECK_EQ(errno, EBADF);
	CHECK_EQ(kchange_err(kq, 3, EVFILT_USER, EV_DELETE, 0, 0), ENOENT);
	close(p[1]);
	close(kq);
}

static void errors_are_returned_without_collecting_or_waiting(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	struct kevent ch, ev[4];
	EV_SET(&ch, 2, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	struct timespec longwait = {5, 0};
	double t0 = now_ms();
	CHECK_EQ(kevent(kq, &ch, 1, ev, 4, &longwait), 1);
	CHECK(now_ms() - t0 < 1000);
	CHECK_EQ(ev[0].ident, 2);
	CHECK_EQ(ev[0].flags, EV_ERROR);
	/* the pending event was not consumed */
	EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	/* and with nothing pending, a NULL timeout does not block either */
	KOK(kq, 1, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	t0 = now_ms();
	CHECK_EQ(kevent(kq, &ch, 1, ev, 4, NULL), 1);
	CHECK(now_ms() - t0 < 1000);
	close(kq);
}

static void receipt_reports_every_change(void)
{
	int kq = kq_new();
	struct kevent ch[3], ev[4];
	struct timespec longwait = {5, 0};
	KOK(kq, 9, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL); /* pending */
	EV_SET(&ch[0], 1, EVFILT_USER, EV_ADD | EV_RECEIPT, 0, 0, UD(1));
	EV_SET(&ch[1], 2, EVFILT_USER, EV_DELETE | EV_RECEIPT, 0, 0, UD(2));
	EV_SET(&ch[2], 3, EVFILT_USER, EV_ADD | EV_RECEIPT, 0, 0, UD(3));
	double t0 = now_ms();
	CHECK_EQ(kevent(kq, ch, 3, ev, 4, &longwait), 3);
	CHECK(now_ms() - t0 < 1000);
	CHECK_EQ(ev[0].ident, 1);
	CHECK_EQ(ev[0].flags, EV_ERROR);
	CHECK_EQ(ev[0].data, 0);
	CHECK(ev[0].udata == UD(1));
	CHECK_EQ(ev[1].ident, 2);
	CHECK_EQ(ev[1].flags, EV_ERROR);
	CHECK_EQ(ev[1].data, ENOENT);
	CHECK_EQ(ev[2].ident, 3);
	CHECK_EQ(ev[2].flags, EV_ERROR);
	CHECK_EQ(ev[2].data, 0);
	/* both adds took effect; the pending user event is still pending */
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_DISABLE, 0, 0), 0);
	CHECK_EQ(kchange_err(kq, 3, EVFILT_USER, EV_DISABLE, 0, 0), 0);
	EXPECT_ONE(kq, 9, EVFILT_USER, 0);
	close(kq);
}

static void unknown_flag_bit_is_einval(void)
{
	int kq = kq_new();
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_ADD | 0x0800, 0, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_DELETE, 0, 0), ENOENT);
	close(kq);
}

static void contradictory_actions_are_einval(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_ENABLE | EV_DISABLE, 0, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_DELETE | EV_ADD, 0, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_DELETE | EV_ENABLE, 0, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_DELETE | EV_DISABLE, 0, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, 2, EVFILT_USER, EV_ADD | EV_ENABLE | EV_DISABLE, 0, 0), EINVAL);
	/* none of them touched the knote: still there, enabled, triggered */
	EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(kchange_err(kq, 2, EVFILT_USER, EV_DELETE, 0, 0), ENOENT);
	close(kq);
}

static void system_flags_in_a_change_are_stripped(void)
{
	int kq = kq_new();
	/* EV_EOF | EV_ERROR | EV_DROP | EV_FLAG1 on input are ignored */
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER,
			     EV_ADD | EV_CLEAR | EV_EOF | EV_ERROR | EV_DROP | EV_FLAG1,
			     NOTE_TRIGGER, 0), 0);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.flags, EV_CLEAR);
	close(kq);

	/* a returned event (here with EV_EOF) can be passed back as a change */
	kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	close(p[1]);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(7));
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	CHECK(e.flags & EV_EOF);
	e.flags |= EV_DISABLE | EV_ERROR;
	struct timespec zero = {0, 0};
	struct kevent out;
	CHECK_EQ(kevent(kq, &e, 1, &out, 1, &zero), 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ENABLE, 0, 0, UD(7));
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	CHECK(e.udata == UD(7));
	close(p[0]);
	close(kq);
}

static void filter_zero_is_skipped(void)
{
	int kq = kq_new();
	struct kevent ch[3], ev[3];
	struct timespec zero = {0, 0};
	EV_SET(&ch[0], 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	EV_SET(&ch[1], 12345, 0, EV_ADD | 0x0800, 0xffffffff, -1, NULL);
	EV_SET(&ch[2], 2, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	CHECK_EQ(kevent(kq, ch, 3, NULL, 0, NULL), 0);
	CHECK_EQ(kevent(kq, NULL, 0, ev, 3, &zero), 2);
	CHECK(find_ev(ev, 2, 1, EVFILT_USER) >= 0);
	CHECK(find_ev(ev, 2, 2, EVFILT_USER) >= 0);
	close(kq);
}

static void unknown_and_unsupported_filters_are_einval(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	const short bad[] = {-14, -100, 1, 5, EVFILT_AIO, EVFILT_PROCDESC,
			     EVFILT_FS, EVFILT_LIO, EVFILT_SENDFILE};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int e = kchange_err(kq, (uintptr_t)p[0], bad[i], EV_ADD, 0, 0);
		if (e != EINVAL)
			fprintf(stderr, "filter %d gave %d\n", bad[i], e);
		CHECK_EQ(e, EINVAL);
	}
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void fd_filter_on_a_closed_fd_is_ebadf_for_every_action(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	int fd = p[0];
	close(p[0]);
	close(p[1]);
	const unsigned short acts[] = {EV_ADD, EV_DELETE, EV_ENABLE, EV_DISABLE,
				       EV_FORCEONESHOT, 0};
	for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
		CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, acts[i], 0, 0), EBADF);
		CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_WRITE, acts[i], 0, 0), EBADF);
	}
	/* an ident far beyond any fd */
	CHECK_EQ(kchange_err(kq, (uintptr_t)1 << 40, EVFILT_READ, EV_ADD, 0, 0), EBADF);
	CHECK_EQ(kchange_err(kq, (uintptr_t)-1, EVFILT_WRITE, EV_ADD, 0, 0), EBADF);
	close(kq);
}

static void changes_to_missing_knotes_are_enoent(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	const unsigned short acts[] = {EV_DELETE, EV_ENABLE, EV_DISABLE,
				       EV_FORCEONESHOT, 0};
	for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
		CHECK_EQ(kchange_err(kq, 42, EVFILT_USER, acts[i], 0, 0), ENOENT);
		CHECK_EQ(kchange_err(kq, 42, EVFILT_TIMER, acts[i], 0, 0), ENOENT);
		CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_READ, acts[i], 0, 0), ENOENT);
		CHECK_EQ(kchange_err(kq, (uintptr_t)p[1], EVFILT_WRITE, acts[i], 0, 0), ENOENT);
	}
	/* a trigger (no action flag) of a missing user event */
	CHECK_EQ(kchange_err(kq, 42, EVFILT_USER, 0, NOTE_TRIGGER, 0), ENOENT);
	/* READ exists but WRITE does not: keyed by (ident, filter) */
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_WRITE, EV_DELETE, 0, 0), ENOENT);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0), 0);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void invalid_filter_arguments_are_einval(void)
{
	int kq = kq_new();
	CHECK_EQ(kchange_err(kq, 1, EVFILT_TIMER, EV_ADD, 0, -1), EINVAL);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_SECONDS | NOTE_MSECONDS, 10), EINVAL);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_USECONDS | NOTE_NSECONDS, 10), EINVAL);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0), ENOENT);
	CHECK_EQ(kchange_err(kq, 0, EVFILT_SIGNAL, EV_ADD, 0, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, 65, EVFILT_SIGNAL, EV_ADD, 0, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, 100000, EVFILT_SIGNAL, EV_ADD, 0, 0), EINVAL);
	close(kq);
}

static void invalid_timeouts_are_einval(void)
{
	int kq = kq_new();
	struct kevent ev;
	struct timespec bad[] = {{-1, 0}, {0, -1}, {0, 1000000000L}, {1, 2000000000L}};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		errno = 0;
		double t0 = now_ms();
		CHECK_EQ(kevent(kq, NULL, 0, &ev, 1, &bad[i]), -1);
		CHECK_EQ(errno, EINVAL);
		CHECK(now_ms() - t0 < 500);
	}
	/* the largest valid nanoseconds value is accepted */
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	struct timespec ok = {0, 999999999L};
	CHECK_EQ(kevent(kq, NULL, 0, &ev, 1, &ok), 1);
	close(kq);
}

static void zero_nevents_applies_changes_and_does_not_wait(void)
{
	int kq = kq_new();
	struct kevent ch;
	EV_SET(&ch, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	double t0 = now_ms();
	CHECK_EQ(kevent(kq, &ch, 1, NULL, 0, NULL), 0);
	CHECK_EQ(kevent(kq, NULL, 0, NULL, 0, NULL), 0);
	struct kevent ev;
	CHECK_EQ(kevent(kq, NULL, 0, &ev, 0, NULL), 0);
	CHECK(now_ms() - t0 < 1000);
	/* the change was applied and its event is still pending */
	EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	close(kq);
}

static void zero_timeout_polls_and_a_timeout_waits(void)
{
	int kq = kq_new();
	struct kevent ev;
	double t0 = now_ms();
	CHECK_EQ(kpoll(kq, &ev, 1, 0), 0);
	CHECK(now_ms() - t0 < 50);
	t0 = now_ms();
	CHECK_EQ(kpoll(kq, &ev, 1, 60), 0);
	double dt = now_ms() - t0;
	CHECK(dt >= 55);
	CHECK(dt < 1000);
	close(kq);
}

static void on_alarm(int sig)
{
	(void)sig;
}

/*
 * Whether or not the handler has SA_RESTART (kern_kevent turns ERESTART
 * into EINTR), on a kqueue that waits in epoll_wait and on one that waits
 * on its futex (only user events: src/quiet.c).
 */
static void a_signal_handler_interrupts_a_wait_with_eintr(void)
{
	for (int variant = 0; variant < 4; variant++) {
		int restart = variant & 1, loud = variant >> 1;
		int kq = kq_new();
		int p[2] = {-1, -1};
		if (loud) {
			CHECK(pipe(p) == 0);
			KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		}
		set_action(SIGALRM, on_alarm, restart ? SA_RESTART : 0);
		struct itimerval it = {{0, 0}, {0, 50000}};
		CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
		struct kevent ev;
		struct timespec ts = {3, 0};
		double t0 = now_ms();
		errno = 0;
		int n = kevent(kq, NULL, 0, &ev, 1, &ts);
		int err = errno;
		double dt = now_ms() - t0;
		CHECK_EQ(n, -1);
		CHECK_EQ(err, EINTR);
		CHECK(dt < 2000);
		/* and with timeout NULL */
		CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
		errno = 0;
		n = kevent(kq, NULL, 0, &ev, 1, NULL);
		CHECK_EQ(n, -1);
		CHECK_EQ(errno, EINTR);
		signal(SIGALRM, SIG_DFL);
		if (loud) {
			close(p[0]);
			close(p[1]);
		}
		close(kq);
	}
}

int main(void)
{
	RUN(kevent_on_a_non_kqueue_fd_is_einval_a_closed_one_ebadf);
	RUN(kevent_on_a_closed_kqueue_is_ebadf);
	RUN(negative_counts_are_einval);
	RUN(null_lists_with_counts_are_efault);
	RUN(failed_change_is_reported_with_its_fields_copied);
	RUN(each_failing_change_gets_its_own_error_event_in_order);
	RUN(error_without_room_returns_minus_one_and_stops);
	RUN(error_after_the_eventlist_is_full_returns_minus_one);
	RUN(errors_are_returned_without_collecting_or_waiting);
	RUN(receipt_reports_every_change);
	RUN(unknown_flag_bit_is_einval);
	RUN(contradictory_actions_are_einval);
	RUN(system_flags_in_a_change_are_stripped);
	RUN(filter_zero_is_skipped);
	RUN(unknown_and_unsupported_filters_are_einval);
	RUN(fd_filter_on_a_closed_fd_is_ebadf_for_every_action);
	RUN(changes_to_missing_knotes_are_enoent);
	RUN(invalid_filter_arguments_are_einval);
	RUN(invalid_timeouts_are_einval);
	RUN(zero_nevents_applies_changes_and_does_not_wait);
	RUN(zero_timeout_polls_and_a_timeout_waits);
	RUN(a_signal_handler_interrupts_a_wait_with_eintr);
	return 0;
}
