/*
 * EVFILT_TIMER with many timers at once, as kqueue(2) promises them one by
 * one: a timer fires no sooner than its period after the EV_ADD that
 * (re)started it, a one-shot timer fires once and is gone (EV_DELETE then
 * says ENOENT), a deleted timer never fires, re-adding a timer starts it
 * again with the new period, and a periodic timer's data counts the periods
 * that elapsed since it was last returned.  Thousands of timers with
 * random periods, deletes and re-adds in random order move entries to
 * every position of the timer queue, up and down.
 */
#include "util.h"

enum { N = 20000, NPER = 64, PER_MS = 7 };

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static double due[N];          /* earliest allowed firing, ms; 0: deleted */
static double due_hi[N];       /* its deadline is no later than this */
static unsigned char fired[N]; /* times returned */
static int64_t per_sum[NPER];  /* periodic: expirations returned */
static int order[N];           /* the live one-shots by due time */
static int nlive, next_live;   /* order[next_live] is the earliest unfired */

static int by_due(const void *a, const void *b)
{
	double x = due_hi[*(const int *)a], y = due_hi[*(const int *)b];
	return x < y ? -1 : x > y;
}

/*
 * Timers come in deadline order: once a batch is taken, no timer still
 * waiting may have been due before one that was returned.  A deadline is
 * known to lie between the clock read before its EV_ADD and the one after.
 */
static void check_order(const struct kevent *ev, int n)
{
	while (next_live < nlive && fired[order[next_live]])
		next_live++;
	if (next_live == nlive)
		return;
	double first_waiting = due_hi[order[next_live]];
	for (int k = 0; k < n; k++) {
		if (ev[k].ident >= N)
			continue;
		if (due[ev[k].ident] > first_waiting)
			fprintf(stderr, "timer %d (due %.1f) came before timer %d (due %.1f)\n",
			        (int)ev[k].ident, due[ev[k].ident], order[next_live],
			        first_waiting);
		CHECK(due[ev[k].ident] <= first_waiting);
	}
}

/* Adds timer i (one-shot, µs) due in 1..300 ms; notes when it may fire. */
static void add_oneshot(int kq, int i)
{
	int64_t us = 1000 + rnd(299000);
	double before = now_ms();
	KOK(kq, (uintptr_t)i, EVFILT_TIMER, EV_ADD | EV_ONESHOT, NOTE_USECONDS, us, UD(i));
	due[i] = before + (double)us / 1000.0;
	due_hi[i] = now_ms() + (double)us / 1000.0;
}

static void take(const struct kevent *e, double at)
{
	CHECK_EQ(e->filter, EVFILT_TIMER);
	CHECK(!(e->flags & EV_ERROR));
	if (e->ident >= N) {
		CHECK(e->ident < N + NPER);
		CHECK(e->data >= 1);
		per_sum[e->ident - N] += e->data;
		return;
	}
	int i = (int)e->ident;
	CHECK_EQ((uintptr_t)e->udata, i);
	CHECK_EQ(e->data, 1);
	if (due[i] == 0) /* deleted: must never fire */
		fprintf(stderr, "deleted timer %d fired\n", i);
	CHECK(due[i] != 0);
	if (at < due[i])
		fprintf(stderr, "timer %d fired %.3f ms early\n", i, due[i] - at);
	CHECK(at >= due[i]);
	CHECK_EQ(fired[i], 0);
	fired[i]++;
}

