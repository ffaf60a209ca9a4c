/*
 * EVFILT_PROC: a process's exit through a pidfd per watched process; its
 * forks and execs through the netlink process connector (proc_cn.c).
 *
 * Linux quirks this file works around:
 * - A pidfd turns readable once the process has exited, and stays so: it
 *   is registered EPOLLONESHOT, and closed as soon as the exit is seen, so
 *   a watched process costs a descriptor only while it runs.
 * - waitid(WNOWAIT) reads the wait status of our own children only, and
 *   leaves them for the program to reap.  Another process's status comes
 *   from the pidfd once it was reaped (PIDFD_GET_INFO, Linux 6.13+), or
 *   from /proc/<pid>/stat while it is a zombie; neither: data 0.
 * - pidfd_open() refuses a thread that is not its group's leader (EINVAL,
 *   ENOENT since Linux 6.9): that is no process, ESRCH as for any other.
 * - A zombie can still be signalled, a reaped process cannot (ESRCH): that
 *   tells whether a /proc entry read by pid was still our process's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kq_private.h"

#define PROC_KNOWN  (NOTE_EXIT | NOTE_FORK | NOTE_EXEC | NOTE_TRACK)
#define PROC_NEEDCN (NOTE_FORK | NOTE_EXEC | NOTE_TRACK)

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* PIDFD_GET_INFO (Linux 6.13): the first, stable part of its struct. */
struct proc_pidfd_info {
	uint64_t mask, cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
#define PROC_PIDFD_GET_INFO  _IOWR(0xFF, 11, struct proc_pidfd_info)
#define PROC_PIDFD_INFO_EXIT (1ULL << 3)

static int proc_validate(const struct kevent *kev)
{
	if (!(kev->flags & EV_ADD))
		return 0;
	if (kev->fflags & ~(unsigned)PROC_KNOWN)
		return -EINVAL;
	if (kev->ident == 0 || kev->ident > INT_MAX)
		return -ESRCH;
	return 0;
}

static bool pidfd_exited(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/* The wait(2) status word, as FreeBSD's KW_EXITCODE builds it. */
static int64_t status_of(const siginfo_t *si)
{
	switch (si->si_code) {
	case CLD_EXITED:
		return (int64_t)(si->si_status & 0xff) << 8;
	case CLD_DUMPED:
		return (si->si_status & 0x7f) | 0x80;
	default: /* CLD_KILLED */
		return si->si_status & 0x7f;
	}
}

/* A reaped process's status, kept by the pidfd (Linux 6.13+). */
static bool status_from_pidfd(int pidfd, int64_t *status)
{
	struct proc_pidfd_info info = {.mask = PROC_PIDFD_INFO_EXIT};
	if (ioctl(pidfd, PROC_PIDFD_GET_INFO, &info) < 0 || !(info.mask & PROC_PIDFD_INFO_EXIT))
		return false;
	*status = info.exit_code & 0xffff;
	return true;
}

/*
 * A zombie's status from /proc/<pid>/stat (field 52, in wait(2) form),
 * trusted only if the pidfd's process was still unreaped after the read:
 * until then the pid could not have been given to another process.
 */
static bool status_from_proc(pid_t pid, int pidfd, int64_t *status)
{
	char path[32], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	kq__sys_close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || (p[2] != 'Z' && p[2] != 'X'))
		return false;
	for (int field = 2; field < 52 && p; field++)
		if ((p = strchr(p + 1, ' ')))
			p++;
	if (!p || (pidfd_send_signal(pidfd, 0, NULL, 0) < 0 && errno == ESRCH))
		return false;
	*status = strtol(p, NULL, 10) & 0xffff;
	return true;
}

static int64_t exit_status(pid_t pid, int pidfd)
{
	siginfo_t si;
	int64_t status = 0;
	si.si_pid = 0;
	if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOWAIT | WNOHANG) == 0 &&
	    si.si_pid != 0)
		return status_of(&si);
	/* Not our child, or the program reaped it meanwhile. */
	if (status_from_pidfd(pidfd, &status) || status_from_proc(pid, pidfd, &status) ||
	    status_from_pidfd(pidfd, &status))
		return status;
	return 0;
}

static void proc_unwatch(struct kq *kq, struct knote *kn)
{
	int fd = kn->kn_u.proc.pidfd;
	if (fd < 0)
		return;
	kn->kn_u.proc.pidfd = -1;
	/* dup2() over the number moved it away (kq__private_evict): the
	 * number is the program's now, never ours to close. */
	if (!kq__is_private_fd(fd))
		return;
	kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, fd, 0, 0);
	kq__private_close(kq, fd);
}

/*
 * The process exited: as FreeBSD's filt_proc, NOTE_EXIT with the status
 * in data if asked for, EV_EOF, and the knote is oneshot (a NOTE_CHILD
 * still pending goes first: proc_clear makes it oneshot after that).
 */
