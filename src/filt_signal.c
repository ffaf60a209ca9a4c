/*
 * EVFILT_SIGNAL over one signalfd per kqueue, whose mask is the union of the
 * registered signals.  Linux only queues a signal to a signalfd when it is
 * blocked and not ignored, so the caller blocks it (see docs/CONTRACT.md);
 * FreeBSD instead records every delivery attempt.  Signals are EV_CLEAR (as
 * FreeBSD): data counts deliveries since the last report.
 */
#include <errno.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "kq_private.h"

#define SIG_MAX 64

static int signal_validate(const struct kevent *kev)
{
	if (!(kev->flags & EV_ADD))
		return 0;
	if (kev->ident < 1 || kev->ident > SIG_MAX || kev->fflags)
		return -EINVAL;
	return 0;
}

/* Points the signalfd at the registered signals (kq_lock held). */
static int signal_update(struct kq *kq)
{
	sigset_t set;
	sigemptyset(&set);
	for (int s = 1; s <= SIG_MAX; s++)
		if (kq->kq_signals[s])
			sigaddset(&set, s);
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

/* A fork copy: a signalfd of its own for the same signals. */
int kq__signal_fork(struct kq *kq)
{
	for (int s = 1; s <= SIG_MAX; s++)
		if (kq->kq_signals[s])
			return signal_update(kq);
	return 0;
}

static int signal_attach(struct kq *kq, struct knote *kn)
{
	int sig = (int)kn->kn_ident;
	kn->kn_flags |= EV_CLEAR;
	kn->kn_data = 0;
	if (kq->kq_signals[sig]++)
		return 0;
	int err = signal_update(kq);
	if (err)
		kq->kq_signals[sig]--;
	return err;
}

static void signal_detach(struct kq *kq, struct knote *kn)
{
	int sig = (int)kn->kn_ident;
	if (--kq->kq_signals[sig] == 0)
		signal_update(kq);
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

/* The signalfd is readable: count each signal on its knote. */
void kq__signal_read(struct kq *kq)
{
	struct signalfd_siginfo si[16];
	pthread_mutex_lock(&kq->kq_lock);
	for (;;) {
		ssize_t r = kq->kq_sigfd >= 0 ? read(kq->kq_sigfd, si, sizeof(si)) : -1;
		if (r <= 0)
			break;
		for (size_t i = 0; i < (size_t)r / sizeof(si[0]); i++) {
			struct knote *kn = kq__hash_find(kq, EVFILT_SIGNAL, si[i].ssi_signo);
			if (kn) {
				kn->kn_data++;
				kq__activate(kq, kn);
			}
		}
	}
	pthread_mutex_unlock(&kq->kq_lock);
}

const struct filterops kq__signal_ops = {
        .f_validate = signal_validate,
        .f_attach = signal_attach,
        .f_detach = signal_detach,
        .f_touch = NULL,
        .f_event = signal_event,
        .f_clear = signal_clear,
};
