/*
 * The action and behaviour flags: EV_ADD/DELETE/ENABLE/DISABLE, EV_ONESHOT,
 * EV_CLEAR, EV_DISPATCH, EV_FORCEONESHOT, EV_KEEPUDATA, EV_RECEIPT and what
 * re-adding an existing knote changes (CONTRACT.md "Changes", "Returned
 * events").
 */
#include "util.h"

static void add_implies_enable(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, UD(5));
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.flags, 0);
	CHECK(e.udata == UD(5));
	close(kq);
}

static void add_with_disable_is_not_reported_until_enabled(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_DISABLE, NOTE_TRIGGER, 0, NULL);
	int p[2];
	CHECK(pipe(p) == 0);
	write_n(p[1], 3);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_DISABLE, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	KOK(kq, 1, EVFILT_USER, EV_ENABLE, 0, 0, NULL);
	EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	KOK(kq, 1, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	CHECK_EQ(e.data, 3);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void disable_hides_a_ready_knote_and_enable_shows_it(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	write_n(p[1], 10);
	EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 20);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_DISABLE, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	write_n(p[1], 10);
	EXPECT_NONE(kq, 20);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	CHECK_EQ(e.data, 20);
	/* enable of an enabled knote and disable of a disabled one are fine */
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_DISABLE, 0, 0, NULL);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_DISABLE, 0, 0, NULL);
	EXPECT_NONE(kq, 0);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void delete_removes_the_knote(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	write_n(p[1], 1);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	KOK(kq, 3, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	KOK(kq, 3, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	CHECK_EQ(kchange_err(kq, 3, EVFILT_USER, EV_DELETE, 0, 0), ENOENT);
	/* a deleted knote can be added again */
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void level_triggered_knote_is_returned_while_ready(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	write_n(p[1], 4);
	for (int i = 0; i < 3; i++) {
		struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 20);
		CHECK_EQ(e.data, 4 - i);
		read_n(p[0], 1);
	}
	read_n(p[0], 1);
	EXPECT_NONE(kq, 20);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void oneshot_is_returned_once_then_removed(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_ONESHOT, 0, 0, UD(1));
	KOK(kq, 9, EVFILT_USER, EV_ADD | EV_ONESHOT, 0, 0, UD(2));
	EXPECT_NONE(kq, 10);
	write_n(p[1], 5);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 50);
	CHECK_EQ(e.flags, EV_ONESHOT);
	CHECK_EQ(e.data, 5);
	CHECK(e.udata == UD(1));
	EXPECT_NONE(kq, 10);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0), ENOENT);

	KOK(kq, 9, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(2));
	e = EXPECT_ONE(kq, 9, EVFILT_USER, 0);
	CHECK_EQ(e.flags, EV_ONESHOT);
	EXPECT_NONE(kq, 0);
	CHECK_EQ(kchange_err(kq, 9, EVFILT_USER, 0, NOTE_TRIGGER, 0), ENOENT);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void clear_reports_each_new_arrival_once(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
	EXPECT_NONE(kq, 10);
	write_n(p[1], 5);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 50);
	CHECK_EQ(e.flags, EV_CLEAR);
	CHECK_EQ(e.data, 5);
	/* still readable, but nothing new arrived */
	EXPECT_NONE(kq, 20);
	write_n(p[1], 2);
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 50);
	CHECK_EQ(e.data, 7);
	EXPECT_NONE(kq, 20);
	/* data that arrived and was read before the wait is not reported */
	write_n(p[1], 1);
	read_n(p[0], 8);
	EXPECT_NONE(kq, 20);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void dispatch_disables_after_delivery(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, NULL);
	write_n(p[1], 5);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 50);
	CHECK_EQ(e.flags, EV_DISPATCH);
	CHECK_EQ(e.data, 5);
	/* still readable, but disabled */
	EXPECT_NONE(kq, 20);
	write_n(p[1], 1);
	EXPECT_NONE(kq, 20);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	CHECK_EQ(e.data, 6);
	EXPECT_NONE(kq, 10);
	/* the knote still exists (disabled) */
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void dispatch_with_clear_reports_arrivals_during_the_hold_once(void)
{
	int kq = kq_new();
	KOK(kq, 4, EVFILT_USER, EV_ADD | EV_DISPATCH | EV_CLEAR, 0, 0, NULL);
	KOK(kq, 4, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, 4, EVFILT_USER, 0);
	CHECK_EQ(e.flags, EV_DISPATCH | EV_CLEAR);
	KOK(kq, 4, EVFILT_USER, EV_ENABLE, 0, 0, NULL);
	EXPECT_NONE(kq, 0); /* cleared: nothing new */
	KOK(kq, 4, EVFILT_USER, EV_DISABLE, 0, 0, NULL);
	KOK(kq, 4, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	KOK(kq, 4, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	EXPECT_NONE(kq, 0);
	KOK(kq, 4, EVFILT_USER, EV_ENABLE, 0, 0, NULL);
	EXPECT_ONE(kq, 4, EVFILT_USER, 0);
	EXPECT_NONE(kq, 0);
	close(kq);
}

static void forceoneshot_returns_a_knote_whose_condition_is_false_once(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(8));
	EXPECT_NONE(kq, 10);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_FORCEONESHOT, 0, 0, UD(8));
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	CHECK(e.flags & EV_ONESHOT);
	CHECK_EQ(e.flags & (EV_ADD | EV_ENABLE | EV_DISABLE | EV_FORCEONESHOT), 0);
	CHECK(e.udata == UD(8));
	EXPECT_NONE(kq, 10);
	/* then it is gone: new data gives nothing, delete gives ENOENT */
	write_n(p[1], 1);
	EXPECT_NONE(kq, 20);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0), ENOENT);

	/* the same on a user event that was never triggered, with EV_ADD */
	KOK(kq, 2, EVFILT_USER, EV_ADD, 0, 0, NULL);
	KOK(kq, 2, EVFILT_USER, EV_ADD | EV_FORCEONESHOT, 0, 0, NULL);
	e = EXPECT_ONE(kq, 2, EVFILT_USER, 0);
	CHECK(e.flags & EV_ONESHOT);
	EXPECT_NONE(kq, 0);
	CHECK_EQ(kchange_err(kq, 2, EVFILT_USER, 0, NOTE_TRIGGER, 0), ENOENT);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void forceoneshot_on_a_disabled_knote_waits_for_enable(void)
{
	int kq = kq_new();
	KOK(kq, 3, EVFILT_USER, EV_ADD | EV_DISABLE, 0, 0, NULL);
	KOK(kq, 3, EVFILT_USER, EV_FORCEONESHOT, 0, 0, NULL);
	EXPECT_NONE(kq, 10);
	/* still there: it can be enabled, and then it is returned once */
	KOK(kq, 3, EVFILT_USER, EV_ENABLE, 0, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, 3, EVFILT_USER, 0);
	CHECK(e.flags & EV_ONESHOT);
	EXPECT_NONE(kq, 0);
	CHECK_EQ(kchange_err(kq, 3, EVFILT_USER, EV_ENABLE, 0, 0), ENOENT);

	/* a dispatch knote disabled by delivery, then forced */
	int p[2];
	CHECK(pipe(p) == 0);
	write_n(p[1], 2);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, NULL);
	EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_FORCEONESHOT, 0, 0, NULL);
	EXPECT_NONE(kq, 10);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	CHECK(e.flags & EV_ONESHOT);
	CHECK_EQ(e.data, 2);
	EXPECT_NONE(kq, 10);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void forceoneshot_on_a_missing_knote_is_enoent(void)
{
	int kq = kq_new();
	CHECK_EQ(kchange_err(kq, 3, EVFILT_USER, EV_FORCEONESHOT, 0, 0), ENOENT);
	CHECK_EQ(kchange_err(kq, 3, EVFILT_TIMER, EV_FORCEONESHOT, 0, 0), ENOENT);
	close(kq);
}