static void proc_gone(struct kq *kq, struct knote *kn)
{
	if (kn->kn_u.proc.pidfd < 0)
		return;
	/* The kernel sent its fork and exec reports before the exit made
	 * the pidfd readable: they are in the socket now, and go first. */
	if (kn->kn_u.proc.want & PROC_NEEDCN)
		kq__proc_cn_drain(kq);
	if (kn->kn_u.proc.want & NOTE_EXIT) {
		kn->kn_data = exit_status((pid_t)kn->kn_ident, kn->kn_u.proc.pidfd);
		kn->kn_u.proc.fired |= NOTE_EXIT;
	}
	proc_unwatch(kq, kn);
	if (!(kn->kn_u.proc.fired & NOTE_CHILD))
		kn->kn_flags |= EV_ONESHOT;
	if (kn->kn_u.proc.fired)
		kq__activate(kq, kn);
}

static int proc_attach(struct kq *kq, struct knote *kn)
{
	pid_t pid = (pid_t)kn->kn_ident;
	kn->kn_u.proc.pidfd = -1;
	kn->kn_u.proc.fired = 0;
	kn->kn_u.proc.ppid = 0;
	kn->kn_u.proc.want = kn->kn_sfflags;
	kn->kn_flags |= EV_CLEAR; /* as FreeBSD */
	kn->kn_data = 0;
	int err, fd = pidfd_open(pid, 0);
	if (fd < 0)
		return errno == EINVAL || errno == ENOENT ? -ESRCH : -errno;
	fd = kq__private_fd(kq, fd);
	bool exited = pidfd_exited(fd);
	/* As FreeBSD, a zombie is found only by a knote that wants NOTE_EXIT. */
	if (exited && !(kn->kn_sfflags & NOTE_EXIT)) {
		err = -ESRCH;
		goto fail;
	}
	if ((kn->kn_sfflags & PROC_NEEDCN) && (err = kq__proc_cn_get(kq)))
		goto fail;
	kn->kn_u.proc.pidfd = fd;
	if (exited) {
		proc_gone(kq, kn); /* reports at once */
		return 0;
	}
	/* An exit from here on is a level report at once: nothing is missed. */
	err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLONESHOT,
	                 (KQ_TAG_PROC << KQ_TAG_SHIFT) | (uint32_t)pid);
	if (!err)
		return 0;
	if (kn->kn_sfflags & PROC_NEEDCN)
		kq__proc_cn_put(kq);
	kn->kn_u.proc.pidfd = -1;
fail:
	kq__private_close(kq, fd);
	return err;
}

static void proc_detach(struct kq *kq, struct knote *kn)
{
	proc_unwatch(kq, kn);
	if (kn->kn_u.proc.want & PROC_NEEDCN)
		kq__proc_cn_put(kq);
}

static void proc_drop(struct kq *kq, struct knote *kn)
{
	kq__group_leave(kq, kn);
	kq__dequeue(kq, kn);
	proc_detach(kq, kn);
	kq__hash_remove(kq, kn);
	kq__knote_free(kq, kn);
}

/* EV_ADD on an existing knote: new fflags; if they cannot be had, the old stay. */
static int proc_touch(struct kq *kq, struct knote *kn, const struct kevent *kev)
{
	if (!(kev->flags & EV_ADD))
		return 0;
	bool had = kn->kn_u.proc.want & PROC_NEEDCN, need = kn->kn_sfflags & PROC_NEEDCN;
	if (need && !had) {
		int err = kq__proc_cn_get(kq);
		if (err) {
			kn->kn_sfflags = kn->kn_u.proc.want;
			return err;
		}
	}
	if (had && !need)
		kq__proc_cn_put(kq);
	kn->kn_u.proc.want = kn->kn_sfflags;
	return 0;
}

/*
 * NOTE_CHILD is reported on its own, data = the parent's pid, as FreeBSD
 * does with a knote of its own: NOTE_EXIT's data would collide with it.
 */
static bool proc_event(struct kq *kq, struct knote *kn, struct kevent *out)
{
	(void)kq;
	uint32_t fired = kn->kn_u.proc.fired;
	if (fired & NOTE_CHILD) {
		out->fflags = NOTE_CHILD;
		out->data = kn->kn_u.proc.ppid;
		return true;
	}
	out->fflags = fired;
	out->data = (fired & NOTE_EXIT) ? kn->kn_data : 0;
	if (kn->kn_u.proc.pidfd < 0)
		out->flags |= EV_EOF;
	return fired != 0;
}

static void proc_clear(struct kq *kq, struct knote *kn)
{
	(void)kq;
	if (!(kn->kn_u.proc.fired & NOTE_CHILD)) {
		kn->kn_u.proc.fired = 0;
		return;
	}
	/* The rest comes in the next event. */
	kn->kn_u.proc.fired &= ~(uint32_t)NOTE_CHILD;
	if (kn->kn_u.proc.pidfd < 0)
		kn->kn_flags |= EV_ONESHOT;
	if (kn->kn_u.proc.fired)
		kn->kn_status |= KN_ACTIVE;
}

