/*
 * The fd filters' own hooks: what READ, WRITE and EMPTY accept, which files
 * they take, and how each reads its condition and data from a report
 * (kn_u.fd.revents) and a query of the fd.  The registration, the actions and
 * the delivery they share are in filt_fd.c; every hook runs with fe_lock held.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kq_private.h"
#include "uring.h"

static int rw_validate(const struct kevent *kev)
{
	if (kev->fflags & ~(unsigned)(NOTE_LOWAT | NOTE_FILE_POLL | NOTE_NODATA))
		return -EINVAL;
	if ((kev->fflags & NOTE_LOWAT) && (kev->data < 0 || (kev->fflags & NOTE_NODATA)))
		return -EINVAL; /* a low-water mark needs the byte count */
	return 0;
}

/* EMPTY takes no fflags (FreeBSD defines none for it); data is ignored. */
static int empty_validate(const struct kevent *kev)
{
	return kev->fflags ? -EINVAL : 0;
}

/*
 * A socket's counts go to the wait's batch (uring.c) from its first report
 * on, not from its second: a connection's first report is often its only
 * one, and READ and WRITE on it need three counts that one io_uring_enter
 * serves.  What the kernel refuses is remembered as for any hint.
 */
static int rw_attach(struct kq *kq, struct knote *kn)
{
	(void)kq;
	struct kq_fdent *fe = kn->kn_u.fd.fe;
	unsigned what = kn->kn_filter == EVFILT_READ ? KQ_CNT_IN : KQ_CNT_OUT;
	if ((fe->fe_type == FT_STREAM || fe->fe_type == FT_DGRAM) &&
	    !(kn->kn_sfflags & NOTE_NODATA) && !kq__count_skip(fe, what))
		kq__count_want(fe, what);
	return 0;
}

/* Only sockets have a send buffer: anything else is EINVAL, as FreeBSD. */
static int empty_attach(struct kq *kq, struct knote *kn)
{
	(void)kq;
	uint8_t t = kn->kn_u.fd.fe->fe_type;
	kn->kn_u.fd.mark = 0; /* never delivered */
	return t == FT_STREAM || t == FT_LISTEN || t == FT_DGRAM ? 0 : -EINVAL;
}

/* EV_ADD again: looked at afresh, as a new knote (FreeBSD's f_event on add). */
static int empty_touch(struct kq *kq, struct knote *kn, const struct kevent *kev)
{
	(void)kq;
	if (kev->flags & EV_ADD)
		kn->kn_u.fd.mark = 0;
	return 0;
}

static void read_detach(struct kq *kq, struct knote *kn)
{
	kq__file_unwatch(kq, kn->kn_u.fd.fe);
}

