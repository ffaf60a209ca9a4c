/*
 * EVFILT_USER: NOTE_TRIGGER, the fflags controls NOTE_FFNOP/FFAND/FFOR/
 * FFCOPY, the NOTE_FFLAGSMASK mask, data of the last change, EV_CLEAR
 * (CONTRACT.md "Returned events").
 */
#include "util.h"

static void trigger_activates_any_ident(void)
{
	int kq = kq_new();
	const uintptr_t ids[] = {0, 1, 12345, (uintptr_t)1 << 40, UINTPTR_MAX};
	for (size_t i = 0; i < 5; i++)
		KOK(kq, ids[i], EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(i));
	EXPECT_NONE(kq, 10);
	for (size_t i = 0; i < 5; i++) {
		KOK(kq, ids[i], EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(i));
		struct kevent e = EXPECT_ONE(kq, ids[i], EVFILT_USER, 0);
		CHECK(e.udata == UD(i));
		CHECK_EQ(e.flags, EV_CLEAR);
	}
	EXPECT_NONE(kq, 0);
	close(kq);
}

static void add_with_trigger_is_ready_at_once(void)
{
	int kq = kq_new();
	KOK(kq, 7, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	EXPECT_ONE(kq, 7, EVFILT_USER, 0);
	close(kq);
}

static void without_clear_a_trigger_stays_active(void)
{
	int kq = kq_new();
	KOK(kq, 7, EVFILT_USER, EV_ADD, 0, 0, NULL);
	EXPECT_NONE(kq, 0);
	KOK(kq, 7, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	for (int i = 0; i < 3; i++)
		EXPECT_ONE(kq, 7, EVFILT_USER, 0);
	close(kq);
}

static void clear_resets_the_trigger_after_delivery(void)
{
	int kq = kq_new();
	KOK(kq, 7, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	KOK(kq, 7, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	KOK(kq, 7, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL); /* coalesced */
	EXPECT_ONE(kq, 7, EVFILT_USER, 0);
	EXPECT_NONE(kq, 0);
	KOK(kq, 7, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	EXPECT_ONE(kq, 7, EVFILT_USER, 0);
	EXPECT_NONE(kq, 0);
	close(kq);
}

static void fflags_controls_combine_the_stored_flags(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_FFCOPY | 0x0f0, 0, NULL);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFNOP | 0xf00, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.fflags, 0x0f0); /* FFNOP ignores the given bits */
	KOK(kq, 1, EVFILT_USER, 0, NOTE_FFOR | 0x00f, 0, NULL);
	e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.fflags, 0x0ff);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_FFAND | 0x03c, 0, NULL);
	e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.fflags, 0x03c);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_FFCOPY | 0x500, 0, NULL);
	e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.fflags, 0x500);
	/* the control bits and NOTE_TRIGGER are never stored */
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFCOPY | NOTE_FFLAGSMASK, 0, NULL);
	e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.fflags, NOTE_FFLAGSMASK);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_FFOR | NOTE_TRIGGER, 0, NULL);
	e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.fflags, NOTE_FFLAGSMASK);
	close(kq);
}

static void new_knote_applies_the_control_to_zero(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER | NOTE_FFNOP | 0x11, 0, NULL);
	KOK(kq, 2, EVFILT_USER, EV_ADD, NOTE_TRIGGER | NOTE_FFOR | 0x22, 0, NULL);
	KOK(kq, 3, EVFILT_USER, EV_ADD, NOTE_TRIGGER | NOTE_FFAND | 0x33, 0, NULL);
	KOK(kq, 4, EVFILT_USER, EV_ADD, NOTE_TRIGGER | NOTE_FFCOPY | 0x44, 0, NULL);
	struct kevent ev[8];
	CHECK_EQ(kpoll(kq, ev, 8, 0), 4);
	const unsigned want[5] = {0, 0x11, 0x22, 0, 0x44};
	for (int i = 0; i < 4; i++)
		CHECK_EQ(ev[i].fflags, want[ev[i].ident]);
	close(kq);
}

