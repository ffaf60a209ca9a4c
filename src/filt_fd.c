/*
 * EVFILT_READ and EVFILT_WRITE: knotes on file descriptors, over epoll.
 *
 * An fd has one epoll registration shared by its READ and WRITE knotes; its
 * mode follows the knotes (fe_sync):
 * - level-triggered while every enabled knote is level-triggered;
 * - EPOLLET as soon as one needs edges (EV_CLEAR, NOTE_LOWAT); a level knote
 *   on such an fd is then kept level by requeueing it after delivery, and the
 *   requeued knote is re-checked with poll() before it is delivered again;
 * - EPOLLONESHOT while every enabled knote is EV_DISPATCH or EV_ONESHOT, so
 *   a dispatch delivery and its re-enable cost what EPOLLONESHOT and
 *   EPOLL_CTL_MOD cost in a raw epoll program.
 * All of a knote's state is guarded by fe_lock, which is also held across the
 * epoll_ctl() that makes the registration match it (never across a wait).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "kq_private.h"

#define KN_DISPATCHY (EV_DISPATCH | EV_ONESHOT)

static bool kn_serial(const struct knote *kn)
{
	return (kn->kn_flags & EV_SERIAL) && kn->kn_aux && kn->kn_aux->group;
}

static uint32_t kn_interest(const struct knote *kn)
{
	return kn->kn_filter == EVFILT_READ ? EPOLLIN | EPOLLRDHUP : EPOLLOUT;
}

static bool kn_needs_edge(const struct knote *kn)
{
	return (kn->kn_flags & EV_CLEAR) || (kn->kn_sfflags & NOTE_LOWAT);
}

static bool kn_wants_kernel(const struct knote *kn)
{
	if (!(kn->kn_status & KN_ATTACHED))
		return false;
	if ((kn->kn_status & KN_DISABLED) && !KQ_BROKEN(KQ_BREAK_I2))
		return false;
	/* A dispatch knote waiting on the ready queue needs no more reports,
	 * nor does a member of a held serial group: its release re-arms it. */
	if ((kn->kn_flags & EV_SERIAL) && kn->kn_aux &&
	    (atomic_load_explicit(&kn->kn_aux->gpend, memory_order_relaxed) || kq__group_held(kn)))
		return false;
	return !((kn->kn_status & KN_ACTIVE) && (kn->kn_flags & KN_DISPATCHY));
}

/*
 * The registration the knotes of fe want: events | mode bits, or 0.  An
 * edge registration that is not oneshot keeps the bits of disabled knotes:
 * modifying it would make the kernel report every bit again, and an EV_CLEAR
 * sibling would see an event without new data.  Knotes enabled or re-added
 * on it are re-checked through the ready queue instead, and edges seen while
 * a knote is disabled are remembered (KN_PENDING) for EV_ENABLE.
 */
static uint32_t fe_desired(const struct kq_fdent *fe)
{
	uint32_t mask = 0, all = 0;
	bool all_dispatch = true, edge = false;
	for (int k = 0; k < FE_NKN; k++) {
		const struct knote *kn = &fe->fe_kn[k];
		if (kn->kn_status & KN_ATTACHED)
			all |= kn_interest(kn);
		if (!kn_wants_kernel(kn))
			continue;
		mask |= kn_interest(kn);
		all_dispatch &= (kn->kn_flags & (KN_DISPATCHY | EV_SERIAL)) != 0;
		edge |= kn_needs_edge(kn);
	}
	if (!mask)
		return 0;
	if (all_dispatch && !KQ_BROKEN(KQ_BREAK_I1))
		return mask | EPOLLONESHOT | (edge ? EPOLLET : 0);
	return edge ? all | EPOLLET : mask;
}

/* Does fe's registration report edges only (and stay armed)? */
static bool fe_edge(const struct kq_fdent *fe)
{
	return (fe->fe_regmask & (EPOLLET | EPOLLONESHOT)) == EPOLLET;
}

/*
 * The close hook ran while the fd was being (re)registered, and its
 * EPOLL_CTL_DEL may have come first: take the registration out again if the
 * number still names that file (fe_lock held).  Anonymous inodes (every
 * eventfd shares one) cannot be told apart: such a registration is left, to
 * go with its file; its reports are stale once the close is applied.
 */
