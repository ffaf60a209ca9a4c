/*
 * Regular files: epoll cannot watch them, so their READ knotes are served
 * from the ready queue and are ready while offset != size.  A knote found at
 * EOF would never be looked at again; instead its file gets an inotify watch
 * (one inotify fd per kqueue, made when first needed), and a change to the
 * file queues the knotes of every fd watching it for a fresh look.  The same
 * inotify fd serves EVFILT_VNODE (filt_vnode.c): every batch read here goes
 * there too, a watch is added with IN_MASK_ADD (an inode has one wd per
 * inotify, and a plain add would replace the other user's mask), and a wd
 * is removed only when neither uses it.
 *
 * A watch that cannot be made (no fd free for the inotify fd, the watch
 * limit reached) is kept as a pending entry (w_wd -1): the kqueue's timerfd
 * is armed to look at its file every WATCH_RETRY_NS and to try the watch
 * again, so growth is still reported, late but never lost.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "kq_private.h"

struct kq_watch {
	int w_wd; /* inotify watch, shared by fds of one file; -1: pending */
	int w_fd;
};

#define WATCH_RETRY_NS 100000000LL

#define WATCH_EVENTS (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DELETE_SELF)

int kq__inotify_fd(struct kq *kq)
{
	if (kq->kq_inofd >= 0)
		return kq->kq_inofd;
	int fd = kq__private_fd(kq, inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
	if (fd < 0)
		return -errno;
	int err =
	        kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, fd, EPOLLIN, KQ_TAG_INOTIFY << KQ_TAG_SHIFT);
	if (err) {
		kq__private_close(kq, fd);
		return err;
	}
	return kq->kq_inofd = fd;
}

/*
 * Makes the timerfd fire by deadline d, for a retry of our own (kq_lock
 * held); whoever handles the expiry re-arms it for what is left.
 */