static void many_timers_fire_once_never_early_never_after_delete(void)
{
	int kq = kq_new();
	double t0 = now_ms();
	for (int j = 0; j < NPER; j++)
		KOK(kq, (uintptr_t)(N + j), EVFILT_TIMER, EV_ADD, NOTE_MSECONDS, PER_MS, NULL);
	for (int i = 0; i < N; i++)
		add_oneshot(kq, i);
	/* Delete a third, re-add a fifth of the rest, in random order. */
	int expect = N;
	for (int k = 0; k < N; k++) {
		int i = (int)rnd(N);
		if (due[i] == 0)
			continue;
		if (rnd(3) == 0) {
			/* may have fired already: then it is gone (ENOENT) */
			int err = kchange_err(kq, (uintptr_t)i, EVFILT_TIMER, EV_DELETE, 0, 0);
			if (err == ENOENT)
				continue;
			CHECK_EQ(err, 0);
			due[i] = 0;
			expect--;
		} else if (rnd(4) == 0 && now_ms() < due[i] - 5) {
			add_oneshot(kq, i); /* not fired yet: starts again */
		}
	}
	for (int i = 0; i < N; i++)
		if (due[i] != 0)
			order[nlive++] = i;
	qsort(order, (size_t)nlive, sizeof(order[0]), by_due);
	int got = 0;
	struct kevent ev[512];
	while (got < expect && now_ms() - t0 < 10000) {
		int n = kpoll(kq, ev, 512, 100);
		CHECK(n >= 0);
		double at = now_ms();
		for (int k = 0; k < n; k++) {
			take(&ev[k], at);
			got += ev[k].ident < N;
		}
		check_order(ev, n);
	}
	CHECK_EQ(got, expect);
	/* Nothing more from the one-shots, deleted or fired. */
	double end = now_ms() + 50;
	while (now_ms() < end) {
		int n = kpoll(kq, ev, 512, 10);
		CHECK(n >= 0);
		for (int k = 0; k < n; k++)
			CHECK(ev[k].ident >= N);
		for (int k = 0; k < n; k++)
			take(&ev[k], now_ms());
	}
	for (int i = 0; i < N; i++) {
		CHECK_EQ(fired[i], due[i] != 0);
		if (i % 97 == 0) /* a fired one-shot is removed */
			CHECK_EQ(kchange_err(kq, (uintptr_t)i, EVFILT_TIMER, EV_DELETE, 0, 0),
			         ENOENT);
	}
	/* Periodic: all periods since the add, no more, once collected. */
	for (int j = 0; j < NPER; j++)
		KOK(kq, (uintptr_t)(N + j), EVFILT_TIMER, EV_DISABLE, 0, 0, NULL);
	double elapsed = now_ms() - t0;
	int n = kpoll(kq, ev, 512, 0);
	CHECK(n == 0);
	for (int j = 0; j < NPER; j++) {
		CHECK(per_sum[j] >= 1);
		/* at most one period per PER_MS since the add (t0 was before it) */
		if (per_sum[j] > (int64_t)(elapsed / PER_MS))
			fprintf(stderr, "periodic %d: %lld expirations in %.1f ms\n", j,
			        (long long)per_sum[j], elapsed);
		CHECK(per_sum[j] <= (int64_t)(elapsed / PER_MS));
	}
	close(kq);
}

/*
 * A periodic timer that fell behind (nobody collected it for many periods)
 * reports every period at once and then goes on from its schedule: the
 * next delivery one period on counts one more, not a burst.
 */
static void periodic_timer_behind_reports_every_period(void)
{
	int kq = kq_new();
	for (int i = 0; i < 1000; i++) /* company in the queue */
		KOK(kq, (uintptr_t)(100 + i), EVFILT_TIMER, EV_ADD, NOTE_SECONDS, 3600, NULL);
	double t0 = now_ms();
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_MSECONDS, 10, NULL);
	struct timespec nap = ts_ms(105);
	nanosleep(&nap, NULL);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_TIMER, 200);
	double took = now_ms() - t0;
	CHECK(e.data >= 10);
	CHECK(e.data <= (int64_t)(took / 10));
	e = EXPECT_ONE(kq, 1, EVFILT_TIMER, 200);
	CHECK(e.data >= 1);
	CHECK(e.data <= 3); /* a loaded machine may be late: a few periods */
	close(kq);
}

int main(void)
{
	RUN(many_timers_fire_once_never_early_never_after_delete);
	RUN(periodic_timer_behind_reports_every_period);
	return 0;
}