static void fe_close_race(struct kq *kq, struct kq_fdent *fe)
{
	struct stat st;
	if (fe->fe_type != FT_OTHER && fstat(fe->fe_fd, &st) == 0 && st.st_dev == fe->fe_dev &&
	    st.st_ino == fe->fe_ino)
		kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, fe->fe_fd, 0, 0);
	fe->fe_inepoll = false;
}

/* Does fe's registration report a ready fd again and again by itself? */
static bool fe_level(const struct kq_fdent *fe)
{
	return fe->fe_inepoll && !(fe->fe_regmask & (EPOLLET | EPOLLONESHOT));
}

/* Makes the epoll registration match the knotes (fe_lock held). */
static int fe_sync(struct kq *kq, struct kq_fdent *fe)
{
	if (fe->fe_type == FT_REGULAR)
		return 0;
	uint32_t want = fe_desired(fe);
	uint64_t data = kq__ep_data_fd(fe->fe_fd, fe->fe_gen);
	int err = 0;
	if (!want) {
		/* A fired oneshot registration reports nothing: leave it. */
		if (fe->fe_inepoll && fe->fe_armed) {
			err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, fe->fe_fd, 0, 0);
			fe->fe_inepoll = false;
			fe->fe_gen++; /* a report already taken is stale now (I4) */
		}
		return err == -ENOENT || err == -EBADF ? 0 : err;
	}
	if (!fe->fe_inepoll) {
		err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, fe->fe_fd, want, data);
		if (err == -EEXIST) /* a stale registration of a dup'd file */
			err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_MOD, fe->fe_fd, want, data);
	} else if (!fe->fe_armed || want != fe->fe_regmask) {
		err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_MOD, fe->fe_fd, want, data);
		if (err == -ENOENT) /* the file went away behind our back */
			err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, fe->fe_fd, want, data);
	} else {
		return 0;
	}
	if (!err) {
		fe->fe_inepoll = true;
		fe->fe_armed = true;
		fe->fe_regmask = want;
		/* After the store the close hook reads: one of us sees the other. */
		if (atomic_load(&fe->fe_closegen) != fe->fe_closeseen)
			fe_close_race(kq, fe);
	}
	return err;
}

/*
 * Linux's memory devices (major 1: null, zero, full, random, urandom, mem,
 * kmsg...): their FreeBSD counterparts have no kqueue filter, so EV_ADD
 * fails there with ENODEV (epoll refuses most of them too).
 */
#define MEM_MAJOR 1

/* The kind of file fd names (FT_BAD if it names none), and its identity. */
static int probe_type(int fd, uint64_t *dev, uint64_t *ino)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return FT_BAD;
	*dev = st.st_dev;
	*ino = st.st_ino;
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
		return FT_REGULAR;
	if (S_ISFIFO(st.st_mode))
		return FT_PIPE;
	if (S_ISSOCK(st.st_mode)) {
		int type = 0, listening = 0;
		socklen_t len = sizeof(type);
		getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
		len = sizeof(listening);
		getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
		if (listening)
			return FT_LISTEN;
		return type == SOCK_STREAM ? FT_STREAM : FT_DGRAM;
	}
	if (S_ISCHR(st.st_mode)) {
		int n;
		if (major(st.st_rdev) == MEM_MAJOR)
			return FT_NODEV;
		return ioctl(fd, FIONREAD, &n) == 0 ? FT_TTY : FT_OTHER;
	}
	return FT_OTHER;
}

static int64_t listen_backlog(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_unacked > 0)
		return ti.tcpi_unacked;
	return 1;
}

/*
 * The error of a failed TCP socket, for fflags with EV_EOF, read without
 * consuming it: every Linux call that returns sk_err (SO_ERROR, recv even
 * with MSG_PEEK, connect) also clears it, and the program must still see it
 * (FreeBSD reports so_error and leaves it).  TCP_INFO leaves it alone; a
 * socket that reported EPOLLERR and is closed now failed in one of these
 * ways: it never got an answer to its SYN (ETIMEDOUT; an ICMP unreachable
 * looks the same), its SYN was refused (a RST, ECONNREFUSED), or an
 * established connection was reset (ECONNRESET).  Other sockets: 0.
 */
