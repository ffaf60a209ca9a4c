/*
 * Knotes: the ready queue (FIFO), the ident hash for filters whose ident is
 * not an fd, a slab so that a million timers cost no malloc header each, and
 * the copy between a knote and a struct kevent.  Everything here runs with
 * kq_lock held but the copies, which run under the knote's own lock.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kq_private.h"

void kq__enqueue(struct kq *kq, struct knote *kn)
{
	KQ_ASSERT_LOCKED(&kq->kq_lock);
	if (kn->kn_queued)
		return;
	kn->kn_queued = true;
	if (KQ_BROKEN(KQ_BREAK_I5) && kq->kq_head) {
		/* Broken on purpose: LIFO lets a busy knote starve others. */
		kn->kn_prev = NULL;
		kn->kn_next = kq->kq_head;
		kq->kq_head->kn_prev = kn;
		kq->kq_head = kn;
	} else {
		kn->kn_next = NULL;
		kn->kn_prev = kq->kq_tail;
		if (kq->kq_tail)
			kq->kq_tail->kn_next = kn;
		else
			kq->kq_head = kn;
		kq->kq_tail = kn;
	}
	atomic_fetch_add_explicit(&kq->kq_nready, 1, memory_order_relaxed);
}

void kq__dequeue(struct kq *kq, struct knote *kn)
{
	KQ_ASSERT_LOCKED(&kq->kq_lock);
	if (!kn->kn_queued)
		return;
	kn->kn_queued = false;
	if (kn->kn_prev)
		kn->kn_prev->kn_next = kn->kn_next;
	else
		kq->kq_head = kn->kn_next;
	if (kn->kn_next)
		kn->kn_next->kn_prev = kn->kn_prev;
	else
		kq->kq_tail = kn->kn_prev;
	kn->kn_next = kn->kn_prev = NULL;
	atomic_fetch_sub_explicit(&kq->kq_nready, 1, memory_order_relaxed);
}

/*
 * A non-fd knote's condition became true (kq_lock held): queue it unless it
 * is disabled, in which case EV_ENABLE will queue it.
 */
void kq__activate(struct kq *kq, struct knote *kn)
{
	KQ_ASSERT_LOCKED(&kq->kq_lock);
	kn->kn_status |= KN_ACTIVE;
	if (kn->kn_status & KN_DISABLED)
		return;
	if (!kn->kn_queued) {
		kq__enqueue(kq, kn);
		kq__wake(kq);
	}
}

static uint32_t hash_ident(short filter, uintptr_t ident)
{
	uint64_t h = (uint64_t)ident * 0x9E3779B97F4A7C15ULL ^ (uint16_t)filter;
	return (uint32_t)(h >> 32) ^ (uint32_t)h;
}

static uint32_t knote_hash(const void *o)
{
	const struct knote *kn = o;
	return hash_ident(kn->kn_filter, kn->kn_ident);
}

struct knote *kq__hash_find(struct kq *kq, short filter, uintptr_t ident)
{
	KQ_ASSERT_LOCKED(&kq->kq_lock);
	struct knote *kn = kq__ht_head(&kq->kq_hash, hash_ident(filter, ident));
	while (kn && (kn->kn_ident != ident || kn->kn_filter != filter))
		kn = kn->kn_hnext;
	return kn;
}

int kq__hash_insert(struct kq *kq, struct knote *kn)
{
	KQ_ASSERT_LOCKED(&kq->kq_lock);
	return kq__ht_insert(&kq->kq_hash, kn, offsetof(struct knote, kn_hnext), knote_hash);
}

void kq__hash_remove(struct kq *kq, struct knote *kn)
{
	KQ_ASSERT_LOCKED(&kq->kq_lock);
	kq__ht_remove(&kq->kq_hash, kn, offsetof(struct knote, kn_hnext), knote_hash(kn));
}

void kq__hash_prefetch(struct kq *kq, const struct knote *kn)
{
	if (kq->kq_hash.ht_tab)
		__builtin_prefetch(&kq->kq_hash.ht_tab[knote_hash(kn) & kq->kq_hash.ht_mask], 1);
}

#define SLAB_KNOTES 256

