/*
 * The fd filters (EVFILT_READ, EVFILT_WRITE, EVFILT_EMPTY): knotes on file
 * descriptors, over epoll.  What is common to them lives here: the fd entry
 * that holds one knote per filter, the changes (one path for every action),
 * the registration, delivery and close; each filter's own hooks (struct
 * filterops: which files, which epoll events, its condition and data) are in
 * filt_fdops.c.
 *
 * An fd has one epoll registration shared by its knotes; its mode follows
 * the knotes (fe_sync):
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
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "knote_change.h"
#include "kq_private.h"

#define KN_DISPATCHY (EV_DISPATCH | EV_ONESHOT)

static bool kn_serial(const struct knote *kn)
{
	return (kn->kn_flags & EV_SERIAL) && kn->kn_aux && kn->kn_aux->group;
}

/* The slot of an fd knote in its entry, and so its filter's ops. */
static inline int kn_slot(const struct knote *kn)
{
	return (int)(kn - kn->kn_u.fd.fe->fe_kn);
}

static inline const struct filterops *kn_ops(const struct knote *kn)
{
	return kq__fd_ops[kn_slot(kn)];
}

static inline uint32_t kn_interest(const struct knote *kn)
{
	return kn_ops(kn)->f_events;
}

/* Does any knote of fe exist? */
/* A change of the registration (fe_lock held; read without it by uring_wait.c). */
static inline void fe_seq_move(struct kq_fdent *fe, int by)
{
	atomic_store_explicit(&fe->fe_regseq,
	                      atomic_load_explicit(&fe->fe_regseq, memory_order_relaxed) +
	                              (unsigned)by,
	                      memory_order_release);
}

