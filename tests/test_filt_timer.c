/*
 * EVFILT_TIMER: every unit, NOTE_ABSTIME, periodic expiration counts,
 * EV_ONESHOT, re-adding changes the period, and many timers cost no fds
 * (CONTRACT.md "Returned events", USERS.md).
 */
#include "util.h"

#include <sys/time.h>

/* Timer events may carry EV_CLEAR (FreeBSD sets it implicitly). */
#define TFLAGS(e) ((e).flags & ~EV_CLEAR)

static int64_t realtime_in(long unit_per_sec, long ms_ahead)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (int64_t)ms_ahead * 1000000;
	return ns / (1000000000 / unit_per_sec);
}

static void every_unit_fires_after_its_period(void)
{
	int kq = kq_new();
	struct {
		unsigned fflags;
		int64_t data;
		double ms;
	} t[] = {
	        {0, 40, 40},
	        {NOTE_MSECONDS, 60, 60},
	        {NOTE_USECONDS, 80000, 80},
	        {NOTE_NSECONDS, 100000000, 100},
	        {NOTE_SECONDS, 1, 1000},
	};
	enum { N = 5 };
	double t0 = now_ms();
	for (int i = 0; i < N; i++)
		KOK(kq, (uintptr_t)i, EVFILT_TIMER, EV_ADD | EV_ONESHOT, t[i].fflags, t[i].data,
		    UD(i));
	double at[N] = {0};
	int got = 0;
	while (got < N && now_ms() - t0 < 3000) {
		struct kevent ev[N];
		int n = kpoll(kq, ev, N, 100);
		CHECK(n >= 0);
		double now = now_ms();
		for (int k = 0; k < n; k++) {
			CHECK(ev[k].ident < N);
			CHECK_EQ(ev[k].filter, EVFILT_TIMER);
			CHECK(at[ev[k].ident] == 0);
			CHECK_EQ(ev[k].data, 1);
			CHECK_EQ(ev[k].fflags, 0);
			CHECK_EQ(TFLAGS(ev[k]), EV_ONESHOT);
			CHECK(ev[k].udata == UD(ev[k].ident));
			at[ev[k].ident] = now - t0;
			got++;
		}
	}
	CHECK_EQ(got, N);
	for (int i = 0; i < N; i++) {
		if (at[i] < t[i].ms - 1 || at[i] > t[i].ms + 400)
			fprintf(stderr, "timer %d fired after %.1f ms, want %.0f\n", i, at[i],
			        t[i].ms);
		CHECK(at[i] >= t[i].ms - 1);
		CHECK(at[i] <= t[i].ms + 400);
	}
	close(kq);
}

static void timers_fire_in_deadline_order(void)
{
	int kq = kq_new();
	KOK(kq, 3, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 90, NULL);
	KOK(kq, 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 30, NULL);
	KOK(kq, 2, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 60, NULL);
	for (uintptr_t want = 1; want <= 3; want++)
		EXPECT_ONE(kq, want, EVFILT_TIMER, 500);
	close(kq);
}

static void periodic_timer_counts_expirations_since_last_delivery(void)
{
	int kq = kq_new();
	double t0 = now_ms();
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_MSECONDS, 10, NULL);
	usleep(105000);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_TIMER, 0);
	double el = now_ms() - t0;
	long lo = (long)(el / 10) - 3, hi = (long)(el / 10) + 1;
	if (e.data < lo || e.data > hi)
		fprintf(stderr, "data %lld after %.1f ms\n", (long long)e.data, el);
	CHECK(e.data >= lo && e.data <= hi);
	CHECK(e.data >= 5);
	CHECK_EQ(TFLAGS(e), 0);
	/* the count restarts after a delivery */
	double t1 = now_ms();
	usleep(50000);
	e = EXPECT_ONE(kq, 1, EVFILT_TIMER, 0);
	el = now_ms() - t1;
	CHECK(e.data >= 2);
	CHECK(e.data <= (long)(el / 10) + 2);
	/* and keeps going */
	for (int i = 0; i < 3; i++) {
		e = EXPECT_ONE(kq, 1, EVFILT_TIMER, 100);
		CHECK(e.data >= 1);
	}
	close(kq);
}