static uint32_t sock_error(int fd)
{
	enum { TCPS_CLOSE = 7 }; /* the kernel's TCP_CLOSE, not in the uapi headers */
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_delivered) + sizeof(ti.tcpi_delivered) ||
	    ti.tcpi_state != TCPS_CLOSE)
		return 0;
	if (ti.tcpi_delivered > 0 || ti.tcpi_bytes_received > 0) /* it was connected */
		return ECONNRESET;
	return ti.tcpi_segs_in > 0 ? ECONNREFUSED : ETIMEDOUT;
}

/*
 * f_event of READ/WRITE: the knote's data and readiness from revents (fresh
 * from epoll or poll) and a query of the fd.
 */
static bool fd_event(struct kq_fdent *fe, struct knote *kn, uint32_t revents, struct kevent *out)
{
	int fd = fe->fe_fd, n = 0;
	int64_t lowat = (kn->kn_sfflags & NOTE_LOWAT) && kn->kn_sdata > 0 ? kn->kn_sdata : 1;
	bool eof, ready;
	kq__knote_copyout(kn, out);
	if ((kn->kn_sfflags & NOTE_NODATA) && fe->fe_type != FT_REGULAR &&
	    fe->fe_type != FT_LISTEN) {
		/* Baton extension: the kernel's word, no system call for a count. */
		uint32_t want = kn->kn_filter == EVFILT_READ ? EPOLLIN : EPOLLOUT;
		eof = revents & (kn->kn_filter == EVFILT_READ ? EPOLLRDHUP | EPOLLHUP | EPOLLERR
		                                              : EPOLLHUP | EPOLLERR);
		ready = (revents & want) || eof;
		out->data = (revents & want) ? 1 : 0;
		if (eof)
			out->flags |= EV_EOF;
		return ready || (kn->kn_status & KN_FORCED);
	}
	if (kn->kn_filter == EVFILT_READ) {
		eof = revents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
		switch (fe->fe_type) {
		case FT_STREAM:
		case FT_PIPE:
		case FT_TTY:
			if (ioctl(fd, FIONREAD, &n) < 0)
				n = 0;
			out->data = n;
			ready = n >= lowat || eof;
			break;
		case FT_DGRAM:
			if (ioctl(fd, FIONREAD, &n) < 0)
				n = 0;
			out->data = n;
			ready = (revents & EPOLLIN) || eof;
			break;
		case FT_LISTEN:
			out->data = listen_backlog(fd);
			ready = revents & EPOLLIN;
			eof = false;
			break;
		case FT_REGULAR: {
			struct stat st;
			off_t off = lseek(fd, 0, SEEK_CUR);
			out->data = fstat(fd, &st) == 0 && off >= 0 ? (int64_t)st.st_size - off : 0;
			ready = out->data != 0 || (kn->kn_sfflags & NOTE_FILE_POLL);
			eof = false;
			break;
		}
		default:
			ready = revents & (EPOLLIN | EPOLLHUP | EPOLLERR);
			break;
		}
	} else {
		eof = revents & (EPOLLHUP | EPOLLERR);
		switch (fe->fe_type) {
		case FT_STREAM:
		case FT_DGRAM:
		case FT_LISTEN: {
			int sndbuf = 0;
			socklen_t len = sizeof(sndbuf);
			getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
			if (ioctl(fd, SIOCOUTQ, &n) < 0)
				n = 0;
			out->data = sndbuf > n ? sndbuf - n : 0;
			ready = ((revents & EPOLLOUT) && out->data >= lowat) || eof;
			break;
		}
		case FT_PIPE: {
			int size = kq__sys_fcntl(fd, F_GETPIPE_SZ, 0);
			if (ioctl(fd, FIONREAD, &n) < 0)
				n = 0;
			out->data = size > n ? size - n : 0;
			ready = (revents & EPOLLOUT) || eof;
			break;
		}
		case FT_REGULAR:
			ready = true;
			eof = false;
			break;
		default:
			ready = revents & (EPOLLOUT | EPOLLHUP | EPOLLERR);
			break;
		}
	}
	if (eof) {
		out->flags |= EV_EOF;
		if ((revents & EPOLLERR) && fe->fe_type == FT_STREAM)
			out->fflags = sock_error(fd);
	}
	return ready || (kn->kn_status & KN_FORCED);
}

/* Removes a knote (fe_lock held). */
static void fd_detach(struct kq *kq, struct knote *kn)
{
	if (kn->kn_filter == EVFILT_READ)
		kq__file_unwatch(kq, kn->kn_u.fe);
	kq__group_leave(kq, kn);
	if (kn->kn_status & KN_ACTIVE) {
		pthread_mutex_lock(&kq->kq_lock);
		kq__dequeue(kq, kn);
		pthread_mutex_unlock(&kq->kq_lock);
	}
	kn->kn_status = 0;
}