static void keepudata_keeps_the_old_udata(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, 0, 0, UD(100));
	/* FreeBSD: EV_KEEPUDATA cannot go with EV_ADD */
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_ADD | EV_KEEPUDATA, NOTE_TRIGGER, 0), EINVAL);
	EXPECT_NONE(kq, 0);
	KOK(kq, 1, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER, 0, UD(200));
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK(e.udata == UD(100));
	KOK(kq, 1, EVFILT_USER, EV_ADD, 0, 0, UD(300));
	e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK(e.udata == UD(300));
	close(kq);
}

/* FreeBSD's kqueue_register: a re-add takes udata, fflags and data; the
 * knote keeps its EV_CLEAR, EV_ONESHOT, EV_DISPATCH and EV_RECEIPT. */
static void readd_updates_udata_and_data_not_behaviour_flags(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 10, UD(1));
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.data, 10);
	CHECK_EQ(e.flags, 0);
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 20, UD(2));
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 20, UD(2));
	for (int i = 0; i < 2; i++) { /* still level */
		e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
		CHECK_EQ(e.flags, 0);
		CHECK_EQ(e.data, 20);
		CHECK(e.udata == UD(2));
	}
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_ONESHOT, 0, 30, UD(3));
	e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.flags, 0);
	CHECK_EQ(e.data, 30);
	KOK(kq, 1, EVFILT_USER, EV_DELETE, 0, 0, NULL);

	/* fd filter: plain stays plain, udata replaced */
	int p[2];
	CHECK(pipe(p) == 0);
	write_n(p[1], 3);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(4));
	EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(5));
	for (int i = 0; i < 2; i++) {
		e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
		CHECK_EQ(e.flags, 0);
		CHECK(e.udata == UD(5));
	}
	/* re-adding a knote disabled by dispatch enables it, still dispatch */
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(6));
	EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	EXPECT_NONE(kq, 10);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(7));
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	CHECK_EQ(e.flags, EV_DISPATCH);
	CHECK(e.udata == UD(7));
	EXPECT_NONE(kq, 10);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void readd_updates_lowat(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, NOTE_LOWAT, 10, NULL);
	write_n(sv[1], 5);
	EXPECT_NONE(kq, 20);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, NOTE_LOWAT, 4, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 20);
	CHECK_EQ(e.data, 5);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