static void zero_period_counts_as_one_unit(void)
{
	int kq = kq_new();
	double t0 = now_ms();
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_MSECONDS, 0, NULL);
	usleep(30000);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_TIMER, 0);
	double el = now_ms() - t0; /* a loaded machine oversleeps */
	CHECK(e.data >= 10);
	CHECK(e.data <= (long long)el + 2);
	close(kq);
}

static void oneshot_timer_fires_once_and_is_removed(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 10, NULL);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_TIMER, 200);
	CHECK_EQ(e.data, 1);
	EXPECT_NONE(kq, 50);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0), ENOENT);
	close(kq);
}

/* FreeBSD: an absolute timer fires once and then stays active (no
 * EV_CLEAR): every call returns it, data 1, until it is deleted. */
static void abstime_fires_at_the_given_time_and_stays_active(void)
{
	int kq = kq_new();
	double t0 = now_ms();
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_ABSTIME | NOTE_MSECONDS, realtime_in(1000, 60), NULL);
	KOK(kq, 2, EVFILT_TIMER, EV_ADD, NOTE_ABSTIME | NOTE_USECONDS, realtime_in(1000000, 80),
	    NULL);
	KOK(kq, 3, EVFILT_TIMER, EV_ADD, NOTE_ABSTIME | NOTE_NSECONDS, realtime_in(1000000000, 100),
	    NULL);
	double at[4] = {0};
	int got = 0;
	while (got < 3 && now_ms() - t0 < 1000) {
		struct kevent ev[4];
		int n = kpoll(kq, ev, 4, 100);
		CHECK(n >= 0);
		for (int k = 0; k < n; k++) {
			CHECK(ev[k].ident >= 1 && ev[k].ident <= 3);
			CHECK_EQ(ev[k].data, 1);
			CHECK_EQ(ev[k].flags & EV_CLEAR, 0);
			if (at[ev[k].ident] == 0) {
				at[ev[k].ident] = now_ms() - t0;
				got++;
			}
		}
	}
	CHECK_EQ(got, 3);
	for (int id = 1; id <= 3; id++)
		CHECK(at[id] >= 40.0 + 20.0 * id - 2);
	/* all three stay active */
	struct kevent ev[4];
	CHECK_EQ(kpoll(kq, ev, 4, 0), 3);
	for (uintptr_t id = 1; id <= 3; id++)
		KOK(kq, id, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	EXPECT_NONE(kq, 50);
	close(kq);
}

static void abstime_in_the_past_fires_at_once(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_ABSTIME | NOTE_SECONDS, 1, NULL);
	KOK(kq, 2, EVFILT_TIMER, EV_ADD, NOTE_ABSTIME, realtime_in(1000, -5000), NULL);
	struct kevent ev[4];
	double t0 = now_ms();
	int n = 0;
	while (n < 2 && now_ms() - t0 < 200) {
		int k = kpoll(kq, ev + n, 4 - n, 20);
		CHECK(k >= 0);
		n += k;
	}
	CHECK_EQ(n, 2);
	for (int i = 0; i < 2; i++)
		CHECK_EQ(ev[i].data, 1);
	KOK(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	EXPECT_ONE(kq, 2, EVFILT_TIMER, 0); /* still active */
	KOK(kq, 2, EVFILT_TIMER, EV_DISABLE, 0, 0, NULL);
	EXPECT_NONE(kq, 30);
	close(kq);
}

/*
 * "At once" means the very next call, a poll included: the timer's time has
 * passed when it is added, so nothing (a timerfd expiry still in the
 * kernel's softirq) stands between the add and the event.
 */
