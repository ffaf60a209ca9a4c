/*
 * EVFILT_SIGNAL, as FreeBSD: every delivery of a watched signal is
 * recorded, whatever its disposition, and each knote on it (in any kqueue)
 * sees it; data counts deliveries since the last report (EV_CLEAR implied).
 *
 * Deliveries are counted per signal, process-wide (sighook.c: sh_count),
 * by libbaton's handler or, for a signal the program blocked, by whichever
 * kqueue's signalfd takes it.  Either then marks every kqueue that watches
 * the signal (kq_sigdirty) and writes its wake eventfd; that kqueue's next
 * look (kq__signal_scan) adds what the counter gained since the knote last
 * looked (kn_u.sig.seen) to kn_data.  A delivery racing the look is never
 * lost: the mark is cleared before the counters are read.
 *
 * Linux quirk: a signalfd only sees a signal that is blocked; the kernel
 * hands a pending one to the first reader, so a signalfd takes only what
 * the program would not miss (its action is SIG_DFL or SIG_IGN:
 * kq__sig_by_fd), and the count is shared by all.
 */
#include <errno.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "kq_private.h"

static int signal_validate(const struct kevent *kev)
{
	if (!(kev->flags & EV_ADD))
		return 0;
	if (kev->ident < 1 || kev->ident >= KQ_NSIG || kev->fflags)
		return -EINVAL;
	return 0;
}

/* Points the signalfd at the watched signals it may take (kq_lock held). */
static int signal_update(struct kq *kq)
{
	unsigned gen = kq__sig_gen();
	sigset_t set;
	sigemptyset(&set);
	bool any = false;
	for (int s = 1; s < KQ_NSIG; s++)
		if (kq->kq_signals[s] && kq__sig_by_fd(s)) {
			sigaddset(&set, s);
			any = true;
		}
	kq->kq_sigfd_gen = gen;
	if (!any && kq->kq_sigfd < 0)
		return 0;
	int fd = signalfd(kq->kq_sigfd, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (kq->kq_sigfd < 0) {
		fd = kq__private_fd(kq, fd);
		int err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, fd, EPOLLIN,
		                     KQ_TAG_SIGNAL << KQ_TAG_SHIFT);
		if (err) {
			kq__private_close(kq, fd);
			return err;
		}
		kq->kq_sigfd = fd;
	}
	return 0;
}

/* A fork copy: a signalfd of its own, and its knotes counted again. */
int kq__signal_fork(struct kq *kq)
{
	bool any = false;
	for (int s = 1; s < KQ_NSIG; s++)
		if (kq->kq_signals[s]) {
			kq__sig_fork_add(s, kq->kq_signals[s]);
			any = true;
		}
	return any ? signal_update(kq) : 0;
}

/* The kqueue is freed: its knotes stop watching (kq_release). */
void kq__signal_release(struct kq *kq)
{
	for (int s = 1; s < KQ_NSIG; s++) {
		kq__sig_unwatch(s, kq->kq_signals[s]);
		kq->kq_signals[s] = 0;
	}
	atomic_store(&kq->kq_sigmask, 0);
}

static int signal_attach(struct kq *kq, struct knote *kn)
{
	int sig = (int)kn->kn_ident;
	kn->kn_flags |= EV_CLEAR;
	kn->kn_data = 0;
	int err = kq__sig_watch(sig);
	if (err)
		return err;
	/* Only deliveries from now on: the handler is in place. */
	kn->kn_u.sig.seen = kq__sig_count(sig);
	if (kq->kq_signals[sig]++ == 0)
		atomic_fetch_or(&kq->kq_sigmask, 1ULL << (sig - 1));
	err = signal_update(kq);
	if (err) {
		if (--kq->kq_signals[sig] == 0)
			atomic_fetch_and(&kq->kq_sigmask, ~(1ULL << (sig - 1)));
		kq__sig_unwatch(sig, 1);
	}
	return err;
}

static void signal_detach(struct kq *kq, struct knote *kn)
{
	int sig = (int)kn->kn_ident;
	if (--kq->kq_signals[sig] == 0)
		atomic_fetch_and(&kq->kq_sigmask, ~(1ULL << (sig - 1)));
	signal_update(kq);
	kq__sig_unwatch(sig, 1);
}

static bool signal_event(struct kq *kq, struct knote *kn, struct kevent *out)
{
	(void)kq;
	out->data = kn->kn_data;
	return kn->kn_data > 0;
}

static void signal_clear(struct kq *kq, struct knote *kn)
{
	(void)kq;
	kn->kn_data = 0;
}

/* New deliveries onto the knotes (kq_lock held). */
static void signal_collect(struct kq *kq)
{
	if (kq->kq_sigfd_gen != kq__sig_gen())
		signal_update(kq); /* a program's sigaction() changed what it may take */
	uint64_t mask = atomic_load(&kq->kq_sigmask);
	for (int s = 1; mask; s++, mask >>= 1) {
		if (!(mask & 1))
			continue;
		struct knote *kn = kq__hash_find(kq, EVFILT_SIGNAL, (uintptr_t)s);
		uint64_t c = kq__sig_count(s);
		if (!kn || c == kn->kn_u.sig.seen)
			continue;
		kn->kn_data += (int64_t)(c - kn->kn_u.sig.seen);
		kn->kn_u.sig.seen = c;
		kq__activate(kq, kn);
	}
}

/* A watched signal was recorded somewhere (the mark was set). */
void kq__signal_scan(struct kq *kq)
{
	kq__mutex_lock(&kq->kq_lock);
	signal_collect(kq);
	kq__mutex_unlock(&kq->kq_lock);
}

/* The signalfd is readable: a blocked signal is recorded for everyone. */
void kq__signal_read(struct kq *kq)
{
	struct signalfd_siginfo si[16];
	kq__mutex_lock(&kq->kq_lock);
	if (kq->kq_sigfd_gen != kq__sig_gen())
		signal_update(kq); /* do not take what the program's handler waits for */
	for (;;) {
		ssize_t r = kq->kq_sigfd >= 0 ? read(kq->kq_sigfd, si, sizeof(si)) : -1;
		if (r <= 0)
			break;
		for (size_t i = 0; i < (size_t)r / sizeof(si[0]); i++)
			if (si[i].ssi_signo >= 1 && si[i].ssi_signo < KQ_NSIG)
				kq__sig_record((int)si[i].ssi_signo);
	}
	atomic_store(&kq->kq_sigdirty, false);
	signal_collect(kq);
	kq__mutex_unlock(&kq->kq_lock);
}

const struct filterops kq__signal_ops = {
        .f_validate = signal_validate,
        .f_attach = signal_attach,
        .f_detach = signal_detach,
        .f_touch = NULL,
        .f_event = signal_event,
        .f_clear = signal_clear,
};
