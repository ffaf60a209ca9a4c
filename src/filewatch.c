/*
 * Regular files: epoll cannot watch them, so their READ knotes are served
 * from the ready queue and are ready while offset != size.  A knote found at
 * EOF would never be looked at again; instead its file gets an inotify watch
 * (one inotify fd per kqueue, made when first needed), and a change to the
 * file queues the knotes of every fd watching it for a fresh look.  The same
 * inotify fd is where a VNODE filter will plug in.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "kq_private.h"

struct kq_watch {
	int w_wd; /* inotify watch, shared by fds of one file */
	int w_fd;
};

#define WATCH_EVENTS (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DELETE_SELF)

static int inotify_fd(struct kq *kq)
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

int kq__file_watch(struct kq *kq, struct kq_fdent *fe)
{
	if (fe->fe_watched)
		return 0;
	pthread_mutex_lock(&kq->kq_lock);
	int err = 0, ifd = inotify_fd(kq);
	if (ifd < 0) {
		err = ifd;
		goto out;
	}
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
	char path[40];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fe->fe_fd);
	int wd = inotify_add_watch(ifd, path, WATCH_EVENTS);
	if (wd < 0) {
		err = -errno;
		goto out;
	}
	kq->kq_watches[kq->kq_nwatches++] = (struct kq_watch){wd, fe->fe_fd};
	fe->fe_watched = true;
out:
	pthread_mutex_unlock(&kq->kq_lock);
	return err;
}

void kq__file_unwatch(struct kq *kq, struct kq_fdent *fe)
{
	if (!fe->fe_watched)
		return;
	fe->fe_watched = false;
	pthread_mutex_lock(&kq->kq_lock);
	int wd = -1;
	bool shared = false;
	for (uint32_t i = 0; i < kq->kq_nwatches; i++) {
		if (kq->kq_watches[i].w_fd == fe->fe_fd) {
			wd = kq->kq_watches[i].w_wd;
			kq->kq_watches[i--] = kq->kq_watches[--kq->kq_nwatches];
		}
	}
	for (uint32_t i = 0; i < kq->kq_nwatches; i++)
		shared |= kq->kq_watches[i].w_wd == wd;
	if (wd >= 0 && !shared)
		inotify_rm_watch(kq->kq_inofd, wd);
	pthread_mutex_unlock(&kq->kq_lock);
}

/* The inotify fd is readable: the watched files changed. */
void kq__file_changed(struct kq *kq)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int *fds = NULL, nfds = 0;
	pthread_mutex_lock(&kq->kq_lock);
	ssize_t r;
	while (kq->kq_inofd >= 0 && (r = read(kq->kq_inofd, buf, sizeof(buf))) > 0) {
		if (!fds && !(fds = malloc((kq->kq_nwatches + 1) * sizeof(*fds))))
			break;
		for (char *p = buf; p < buf + r;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			for (uint32_t i = 0; i < kq->kq_nwatches; i++) {
				if (kq->kq_watches[i].w_wd != ev->wd)
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
	pthread_mutex_unlock(&kq->kq_lock);
	/* Their fd locks come before kq_lock: take them after. */
	for (int i = 0; i < nfds; i++)
		kq__fd_file_changed(kq, fds[i]);
	free(fds);
}