static void abstime_in_the_past_is_ready_for_the_next_poll(void)
{
	int kq = kq_new();
	struct timespec zero = {0, 0};
	int missed = 0;
	for (int i = 0; i < 3000; i++) {
		struct kevent ch, ev;
		EV_SET(&ch, 7, EVFILT_TIMER, EV_ADD, NOTE_ABSTIME | NOTE_MSECONDS, 36813, NULL);
		CHECK_EQ(kevent(kq, &ch, 1, NULL, 0, NULL), 0);
		int n = kevent(kq, NULL, 0, &ev, 1, &zero);
		CHECK(n >= 0);
		missed += n == 0;
		KOK(kq, 7, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	}
	CHECK_EQ(missed, 0);
	close(kq);
}

static void readd_changes_the_period(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_SECONDS, 5, NULL);
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_MSECONDS, 20, NULL);
	double t0 = now_ms();
	EXPECT_ONE(kq, 1, EVFILT_TIMER, 300);
	CHECK(now_ms() - t0 < 300);
	/* and the units */
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_USECONDS, 30000, NULL);
	t0 = now_ms();
	EXPECT_ONE(kq, 1, EVFILT_TIMER, 300);
	double el = now_ms() - t0;
	CHECK(el >= 28);
	/* a longer period takes effect too */
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, 0, 400, NULL);
	EXPECT_NONE(kq, 150);
	close(kq);
}

static void readd_restarts_the_timer_and_drops_pending_expirations(void)
{
	int kq = kq_new();
	double t0 = now_ms();
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, 0, 100, NULL);
	usleep(60000);
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, 0, 100, NULL);
	EXPECT_ONE(kq, 1, EVFILT_TIMER, 500);
	CHECK(now_ms() - t0 >= 155);

	KOK(kq, 2, EVFILT_TIMER, EV_ADD, 0, 5, NULL);
	usleep(40000); /* several expirations pending */
	KOK(kq, 2, EVFILT_TIMER, EV_ADD, 0, 300, NULL);
	KOK(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	EXPECT_NONE(kq, 100);
	close(kq);
}

static void delete_stops_a_timer(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, 0, 10, NULL);
	EXPECT_ONE(kq, 1, EVFILT_TIMER, 200);
	KOK(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	EXPECT_NONE(kq, 50);
	/* also when expirations are pending */
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, 0, 5, NULL);
	usleep(30000);
	KOK(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	EXPECT_NONE(kq, 30);
	close(kq);
}

static void dispatch_timer_is_quiet_until_enabled(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_TIMER, EV_ADD | EV_DISPATCH, 0, 10, NULL);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_TIMER, 200);
	CHECK_EQ(TFLAGS(e), EV_DISPATCH);
	EXPECT_NONE(kq, 50);
	KOK(kq, 1, EVFILT_TIMER, EV_ENABLE, 0, 10, NULL);
	EXPECT_ONE(kq, 1, EVFILT_TIMER, 200);
	close(kq);
}

static void many_timers_use_no_extra_fds(void)
{
	int kq = kq_new();
	KOK(kq, 100000, EVFILT_TIMER, EV_ADD, 0, 100000, NULL);
	int before = count_fds();
	enum { N = 1000 };
	for (int i = 0; i < N; i++)
		KOK(kq, (uintptr_t)i, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 5 + i % 20, NULL);
	CHECK_EQ(count_fds(), before);
	static char seen[N];
	int got = 0;
	double t0 = now_ms();
	while (got < N && now_ms() - t0 < 3000) {
		struct kevent ev[256];
		int n = kpoll(kq, ev, 256, 50);
		CHECK(n >= 0);
		for (int k = 0; k < n; k++) {
			CHECK(ev[k].ident < N);
			CHECK(!seen[ev[k].ident]);
			CHECK_EQ(ev[k].data, 1);
			seen[ev[k].ident] = 1;
		}
		got += n;
	}
	CHECK_EQ(got, N);
	CHECK_EQ(count_fds(), before);
	close(kq);
}

int main(void)
{
	RUN(every_unit_fires_after_its_period);
	RUN(timers_fire_in_deadline_order);
	RUN(periodic_timer_counts_expirations_since_last_delivery);
	RUN(zero_period_counts_as_one_unit);
	RUN(oneshot_timer_fires_once_and_is_removed);
	RUN(abstime_fires_at_the_given_time_and_stays_active);
	RUN(abstime_in_the_past_fires_at_once);
	RUN(abstime_in_the_past_is_ready_for_the_next_poll);
	RUN(readd_changes_the_period);
	RUN(readd_restarts_the_timer_and_drops_pending_expirations);
	RUN(delete_stops_a_timer);
	RUN(dispatch_timer_is_quiet_until_enabled);
	RUN(many_timers_use_no_extra_fds);
	return 0;
}