/* The fd's file went away: forget its knotes and registration (fe_lock held). */
static void fe_forget(struct kq *kq, struct kq_fdent *fe)
{
	for (int k = 0; k < FE_NKN; k++)
		if (fe->fe_kn[k].kn_status & KN_ATTACHED)
			fd_detach(kq, &fe->fe_kn[k]);
	fe->fe_gen++; /* whatever was reported for the old file is stale */
	fe->fe_inepoll = false;
	fe->fe_armed = false;
	fe->fe_regmask = 0;
	fe->fe_type = FT_UNKNOWN;
	fe->fe_dev = fe->fe_ino = 0;
}

/* Applies the closes the hook saw since the last holder of fe_lock. */
static __attribute__((noinline)) void fe_reap_slow(struct kq *kq, struct kq_fdent *fe, unsigned g)
{
	fe->fe_closeseen = g;
	fe_forget(kq, fe);
}

/* Inline: every take and release of fe_lock pays for this check. */
static inline void fe_reap(struct kq *kq, struct kq_fdent *fe)
{
	unsigned g = atomic_load_explicit(&fe->fe_closegen, memory_order_acquire);
	if (__builtin_expect(g != fe->fe_closeseen, 0))
		fe_reap_slow(kq, fe, g);
}

/*
 * fe_lock, with the closes the hook left to us applied on the way in and on
 * the way out: whoever touches the fd's knotes next, a change, a delivery,
 * a queued knote, finds them gone (I4).
 */
static inline void fe_enter(struct kq *kq, struct kq_fdent *fe)
{
	pthread_mutex_lock(&fe->fe_lock);
	fe_reap(kq, fe);
}

static inline void fe_leave(struct kq *kq, struct kq_fdent *fe)
{
	fe_reap(kq, fe);
	pthread_mutex_unlock(&fe->fe_lock);
}

/*
 * EV_ADD on an fd with knotes: does the number still name their file?  A
 * close the hooks did not see (fclose(), a raw syscall(SYS_close), a close
 * in a library bound to libc's own) leaves them behind, and the new file
 * must be registered, not taken for the old one.  (st_dev, st_ino) tell
 * files apart, but for anonymous inodes (eventfd, timerfd, epoll... share
 * one), whose registration is probed: EEXIST means it is the same file.
 */
static bool fe_file_changed(struct kq *kq, struct kq_fdent *fe)
{
	struct stat st;
	if (fstat(fe->fe_fd, &st) < 0)
		return true; /* closed: the probe of the change says EBADF */
	if (st.st_dev != fe->fe_dev || st.st_ino != fe->fe_ino)
		return true;
	if (fe->fe_type != FT_OTHER || !fe->fe_inepoll)
		return false;
	/* stale data: a report of this probe is dropped */
	uint64_t data = kq__ep_data_fd(fe->fe_fd, fe->fe_gen - 1);
	if (kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, fe->fe_fd, 0, data) != 0)
		return false;
	kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, fe->fe_fd, 0, 0);
	return true;
}

static void fd_queue(struct kq *kq, struct knote *kn)
{
	kn->kn_status |= KN_ACTIVE;
	pthread_mutex_lock(&kq->kq_lock);
	kq__enqueue(kq, kn);
	pthread_mutex_unlock(&kq->kq_lock);
	kq__wake(kq);
}

/*
 * After a knote was copied out: oneshot, dispatch, or keep it level.  A
 * level knote is requeued at the tail (and re-checked with poll() when it
 * comes round) when the kernel will not report it again by itself (edge or
 * oneshot registration, unpollable file).  On a level registration it goes
 * back to the kernel even when it came off the ready queue: kept queued it
 * would turn every report of its fd into a wake-up with nothing to take.
 */
static inline void fd_delivered(struct kq *kq, struct kq_fdent *fe, struct knote *kn)
{
	atomic_store_explicit(&kn->kn_seen, kq__call_token, memory_order_relaxed);
	if (kn->kn_flags & EV_ONESHOT || (kn->kn_status & KN_FORCED)) {
		fd_detach(kq, kn);
	} else if (kn->kn_flags & EV_DISPATCH) {
		if (!KQ_BROKEN(KQ_BREAK_I1)) /* broken: stays armed for others */
			kn->kn_status |= KN_DISABLED;
	} else if (!(kn->kn_flags & (EV_CLEAR | EV_SERIAL)) && !fe_level(fe)) {
		fd_queue(kq, kn); /* a serial knote's group release re-arms it */
	}
}