static void nop_detach(struct kq *kq, struct knote *kn)
{
	(void)kq;
	(void)kn;
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

static void set_eof(const struct kq_fdent *fe, uint32_t revents, struct kevent *out)
{
	out->flags |= EV_EOF;
	if ((revents & EPOLLERR) && fe->fe_type == FT_STREAM)
		out->fflags = sock_error(fe->fe_fd);
}

/* NOTE_NODATA (Baton extension): the kernel's word, no system call for a count. */
static bool nodata_event(const struct knote *kn, uint32_t want, uint32_t eofbits,
                         struct kevent *out)
{
	uint32_t revents = kn->kn_u.fd.revents;
	out->data = (revents & want) ? 1 : 0;
	if (revents & eofbits)
		out->flags |= EV_EOF;
	return (revents & (want | eofbits)) != 0;
}

static bool nodata(const struct knote *kn)
{
	uint8_t t = kn->kn_u.fd.fe->fe_type;
	return (kn->kn_sfflags & NOTE_NODATA) && t != FT_REGULAR && t != FT_LISTEN;
}

static int64_t lowat(const struct knote *kn)
{
	return (kn->kn_sfflags & NOTE_LOWAT) && kn->kn_sdata > 0 ? kn->kn_sdata : 1;
}

static int fionread(int fd)
{
	int n = 0;
	return ioctl(fd, FIONREAD, &n) < 0 ? 0 : n;
}

/* A socket's bytes to read: from this wait's batch (uring.c), else asked. */
static int sock_inq(struct kq *kq, struct kq_fdent *fe)
{
	int n;
	if (!kq__count_skip(fe, KQ_CNT_IN)) {
		if (kq__count_take_in(kq, fe, &n))
			return n;
		kq__count_want(fe, KQ_CNT_IN);
	}
	return ioctl(fe->fe_fd, FIONREAD, &n) < 0 ? -errno : n;
}

/* A socket's room to write: SO_SNDBUF less what its send queue holds. */
static int64_t sock_room(struct kq *kq, struct kq_fdent *fe)
{
	int sndbuf = 0, n = 0;
	bool skip = fe->fe_type == FT_LISTEN || kq__count_skip(fe, KQ_CNT_OUT);
	if (skip || !kq__count_take_out(kq, fe, &n, &sndbuf)) {
		socklen_t len = sizeof(sndbuf);
		if (!skip)
			kq__count_want(fe, KQ_CNT_OUT);
		getsockopt(fe->fe_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len);
		if (ioctl(fe->fe_fd, SIOCOUTQ, &n) < 0)
			n = 0;
	}
	return sndbuf > n ? sndbuf - n : 0;
}

/*
 * READ: bytes to read.  As FreeBSD's filt_soread, a stream socket is ready
 * at NOTE_LOWAT bytes or EOF; a datagram socket is ready with a datagram
 * (data: its size, Linux's FIONREAD, so no low-water mark there).
 */
static bool read_event(struct kq *kq, struct knote *kn, struct kevent *out)
{
	struct kq_fdent *fe = kn->kn_u.fd.fe;
	uint32_t revents = kn->kn_u.fd.revents;
	if (nodata(kn))
		return nodata_event(kn, EPOLLIN, EPOLLRDHUP | EPOLLHUP | EPOLLERR, out);
	bool eof = revents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR), ready;
	switch (fe->fe_type) {
	case FT_STREAM: {
		int64_t n = sock_inq(kq, fe);
		/* Only a listening socket has no count: learnt here (filt_fd.c) */
		if (n == -EINVAL && fe->fe_unsure) {
			fe->fe_type = FT_LISTEN;
			out->data = listen_backlog(fe->fe_fd);
			return revents & EPOLLIN;
		}
		out->data = n < 0 ? 0 : n;
		ready = out->data >= lowat(kn) || eof;
		break;
	}
	case FT_PIPE:
		/* A hung-up pipe the report found empty stays empty: no writer. */
		out->data = (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) == EPOLLHUP
		                    ? 0
		                    : fionread(fe->fe_fd);
		ready = out->data > 0 || eof;
		break;
	case FT_TTY: /* FreeBSD's pipes and ttys have no low-water mark */
		out->data = fionread(fe->fe_fd);
		ready = out->data > 0 || eof;
		break;
	case FT_DGRAM:
		out->data = sock_inq(kq, fe);
		out->data = out->data < 0 ? 0 : out->data;
		ready = (revents & EPOLLIN) || eof;
		break;
	case FT_LISTEN:
		out->data = listen_backlog(fe->fe_fd);
		return revents & EPOLLIN;
	case FT_REGULAR: {
		struct stat st;
		off_t off = lseek(fe->fe_fd, 0, SEEK_CUR);
		out->data = fstat(fe->fe_fd, &st) == 0 && off >= 0 ? (int64_t)st.st_size - off : 0;
		return out->data != 0 || (kn->kn_sfflags & NOTE_FILE_POLL);
	}
	default:
		ready = revents & (EPOLLIN | EPOLLHUP | EPOLLERR);
		break;
	}
	if (eof)
		set_eof(fe, revents, out);
	return ready;
}

/*
 * WRITE: room in the send buffer (sockets) or the pipe.  On a socket
 * NOTE_LOWAT asks for that much room, as FreeBSD's filt_sowrite.
 */
static bool write_event(struct kq *kq, struct knote *kn, struct kevent *out)
{
	struct kq_fdent *fe = kn->kn_u.fd.fe;
	uint32_t revents = kn->kn_u.fd.revents;
	if (nodata(kn))
		return nodata_event(kn, EPOLLOUT, EPOLLHUP | EPOLLERR, out);
	bool eof = revents & (EPOLLHUP | EPOLLERR), ready;
	int fd = fe->fe_fd, n = 0;
	switch (fe->fe_type) {
	case FT_STREAM:
	case FT_DGRAM:
	case FT_LISTEN:
		out->data = sock_room(kq, fe);
		ready = ((revents & EPOLLOUT) && out->data >= lowat(kn)) || eof;
		break;
	case FT_PIPE: {
		int size = kq__sys_fcntl(fd, F_GETPIPE_SZ, 0);
		n = fionread(fd);
		out->data = size > n ? size - n : 0;
		ready = (revents & EPOLLOUT) || eof; /* no NOTE_LOWAT, as FreeBSD's */
		break;
	}
	case FT_REGULAR:
		return true;
	default:
		ready = revents & (EPOLLOUT | EPOLLHUP | EPOLLERR);
		break;
	}
	if (eof)
		set_eof(fe, revents, out);
	return ready;
}