static inline bool fe_busy(const struct kq_fdent *fe)
{
	uint16_t st = 0;
	for (int k = 0; k < FE_NKN; k++)
		st |= fe->fe_kn[k].kn_status;
	return st & KN_ATTACHED;
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
static inline __attribute__((always_inline)) uint32_t fe_desired(const struct kq_fdent *fe)
{
	uint32_t mask = 0, all = 0;
	bool all_dispatch = true, edge = false;
	for (int k = 0; k < FE_NKN; k++) {
		const struct knote *kn = &fe->fe_kn[k];
		if (!(kn->kn_status & KN_ATTACHED))
			continue;
		const struct filterops *fop = kq__fd_ops[k];
		all |= fop->f_events;
		if (!kn_wants_kernel(kn))
			continue;
		mask |= fop->f_events;
		all_dispatch &= (kn->kn_flags & (KN_DISPATCHY | EV_SERIAL)) != 0;
		edge |= (kn->kn_flags & EV_CLEAR) || (kn->kn_sfflags & NOTE_LOWAT) || fop->f_edge;
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
 * EPOLL_CTL_DEL may have come first: take the registration out again (fe_lock
 * held).  Whatever file the number names now, a registration of it in this
 * epoll can only be ours (made under fe_lock, which we hold), and the knotes
 * it was for go with the close: no look at the file is needed.
 */
static __attribute__((noinline, cold)) void fe_close_race(struct kq *kq, struct kq_fdent *fe)
{
	fe_seq_move(fe, 1);
	kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, fe->fe_fd, 0, 0);
	fe->fe_inepoll = false;
}

/* Records the identity of the file fd names (st_dev, st_ino); its mode. */
static __attribute__((noinline, cold)) mode_t fe_identify(struct kq_fdent *fe)
{
	struct stat st;
	if (fstat(fe->fe_fd, &st) < 0)
		return 0;
	fe->fe_dev = st.st_dev;
	fe->fe_ino = st.st_ino;
	return st.st_mode;
}

static bool fe_busy(const struct kq_fdent *fe);

/* Does fe's registration report a ready fd again and again by itself? */
static bool fe_level(const struct kq_fdent *fe)
{
	return fe->fe_inepoll && !(fe->fe_regmask & (EPOLLET | EPOLLONESHOT));
}

/*
 * The fd entry whose file this thread's kevent() call last found to be the
 * knotes' (fe_lock held when set and read).  Further EV_ADDs of the call to
 * it skip the look: a close the hooks cannot see, made by another thread
 * meanwhile, is as if made after the call, which the look cannot catch
 * either.  (A close the hooks see is applied by fe_enter all the same.)
 */
static _Thread_local struct {
	const struct kq_fdent *fe;
	uint64_t call;
} fd_looked __attribute__((tls_model("initial-exec")));

static inline void looked_now(const struct kq_fdent *fe)
{
	fd_looked.fe = fe;
	fd_looked.call = kq__call_token;
}

static inline bool looked_this_call(const struct kq_fdent *fe)
{
	return fd_looked.fe == fe && fd_looked.call == kq__call_token;
}

static void fe_forget(struct kq *kq, struct kq_fdent *fe);
static bool fe_file_changed(struct kq *kq, struct kq_fdent *fe);

/*
 * Does the registration already hold want (fe_desired)?  No registration
 * armed for none (a oneshot that fired reports nothing), or want armed.
 */
static inline bool fe_holds(const struct kq_fdent *fe, uint32_t want)
{
	bool armed = fe->fe_inepoll && fe->fe_armed;
	return want ? armed && want == fe->fe_regmask : !armed;
}

/*
 * Makes the epoll registration match the knotes (fe_lock held).  -ENOENT or
 * -EBADF: the file the knotes were made for is gone, and so are they.
 */
static int fe_sync(struct kq *kq, struct kq_fdent *fe)
{
	KQ_ASSERT_LOCKED(&fe->fe_lock);
	if (fe->fe_type == FT_REGULAR)
		return 0;
	uint32_t want = fe_desired(fe);
	uint64_t data = kq__ep_data_fd(fe->fe_fd, fe->fe_gen);
	int err = 0;
	/*
	 * An EV_ADD left its look at the file to us (fe_probe): a MOD below
	 * looks too, as epoll finds the registration by (file, number).  No
	 * epoll_ctl, or a DEL (which would not tell), needs the look first.
	 */
	bool verify = fe->fe_verify;
	fe->fe_verify = false;
	if (__builtin_expect(verify, 0) && !(want && fe->fe_inepoll && !fe_holds(fe, want))) {
		if (fe_file_changed(kq, fe)) {
			fe_forget(kq, fe);
			return -ENOENT;
		}
		looked_now(fe);
		verify = false;
	}
	if (fe_holds(fe, want))
		return 0;
	if (!want) { /* armed: out with it */
		fe_seq_move(fe, 1);
		if (kq__defer_kq)
			kq__defer_drop(kq, fe);
		err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, fe->fe_fd, 0, 0);
		fe->fe_inepoll = false;
		fe->fe_gen++; /* a report already taken is stale now (I4) */
		/* Disabled knotes stay: out of epoll, only (st_dev, st_ino)
		 * tell their file from a new one (fe_file_changed). */
		if (!err && !fe->fe_ino && fe_busy(fe))
			fe_identify(fe);
		return err == -ENOENT || err == -EBADF ? 0 : err;
	}
	fe_seq_move(fe, 1);
	if (!fe->fe_inepoll) {
		if (kq__defer_kq)
			kq__defer_drop(kq, fe);
		err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, fe->fe_fd, want, data);
		if (err == -EEXIST) /* a stale registration of a dup'd file */
			err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_MOD, fe->fe_fd, want, data);
	} else {
		/* A oneshot re-arm may go with this call's wait (uring_wait.c):
		 * its result is looked at there (kq__fd_rearm_done). */
		if (kq__defer_kq == kq && (want & EPOLLONESHOT) && !verify &&
		    kq__defer_rearm(kq, fe, want, data)) {
			fe->fe_armed = true;
			fe->fe_regmask = want;
			return 0;
		}
		if (kq__defer_kq)
			kq__defer_drop(kq, fe);
		err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_MOD, fe->fe_fd, want, data);
		if (err == -ENOENT || err == -EBADF || err == -EPERM) {
			/*
			 * No registration of the file the number names (EPERM:
			 * it names one epoll refuses).  The knotes' file was
			 * closed where the hooks could not see it, and the
			 * number is closed (EBADF, as FreeBSD's lookup of the
			 * fd) or names another file, which has no knotes
			 * (ENOENT).  The knotes go, as with a close (I4).
			 */
			fe_forget(kq, fe);
			return err == -EBADF ? err : -ENOENT;
		}
	}
	if (!err) {
		if (verify)
			looked_now(fe); /* the MOD found the registration of the file */
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

/*
 * A socket's listening state and protocol (TCP or not), looked up when a
 * knote needs them: EVFILT_EMPTY (TCP drains without a report) and
 * NOTE_NODATA (no count, except a listening socket's).  Otherwise read_event
 * learns "listening" from its count's EINVAL (filt_fdops.c).
 */
static void sock_details(struct kq_fdent *fe, int type)
{
	int listening = 0, proto = 0;
	socklen_t len = sizeof(listening);
	getsockopt(fe->fe_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
	len = sizeof(proto);
	getsockopt(fe->fe_fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len);
	fe->fe_tcp = proto == IPPROTO_TCP;
	fe->fe_type = listening ? FT_LISTEN : type == SOCK_STREAM ? FT_STREAM : FT_DGRAM;
	fe->fe_unsure = false;
}

/* A file's kind, from fstat() (not a socket): FT_BAD if fd names none. */
static int stat_type(struct kq_fdent *fe)
{
	struct stat st;
	if (fstat(fe->fe_fd, &st) < 0)
		return FT_BAD;
	fe->fe_dev = st.st_dev;
	fe->fe_ino = st.st_ino;
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
		return FT_REGULAR;
	if (S_ISFIFO(st.st_mode))
		return FT_PIPE;
	if (S_ISCHR(st.st_mode)) {
		int n;
		if (major(st.st_rdev) == MEM_MAJOR)
			return FT_NODEV;
		return ioctl(fe->fe_fd, FIONREAD, &n) == 0 ? FT_TTY : FT_OTHER;
	}
	return FT_OTHER;
}

/*
 * The kind of file fd names, at its first EV_ADD: 0, -EBADF or -ENODEV.  A
 * socket costs one getsockopt(SO_TYPE), the rest is learnt when needed (see
 * sock_details); its identity is its epoll registration (fe_file_changed).
 * Anything else is told by fstat(), which records its identity too.
 */
static int probe_type(struct kq_fdent *fe, const struct kevent *kev)
{
	int type = 0;
	socklen_t len = sizeof(type);
	fe->fe_dev = fe->fe_ino = 0;
	fe->fe_tcp = fe->fe_unsure = false;
	if (getsockopt(fe->fe_fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0) {
		fe->fe_type = type == SOCK_STREAM ? FT_STREAM : FT_DGRAM;
		fe->fe_unsure = true;
		/* seqpacket sockets listen too, and read_event does not learn it */
		if (type == SOCK_SEQPACKET || kev->filter == EVFILT_EMPTY ||
		    (kev->fflags & NOTE_NODATA))
			sock_details(fe, type);
		return 0;
	}
	if (errno == EBADF)
		return -EBADF;
	type = stat_type(fe);
	if (type == FT_BAD || type == FT_NODEV)
		return type == FT_BAD ? -EBADF : -ENODEV;
	fe->fe_type = (uint8_t)type;
	return 0;
}

/* A change to an fd whose kind is known: what it needs still looked up. */
static void probe_more(struct kq_fdent *fe, const struct kevent *kev)
{
	if ((kev->flags & EV_ADD) && fe->fe_unsure &&
	    (kev->filter == EVFILT_EMPTY || (kev->fflags & NOTE_NODATA)))
		sock_details(fe, fe->fe_type == FT_DGRAM ? SOCK_DGRAM : SOCK_STREAM);
}

/* Removes a knote (fe_lock held). */
static void fd_detach(struct kq *kq, struct knote *kn)
{
	KQ_ASSERT_LOCKED(&kn->kn_u.fd.fe->fe_lock);
	kn_ops(kn)->f_detach(kq, kn);
	kq__group_leave(kq, kn);
	if (kn->kn_status & KN_ACTIVE) {
		kq__mutex_lock(&kq->kq_lock);
		kq__dequeue(kq, kn);
		kq__mutex_unlock(&kq->kq_lock);
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
	fe_seq_move(fe, 1);
	fe->fe_inepoll = false;
	fe->fe_armed = false;
	fe->fe_regmask = 0;
	fe->fe_type = FT_UNKNOWN;
	fe->fe_tcp = fe->fe_unsure = false;
	fe->fe_drain_tries = 0;
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
	kq__mutex_lock(&fe->fe_lock);
	fe_reap(kq, fe);
}

static inline void fe_leave(struct kq *kq, struct kq_fdent *fe)
{
	fe_reap(kq, fe);
	kq__mutex_unlock(&fe->fe_lock);
}

/*
 * EV_ADD on an fd with knotes: does the number still name their file?  A
 * close the hooks did not see (fclose(), a raw syscall(SYS_close), a close
 * in a library bound to libc's own) leaves them behind, and the new file
 * must be registered, not taken for the old one.  (st_dev, st_ino) tell
 * files apart, where they were recorded; else (sockets) and for anonymous
 * inodes (eventfd, timerfd, epoll... share one) the registration is probed:
 * epoll keys it by (file, number), so EEXIST means it is the same file.
 */
static bool fe_file_changed(struct kq *kq, struct kq_fdent *fe)
{
	if (fe->fe_ino) {
		struct stat st;
		if (fstat(fe->fe_fd, &st) < 0)
			return true; /* closed: the probe of the change says EBADF */
		if (st.st_dev != fe->fe_dev || st.st_ino != fe->fe_ino)
			return true;
		if (fe->fe_type != FT_OTHER)
			return false;
	}
	if (!fe->fe_inepoll)
		return false;
	/* stale data: a report of this probe is dropped */
	uint64_t data = kq__ep_data_fd(fe->fe_fd, fe->fe_gen - 1);
	int err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, fe->fe_fd, 0, data);
	if (!err) /* registered: the number names another file */
		kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, fe->fe_fd, 0, 0);
	/* EBADF: closed; EPERM: now a file epoll refuses, so another one */
	return err == 0 || err == -EBADF || err == -EPERM;
}

static void fd_queue(struct kq *kq, struct knote *kn)
{
	KQ_ASSERT_LOCKED(&kn->kn_u.fd.fe->fe_lock);
	kn->kn_status |= KN_ACTIVE;
	kq__mutex_lock(&kq->kq_lock);
	kq__enqueue(kq, kn);
	kq__mutex_unlock(&kq->kq_lock);
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
static inline bool fd_delivered(struct kq *kq, struct kq_fdent *fe, struct knote *kn,
                                struct knote **requeue)
{
	uint16_t st = kn->kn_status;
	atomic_store_explicit(&kn->kn_seen, kq__call_token, memory_order_relaxed);
	if (kn->kn_flags & EV_ONESHOT || (kn->kn_status & KN_FORCED)) {
		fd_detach(kq, kn);
	} else if (kn->kn_flags & EV_DISPATCH) {
		if (!KQ_BROKEN(KQ_BREAK_I1)) /* broken: stays armed for others */
			kn->kn_status |= KN_DISABLED;
	} else if (!(kn->kn_flags & (EV_CLEAR | EV_SERIAL)) && !fe_level(fe)) {
		/* a serial knote's group release re-arms it */
		if (requeue)
			*requeue = kn; /* after the report's leftovers */
		else
			fd_queue(kq, kn);
	}
	if (__builtin_expect((kn->kn_flags & EV_CLEAR) && (kn->kn_status & KN_ATTACHED), 0) &&
	    kn_ops(kn)->f_clear)
		kn_ops(kn)->f_clear(kq, kn);
	return kn->kn_status != st;
}

/*
 * Is kn served from the ready queue, re-checked with poll() there, rather
 * than by epoll reports?  Files epoll cannot watch, and EMPTY on TCP, whose
 * queue drains without a report (drain.c).
 */
static inline bool kn_polled(const struct knote *kn)
{
	const struct kq_fdent *fe = kn->kn_u.fd.fe;
	return fe->fe_type == FT_REGULAR || (fe->fe_tcp && kn_slot(kn) == FE_EMPTY);
}

/*
 * The filter's verdict on kn for the report revents (fresh from epoll or
 * poll()), its event in *out: as kq__deliver_locked() for the other filters,
 * a forced knote is due whatever its condition.
 */
static inline bool fd_event(struct kq *kq, const struct filterops *fop, struct knote *kn,
                            uint32_t revents, struct kevent *out)
{
	kq__knote_copyout(kn, out);
	kn->kn_u.fd.revents = revents;
	return fop->f_event(kq, kn, out) || (kn->kn_status & KN_FORCED);
}

/*
 * The entry for the change's fd, made on EV_ADD.  Look before allocating: a
 * closed number costs no table chunk, and a number past the fd limit has no
 * entry: EBADF, as FreeBSD.  A kqueue's own descriptor is not the program's
 * (an entry with knotes is not one: fe_probe() checks, under its lock).
 */
static inline __attribute__((always_inline)) int fd_entry(struct kq *kq, const struct kevent *kev,
                                                          struct kq_fdent **fep)
{
	if (kev->ident > INT32_MAX)
		return -EBADF;
	int fd = (int)kev->ident;
	struct kq_fdent *fe = kq__fdt_lookup(kq, fd);
	if (!fe && kq__is_private_fd(fd))
		return -EBADF;
	if (!fe && (kev->flags & EV_ADD) && kq__sys_fcntl(fd, F_GETFD, 0) >= 0)
		fe = kq__fdt_get(kq, fd);
	*fep = fe;
	if (fe)
		return 0;
	return kq__sys_fcntl(fd, F_GETFD, 0) < 0 ? -EBADF
	       : (kev->flags & EV_ADD)           ? -ENOMEM
	                                         : -ENOENT;
}

/*
 * Would the change release a serial group?  A release acts at once on other
 * knotes, so it is not made on knotes that may belong to a closed file: the
 * look at the file goes first.
 */
static bool serial_enable(const struct kq_fdent *fe, const struct kevent *kev)
{
	if (!(kev->flags & EV_ENABLE))
		return false;
	if (kev->flags & EV_SERIAL)
		return true;
	for (int k = 0; k < FE_NKN; k++)
		if ((fe->fe_kn[k].kn_status & KN_ATTACHED) && (fe->fe_kn[k].kn_flags & EV_SERIAL))
			return true;
	return false;
}

/*
 * Is the fd (still) the program's open file (fe_lock held)?  An fd with a
 * knote is: close() would have removed the knote, so the common EV_ENABLE of
 * a dispatch round costs no system call.  An EV_ADD on an fd we know nothing
 * of learns the kind of file it is; one on an fd with knotes checks that
 * the number still names their file (see fe_file_changed()).
 */
static inline __attribute__((always_inline)) int fe_probe(struct kq *kq, struct kq_fdent *fe,
                                                          const struct kevent *kev)
{
	KQ_ASSERT_LOCKED(&fe->fe_lock);
	/*
	 * EV_ADD, or any change that will register the fd again (its knotes
	 * were all disabled): is the file still the knotes'?  (An fd that
	 * stayed registered is checked by the kernel: see fe_sync.)
	 */
	if (((kev->flags & EV_ADD) || !fe->fe_inepoll) && fe_busy(fe) && !looked_this_call(fe)) {
		if (fe->fe_inepoll && !serial_enable(fe, kev))
			fe->fe_verify = true; /* fe_sync looks, mostly with the change's MOD */
		else if (fe_file_changed(kq, fe))
			fe_forget(kq, fe); /* as if the close had been seen */
		else
			looked_now(fe);
	}
	if (fe_busy(fe)) {
		if (__builtin_expect(kev->flags & EV_ADD, 0))
			probe_more(fe, kev);
		return 0;
	}
	if (kq__is_private_fd(fe->fe_fd))
		return -EBADF;
	if (!(kev->flags & EV_ADD))
		return kq__sys_fcntl(fe->fe_fd, F_GETFD, 0) < 0 ? -EBADF : 0;
	return probe_type(fe, kev);
}

/*
 * Must the knote be re-checked through the ready queue after the change
 * (fe_lock held; was: its status before)?  Forced knotes, polled ones, and
 * on an edge registration (which the change does not modify) a re-added
 * knote (a new NOTE_LOWAT is looked at at once), an enabled level knote,
 * or an enabled EV_CLEAR knote that saw an edge while disabled.
 */
static inline __attribute__((always_inline)) bool fd_recheck_due(const struct kq_fdent *fe,
                                                                 struct knote *kn,
                                                                 const struct kevent *kev,
                                                                 bool exists, uint16_t was)
{
	bool recheck = (kn->kn_status & KN_FORCED) || kn_polled(kn);
	if (exists && fe_edge(fe)) {
		recheck |= (kev->flags & EV_ADD) != 0;
		recheck |= (was & KN_DISABLED) &&
		           (!(kn->kn_flags & EV_CLEAR) || (kn->kn_status & KN_PENDING));
	}
	if (!(kn->kn_status & KN_DISABLED))
		kn->kn_status &= ~KN_PENDING;
	return recheck && !(kn->kn_status & (KN_DISABLED | KN_ACTIVE));
}

/*
 * The registration follows the change (fe_lock held).  A change that
 * changed nothing (EV_ENABLE releasing a group) needs no epoll_ctl; the
 * release does its own.  A file epoll refuses gets poll semantics, and a
 * new knote that cannot be registered is taken out again: nothing is left
 * half-applied.
 */
static int fd_commit(struct kq *kq, struct kq_fdent *fe, struct knote *kn, const struct kevent *kev,
                     bool exists, bool changed)
{
	if (!(kev->flags & (EV_ADD | EV_DELETE)) && !changed)
		return 0;
	int err = fe_sync(kq, fe);
	/* out of epoll, only its identity tells the file apart; a device
	 * without poll has no kqueue filter either */
	if (err == -EPERM && S_ISCHR(fe_identify(fe)))
		err = -ENODEV;
	if (err == -EPERM && (kn->kn_status & KN_ATTACHED)) {
		/* Not pollable by epoll (e.g. a special file): poll semantics. */
		fe->fe_type = FT_REGULAR;
		if (!(kn->kn_status & (KN_DISABLED | KN_ACTIVE)))
			fd_queue(kq, kn);
		err = 0;
	} else if (err && !exists && (kn->kn_status & KN_ATTACHED)) {
		fd_detach(kq, kn);
		fe_sync(kq, fe);
	}
	return err;
}

/* A member's group was released: re-arm it, replay it if it was parked. */
static inline void group_released(struct kq *kq, struct kq_fdent *fe, struct kq_group *g,
                                  uint32_t gen, struct knote *kn, bool pend)
{
	if (!kn->kn_aux || kn->kn_aux->group != g || kn->kn_aux->group_gen != gen ||
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
	bool replay = kn_polled(kn) || (pend && ((kn->kn_status & KN_FORCED) || !covered)) ||
	              (!covered && !(kn->kn_flags & EV_CLEAR)); /* a level knote stays level */
	if (replay && !(kn->kn_status & (KN_DISABLED | KN_ACTIVE)))
		fd_queue(kq, kn);
}

/*
 * A change to an fd knote: kevent() -> here -> the filter's hooks -> the
 * registration, in one pass under fe_lock.
 */
static int fd_change_once(struct kq *kq, const struct kevent *kev, int slot)
{
	int err = kq__fd_ops[slot]->f_validate(kev);
	struct kq_fdent *fe = NULL;
	if (err || (err = fd_entry(kq, kev, &fe)))
		return err;
	struct kq_group *release = NULL;
	uint32_t rgen = 0;
	fe_enter(kq, fe);
	struct knote *kn = &fe->fe_kn[slot];
	if ((err = fe_probe(kq, fe, kev)))
		goto out;
	bool exists = kn->kn_status & KN_ATTACHED;
	uint16_t status0 = kn->kn_status;
	unsigned short flags0 = kn->kn_flags;
	if (!exists && !(kev->flags & EV_ADD)) {
		err = -ENOENT;
		goto out;
	}
	if (kev->flags & EV_DELETE) {
		fd_detach(kq, kn);
	} else {
		err = kq__knote_change(kq, kn, kev, kq__fd_ops[slot], exists, &release, &rgen);
		if (err) {
			if (!exists)
				fd_detach(kq, kn); /* nothing half-applied */
			goto out;
		}
		if (fd_recheck_due(fe, kn, kev, exists, status0))
			fd_queue(kq, kn);
	}
	/* A group whose members are all this fd's is released right here:
	 * one fe_lock and one registration sync for the change and the
	 * release (group.c). */
	struct knote *rel[FE_NKN];
	bool rpend[FE_NKN];
	int nrel = release ? kq__group_release_fd(release, rgen, fe, rel, rpend) : -1;
	err = fd_commit(kq, fe, kn, kev, exists,
	                kn->kn_status != status0 || kn->kn_flags != flags0 || nrel > 0);
	for (int i = 0; i < nrel; i++)
		group_released(kq, fe, release, rgen, rel[i], rpend[i]);
	if (nrel >= 0)
		release = NULL;
out:
	if (__builtin_expect(fe->fe_verify, 0)) {
		/* The change failed before its registration: the look now.  On
		 * another file the EV_ADD is made again as a new knote's. */
		fe->fe_verify = false;
		if (fe_file_changed(kq, fe)) {
			fe_forget(kq, fe);
			err = -ENOENT;
		} else {
			looked_now(fe);
		}
	}
	fe_leave(kq, fe);
	if (release)
		kq__group_release(kq, release, rgen);
	return err;
}

int kq__fd_change(struct kq *kq, const struct kevent *kev, int slot)
{
	int err = fd_change_once(kq, kev, slot);
	/* EV_ADD whose registration found the old file gone (closed unseen
	 * since the look at it): the knotes went with it, register anew. */
	if (err == -ENOENT && (kev->flags & EV_ADD))
		err = fd_change_once(kq, kev, slot);
	return err;
}

/*
 * Two EV_ADDs of one changelist for a new fd's knotes (READ and WRITE, as
 * nginx asks for each connection): one look at the file, one registration,
 * instead of a registration each and a look at the file for the second.
 * Returns 0 when both were applied; 1 when nothing was, and the caller
 * applies them one by one: anything but the plain case (the fd has knotes,
 * a change is refused, the registration fails) takes that path, so errors
 * and what is left applied are the same as for two separate changes.
 */
int kq__fd_change_pair(struct kq *kq, const struct kevent *kev, const int *slot)
{
	struct kq_fdent *fe = NULL;
	if (kq__fd_ops[slot[0]]->f_validate(&kev[0]) || kq__fd_ops[slot[1]]->f_validate(&kev[1]) ||
	    fd_entry(kq, &kev[0], &fe))
		return 1;
	int r = 1, k = 0;
	fe_enter(kq, fe);
	if (fe_busy(fe) || fe_probe(kq, fe, &kev[0]))
		goto out;
	probe_more(fe, &kev[1]);
	for (; k < 2; k++) {
		struct knote *kn = &fe->fe_kn[slot[k]];
		struct kq_group *release = NULL;
		uint32_t rgen = 0;
		if (kq__knote_change(kq, kn, &kev[k], kq__fd_ops[slot[k]], false, &release,
		                     &rgen) ||
		    release)
			break;
		if (fd_recheck_due(fe, kn, &kev[k], false, 0))
			fd_queue(kq, kn);
	}
	if (k == 2 && (fe->fe_type == FT_REGULAR || fe_sync(kq, fe) == 0)) {
		r = 0;
		goto out;
	}
	/* undone: the fd had no knotes, nor a registration (fe_sync failed) */
	for (k = 0; k < 2; k++)
		if (fe->fe_kn[slot[k]].kn_status & KN_ATTACHED)
			fd_detach(kq, &fe->fe_kn[slot[k]]);
out:
	fe_leave(kq, fe);
	return r;
}

/* Members kn[0..n) of one fd were released together: one lock, one sync. */
void kq__fd_group_released(struct kq *kq, struct kq_fdent *fe, struct kq_group *g, uint32_t gen,
                           struct knote *const *kn, const bool *pend, int n)
{
	fe_enter(kq, fe);
	fe_sync(kq, fe);
	for (int i = 0; i < n; i++)
		group_released(kq, fe, g, gen, kn[i], pend[i]);
	fe_leave(kq, fe);
}

/* Where an fd report's events go: out[0..room), *n of them used so far. */
struct fd_sink {
	struct kevent *out;
	int room, n;
	bool resync;      /* a knote's state changed: the registration must follow */
	bool turned;      /* a leftover took the fd's next first turn */
	unsigned requeue; /* slots of level knotes delivered, requeued after the leftovers */
};

/*
 * The knote in slot k of an fd report (fe_lock held): delivered into the
 * sink, queued, or left to the kernel.
 */
static inline __attribute__((always_inline)) void
fd_report(struct kq *kq, struct kq_fdent *fe, int k, uint32_t revents, struct fd_sink *s)
{
	struct knote *kn = &fe->fe_kn[k];
	if ((kn->kn_status & (KN_ATTACHED | KN_ACTIVE)) != KN_ATTACHED)
		return;
	if (!(revents & (kq__fd_ops[k]->f_events | EPOLLHUP | EPOLLERR)))
		return;
	if ((kn->kn_status & KN_DISABLED) && !KQ_BROKEN(KQ_BREAK_I2) && !KQ_BROKEN(KQ_BREAK_I1)) {
		if (fe_edge(fe))
			kn->kn_status |= KN_PENDING; /* no bearing on the registration */
		return;
	}
	/*
	 * A knote comes once per call.  Reported again to the call that
	 * delivered it, it is kept for a later call: a level registration
	 * reports it again by itself, any other report is an edge (an
	 * EV_CLEAR knote's new data, a re-armed oneshot) that only the ready
	 * queue keeps.
	 */
	bool again = s->n < s->room && kq__delivered_here(kn, s->out + s->n);
	if (s->n == s->room || again) {
		/*
		 * A leftover comes back in turn (I3).  A level registration
		 * keeps it in the kernel, which reports it to the next waiter:
		 * parked on the ready queue it would make every report of its
		 * fd a wake-up with nothing to take.  Only reports taken
		 * behind the queue (room 0) join it there, for FIFO order (I5).
		 */
		if (s->room == 0 || !fe_level(fe)) {
			fd_queue(kq, kn);
			s->resync = true;
		} else if (s->n == s->room && !s->turned) {
			fe->fe_first = (uint8_t)k; /* its turn next */
			s->turned = true;
		}
		return;
	}
	if (!fd_event(kq, kq__fd_ops[k], kn, revents, &s->out[s->n]))
		return;
	if (kn_serial(kn) && !kq__group_take(kn)) {
		s->resync = true; /* parked: its group is held elsewhere */
		return;
	}
	s->n++;
	struct knote *later = NULL;
	s->resync |= fd_delivered(kq, fe, kn, &later);
	if (later)
		s->requeue |= 1u << k;
}

/*
 * Level knotes a report delivered on an edge registration go back on the
 * queue after its leftovers, as FreeBSD's go to the tail of theirs: with
 * room for one event the fd's knotes take turns.
 */
static inline void fd_finish(struct kq *kq, struct kq_fdent *fe, struct fd_sink *s)
{
	if (__builtin_expect(!s->requeue, 1))
		return;
	for (int k = 0; k < FE_NKN; k++)
		if (s->requeue & (1u << k))
			fd_queue(kq, &fe->fe_kn[k]);
	s->resync = true;
}

/*
 * Must a queued re-arm that ran as ev be made again (fe_lock held, the
 * registration changed since it was queued)?  What has to hold is what the
 * fd entry believes of the kernel's registration, because the next change
 * trusts it (fe_sync() modifies nothing armed with the mask it wants, a
 * group release relies on an armed one).  So, not if the registration is
 * believed fired (fe_armed false) while the knotes want no reports (a
 * dispatch knote was delivered): the next change that wants reports
 * modifies it anyway, and a report meanwhile is dropped by the knotes'
 * state.  Nor if the re-arm put in what is believed armed (the mask the
 * knotes want, or the held group's, and the current generation): the kernel
 * then holds that, armed after the newest change was made, whichever order
 * the two ran in (a newer re-arm still to run arms the same again).  Made
 * again needlessly, it arms a ready fd a second time: one report to a
 * thread, the next to another after the first drained it, or a DEL and an
 * ADD where one MOD does.
 */
static bool rearm_stale(const struct kq_fdent *fe, const struct epoll_event *ev)
{
	uint32_t want = fe_desired(fe);
	if (!fe->fe_armed)
		return want != 0;
	return ev->events != (want ? want : fe->fe_regmask) ||
	       ev->data.u64 != kq__ep_data_fd(fe->fe_fd, fe->fe_gen);
}

/*
 * A re-arm fe_sync() queued (uring_wait.c) ran as ev, or failed to: res is
 * its result.  If another change of the registration was made or queued
 * after it (fe_regseq moved), the two may have run in the other order, and a
 * stale mask or generation may now be in the kernel: it is made again from
 * the knotes when that matters (rearm_stale).  A registration the kernel
 * dropped (ENOENT, EBADF) went with a close the hooks did not see: the
 * knotes go, as in fe_sync().
 */
void kq__fd_rearm_done(struct kq *kq, struct kq_fdent *fe, uint32_t seq, int res,
                       const struct epoll_event *ev)
{
	fe_enter(kq, fe);
	bool moved = atomic_load_explicit(&fe->fe_regseq, memory_order_relaxed) != seq;
	bool gone = res == -ENOENT || res == -EBADF || res == -EPERM; /* EPERM: now a file */
	if (gone && !moved) {
		fe_forget(kq, fe);
	} else if (!gone && fe->fe_inepoll && (res || (moved && rearm_stale(fe, ev)))) {
		/* It landed on a newer registration, or failed: made anew (a
		 * miss changed nothing).  Armed: fe_sync() takes an unwanted
		 * one out (DEL, new gen). */
		fe->fe_armed = !fe_desired(fe);
		fe_sync(kq, fe);
	}
	fe_leave(kq, fe);
}

/*
 * Would fe_sync() find nothing to do (fe_lock held)?  The common case after
 * a report: a dispatched knote's oneshot registration fired and nothing
 * wants it re-armed.  Inline, it spares the call on every such event.
 */
static inline bool fe_synced(const struct kq_fdent *fe)
{
	if (fe->fe_verify || fe->fe_type == FT_REGULAR)
		return !fe->fe_verify;
	return fe_holds(fe, fe_desired(fe));
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
	struct fd_sink s;
	s.out = out;
	s.room = room;
	s.n = 0;
	s.requeue = 0;
	s.resync = s.turned = false;
	fe_enter(kq, fe);
	if ((fe->fe_gen & KQ_GEN_MASK) != gen && !KQ_BROKEN(KQ_BREAK_I4))
		goto out;
	/* Only a fired oneshot or a knote whose state changed needs epoll_ctl. */
	if (fe->fe_regmask & EPOLLONESHOT) {
		fe->fe_armed = false;
		s.resync = true;
	}
	/* A knote that did not fit goes first in the fd's next report: with
	 * room for one event no knote of the fd starves the others (I3). */
	_Static_assert(FE_NKN == 3, "one fd_report per slot below");
	if (__builtin_expect(fe->fe_first == 0, 1)) {
		fd_report(kq, fe, FE_READ, revents, &s);
		fd_report(kq, fe, FE_WRITE, revents, &s);
		fd_report(kq, fe, FE_EMPTY, revents, &s);
	} else {
		int first = fe->fe_first;
		fe->fe_first = 0;
		for (int i = 0; i < FE_NKN; i++)
			fd_report(kq, fe, (first + i) % FE_NKN, revents, &s);
	}
	fd_finish(kq, fe, &s);
	if (s.resync && !fe_synced(fe))
		fe_sync(kq, fe);
out:
	fe_leave(kq, fe);
	return s.n;
}

/* A fd knote taken off the ready queue: re-check and deliver. */
int kq__fd_deliver_queued(struct kq *kq, struct knote *kn, struct kevent *out)
{
	struct kq_fdent *fe = kn->kn_u.fd.fe;
	/* EPOLLIN, EPOLLOUT, EPOLLRDHUP are POLLIN, POLLOUT, POLLRDHUP */
	struct pollfd pfd = {.fd = fe->fe_fd, .events = (short)kn_interest(kn)};
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
	if (fe->fe_type == FT_REGULAR && kn_slot(kn) == FE_READ &&
	    !(kn->kn_sfflags & NOTE_FILE_POLL))
		kq__file_watch(kq, fe);
	if (fd_event(kq, kn_ops(kn), kn, (uint32_t)pfd.revents, out) &&
	    (!kn_serial(kn) || kq__group_take(kn))) {
		n = 1;
		fd_delivered(kq, fe, kn, NULL);
	}
	fe_sync(kq, fe);
out:
	fe_leave(kq, fe);
	return n;
}

/* Queues kn for a fresh look if it is attached and waiting (fe_lock held). */
static void fd_recheck(struct kq *kq, struct knote *kn)
{
	if ((kn->kn_status & KN_ATTACHED) && !(kn->kn_status & (KN_DISABLED | KN_ACTIVE)))
		fd_queue(kq, kn);
}

/*
 * KQUEUE_CPONFORK, in the child: the entry's lock may have been held by a
 * thread that does not exist here, and its registration lives in the
 * parent's epoll.  Register it afresh in the child's.
 */
void kq__fd_fork(struct kq *kq, struct kq_fdent *fe, void *arg)
{
	(void)arg;
	kq__mutex_init(&fe->fe_lock);
	kq__mutex_lock(&fe->fe_lock); /* for the functions that check it */
	fe->fe_inepoll = fe->fe_armed = fe->fe_watched = fe->fe_draining = false;
	fe->fe_regmask = 0;
	for (int k = 0; k < FE_NKN; k++) {
		/* re-checked, and watched again if at EOF (files), or waited
		 * for again (EMPTY: the child's timerfd is new) */
		if (fe->fe_type == FT_REGULAR || k == FE_EMPTY)
			fd_recheck(kq, &fe->fe_kn[k]);
	}
	fe_sync(kq, fe);
	kq__mutex_unlock(&fe->fe_lock);
}

/* A watched regular file changed: look at its READ knote again. */
void kq__fd_file_changed(struct kq *kq, int fd)
{
	struct kq_fdent *fe = kq__fdt_lookup(kq, fd);
	if (!fe)
		return;
	fe_enter(kq, fe);
	if (fe->fe_type == FT_REGULAR)
		fd_recheck(kq, &fe->fe_kn[FE_READ]);
	fe_leave(kq, fe);
}

/*
 * The drain timer came for fd: look at its EMPTY knote again.  A disabled
 * one remembers it (KN_PENDING: EV_ENABLE re-checks it; its registration is
 * an edge one).
 */
void kq__fd_drain_check(struct kq *kq, int fd)
{
	struct kq_fdent *fe = kq__fdt_lookup(kq, fd);
	if (!fe)
		return;
	fe_enter(kq, fe);
	struct knote *kn = &fe->fe_kn[FE_EMPTY];
	fe->fe_draining = false;
	if ((kn->kn_status & (KN_ATTACHED | KN_DISABLED)) == (KN_ATTACHED | KN_DISABLED))
		kn->kn_status |= KN_PENDING;
	fd_recheck(kq, kn);
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
	if (locked_ok) {
		kq__mutex_lock(&fe->fe_lock);
		atomic_fetch_add(&fe->fe_closegen, 1);
		/*
		 * A oneshot registration that fired reports nothing until it is
		 * modified, and nothing will modify it now: left in, it goes
		 * with the file (or, the file dup'd elsewhere, lingers inert
		 * until its last close; a new file on the number is another
		 * registration).  So a dispatched or held connection's close
		 * costs no EPOLL_CTL_DEL.  A re-arm still queued may arm it.
		 */
		bool inert = !fe->fe_armed && (fe->fe_regmask & EPOLLONESHOT) &&
		             !atomic_load(&fe->fe_rearms);
		if (atomic_load(&fe->fe_inepoll) && !inert)
			kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, fd, 0, 0);
		fe_reap(kq, fe); /* applies it */
		kq__mutex_unlock(&fe->fe_lock);
		kq__vnode_close(kq, fd); /* without a lock, filt_vnode.c sees fe_closegen */
		/*
		 * A re-arm another thread's call queued names the number: run
		 * after the close, it could take over whatever gets the number
		 * next (a pidfd, a signalfd of ours: no fd entry to repair it).
		 * That call holds no lock we hold and ends its re-arms within
		 * the call (uring_wait.c).
		 */
		while (atomic_load(&fe->fe_rearms))
			sched_yield();
	} else {
		atomic_fetch_add(&fe->fe_closegen, 1);
		if (atomic_load(&fe->fe_inepoll))
			kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, fd, 0, 0);
	}
}