static void readd_does_not_clear_a_pending_fd_event(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
	write_n(p[1], 3);
	/* wait until the kqueue itself has the event pending */
	struct pollfd pfd = {kq, POLLIN, 0};
	CHECK_EQ(poll(&pfd, 1, 200), 1);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(9));
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 0);
	CHECK_EQ(e.data, 3);
	CHECK(e.udata == UD(9));
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void receipt_sticks_to_the_knote_flags(void)
{
	int kq = kq_new();
	struct kevent ch, ev;
	struct timespec zero = {0, 0};
	EV_SET(&ch, 1, EVFILT_USER, EV_ADD | EV_RECEIPT, NOTE_TRIGGER, 0, NULL);
	CHECK_EQ(kevent(kq, &ch, 1, &ev, 1, &zero), 1);
	CHECK_EQ(ev.flags, EV_ERROR);
	CHECK_EQ(ev.data, 0);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.flags, EV_RECEIPT);
	close(kq);
}

static void returned_flags_omit_action_bits(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_ENABLE | EV_CLEAR | EV_DISPATCH,
	    NOTE_TRIGGER, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.flags, EV_CLEAR | EV_DISPATCH);
	close(kq);
}

static void nevents_one_returns_every_ready_knote_in_turn(void)
{
	int kq = kq_new();
	enum { N = 6 };
	for (int i = 0; i < N; i++)
		KOK(kq, (uintptr_t)(100 + i), EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	int seen[N] = {0};
	for (int round = 0; round < 2 * N; round++) {
		struct kevent e;
		CHECK_EQ(kpoll(kq, &e, 1, 0), 1);
		CHECK(e.ident >= 100 && e.ident < 100 + N);
		seen[e.ident - 100]++;
	}
	for (int i = 0; i < N; i++)
		CHECK_EQ(seen[i], 2);
	close(kq);
}

static void clear_knote_is_not_reported_again_when_its_sibling_changes(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	write_n(sv[1], 5);
	struct kevent ev[4];
	int n = kpoll(kq, ev, 4, 50);
	CHECK_EQ(n, 2);
	/* the arrival was reported; only WRITE is left */
	EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_WRITE, 0);
	/* changing the WRITE knote is no new data for READ */
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_DISABLE, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ENABLE, 0, 0, NULL);
	EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_WRITE, 0);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

static void zero_timeout_poll_returns_a_ready_knote_after_a_delete(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	KOK(kq, 4, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	struct kevent ev[8];
	CHECK_EQ(kpoll(kq, ev, 8, 50), 2);
	KOK(kq, 4, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	/* the socket stays writable: every poll returns it, also with
	 * room for one event only */
	for (int i = 0; i < 6; i++) {
		struct kevent e;
		CHECK_EQ(kpoll(kq, &e, 1, 0), 1);
		CHECK_EQ(e.ident, sv[0]);
		CHECK_EQ(e.filter, EVFILT_WRITE);
	}
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

int main(void)
{
	RUN(add_implies_enable);
	RUN(add_with_disable_is_not_reported_until_enabled);
	RUN(disable_hides_a_ready_knote_and_enable_shows_it);
	RUN(delete_removes_the_knote);
	RUN(level_triggered_knote_is_returned_while_ready);
	RUN(oneshot_is_returned_once_then_removed);
	RUN(clear_reports_each_new_arrival_once);
	RUN(dispatch_disables_after_delivery);
	RUN(dispatch_with_clear_reports_arrivals_during_the_hold_once);
	RUN(forceoneshot_returns_a_knote_whose_condition_is_false_once);
	RUN(forceoneshot_on_a_disabled_knote_waits_for_enable);
	RUN(forceoneshot_on_a_missing_knote_is_enoent);
	RUN(keepudata_keeps_the_old_udata);
	RUN(readd_updates_udata_and_data_not_behaviour_flags);
	RUN(readd_updates_lowat);
	RUN(readd_does_not_clear_a_pending_fd_event);
	RUN(receipt_sticks_to_the_knote_flags);
	RUN(returned_flags_omit_action_bits);
	RUN(nevents_one_returns_every_ready_knote_in_turn);
	RUN(zero_timeout_poll_returns_a_ready_knote_after_a_delete);
	RUN(clear_knote_is_not_reported_again_when_its_sibling_changes);
	return 0;
}