static int fd_validate(const struct kevent *kev)
{
	if (kev->fflags & ~(unsigned)(NOTE_LOWAT | NOTE_FILE_POLL | NOTE_NODATA))
		return -EINVAL;
	if ((kev->fflags & NOTE_LOWAT) && (kev->data < 0 || (kev->fflags & NOTE_NODATA)))
		return -EINVAL; /* a low-water mark needs the byte count */
	return 0;
}

int kq__fd_change(struct kq *kq, const struct kevent *kev)
{
	int err = fd_validate(kev);
	if (err)
		return err;
	if (kev->ident > INT32_MAX)
		return -EBADF;
	int fd = (int)kev->ident;
	/* Look before allocating: a closed number costs no table chunk, and
	 * a number past the fd limit has no entry: EBADF, as FreeBSD. */
	struct kq_fdent *fe = kq__fdt_lookup(kq, fd);
	/* A kqueue's own descriptor is not the program's (an entry with
	 * knotes is not one: checked below, under its lock, when it has none). */
	if (!fe && kq__is_private_fd(fd))
		return -EBADF;
	if (!fe && (kev->flags & EV_ADD) && kq__sys_fcntl(fd, F_GETFD, 0) >= 0)
		fe = kq__fdt_get(kq, fd);
	if (!fe)
		return kq__sys_fcntl(fd, F_GETFD, 0) < 0 ? -EBADF
		       : (kev->flags & EV_ADD)           ? -ENOMEM
		                                         : -ENOENT;
	struct kq_group *release = NULL;
	uint32_t rgen = 0;
	fe_enter(kq, fe);
	if ((kev->flags & EV_ADD) &&
	    ((fe->fe_kn[0].kn_status | fe->fe_kn[1].kn_status) & KN_ATTACHED) &&
	    fe_file_changed(kq, fe))
		fe_forget(kq, fe); /* as if the close had been seen */
	struct knote *kn = &fe->fe_kn[kev->filter == EVFILT_READ ? FE_READ : FE_WRITE];
	bool exists = kn->kn_status & KN_ATTACHED;
	uint16_t status0 = kn->kn_status;
	unsigned short flags0 = kn->kn_flags;
	/*
	 * An fd with a knote is open: close() would have removed the knote.
	 * Only an fd we know nothing of costs a system call to check (the
	 * common EV_ENABLE of a dispatch round costs none).
	 */
	if (!((fe->fe_kn[0].kn_status | fe->fe_kn[1].kn_status) & KN_ATTACHED)) {
		uint64_t dev = 0, ino = 0;
		if (kq__is_private_fd(fd)) {
			err = -EBADF;
			goto out;
		}
		int type = (kev->flags & EV_ADD)               ? probe_type(fd, &dev, &ino)
		           : kq__sys_fcntl(fd, F_GETFD, 0) < 0 ? FT_BAD
		                                               : FT_UNKNOWN;
		if (type == FT_BAD || type == FT_NODEV) {
			err = type == FT_BAD ? -EBADF : -ENODEV;
			goto out;
		}
		if (kev->flags & EV_ADD) {
			fe->fe_type = (uint8_t)type;
			fe->fe_dev = dev;
			fe->fe_ino = ino;
		}
	}
	if (!exists && !(kev->flags & EV_ADD)) {
		err = -ENOENT;
		goto out;
	}
	if (kev->flags & EV_DELETE) {
		fd_detach(kq, kn);
		goto sync;
	}
	if (kev->flags & EV_ADD) {
		if (exists && (err = kq__group_set(kq, kn, kev, true)))
			goto out; /* EBUSY: nothing changed */
		if (!exists)
			kn->kn_status = KN_ATTACHED;
		kq__knote_set(kn, kev, !exists);
		if (!exists && (err = kq__group_set(kq, kn, kev, true))) {
			fd_detach(kq, kn);
			goto out;
		}
	}
	/* Every change but EV_DELETE carries udata, EV_ENABLE included. */
	if (exists && !(kev->flags & EV_KEEPUDATA))
		kn->kn_udata = kev->udata;
	/* EV_ENABLE of a serial member releases its group, after our lock. */
	if ((kev->flags & EV_ENABLE) && kn_serial(kn))
		release = kq__group_of(kn, &rgen);
	if (kev->flags & EV_FORCEONESHOT) {
		kn->kn_flags |= EV_ONESHOT;
		kn->kn_status |= KN_FORCED;
	}
	bool was_disabled = kn->kn_status & KN_DISABLED;
	if (kev->flags & EV_DISABLE) {
		kn->kn_status |= KN_DISABLED;
		if (kn->kn_status & KN_ACTIVE) {
			pthread_mutex_lock(&kq->kq_lock);
			kq__dequeue(kq, kn);
			pthread_mutex_unlock(&kq->kq_lock);
			kn->kn_status &= ~KN_ACTIVE;
		}
	} else if (kev->flags & (EV_ENABLE | EV_ADD)) {
		kn->kn_status &= ~KN_DISABLED;
	}
	/*
	 * Served from the ready queue, re-checked there: forced knotes,
	 * unpollable files, and on an edge registration (which the change
	 * does not modify) a re-added knote, an enabled level knote, or an
	 * enabled EV_CLEAR knote that saw an edge while disabled.
	 */
	bool recheck = (kn->kn_status & KN_FORCED) || fe->fe_type == FT_REGULAR;
	if (exists && fe_edge(fe)) {
		recheck |= (kev->flags & EV_ADD) != 0;
		recheck |= was_disabled &&
		           (!(kn->kn_flags & EV_CLEAR) || (kn->kn_status & KN_PENDING));
	}
	if (!(kn->kn_status & KN_DISABLED))
		kn->kn_status &= ~KN_PENDING;
	if (recheck && !(kn->kn_status & (KN_DISABLED | KN_ACTIVE)))
		fd_queue(kq, kn);
sync:
	/* A change that changed nothing (EV_ENABLE releasing a group) needs
	 * no registration work; the release does its own. */
	if (!(kev->flags & (EV_ADD | EV_DELETE)) && kn->kn_status == status0 &&
	    kn->kn_flags == flags0)
		err = 0;
	else
		err = fe_sync(kq, fe);
	struct stat st;
	if (err == -EPERM && fstat(fd, &st) == 0 && S_ISCHR(st.st_mode))
		err = -ENODEV; /* a device without poll: no kqueue filter either */
	if (err == -EPERM && (kn->kn_status & KN_ATTACHED)) {
		/* Not pollable by epoll (e.g. a special file): poll semantics. */
		fe->fe_type = FT_REGULAR;
		if (!(kn->kn_status & (KN_DISABLED | KN_ACTIVE)))
			fd_queue(kq, kn);
		err = 0;
	} else if (err && !exists && (kn->kn_status & KN_ATTACHED)) {
		fd_detach(kq, kn); /* nothing half-applied */
		fe_sync(kq, fe);
	}
	fe_leave(kq, fe);
	if (release)
		kq__group_release(kq, release, rgen);
	return err;
out:
	fe_leave(kq, fe);
	return err;
}