static void fflags_bits_outside_the_known_ones_are_einval(void)
{
	int kq = kq_new();
	for (unsigned bit = 0x02000000; bit <= 0x20000000; bit <<= 1) {
		CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_ADD, bit, 0), EINVAL);
		CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_DELETE, 0, 0), ENOENT);
	}
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, NOTE_FFCOPY | 0x5, 0, NULL);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER | 0x08000000, 0), EINVAL);
	/* the failed trigger neither triggered nor changed the flags */
	EXPECT_NONE(kq, 0);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.fflags, 0x5);
	close(kq);
}

static void stored_flags_survive_a_clear_delivery(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFOR | 0x1, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.fflags, 0x1);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFOR | 0x2, 0, NULL);
	e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.fflags, 0x3);
	close(kq);
}

static void data_is_that_of_the_last_change(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, 0, 5, NULL);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 42, NULL);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.data, 42);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, -7, NULL);
	e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.data, -7);
	KOK(kq, 1, EVFILT_USER, EV_ADD, 0, INT64_MAX, NULL);
	e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK_EQ(e.data, INT64_MAX);
	close(kq);
}

static void trigger_while_disabled_is_returned_on_enable(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR | EV_DISABLE, 0, 0, NULL);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	EXPECT_NONE(kq, 0);
	KOK(kq, 1, EVFILT_USER, EV_ENABLE, 0, 0, NULL);
	EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	EXPECT_NONE(kq, 0);
	close(kq);
}

static void trigger_in_the_changelist_is_seen_by_the_same_call(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	struct kevent ch, ev;
	EV_SET(&ch, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	struct timespec ts = {2, 0};
	double t0 = now_ms();
	CHECK_EQ(kevent(kq, &ch, 1, &ev, 1, &ts), 1);
	CHECK(now_ms() - t0 < 500);
	CHECK_EQ(ev.ident, 1);
	close(kq);
}

static void user_events_and_other_filters_share_idents_independently(void)
{
	int kq = kq_new();
	KOK(kq, 3, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, UD(1));
	KOK(kq, 3, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 1, UD(2));
	struct kevent ev[4];
	double end = now_ms() + 500;
	int n = 0;
	while (n < 2 && now_ms() < end)
		n = kpoll(kq, ev, 4, 20);
	CHECK_EQ(n, 2);
	int u = find_ev(ev, n, 3, EVFILT_USER), t = find_ev(ev, n, 3, EVFILT_TIMER);
	CHECK(u >= 0 && t >= 0);
	CHECK(ev[u].udata == UD(1));
	CHECK(ev[t].udata == UD(2));
	close(kq);
}

static void many_user_events_use_no_extra_fds(void)
{
	int kq = kq_new();
	KOK(kq, 0, EVFILT_USER, EV_ADD, 0, 0, NULL);
	int before = count_fds();
	for (int i = 1; i <= 2000; i++)
		KOK(kq, (uintptr_t)i, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	CHECK_EQ(count_fds(), before);
	for (int i = 1; i <= 2000; i++)
		KOK(kq, (uintptr_t)i, EVFILT_USER, 0, NOTE_TRIGGER, i, NULL);
	CHECK_EQ(count_fds(), before);
	static struct kevent ev[2048];
	int got = 0;
	for (int tries = 0; tries < 10 && got < 2000; tries++) {
		int n = kpoll(kq, ev, 2048, 10);
		CHECK(n >= 0);
		for (int i = 0; i < n; i++)
			CHECK_EQ(ev[i].data, (int64_t)ev[i].ident);
		got += n;
	}
	CHECK_EQ(got, 2000);
	close(kq);
}

int main(void)
{
	RUN(trigger_activates_any_ident);
	RUN(add_with_trigger_is_ready_at_once);
	RUN(without_clear_a_trigger_stays_active);
	RUN(clear_resets_the_trigger_after_delivery);
	RUN(fflags_controls_combine_the_stored_flags);
	RUN(new_knote_applies_the_control_to_zero);
	RUN(fflags_bits_outside_the_known_ones_are_einval);
	RUN(stored_flags_survive_a_clear_delivery);
	RUN(data_is_that_of_the_last_change);
	RUN(trigger_while_disabled_is_returned_on_enable);
	RUN(trigger_in_the_changelist_is_seen_by_the_same_call);
	RUN(user_events_and_other_filters_share_idents_independently);
	RUN(many_user_events_use_no_extra_fds);
	return 0;
}