/* B4's budget is 128 resident bytes a timer, 16 of them its heap slot and
 * 8-16 its hash bucket: a field added before kn_u must find room there. */
_Static_assert(KN_SMALL <= 96, "timer knotes grew: see B4's bytes per timer");

/*
 * A timer knote stops before kn_u (KN_SMALL bytes): a million timers are
 * a million of them, so they have a slab of their own.
 */
struct knote *kq__knote_alloc(struct kq *kq, short filter)
{
	KQ_ASSERT_LOCKED(&kq->kq_lock);
	bool small = filter == EVFILT_TIMER;
	struct kq_slab *sl = small ? &kq->kq_tslab : &kq->kq_kslab;
	if (!sl->sl_size) { /* a new kqueue: kq_alloc() cleared it */
		sl->sl_size = small ? KN_SMALL : sizeof(struct knote);
		sl->sl_per = SLAB_KNOTES;
		sl->sl_next = offsetof(struct knote, kn_hnext);
	}
	struct knote *kn = kq__slab_alloc(sl);
	if (kn) {
		memset(kn, 0, sl->sl_size);
		kn->kn_filter = filter;
	}
	return kn;
}

void kq__knote_free(struct kq *kq, struct knote *kn)
{
	KQ_ASSERT_LOCKED(&kq->kq_lock);
	free(kn->kn_aux);
	kn->kn_aux = NULL;
	kn->kn_status = 0;
	kq__slab_free(kn->kn_filter == EVFILT_TIMER ? &kq->kq_tslab : &kq->kq_kslab, kn);
}

void kq__knote_free_all(struct kq *kq)
{
	/* ext blocks of live hashed knotes; fd knotes free theirs in fdtable.c */
	for (uint32_t i = 0; kq->kq_hash.ht_tab && i <= kq->kq_hash.ht_mask; i++)
		for (struct knote *kn = kq->kq_hash.ht_tab[i]; kn; kn = kn->kn_hnext)
			free(kn->kn_aux);
	kq__slab_destroy(&kq->kq_tslab, NULL);
	kq__slab_destroy(&kq->kq_kslab, NULL);
	kq->kq_head = kq->kq_tail = NULL;
}

static bool ext_zero(const uint64_t ext[4])
{
	return !(ext[0] | ext[1] | ext[2] | ext[3]);
}

/*
 * Takes an EV_ADD's parameters into a knote.  A new knote takes all of the
 * change; a re-added one (FreeBSD's kqueue_register) only fflags and data:
 * its udata is set by the caller as for any change, its behaviour flags and
 * ext[] stay as first given, except EV_SERIAL, whose membership
 * kq__group_set() has just made follow the change.
 */
void kq__knote_set(struct knote *kn, const struct kevent *kev, bool is_new)
{
	if (is_new) {
		kn->kn_ident = kev->ident;
		/* fd knotes keep their filter for life: it is read unlocked */
		if (kn->kn_filter != kev->filter)
			kn->kn_filter = kev->filter;
		kn->kn_udata = kev->udata;
		if (!ext_zero(kev->ext) && kq__aux(kn))
			memcpy(kn->kn_aux->ext, kev->ext, sizeof(kev->ext));
		else if (kn->kn_aux)
			memset(kn->kn_aux->ext, 0, sizeof(kn->kn_aux->ext));
		kn->kn_flags = kev->flags & KN_KEPT_FLAGS;
	} else {
		kn->kn_flags =
		        (unsigned short)((kn->kn_flags & ~EV_SERIAL) | (kev->flags & EV_SERIAL));
	}
	kn->kn_sfflags = kev->fflags;
	kn->kn_sdata = kev->data;
}

/*
 * Is kn among the events from..upto (one call's eventlist)?  The drain asks
 * under kq_lock, not an fd knote's own lock: its number is read from its
 * (constant) table entry, its filter never changes.
 */
bool kq__knote_in(const struct knote *kn, const struct kevent *from, const struct kevent *upto)
{
	uintptr_t ident = kn->kn_isfd ? (uintptr_t)kn->kn_u.fd.fe->fe_fd : kn->kn_ident;
	for (; from < upto; from++)
		if (from->ident == ident && from->filter == kn->kn_filter)
			return true;
	return false;
}