/* A member's group was released: re-arm it, replay it if it was parked. */
static void group_released(struct kq *kq, struct kq_fdent *fe, struct kq_group *g, uint32_t gen,
                           struct knote *kn, bool pend)
{
	if (!kn || !kn->kn_aux || kn->kn_aux->group != g || kn->kn_aux->group_gen != gen ||
	    !(kn->kn_status & KN_ATTACHED))
		return;
	/*
	 * The re-armed registration makes the kernel report the knote if it
	 * is ready; only what it cannot cover is re-checked through the ready
	 * queue (a poll() each): forced knotes, files, edge registrations
	 * that were not modified.
	 */
	bool covered = fe->fe_inepoll && fe->fe_armed && !fe_edge(fe) &&
	               (fe->fe_regmask & kn_interest(kn));
	bool replay = fe->fe_type == FT_REGULAR ||
	              (pend && ((kn->kn_status & KN_FORCED) || !covered)) ||
	              (!covered && !(kn->kn_flags & EV_CLEAR)); /* a level knote stays level */
	if (replay && !(kn->kn_status & (KN_DISABLED | KN_ACTIVE)))
		fd_queue(kq, kn);
}

/* Members a and b (b may be NULL) of one fd were released together. */
void kq__fd_group_released(struct kq *kq, struct kq_fdent *fe, struct kq_group *g, uint32_t gen,
                           struct knote *a, bool pend_a, struct knote *b, bool pend_b)
{
	fe_enter(kq, fe);
	fe_sync(kq, fe);
	group_released(kq, fe, g, gen, a, pend_a);
	group_released(kq, fe, g, gen, b, pend_b);
	fe_leave(kq, fe);
}

