/*
 * EVFILT_USER: events the program triggers itself.  No kernel object: a
 * trigger queues the knote and wakes one waiter through the kqueue's eventfd.
 */
#include <errno.h>

#include "kq_private.h"

#define USER_KNOWN (NOTE_FFCTRLMASK | NOTE_TRIGGER | NOTE_FFLAGSMASK)

static int user_validate(const struct kevent *kev)
{
	return kev->fflags & ~USER_KNOWN ? -EINVAL : 0;
}

static uint32_t apply_ffctrl(uint32_t old, uint32_t fflags)
{
	uint32_t v = fflags & NOTE_FFLAGSMASK;
	switch (fflags & NOTE_FFCTRLMASK) {
	case NOTE_FFAND:
		return old & v;
	case NOTE_FFOR:
		return old | v;
	case NOTE_FFCOPY:
		return v;
	default: /* NOTE_FFNOP */
		return old;
	}
}

static int user_attach(struct kq *kq, struct knote *kn)
{
	/* A new knote starts from fflags 0 with the control applied; with no
	 * control given, the flags are taken as they are. */
	uint32_t ff = kn->kn_sfflags;
	kn->kn_u.user.triggered = 0;
	kn->kn_data = (ff & NOTE_FFCTRLMASK) ? apply_ffctrl(0, ff) : (ff & NOTE_FFLAGSMASK);
	if (ff & NOTE_TRIGGER) {
		kn->kn_u.user.triggered = 1;
		kq__activate(kq, kn);
	}
	return 0;
}

static void user_detach(struct kq *kq, struct knote *kn)
{
	(void)kq;
	(void)kn;
}

/* Any change to an existing knote: fflags control, data, trigger. */
static int user_touch(struct kq *kq, struct knote *kn, const struct kevent *kev)
{
	kn->kn_data = apply_ffctrl((uint32_t)kn->kn_data, kev->fflags);
	kn->kn_sdata = kev->data;
	/*
	 * EV_CLEAR resets the trigger.  The knote stays queued: delivery
	 * finds it not ready and drops it, unless EV_FORCEONESHOT made it
	 * due whatever its condition (as FreeBSD's filt_usertouch).
	 */
	if (kev->flags & EV_CLEAR)
		kn->kn_u.user.triggered = 0;
	if (kev->fflags & NOTE_TRIGGER) {
		kn->kn_u.user.triggered = 1;
		kq__activate(kq, kn);
	}
	return 0;
}

static bool user_event(struct kq *kq, struct knote *kn, struct kevent *out)
{
	(void)kq;
	out->fflags = (uint32_t)kn->kn_data & NOTE_FFLAGSMASK;
	out->data = kn->kn_sdata;
	return kn->kn_u.user.triggered;
}

static void user_clear(struct kq *kq, struct knote *kn)
{
	(void)kq;
	kn->kn_u.user.triggered = 0;
}

const struct filterops kq__user_ops = {
        .f_validate = user_validate,
        .f_attach = user_attach,
        .f_detach = user_detach,
        .f_touch = user_touch,
        .f_event = user_event,
        .f_clear = user_clear,
};
