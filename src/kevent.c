/*
 * kevent(): check and apply the changelist, then collect events.
 *
 * How a wait works with many threads (docs/design.md has the long form):
 * every thread waits in epoll_wait() on the kqueue's epoll fd with no lock
 * held.  fd knotes are delivered straight from the epoll report under their
 * fd's lock; everything else (user events, timers, signals, leftovers that
 * did not fit, level knotes kept level by hand) goes through the ready queue,
 * and an edge-triggered eventfd wakes one waiter when that queue gains work.
 * When the queue is not empty a call first moves the kernel's reports behind
 * it, so knotes come back in FIFO order whatever their source (I5).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "knote_change.h"
#include "kq_private.h"
#include "uring.h"

#define KQ_KNOWN_FLAGS                                                                  \
	(EV_ADD | EV_DELETE | EV_ENABLE | EV_DISABLE | EV_FORCEONESHOT | EV_KEEPUDATA | \
	 EV_ONESHOT | EV_CLEAR | EV_RECEIPT | EV_DISPATCH | EV_SERIAL)
#define KQ_EVBUF 256

static int check_flags(unsigned flags)
{
	if (flags & ~KQ_KNOWN_FLAGS)
		return -EINVAL;
	if ((flags & EV_ENABLE) && (flags & EV_DISABLE))
		return -EINVAL;
	if ((flags & EV_DELETE) && (flags & (EV_ADD | EV_ENABLE | EV_DISABLE)))
		return -EINVAL;
	/* A new knote needs a udata; FreeBSD rejects the pair for any knote. */
	if ((flags & EV_ADD) && (flags & EV_KEEPUDATA))
		return -EINVAL;
	return 0;
}

/* Removes a non-fd knote for good (kq_lock held). */
static void generic_drop(struct kq *kq, struct knote *kn, const struct filterops *fop)
{
	KQ_ASSERT_LOCKED(&kq->kq_lock);
	kq__group_leave(kq, kn);
	kq__dequeue(kq, kn);
	fop->f_detach(kq, kn);
	kq__hash_remove(kq, kn);
	kq__knote_free(kq, kn);
}

static const struct filterops *ops_of(short filter)
{
	switch (filter) {
	case EVFILT_USER:
		return &kq__user_ops;
	case EVFILT_TIMER:
		return &kq__timer_ops;
	case EVFILT_SIGNAL:
		return &kq__signal_ops;
	case EVFILT_PROC:
		return &kq__proc_ops;
	case EVFILT_VNODE:
		return &kq__vnode_ops;
	default:
		return NULL;
	}
}

/* A new knote that could not be attached goes away again (kq_lock held). */
static void generic_undo(struct kq *kq, struct knote *kn)
{
	kq__group_leave(kq, kn);
	kq__dequeue(kq, kn);
	kq__hash_remove(kq, kn);
	kq__knote_free(kq, kn);
}

/*
 * A change to a knote whose ident is not an fd (all under kq_lock): found
 * or made in the ident hash, changed by kq__knote_change(), queued if its
 * condition is true (f_attach / f_touch activated it) or it was forced.
 */
int kq__generic_change(struct kq *kq, const struct kevent *kev, const struct filterops *fop)
{
	int err = fop->f_validate(kev);
	if (err)
		return err;
	struct kq_group *release = NULL;
	uint32_t rgen = 0;
	kq__mutex_lock(&kq->kq_lock);
	struct knote *kn = kq__hash_find(kq, kev->filter, kev->ident);
	if (kn && fop->f_gone && fop->f_gone(kq, kn, kev)) {
		generic_drop(kq, kn, fop); /* removed by a close we could not act on */
		kn = NULL;
	}
	bool exists = kn != NULL;
	if (!kn && !(kev->flags & EV_ADD)) {
		err = -ENOENT;
		goto out;
	}
	if (kev->flags & EV_DELETE) {
		generic_drop(kq, kn, fop);
		goto out;
	}
	if (!kn) {
		if (!(kn = kq__knote_alloc(kq, kev->filter))) {
			err = -ENOMEM;
			goto out;
		}
		kn->kn_ident = kev->ident;
		kn->kn_filter = kev->filter;
		if ((err = kq__hash_insert(kq, kn))) {
			kq__knote_free(kq, kn);
			goto out;
		}
	}
	if ((err = kq__knote_change(kq, kn, kev, fop, exists, &release, &rgen))) {
		if (!exists)
			generic_undo(kq, kn);
		goto out;
	}
	if (kev->flags & EV_FORCEONESHOT)
		kn->kn_status |= KN_ACTIVE; /* due whatever its condition */
	if ((kn->kn_status & KN_ACTIVE) && !(kn->kn_status & KN_DISABLED) && !kn->kn_queued) {
		kq__enqueue(kq, kn);
		kq__wake(kq);
	}
out:
	kq__mutex_unlock(&kq->kq_lock);
	if (release)
		kq__group_release(kq, release, rgen);
	return err;
}