/* A pidfd fired (or the connector has news): has the process exited? */
void kq__proc_event(struct kq *kq, uint32_t pid)
{
	if (pid == 0) {
		kq__proc_cn_read(kq);
		return;
	}
	kq__mutex_lock(&kq->kq_lock);
	/* A stale report (the knote was deleted and added again) asks the
	 * new pidfd, which says "not yet": harmless. */
	struct knote *kn = kq__hash_find(kq, EVFILT_PROC, pid);
	if (kn)
		kq__proc_check(kq, kn);
	kq__mutex_unlock(&kq->kq_lock);
}

/* Has kn's process exited?  Then it reports (or goes). */
void kq__proc_check(struct kq *kq, struct knote *kn)
{
	int fd = kn->kn_u.proc.pidfd;
	if (fd < 0)
		return;
	if (!kq__is_private_fd(fd)) {
		/* dup2() gave the number to the program: its file says nothing
		 * of our process (CONTRACT.md, known limits). */
		kn->kn_u.proc.pidfd = -1;
		return;
	}
	if (!pidfd_exited(fd))
		return;
	proc_gone(kq, kn);
	/* Nothing it asked for happened: dropped, as FreeBSD's EV_DROP
	 * (unless a forced return is still due). */
	if (!kn->kn_u.proc.fired && !(kn->kn_status & KN_FORCED))
		proc_drop(kq, kn);
}

/*
 * NOTE_TRACK saw parent fork child: the child gets a knote with the
 * parent's fflags, flags and udata that reports NOTE_CHILD first.  A knote
 * the program made for the child already gets the NOTE_CHILD.
 */
int kq__proc_track(struct kq *kq, struct knote *parent, int child)
{
	struct knote *kn = kq__hash_find(kq, EVFILT_PROC, (uintptr_t)child);
	if (!kn) {
		/* A parent already gone is oneshot for that reason, not by choice. */
		unsigned short keep = EV_SERIAL | (parent->kn_u.proc.pidfd < 0 ? EV_ONESHOT : 0);
		struct kevent kev;
		EV_SET(&kev, child, EVFILT_PROC, EV_ADD | (parent->kn_flags & ~keep),
		       parent->kn_u.proc.want, 0, parent->kn_udata);
		if (!(kn = kq__knote_alloc(kq, EVFILT_PROC)))
			return -ENOMEM;
		kq__knote_set(kn, &kev, true);
		kn->kn_status = KN_ATTACHED;
		int err = kq__hash_insert(kq, kn);
		if (!err && (err = proc_attach(kq, kn)))
			kq__hash_remove(kq, kn);
		if (err) {
			kq__knote_free(kq, kn);
			return err;
		}
	}
	kn->kn_u.proc.fired |= NOTE_CHILD;
	kn->kn_u.proc.ppid = (int32_t)parent->kn_ident;
	kq__activate(kq, kn);
	return 0;
}

/* A KQUEUE_CPONFORK copy: the inherited pidfds into the child's epoll. */
int kq__proc_fork(struct kq *kq)
{
	for (uint32_t i = 0; kq->kq_hash.ht_tab && i <= kq->kq_hash.ht_mask; i++) {
		for (struct knote *kn = kq->kq_hash.ht_tab[i]; kn; kn = kn->kn_hnext) {
			if (kn->kn_filter != EVFILT_PROC || kn->kn_u.proc.pidfd < 0)
				continue;
			int err =
			        kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, kn->kn_u.proc.pidfd,
			                   EPOLLIN | EPOLLONESHOT,
			                   (KQ_TAG_PROC << KQ_TAG_SHIFT) | (uint32_t)kn->kn_ident);
			if (err)
				return err;
		}
	}
	return kq__proc_cn_fork(kq);
}

/* The kqueue is gone: its pidfds and connector socket (system calls only). */
void kq__proc_close_fds(struct kq *kq)
{
	for (uint32_t i = 0; kq->kq_hash.ht_tab && i <= kq->kq_hash.ht_mask; i++) {
		for (struct knote *kn = kq->kq_hash.ht_tab[i]; kn; kn = kn->kn_hnext) {
			if (kn->kn_filter != EVFILT_PROC || kn->kn_u.proc.pidfd < 0)
				continue;
			if (kq__is_private_fd(kn->kn_u.proc.pidfd))
				kq__private_close(kq, kn->kn_u.proc.pidfd);
			kn->kn_u.proc.pidfd = -1;
		}
	}
	kq__private_close(kq, kq->kq_procfd);
	kq->kq_procfd = -1;
}

const struct filterops kq__proc_ops = {
        .f_validate = proc_validate,
        .f_attach = proc_attach,
        .f_detach = proc_detach,
        .f_touch = proc_touch,
        .f_event = proc_event,
        .f_clear = proc_clear,
};