/*
 * Knote k of an fd report (fe_lock held): delivered into out[*n], queued,
 * or left to the kernel.  Inlined with a constant k, as a plain loop over
 * both knotes would be.
 */
static inline __attribute__((always_inline)) void fd_report(struct kq *kq, struct kq_fdent *fe,
                                                            int k, uint32_t revents,
                                                            struct kevent *out, int room, int *n,
                                                            bool *resync)
{
	struct knote *kn = &fe->fe_kn[k];
	if (!(revents & (kn_interest(kn) | EPOLLHUP | EPOLLERR)))
		return;
	if (!(kn->kn_status & KN_ATTACHED) || (kn->kn_status & KN_ACTIVE))
		return;
	if ((kn->kn_status & KN_DISABLED) && !KQ_BROKEN(KQ_BREAK_I2) && !KQ_BROKEN(KQ_BREAK_I1)) {
		if (fe_edge(fe))
			kn->kn_status |= KN_PENDING;
		return;
	}
	/*
	 * A knote comes once per call.  Reported again to the call that
	 * delivered it, it is kept for a later call: a level registration
	 * reports it again by itself, any other report is an edge (an
	 * EV_CLEAR knote's new data, a re-armed oneshot) that only the ready
	 * queue keeps.
	 */
	bool again = *n < room && kq__delivered_here(kn, out + *n);
	if (*n == room || again) {
		/*
		 * A leftover comes back in turn (I3).  A level registration
		 * keeps it in the kernel, which reports it to the next waiter:
		 * parked on the ready queue it would make every report of its
		 * fd a wake-up with nothing to take.  Only reports taken
		 * behind the queue (room 0) join it there, for FIFO order (I5).
		 */
		if (room == 0 || !fe_level(fe))
			fd_queue(kq, kn);
		else if (*n == room)
			fe->fe_wfirst = k == FE_WRITE; /* its turn next */
		return;
	}
	if (!fd_event(fe, kn, revents, &out[*n]))
		return;
	if (kn_serial(kn) && !kq__group_take(kn)) {
		*resync = true; /* parked: its group is held elsewhere */
		return;
	}
	(*n)++;
	fd_delivered(kq, fe, kn);
}

/*
 * An epoll report for fd: deliver its knotes into out (room slots), queue
 * what does not fit.  Returns the number of events written.
 */
int kq__fd_epoll_event(struct kq *kq, int fd, uint32_t gen, uint32_t revents, struct kevent *out,
                       int room)
{
	struct kq_fdent *fe = kq__fdt_lookup(kq, fd);
	if (!fe)
		return 0;
	int n = 0;
	fe_enter(kq, fe);
	if ((fe->fe_gen & KQ_GEN_MASK) != gen && !KQ_BROKEN(KQ_BREAK_I4))
		goto out;
	/* Only a fired oneshot or a knote whose state changed needs epoll_ctl. */
	bool resync = false;
	uint32_t before = fe->fe_kn[0].kn_status | (uint32_t)fe->fe_kn[1].kn_status << 16;
	if (fe->fe_regmask & EPOLLONESHOT) {
		fe->fe_armed = false;
		resync = true;
	}
	/* A knote that did not fit goes first in the fd's next report: with
	 * room for one event neither READ nor WRITE starves the other (I3). */
	if (!fe->fe_wfirst) {
		fd_report(kq, fe, FE_READ, revents, out, room, &n, &resync);
		fd_report(kq, fe, FE_WRITE, revents, out, room, &n, &resync);
	} else {
		fd_report(kq, fe, FE_WRITE, revents, out, room, &n, &resync);
		fd_report(kq, fe, FE_READ, revents, out, room, &n, &resync);
	}
	if (resync || before != (fe->fe_kn[0].kn_status | (uint32_t)fe->fe_kn[1].kn_status << 16))
		fe_sync(kq, fe);
out:
	fe_leave(kq, fe);
	return n;
}