/* TCP: bytes acknowledged so far, + 1 so that 0 means "never delivered". */
static uint32_t tcp_acked_mark(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
		return 1;
	uint32_t m = (uint32_t)ti.tcpi_bytes_acked + 1;
	return m ? m : 1;
}

/*
 * EMPTY: FreeBSD's filt_soempty is true when the send buffer holds nothing
 * (data: the bytes in it, so 0 when it fires) and always on a listening
 * socket; it sets no EV_EOF.  Linux's SIOCOUTQ counts what the send queue
 * holds (TCP: not yet acknowledged; AF_UNIX: not yet read by the peer).  A
 * connection that is gone (hang-up, error) drains no more: FreeBSD drops
 * its send buffer then, and so it counts as empty here.
 *
 * TCP drains without a wake-up (drain.c looks again after a round trip),
 * and an EV_CLEAR knote there has no edge to go by: as FreeBSD's, which
 * fires when an acknowledgement empties the buffer, it fires when bytes
 * were acknowledged since its last delivery (kn_u.fd.mark, set by
 * empty_clear from kn_data) and the queue is empty.
 */
static bool empty_event(struct kq *kq, struct knote *kn, struct kevent *out)
{
	struct kq_fdent *fe = kn->kn_u.fd.fe;
	int n = 0;
	if (fe->fe_type == FT_LISTEN || (kn->kn_u.fd.revents & (EPOLLHUP | EPOLLERR)))
		return true;
	if (ioctl(fe->fe_fd, SIOCOUTQ, &n) < 0)
		n = 0;
	out->data = n;
	if (n == 0 && fe->fe_tcp && (kn->kn_flags & EV_CLEAR)) {
		kn->kn_data = tcp_acked_mark(fe->fe_fd);
		if (kn->kn_data == kn->kn_u.fd.mark)
			n = -1; /* nothing new acknowledged: not an event */
	}
	if (n == 0) {
		fe->fe_drain_tries = 0;
		return true;
	}
	if (fe->fe_tcp)
		kq__drain_wait(kq, fe); /* no wake-up comes when ACKs drain it */
	return false;
}

/* Delivered with EV_CLEAR: remember what was acknowledged, and on TCP keep
 * looking for the next drain (nothing wakes us when the program writes). */
static void empty_clear(struct kq *kq, struct knote *kn)
{
	struct kq_fdent *fe = kn->kn_u.fd.fe;
	kn->kn_u.fd.mark = (uint32_t)kn->kn_data;
	if (fe->fe_tcp && !(kn->kn_status & KN_DISABLED))
		kq__drain_wait(kq, fe);
}

const struct filterops kq__read_ops = {
        .f_filter = EVFILT_READ,
        .f_events = EPOLLIN | EPOLLRDHUP,
        .f_validate = rw_validate,
        .f_attach = rw_attach,
        .f_detach = read_detach,
        .f_event = read_event,
};

const struct filterops kq__write_ops = {
        .f_filter = EVFILT_WRITE,
        .f_events = EPOLLOUT,
        .f_validate = rw_validate,
        .f_attach = rw_attach,
        .f_detach = nop_detach,
        .f_event = write_event,
};

/* An edge registration: a level one would report a writable socket at
 * every wait while its queue is not empty yet. */
const struct filterops kq__empty_ops = {
        .f_filter = EVFILT_EMPTY,
        .f_events = EPOLLOUT,
        .f_edge = true,
        .f_validate = empty_validate,
        .f_attach = empty_attach,
        .f_detach = nop_detach,
        .f_touch = empty_touch,
        .f_event = empty_event,
        .f_clear = empty_clear,
};

const struct filterops *const kq__fd_ops[FE_NKN] = {&kq__read_ops, &kq__write_ops, &kq__empty_ops};
