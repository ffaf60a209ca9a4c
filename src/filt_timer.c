/*
 * EVFILT_TIMER: every timer of a kqueue lives in one heap (timerheap.c) and
 * the kqueue's single timerfd is armed for the earliest deadline, so a
 * million timers cost no file descriptor each.  Relative timers are EV_CLEAR
 * (as FreeBSD): data counts the expirations since the last delivery.
 */
#include <errno.h>
#include <sys/timerfd.h>
#include <time.h>

#include "kq_private.h"

#define UNITS  (NOTE_SECONDS | NOTE_MSECONDS | NOTE_USECONDS | NOTE_NSECONDS)
#define NO_IDX UINT32_MAX

static int timer_validate(const struct kevent *kev)
{
	if (!(kev->flags & EV_ADD))
		return 0;
	if (kev->fflags & ~(unsigned)(UNITS | NOTE_ABSTIME))
		return -EINVAL;
	unsigned u = kev->fflags & UNITS;
	if (u & (u - 1)) /* more than one unit */
		return -EINVAL;
	return kev->data < 0 ? -EINVAL : 0;
}

static int64_t unit_ns(uint32_t fflags)
{
	switch (fflags & UNITS) {
	case NOTE_SECONDS:
		return 1000000000LL;
	case NOTE_USECONDS:
		return 1000LL;
	case NOTE_NSECONDS:
		return 1LL;
	default:
		return 1000000LL;
	}
}

static int64_t mul_sat(int64_t a, int64_t b)
{
	return a > INT64_MAX / b ? INT64_MAX : a * b;
}

/* Points the timerfd at the earliest deadline if it is not already earlier. */
static void timer_rearm(struct kq *kq, bool force)
{
	int64_t d;
	if (!kq__theap_min(kq, &d))
		return; /* a later spurious expiry finds nothing: harmless */
	if (d <= 0)
		d = 1;
	if (!force && kq->kq_timer_armed && kq->kq_timer_armed <= d)
		return;
	struct itimerspec its = {.it_value = {d / 1000000000LL, d % 1000000000LL}};
	timerfd_settime(kq->kq_timerfd, TFD_TIMER_ABSTIME, &its, NULL);
	kq->kq_timer_armed = d;
}

/*
 * The period of a relative timer that repeats, from what the last EV_ADD
 * gave (kept in the knote, which has no room for it: timer knotes end
 * before kn_u).  0: it fires once.
 */
static int64_t timer_period(const struct knote *kn)
{
	if (!(kn->kn_status & KN_PERIODIC))
		return 0;
	return mul_sat(kn->kn_sdata > 0 ? kn->kn_sdata : 1, unit_ns(kn->kn_sfflags));
}

/* (Re)starts a timer from its knote's data and fflags. */
static int timer_start(struct kq *kq, struct knote *kn)
{
	int64_t mult = unit_ns(kn->kn_sfflags), now = kq__now_ns(), deadline;
	kn->kn_status &= ~KN_PERIODIC;
	if (kn->kn_sfflags & NOTE_ABSTIME) {
		struct timespec rt;
		clock_gettime(CLOCK_REALTIME, &rt);
		int64_t target = mul_sat(kn->kn_sdata, mult);
		int64_t left = target - (rt.tv_sec * 1000000000LL + rt.tv_nsec);
		if (left <= 0) {
			/* Its time has passed: ready now, for the very next call,
			 * not after a timerfd expiry that a loaded machine's
			 * softirq may hold back for milliseconds. */
			kn->kn_data += 1;
			kq__activate(kq, kn);
			return 0;
		}
		deadline = now + left;
	} else {
		int64_t units = kn->kn_sdata;
		if (units == 0 && !(kn->kn_flags & EV_ONESHOT))
			units = 1;
		int64_t ival = mul_sat(units, mult);
		deadline = ival > INT64_MAX - now ? INT64_MAX : now + ival;
		if (!(kn->kn_flags & EV_ONESHOT))
			kn->kn_status |= KN_PERIODIC;
	}
	int err = kq__theap_insert(kq, kn, deadline);
	if (!err)
		timer_rearm(kq, false);
	return err;
}

static int timer_attach(struct kq *kq, struct knote *kn)
{
	/*
	 * As FreeBSD: a relative timer counts expirations (EV_CLEAR); an
	 * absolute one fires once and then stays active, returned by every
	 * call with data 1 until it is deleted or disabled.  Set at attach
	 * only: a re-add keeps the knote's flags.
	 */
	if (!(kn->kn_sfflags & NOTE_ABSTIME))
		kn->kn_flags |= EV_CLEAR;
	kn->kn_heapidx = NO_IDX;
	kn->kn_data = 0;
	return timer_start(kq, kn);
}

static void timer_detach(struct kq *kq, struct knote *kn)
{
	kq__theap_remove(kq, kn);
}

/* EV_ADD on an existing timer: new period, counting starts again. */
static int timer_touch(struct kq *kq, struct knote *kn, const struct kevent *kev)
{
	if (!(kev->flags & EV_ADD))
		return 0;
	kq__theap_remove(kq, kn);
	kn->kn_data = 0;
	kn->kn_status &= ~KN_ACTIVE;
	kq__dequeue(kq, kn);
	return timer_start(kq, kn);
}

static bool timer_event(struct kq *kq, struct knote *kn, struct kevent *out)
{
	(void)kq;
	out->data = kn->kn_data;
	return kn->kn_data > 0;
}

static void timer_clear(struct kq *kq, struct knote *kn)
{
	(void)kq;
	kn->kn_data = 0;
}

/* A fork copy got a new timerfd: point it at the earliest deadline. */
void kq__timer_fork(struct kq *kq)
{
	kq->kq_timer_armed = 0;
	timer_rearm(kq, true);
}

/*
 * The timerfd fired: every timer due by now is counted and queued in this
 * one pass under the lock, and the timerfd is re-armed once, for what is
 * left.  A repeating timer is re-timed in place (one sift, no pop and push).
 */
void kq__timer_expire(struct kq *kq)
{
	kq__mutex_lock(&kq->kq_lock);
	int64_t now = kq__now_ns(), d;
	struct knote *kn;
	while ((kn = kq__theap_min(kq, &d)) && d <= now) {
		int64_t period = timer_period(kn);
		if (period > 0) {
			int64_t k = 1 + (now - d) / period;
			kn->kn_data += k;
			kq__theap_retime_min(kq, k > (INT64_MAX - d) / period ? INT64_MAX
			                                                      : d + k * period);
		} else {
			kn->kn_data += 1;
			kq__theap_pop(kq);
			/* A one-shot leaves the hash when it is delivered, a batch
			 * of hundreds later: its bucket is fetched now, and the
			 * miss overlaps the next pop's instead of the delivery's. */
			if (kn->kn_flags & EV_ONESHOT)
				kq__hash_prefetch(kq, kn);
		}
		kq__activate(kq, kn);
	}
	kq->kq_timer_armed = 0;
	timer_rearm(kq, true);
	kq__mutex_unlock(&kq->kq_lock);
}

const struct filterops kq__timer_ops = {
        .f_validate = timer_validate,
        .f_attach = timer_attach,
        .f_detach = timer_detach,
        .f_touch = timer_touch,
        .f_event = timer_event,
        .f_clear = timer_clear,
};
