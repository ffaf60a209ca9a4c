/*
 * All timers of a kqueue in one 4-ary min-heap (kq_lock held throughout).
 * Each slot holds the deadline next to its knote, so a sift compares
 * deadlines in the heap array alone and touches a knote only to note where
 * it moved (kn_heapidx); the array is offset by three slots so that the four
 * children of a node share one 64-byte cache line, and a heap of a million
 * timers is ten levels deep, not twenty.  The array is an anonymous mapping
 * grown with mremap(): no copy, and its unused tail is never touched, so a
 * timer costs its 16-byte slot and no more resident memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include "kq_private.h"

#define NO_IDX UINT32_MAX
#define ARITY  4
#define OFF    3 /* slot i lives at kq_timers[i + OFF]: children 4i+1..4i+4 start a line */

int64_t kq__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline struct kq_tslot *slot(struct kq *kq, uint32_t i)
{
	return &kq->kq_timers[i + OFF];
}

static inline void place(struct kq *kq, uint32_t i, struct kq_tslot s)
{
	*slot(kq, i) = s;
	s.kn->kn_heapidx = i;
}

static void sift_up(struct kq *kq, uint32_t i, struct kq_tslot s)
{
	while (i > 0) {
		uint32_t p = (i - 1) / ARITY;
		if (slot(kq, p)->deadline <= s.deadline)
			break;
		place(kq, i, *slot(kq, p));
		i = p;
	}
	place(kq, i, s);
}

static void sift_down(struct kq *kq, uint32_t i, struct kq_tslot s)
{
	uint32_t n = kq->kq_ntimers;
	for (;;) {
		uint32_t c = ARITY * i + 1, end = c + ARITY < n ? c + ARITY : n;
		if (c >= n)
			break;
		/* The grandchildren's lines, while these four are compared: in a
		 * big heap each level is a cache miss, and the next one's address
		 * is known only after this compare. */
		for (uint32_t j = c; j < end && ARITY * j + 1 < n; j++)
			__builtin_prefetch(slot(kq, ARITY * j + 1));
		uint32_t m = c;
		for (uint32_t j = c + 1; j < end; j++)
			if (slot(kq, j)->deadline < slot(kq, m)->deadline)
				m = j;
		if (s.deadline <= slot(kq, m)->deadline)
			break;
		place(kq, i, *slot(kq, m));
		i = m;
	}
	place(kq, i, s);
}

/* Moves s into slot i (just emptied), up or down as its deadline says. */
static void settle(struct kq *kq, uint32_t i, struct kq_tslot s)
{
	if (i > 0 && slot(kq, (i - 1) / ARITY)->deadline > s.deadline)
		sift_up(kq, i, s);
	else
		sift_down(kq, i, s);
}

static int grow(struct kq *kq)
{
	size_t page = 4096;
	size_t old =
	        kq->kq_timercap ? ((size_t)kq->kq_timercap + OFF) * sizeof(struct kq_tslot) : 0;
	size_t len = old ? old * 2 : page;
	if (len / sizeof(struct kq_tslot) - OFF > NO_IDX - 1)
		return -ENOMEM;
	void *p = old ? mremap(kq->kq_timers, old, len, MREMAP_MAYMOVE)
	              : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	kq->kq_timers = p;
	kq->kq_timercap = (uint32_t)(len / sizeof(struct kq_tslot) - OFF);
	return 0;
}

int kq__theap_insert(struct kq *kq, struct knote *kn, int64_t deadline)
{
	if (kq->kq_ntimers == kq->kq_timercap) {
		int err = grow(kq);
		if (err)
			return err;
	}
	sift_up(kq, kq->kq_ntimers++, (struct kq_tslot){deadline, kn});
	return 0;
}

void kq__theap_remove(struct kq *kq, struct knote *kn)
{
	uint32_t i = kn->kn_heapidx;
	if (i == NO_IDX)
		return;
	kn->kn_heapidx = NO_IDX;
	struct kq_tslot last = *slot(kq, --kq->kq_ntimers);
	if (last.kn != kn)
		settle(kq, i, last);
}

struct knote *kq__theap_min(struct kq *kq, int64_t *deadline)
{
	if (!kq->kq_ntimers)
		return NULL;
	*deadline = slot(kq, 0)->deadline;
	return slot(kq, 0)->kn;
}

void kq__theap_pop(struct kq *kq)
{
	slot(kq, 0)->kn->kn_heapidx = NO_IDX;
	struct kq_tslot last = *slot(kq, --kq->kq_ntimers);
	if (kq->kq_ntimers)
		sift_down(kq, 0, last);
}

void kq__theap_retime_min(struct kq *kq, int64_t deadline)
{
	sift_down(kq, 0, (struct kq_tslot){deadline, slot(kq, 0)->kn});
}

void kq__theap_free(struct kq *kq)
{
	if (kq->kq_timers)
		munmap(kq->kq_timers, ((size_t)kq->kq_timercap + OFF) * sizeof(struct kq_tslot));
	kq->kq_timers = NULL;
	kq->kq_ntimers = kq->kq_timercap = 0;
}
