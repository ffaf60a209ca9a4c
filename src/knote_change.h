/*
 * The change every knote goes through, whatever its filter: included by the
 * two places knotes live (kevent.c: the ident hash; filt_fd.c: the fd
 * entries), inline in each, as the dispatch round's EV_ENABLE must cost no
 * more than a call of its own.
 */
#ifndef BATON_KNOTE_CHANGE_H
#define BATON_KNOTE_CHANGE_H

#include "kq_private.h"

/*
 * Takes kn off the ready queue for EV_DISABLE.  A non-fd knote stays ACTIVE
 * (its condition is still true: EV_ENABLE queues it again); an fd knote's
 * ACTIVE means "queued", and is dropped with it (kq_lock taken here).
 */
static inline void knote_unqueue(struct kq *kq, struct knote *kn)
{
	if (!kn->kn_isfd) {
		kq__dequeue(kq, kn);
	} else if (kn->kn_status & KN_ACTIVE) {
		kq__mutex_lock(&kq->kq_lock);
		kq__dequeue(kq, kn);
		kq__mutex_unlock(&kq->kq_lock);
		kn->kn_status &= ~KN_ACTIVE;
	}
}

/*
 * A change to one knote of any filter, as FreeBSD's kqueue_register, with
 * the knote's own lock held (fe_lock for an fd knote, kq_lock for the
 * others).  A new knote (!exists; its ident and filter set) takes all of the
 * change, joins its serial group and is attached by its filter; an existing
 * one moves group on EV_ADD (EBUSY: nothing changed), takes fflags and data
 * (kq__knote_set) and udata (any change but EV_DELETE, unless EV_KEEPUDATA),
 * and goes through f_touch (any change: NOTE_TRIGGER needs no EV_ADD).  Then
 * the actions: EV_FORCEONESHOT, EV_DISABLE / EV_ENABLE; an EV_ENABLE of a
 * serial member hands back its group in *release, to be released after the
 * lock.  EV_DELETE, the queueing that follows and the undoing of a new
 * knote that failed are the caller's (they depend on where the knote lives).
 */
static inline int kq__knote_change(struct kq *kq, struct knote *kn, const struct kevent *kev,
                                   const struct filterops *fop, bool exists,
                                   struct kq_group **release, uint32_t *rgen)
{
	int err;
	if (!exists) {
		kq__knote_set(kn, kev, true);
		kn->kn_status = KN_ATTACHED | (kev->flags & EV_DISABLE ? KN_DISABLED : 0);
		if ((err = kq__group_set(kq, kn, kev, kn->kn_isfd)) ||
		    (err = fop->f_attach(kq, kn)))
			return err;
	} else {
		if ((kev->flags & EV_ADD) && (err = kq__group_set(kq, kn, kev, kn->kn_isfd)))
			return err;
		if (kev->flags & EV_ADD)
			kq__knote_set(kn, kev, false);
		if (!(kev->flags & EV_KEEPUDATA))
			kn->kn_udata = kev->udata;
		if (fop->f_touch && (err = fop->f_touch(kq, kn, kev)))
			return err;
	}
	if (kev->flags & EV_FORCEONESHOT) {
		kn->kn_flags |= EV_ONESHOT;
		kn->kn_status |= KN_FORCED;
	}
	if (kev->flags & EV_DISABLE) {
		kn->kn_status |= KN_DISABLED;
		knote_unqueue(kq, kn);
	} else if (kev->flags & (EV_ENABLE | EV_ADD)) {
		kn->kn_status &= ~KN_DISABLED;
	}
	if ((kev->flags & EV_ENABLE) && (kn->kn_flags & EV_SERIAL))
		*release = kq__group_of(kn, rgen);
	return 0;
}

#endif