/* A member's group was released: replay it if it was parked. */
void kq__generic_group_released(struct kq *kq, struct knote *kn, struct kq_group *g, uint32_t gen,
                                bool pend)
{
	kq__mutex_lock(&kq->kq_lock);
	if (pend && kn->kn_aux && kn->kn_aux->group == g && kn->kn_aux->group_gen == gen &&
	    (kn->kn_status & KN_ACTIVE) && !(kn->kn_status & KN_DISABLED) && !kn->kn_queued) {
		kq__enqueue(kq, kn);
		kq__wake(kq);
	}
	kq__mutex_unlock(&kq->kq_lock);
}

/*
 * Delivers a non-fd knote taken off the ready queue (kq_lock held).
 * Returns 1 if *out was filled.
 */
int kq__deliver_locked(struct kq *kq, struct knote *kn, struct kevent *out)
{
	KQ_ASSERT_LOCKED(&kq->kq_lock);
	const struct filterops *fop = ops_of(kn->kn_filter);
	if (!(kn->kn_status & KN_ACTIVE) || (kn->kn_status & KN_DISABLED))
		return 0;
	if (fop->f_gone && fop->f_gone(kq, kn, NULL)) {
		generic_drop(kq, kn, fop); /* its fd was closed: never seen (I4) */
		return 0;
	}
	kq__knote_copyout(kn, out);
	if (!fop->f_event(kq, kn, out) && !(kn->kn_status & KN_FORCED)) {
		kn->kn_status &= ~KN_ACTIVE;
		return 0;
	}
	/* Held elsewhere: parked, still ACTIVE, replayed on release. */
	if ((kn->kn_flags & EV_SERIAL) && kn->kn_aux && kn->kn_aux->group && !kq__group_take(kn))
		return 0;
	if (kn->kn_flags & EV_ONESHOT) {
		generic_drop(kq, kn, fop);
		return 1;
	}
	atomic_store_explicit(&kn->kn_seen, kq__call_token, memory_order_relaxed);
	if (kn->kn_flags & EV_CLEAR) {
		kn->kn_status &= ~KN_ACTIVE;
		if (fop->f_clear)
			fop->f_clear(kq, kn);
	}
	if ((kn->kn_flags & EV_DISPATCH) && !KQ_BROKEN(KQ_BREAK_I1))
		kn->kn_status |= KN_DISABLED;
	else if (kn->kn_status & KN_ACTIVE)
		kq__enqueue(kq, kn); /* level-triggered: back of the queue */
	return 1;
}

/* A knote of any filter but EVFILT_USER may give the kernel a source to
 * report, and only EV_ADD makes knotes: the kqueue's waits go to epoll from
 * the first such EV_ADD on (quiet.c). */
static inline void kernel_source(struct kq *kq, const struct kevent *kev)
{
	if ((kev->flags & EV_ADD) && kev->filter != EVFILT_USER &&
	    !atomic_load_explicit(&kq->kq_loud, memory_order_relaxed))
		kq__quiet_end(kq);
}

static int apply_change(struct kq *kq, struct kevent *kev)
{
	kernel_source(kq, kev);
	kev->flags &= ~EV_SYSFLAGS;
	int err = check_flags(kev->flags);
	if (err)
		return err;
	int slot = kq__fd_slot(kev->filter);
	if (slot >= 0)
		return kq__fd_change(kq, kev, slot);
	const struct filterops *fop = ops_of(kev->filter);
	return fop ? kq__generic_change(kq, kev, fop) : -EINVAL;
}

/*
 * kev[0] and kev[1] (one ident) together when they add two filters to a new
 * fd (a connection's READ and WRITE): one registration for both
 * (kq__fd_change_pair).  0 when both were applied without error, 1 when
 * nothing was: then they are applied one by one.  Not when kev[0]'s receipt
 * finds no room: the list stops there.
 */
