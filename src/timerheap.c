/*
 * All timers of a kqueue in one binary min-heap on their deadline (kq_lock
 * held throughout): O(log n) add and cancel, 8 bytes of heap per timer.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "kq_private.h"

#define NO_IDX UINT32_MAX

int64_t kq__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void place(struct kq *kq, uint32_t i, struct knote *kn)
{
	kq->kq_timers[i] = kn;
	kn->kn_heapidx = i;
}

static void sift_up(struct kq *kq, uint32_t i)
{
	struct knote *kn = kq->kq_timers[i];
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (kq->kq_timers[p]->kn_u.tm.deadline <= kn->kn_u.tm.deadline)
			break;
		place(kq, i, kq->kq_timers[p]);
		i = p;
	}
	place(kq, i, kn);
}

static void sift_down(struct kq *kq, uint32_t i)
{
	struct knote *kn = kq->kq_timers[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= kq->kq_ntimers)
			break;
		if (c + 1 < kq->kq_ntimers &&
		    kq->kq_timers[c + 1]->kn_u.tm.deadline < kq->kq_timers[c]->kn_u.tm.deadline)
			c++;
		if (kn->kn_u.tm.deadline <= kq->kq_timers[c]->kn_u.tm.deadline)
			break;
		place(kq, i, kq->kq_timers[c]);
		i = c;
	}
	place(kq, i, kn);
}

int kq__theap_insert(struct kq *kq, struct knote *kn)
{
	if (kq->kq_ntimers == kq->kq_timercap) {
		uint32_t cap = kq->kq_timercap ? kq->kq_timercap * 2 : 64;
		struct knote **t = realloc(kq->kq_timers, cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		kq->kq_timers = t;
		kq->kq_timercap = cap;
	}
	place(kq, kq->kq_ntimers++, kn);
	sift_up(kq, kn->kn_heapidx);
	return 0;
}

void kq__theap_remove(struct kq *kq, struct knote *kn)
{
	uint32_t i = kn->kn_heapidx;
	if (i == NO_IDX)
		return;
	kn->kn_heapidx = NO_IDX;
	struct knote *last = kq->kq_timers[--kq->kq_ntimers];
	if (last == kn)
		return;
	place(kq, i, last);
	kq__theap_fix(kq, last);
}

void kq__theap_fix(struct kq *kq, struct knote *kn)
{
	sift_up(kq, kn->kn_heapidx);
	sift_down(kq, kn->kn_heapidx);
}

struct knote *kq__theap_min(struct kq *kq)
{
	return kq->kq_ntimers ? kq->kq_timers[0] : NULL;
}