void kq__timerfd_soon(struct kq *kq, int64_t d)
{
	KQ_ASSERT_LOCKED(&kq->kq_lock);
	if (kq->kq_timer_armed && kq->kq_timer_armed <= d)
		return;
	struct itimerspec its = {.it_value = {d / 1000000000LL, d % 1000000000LL}};
	if (timerfd_settime(kq->kq_timerfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		kq->kq_timer_armed = d;
}

/* Wakes kq__file_retry() soon (kq_lock held). */
static void retry_arm(struct kq *kq)
{
	kq__timerfd_soon(kq, kq__now_ns() + WATCH_RETRY_NS);
}

/* An inotify watch on fd's file, or -errno (kq_lock held). */
static int add_watch(struct kq *kq, int fd)
{
	int ifd = kq__inotify_fd(kq);
	if (ifd < 0)
		return ifd;
	char path[40];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int wd = inotify_add_watch(ifd, path, WATCH_EVENTS | IN_MASK_ADD);
	return wd < 0 ? -errno : wd;
}

int kq__file_watch(struct kq *kq, struct kq_fdent *fe)
{
	if (fe->fe_watched)
		return 0;
	kq__mutex_lock(&kq->kq_lock);
	int err = 0;
	if (kq->kq_nwatches == kq->kq_watchcap) {
		uint32_t cap = kq->kq_watchcap ? kq->kq_watchcap * 2 : 8;
		struct kq_watch *w = realloc(kq->kq_watches, cap * sizeof(*w));
		if (!w) {
			err = -ENOMEM;
			goto out;
		}
		kq->kq_watches = w;
		kq->kq_watchcap = cap;
	}
	int wd = add_watch(kq, fe->fe_fd);
	if (wd < 0 && wd != -EMFILE && wd != -ENFILE && wd != -ENOSPC && wd != -ENOMEM) {
		err = wd;
		goto out;
	}
	if (wd < 0) {
		wd = -1; /* out of fds or watches for now: retried */
		atomic_fetch_add_explicit(&kq->kq_wpending, 1, memory_order_relaxed);
		retry_arm(kq);
	}
	kq->kq_watches[kq->kq_nwatches++] = (struct kq_watch){wd, fe->fe_fd};
	fe->fe_watched = true;
out:
	kq__mutex_unlock(&kq->kq_lock);
	return err;
}

/*
 * The timerfd fired: make the pending watches, and look at their files
 * (they may have grown while nothing watched them).
 */
void kq__file_retry(struct kq *kq)
{
	if (!atomic_load_explicit(&kq->kq_wpending, memory_order_relaxed))
		return; /* the common timer expiry */
	int *fds = NULL, nfds = 0;
	unsigned pending = 0;
	kq__mutex_lock(&kq->kq_lock);
	fds = malloc((kq->kq_nwatches + 1) * sizeof(*fds));
	for (uint32_t i = 0; fds && i < kq->kq_nwatches; i++) {
		struct kq_watch *w = &kq->kq_watches[i];
		if (w->w_wd >= 0)
			continue;
		int wd = add_watch(kq, w->w_fd);
		if (wd >= 0)
			w->w_wd = wd;
		else
			pending++;
		fds[nfds++] = w->w_fd;
	}
	if (fds) /* a recount: also right after a fork copy dropped the table */
		atomic_store_explicit(&kq->kq_wpending, pending, memory_order_relaxed);
	if (!fds || pending)
		retry_arm(kq);
	kq__mutex_unlock(&kq->kq_lock);
	for (int i = 0; i < nfds; i++)
		kq__fd_file_changed(kq, fds[i]);
	free(fds);
}

void kq__file_unwatch(struct kq *kq, struct kq_fdent *fe)
{
	if (!fe->fe_watched)
		return;
	fe->fe_watched = false;
	kq__mutex_lock(&kq->kq_lock);
	int wd = -1;
	bool shared = false;
	for (uint32_t i = 0; i < kq->kq_nwatches; i++) {
		if (kq->kq_watches[i].w_fd == fe->fe_fd) {
			wd = kq->kq_watches[i].w_wd;
			if (wd < 0)
				atomic_fetch_sub_explicit(&kq->kq_wpending, 1,
				                          memory_order_relaxed);
			kq->kq_watches[i--] = kq->kq_watches[--kq->kq_nwatches];
		}
	}
	for (uint32_t i = 0; i < kq->kq_nwatches; i++)
		shared |= kq->kq_watches[i].w_wd == wd;
	if (wd >= 0 && !shared && !kq__vnode_has_wd(kq, wd))
		inotify_rm_watch(kq->kq_inofd, wd);
	kq__mutex_unlock(&kq->kq_lock);
}

/* What the READ watches ask of wd: their events if one uses it, else 0. */
uint32_t kq__file_wd_mask(struct kq *kq, int wd)
{
	for (uint32_t i = 0; wd >= 0 && i < kq->kq_nwatches; i++)
		if (kq->kq_watches[i].w_wd == wd)
			return WATCH_EVENTS;
	return 0;
}

/* The inotify fd is readable: the watched files changed. */
void kq__file_changed(struct kq *kq)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int *fds = NULL, nfds = 0;
	kq__mutex_lock(&kq->kq_lock);
	ssize_t r;
	while (kq->kq_inofd >= 0 && (r = read(kq->kq_inofd, buf, sizeof(buf))) > 0) {
		kq__vnode_inotify(kq, buf, (size_t)r);
		if (!fds && !(fds = malloc((kq->kq_nwatches + 1) * sizeof(*fds))))
			break;
		for (char *p = buf; p < buf + r;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			/* Events were lost (the queue overflowed): look at every file. */
			bool all = ev->mask & IN_Q_OVERFLOW;
			for (uint32_t i = 0; i < kq->kq_nwatches; i++) {
				if (kq->kq_watches[i].w_wd != ev->wd && !all)
					continue;
				int j = 0;
				while (j < nfds && fds[j] != kq->kq_watches[i].w_fd)
					j++;
				if (j == nfds)
					fds[nfds++] = kq->kq_watches[i].w_fd;
			}
			p += sizeof(*ev) + ev->len;
		}
	}
	kq__mutex_unlock(&kq->kq_lock);
	/* Their fd locks come before kq_lock: take them after. */
	for (int i = 0; i < nfds; i++)
		kq__fd_file_changed(kq, fds[i]);
	free(fds);
}