static int apply_pair(struct kq *kq, struct kevent *kev, bool room)
{
	int slot[2] = {kq__fd_slot(kev[0].filter), kq__fd_slot(kev[1].filter)};
	kernel_source(kq, &kev[0]);
	kev[0].flags &= ~EV_SYSFLAGS;
	kev[1].flags &= ~EV_SYSFLAGS;
	if (slot[0] < 0 || slot[1] < 0 || slot[0] == slot[1] ||
	    !(kev[0].flags & kev[1].flags & EV_ADD) ||
	    ((kev[0].flags | kev[1].flags) & EV_SERIAL) || check_flags(kev[0].flags) ||
	    check_flags(kev[1].flags) || (!room && (kev[0].flags & EV_RECEIPT)))
		return 1;
	return kq__fd_change_pair(kq, kev, slot);
}

/*
 * Takes knotes off the ready queue into out, up to room, each queued knote
 * looked at once.  A knote this very call delivered and requeued (a level
 * knote goes to the back) is passed over: it comes back in a later call, not
 * twice in this one.  It keeps going while knotes turn out not to be ready,
 * so it never stops early with work left.
 */
static int drain(struct kq *kq, struct kevent *out, int room)
{
	struct knote *fdkn[KQ_EVBUF];
	int n = 0;
	bool more = true;
	if (room > KQ_EVBUF)
		room = KQ_EVBUF;
	while (n < room && more) {
		int nfd = 0;
		kq__mutex_lock(&kq->kq_lock);
		int budget = atomic_load_explicit(&kq->kq_nready, memory_order_relaxed);
		while (n + nfd < room && (more = budget-- > 0)) {
			struct knote *kn = kq->kq_head;
			kq__dequeue(kq, kn);
			if (kq__delivered_here(kn, out + n)) {
				kq__enqueue(kq, kn); /* delivered by this call: behind the rest */
				continue;
			}
			if (kn->kn_isfd)
				fdkn[nfd++] = kn; /* needs its fd lock: after kq_lock */
			else
				n += kq__deliver_locked(kq, kn, &out[n]);
		}
		kq__mutex_unlock(&kq->kq_lock);
		for (int i = 0; i < nfd; i++)
			n += kq__fd_deliver_queued(kq, fdkn[i], &out[n]);
	}
	return n;
}

/*
 * Turns epoll reports into events (room > 0) or queued knotes (room 0).
 * Backend sources (wake, timers, signals) go first, so that the knotes they
 * queue are ahead of anything a delivery below requeues.
 */
static int dispatch(struct kq *kq, const struct epoll_event *ev, int nev, struct kevent *out,
                    int room)
{
	int n = 0;
	for (int i = 0; i < nev; i++) {
		switch (ev[i].data.u64 >> KQ_TAG_SHIFT) {
		case KQ_TAG_WAKE:
			atomic_store(&kq->kq_wake_pending, false);
			/* a signal handler's wake (sighook.c) */
			if (atomic_load_explicit(&kq->kq_sigdirty, memory_order_relaxed) &&
			    atomic_exchange(&kq->kq_sigdirty, false))
				kq__signal_scan(kq);
			break;
		case KQ_TAG_TIMER:
			kq__timer_expire(kq);
			kq__file_retry(kq);
			kq__drain_retry(kq);
			break;
		case KQ_TAG_SIGNAL:
			kq__signal_read(kq);
			break;
		case KQ_TAG_INOTIFY:
			kq__file_changed(kq);
			break;
		case KQ_TAG_PROC:
			kq__proc_event(kq, (uint32_t)ev[i].data.u64);
			break;
		}
	}
	/* The byte counts the deliveries below need, in one round trip (uring.c):
	 * for two reports, or one whose WRITE count is two commands (SIOCOUTQ,
	 * SO_SNDBUF); for one READ count the ioctl costs what the ring does. */
	bool counts = room > 0 &&
	              (nev > 1 || (nev == 1 && (ev[0].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))));
	if (counts)
		kq__count_reports(ev, nev);
	for (int i = 0; i < nev; i++) {
		uint64_t d = ev[i].data.u64;
		if ((d >> KQ_TAG_SHIFT) == KQ_TAG_FD)
			n += kq__fd_epoll_event(kq, (int)(uint32_t)d,
			                        (uint32_t)(d >> 32) & KQ_GEN_MASK, ev[i].events,
			                        out + n, room - n);
	}
	if (counts)
		kq__count_reports(NULL, 0);
	return n;
}