/* A fd knote taken off the ready queue: re-check and deliver. */
int kq__fd_deliver_queued(struct kq *kq, struct knote *kn, struct kevent *out)
{
	struct kq_fdent *fe = kn->kn_u.fe;
	struct pollfd pfd = {.fd = fe->fe_fd,
	                     .events = kn->kn_filter == EVFILT_READ ? POLLIN | POLLRDHUP : POLLOUT};
	/* Outside the lock: poll() is a system call. */
	if (poll(&pfd, 1, 0) < 0)
		pfd.revents = 0;
	int n = 0;
	fe_enter(kq, fe);
	/* Deleted, disabled or delivered since it was queued: nothing to do.
	 * A new incarnation that was queued again is fine to deliver. */
	if (!(kn->kn_status & KN_ACTIVE) || (kn->kn_status & KN_DISABLED))
		goto out;
	kn->kn_status &= ~KN_ACTIVE;
	/* On an edge registration an edge that came while we polled went to
	 * a thread that skipped this (ACTIVE) knote: look again, now. */
	if (fe_edge(fe) && poll(&pfd, 1, 0) < 0)
		pfd.revents = 0;
	if (pfd.revents & POLLNVAL)
		goto out;
	/* A file at EOF must hear when it grows: watch it before looking. */
	if (fe->fe_type == FT_REGULAR && kn->kn_filter == EVFILT_READ &&
	    !(kn->kn_sfflags & NOTE_FILE_POLL))
		kq__file_watch(kq, fe);
	if (fd_event(fe, kn, pfd.revents, out) && (!kn_serial(kn) || kq__group_take(kn))) {
		n = 1;
		fd_delivered(kq, fe, kn);
	}
	fe_sync(kq, fe);
out:
	fe_leave(kq, fe);
	return n;
}

/*
 * KQUEUE_CPONFORK, in the child: the entry's lock may have been held by a
 * thread that does not exist here, and its registration lives in the
 * parent's epoll.  Register it afresh in the child's.
 */
void kq__fd_fork(struct kq *kq, struct kq_fdent *fe, void *arg)
{
	(void)arg;
	pthread_mutex_init(&fe->fe_lock, NULL);
	fe->fe_inepoll = fe->fe_armed = fe->fe_watched = false;
	fe->fe_regmask = 0;
	for (int k = 0; k < FE_NKN; k++) {
		struct knote *kn = &fe->fe_kn[k];
		if (fe->fe_type == FT_REGULAR && (kn->kn_status & KN_ATTACHED) &&
		    !(kn->kn_status & (KN_DISABLED | KN_ACTIVE)))
			fd_queue(kq, kn); /* re-checked, and watched again if at EOF */
	}
	fe_sync(kq, fe);
}

/* A watched regular file changed: look at its READ knote again. */
void kq__fd_file_changed(struct kq *kq, int fd)
{
	struct kq_fdent *fe = kq__fdt_lookup(kq, fd);
	if (!fe)
		return;
	fe_enter(kq, fe);
	struct knote *kn = &fe->fe_kn[FE_READ];
	if (fe->fe_type == FT_REGULAR && (kn->kn_status & KN_ATTACHED) &&
	    !(kn->kn_status & (KN_DISABLED | KN_ACTIVE)))
		fd_queue(kq, kn);
	fe_leave(kq, fe);
}

/*
 * close(fd) and friends, before the real close.  In a signal handler on top
 * of a libbaton call (!locked_ok) the interrupted thread may hold fe_lock or
 * kq_lock: then no lock is taken and nothing allocated.  fe_closegen moves,
 * for the next holder of fe_lock to remove the knotes, and the registration
 * is dropped while the number still names the file (a dup elsewhere would
 * keep it alive in epoll).  Otherwise the knotes go at once, as FreeBSD's.
 */
void kq__fd_close(struct kq *kq, int fd, bool locked_ok)
{
	struct kq_fdent *fe = kq__fdt_lookup(kq, fd);
	if (!fe)
		return;
	atomic_fetch_add(&fe->fe_closegen, 1);
	if (atomic_load(&fe->fe_inepoll))
		kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, fd, 0, 0);
	if (locked_ok) {
		fe_enter(kq, fe); /* applies it */
		pthread_mutex_unlock(&fe->fe_lock);
		kq__vnode_close(kq, fd); /* without a lock, filt_vnode.c sees fe_closegen */
	}
}