static bool timeout_valid(const struct timespec *ts)
{
	return !ts || (ts->tv_sec >= 0 && ts->tv_nsec >= 0 && ts->tv_nsec < 1000000000L);
}

/*
 * -1: wait forever, 0: poll (neither reads the clock), else a deadline.
 * As FreeBSD, a timeout past INT32_MAX seconds (or one whose deadline
 * would not fit) means forever: 68 years is as good as that.
 */
static int64_t deadline_of(const struct timespec *ts)
{
	if (!ts || ts->tv_sec > INT32_MAX)
		return -1;
	if (ts->tv_sec == 0 && ts->tv_nsec == 0)
		return 0;
	int64_t rel = (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec, now = kq__now_ns();
	return rel > INT64_MAX - now ? -1 : now + rel;
}

static int wait_ms(int64_t deadline)
{
	if (deadline <= 0)
		return (int)deadline;
	int64_t left = deadline - kq__now_ns();
	if (left <= 0)
		return 0;
	int64_t ms = (left + 999999) / 1000000;
	return ms > 1000000000 ? 1000000000 : (int)ms;
}

/* The kernel's reports, or on a quiet kqueue a sleep until a trigger (quiet.c). */
static inline int wait_reports(struct kq *kq, struct epoll_event *evbuf, int max, int ms)
{
	if (kq__quiet(kq))
		return kq__quiet_wait(kq, ms);
	return kq__ep_wait_kq(kq, evbuf, max, ms);
}

static int scan(struct kq *kq, struct kevent *out, int nevents, const struct timespec *ts)
{
	struct epoll_event evbuf[KQ_EVBUF];
	int64_t deadline = deadline_of(ts);
	kq__call_out = out;
	int n = 0, spins = 0;
	for (;;) {
		if (atomic_load(&kq->kq_dead))
			return n ? n : -EBADF;
		if (atomic_load_explicit(&kq->kq_nready, memory_order_relaxed) > 0) {
			/* Kernel reports go behind what is already queued. */
			int r = wait_reports(kq, evbuf, KQ_EVBUF, 0);
			if (r > 0)
				dispatch(kq, evbuf, r, out, 0);
			n += drain(kq, out + n, nevents - n);
			if (n == nevents)
				break;
		}
		/* Once something is collected, only look for more. */
		int ms = n > 0 ? 0 : wait_ms(deadline);
		int max = nevents - n < KQ_EVBUF ? nevents - n : KQ_EVBUF;
		unsigned quiet = kq__sig_quiet;
		int r = wait_reports(kq, evbuf, max, ms);
		if (r == -EINTR && kq__sig_quiet != quiet && !n)
			continue; /* only an ignored, watched signal: its wake is queued */
		if (r < 0)
			return n ? n : r; /* -EINTR */
		if (atomic_load(&kq->kq_dead))
			return n ? n : -EBADF;
		n += dispatch(kq, evbuf, r, out + n, nevents - n);
		if (n < nevents && atomic_load_explicit(&kq->kq_nready, memory_order_relaxed) > 0)
			n += drain(kq, out + n, nevents - n);
		if (n == nevents)
			break;
		/* A full buffer may have left reports in the kernel; reports that
		 * gave nothing (a stale wake, an expiry of a disabled timer) must
		 * not end a poll while more may wait.  Both bounded. */
		if (r == max && ++spins <= 8)
			continue;
		if (n > 0 || (ms == 0 && (r == 0 || ++spins > 8)))
			break;
	}
	return n;
}

_Thread_local uint64_t kq__call_token __attribute__((tls_model("initial-exec")));
_Thread_local struct kevent *kq__call_out __attribute__((tls_model("initial-exec")));

/*
 * 64-bit tokens from a process-wide counter, taken by each thread in blocks
 * so calls do not share a cache line: never 0, never reused.
 */
static uint64_t next_call_token(void)
{
	static atomic_ullong blocks;
	static _Thread_local uint64_t next __attribute__((tls_model("initial-exec"))),
	        end __attribute__((tls_model("initial-exec")));
	if (next == end) {
		next = atomic_fetch_add_explicit(&blocks, 1, memory_order_relaxed) * 65536 + 1;
		end = next + 65535;
	}
	return next++;
}

/*
 * The wait is a cancellation point (epoll_wait(), and the quiet wait's
 * futex: quiet.c), as FreeBSD's kevent() is.  A thread cancelled there
 * does what the call's end would: the wake-ups its changes noted go out,
 * and its reference goes (else the kqueue, once closed, was never freed:
 * its three descriptors stayed open).  This file is built with -fexceptions,
 * so the handler costs no setjmp per call (src/CMakeLists.txt).
 */
static void kevent_cancelled(void *arg)
{
	struct kq *kq = arg;
	kq__defer_flush(kq);
	kq__wake_flush(kq, true);
	kq__put(kq);
	KQ_LEAVE();
}

static int kevent_impl(int kqfd, const struct kevent *changes, int nchanges, struct kevent *events,
                       int nevents, const struct timespec *ts)
{
	if (nchanges < 0 || nevents < 0)
		return -EINVAL;
	struct kq *kq = kq__get(kqfd);
	/* An open file that is not a kqueue: EINVAL, as FreeBSD 15.  A name
	 * being closed is asked about first: once its close returns, the
	 * number is closed (EBADF) or names a new file. */
	if (!kq)
		return kq__is_closing_name(kqfd) || kq__sys_fcntl(kqfd, F_GETFD, 0) < 0 ||
		                       kq__is_private_fd(kqfd)
		               ? -EBADF
		               : -EINVAL;
	int r = 0, nerr = 0;
	bool collecting = nevents > 0;
	if (nevents > 0 || nchanges > 0)
		kq__call_token = next_call_token(); /* also names the call's changes (filt_fd.c) */
	if ((nchanges > 0 && !changes) || (nevents > 0 && !events)) {
		r = -EFAULT;
		goto out;
	}
	if (nevents > 0 && nchanges > 0)
		kq__defer_begin(kq); /* re-arms may go with the wait (uring_wait.c) */
	for (int i = 0; i < nchanges; i++) {
		struct kevent kev = changes[i]; /* the lists may be one array */
		if (kev.filter == 0)
			continue;
		if ((kev.flags & EV_ADD) && i + 1 < nchanges && changes[i + 1].ident == kev.ident) {
			/* changes[i + 1] is read before a result is written: a
			 * result goes at or before the change it is for */
			struct kevent pair[2] = {kev, changes[i + 1]};
			if (apply_pair(kq, pair, nevents > 0) == 0) {
				for (int k = 0; k < 2; k++) {
					if (!(pair[k].flags & EV_RECEIPT))
						continue;
					if (nevents == 0)
						goto out; /* r = 0: a receipt found no room */
					pair[k].flags = EV_ERROR;
					pair[k].data = 0;
					events[nerr++] = pair[k];
					nevents--;
				}
				i++;
				continue;
			}
		}
		int err = apply_change(kq, &kev);
		if (!err && !(kev.flags & EV_RECEIPT))
			continue;
		if (nevents == 0) {
			r = err; /* no room: stop here, as FreeBSD */
			goto out;
		}
		kev.flags = EV_ERROR;
		kev.data = -err;
		events[nerr++] = kev;
		nevents--;
	}
	kq__defer_close();
	/* As FreeBSD, the timeout is looked at after the changes, and only
	 * when there is something to wait for. */
	if (nerr > 0)
		r = nerr;
	else if (nevents > 0 && !timeout_valid(ts))
		r = -EINVAL;
	else if (nevents > 0) {
		pthread_cleanup_push(kevent_cancelled, kq);
		r = scan(kq, events, nevents, ts);
		pthread_cleanup_pop(0);
	}
out:
	kq__defer_flush(kq);
	/* Leftovers and new work stay visible to other waiters and to poll(). */
	kq__wake_flush(kq, collecting);
	kq__put(kq);
	return r;
}

__attribute__((visibility("default"))) int kevent(int kq, const struct kevent *changelist,
                                                  int nchanges, struct kevent *eventlist,
                                                  int nevents, const struct timespec *timeout)
{
	KQ_ENTER();
	int r = kevent_impl(kq, changelist, nchanges, eventlist, nevents, timeout);
	KQ_LEAVE();
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return r;
}
