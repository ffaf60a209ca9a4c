/*
 * NOTE_FORK, NOTE_EXEC and NOTE_TRACK from the netlink process connector:
 * one socket per kqueue, opened when the first knote asks for them and
 * closed with the last, registered in the kqueue's epoll.
 *
 * Linux quirks this file works around:
 * - Listening needs CAP_NET_ADMIN in the initial user and pid namespaces.
 *   The kernel answers a listen request with an acknowledgement carrying
 *   the error (none at all outside the initial namespaces), so opening
 *   waits for it, briefly: no answer or a refusal is ENOTSUP.
 * - The connector reports every process of the system, after the fact: a
 *   fork is seen once the child runs, so NOTE_TRACK attaches to a child
 *   that may have exited, or been reaped already (then NOTE_TRACKERR).
 * - A new thread is a fork event too (child pid != child tgid): skipped.
 * - When the socket's buffer overflows (ENOBUFS) events are lost.
 * - Event records sit at offsets the kernel does not align to 8: copied.
 */
#include <errno.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kq_private.h"

#define CN_ACK_WAIT_MS 500

/* Sends a listen/ignore request; ack tells our answer from others'. */
static int cn_send(int fd, enum proc_cn_mcast_op op, uint32_t ack)
{
	struct {
		struct nlmsghdr nh;
		struct cn_msg cm;
		enum proc_cn_mcast_op op;
	} __attribute__((packed)) req;
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = sizeof(req);
	req.nh.nlmsg_type = NLMSG_DONE;
	req.cm.id.idx = CN_IDX_PROC;
	req.cm.id.val = CN_VAL_PROC;
	req.cm.ack = ack;
	req.cm.len = sizeof(req.op);
	req.op = op;
	return send(fd, &req, sizeof(req), 0) < 0 ? -errno : 0;
}

/*
 * Calls fn for each connector event in one datagram.  Returns the error
 * of the acknowledgement numbered ack+1 if the datagram has one, else -1.
 */
static long cn_parse(const char *buf, size_t len, uint32_t ack,
                     void (*fn)(struct kq *, const struct proc_event *), struct kq *kq)
{
	long ackerr = -1;
	for (const struct nlmsghdr *nh = (const void *)buf; NLMSG_OK(nh, len);
	     nh = NLMSG_NEXT(nh, len)) {
		if (nh->nlmsg_type == NLMSG_NOOP || nh->nlmsg_type == NLMSG_ERROR)
			continue;
		struct cn_msg cm;
		struct proc_event ev;
		if (NLMSG_PAYLOAD(nh, 0) < sizeof(cm))
			continue;
		memcpy(&cm, NLMSG_DATA(nh), sizeof(cm));
		if (cm.id.idx != CN_IDX_PROC || cm.id.val != CN_VAL_PROC ||
		    NLMSG_PAYLOAD(nh, 0) < sizeof(cm) + offsetof(struct proc_event, event_data) + 4)
			continue;
		memset(&ev, 0, sizeof(ev));
		size_t n = NLMSG_PAYLOAD(nh, 0) - sizeof(cm);
		memcpy(&ev, (const char *)NLMSG_DATA(nh) + sizeof(cm),
		       n < sizeof(ev) ? n : sizeof(ev));
		if (ev.what == PROC_EVENT_NONE && cm.ack == ack + 1)
			ackerr = (long)ev.event_data.ack.err;
		else if (fn)
			fn(kq, &ev);
	}
	return ackerr;
}

/* Reads datagrams until the kernel answers our listen request. */
static int cn_wait_ack(int fd, uint32_t ack)
{
	char buf[4096] __attribute__((aligned(8)));
	for (int waited = 0; waited < CN_ACK_WAIT_MS; waited += 10) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 10) <= 0)
			continue;
		ssize_t n;
		while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
			long err = cn_parse(buf, (size_t)n, ack, NULL, NULL);
			if (err >= 0)
				return err ? -ENOTSUP : 0;
		}
	}
	return -ENOTSUP;
}

/*
 * A refusal is remembered, so that a program retrying does not wait for
 * the kernel's answer (under kq_lock) every time; a success is not, as a
 * child may move to another namespace.
 */
static atomic_bool cn_refused;

/* A listening connector socket, or -errno (ENOTSUP: not allowed here). */
static int cn_open(void)
{
	static atomic_uint seq;
	if (atomic_load_explicit(&cn_refused, memory_order_relaxed))
		return -ENOTSUP;
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_CONNECTOR);
	if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS))
		return -errno;
	if (fd < 0) { /* no connector in this kernel */
		atomic_store_explicit(&cn_refused, true, memory_order_relaxed);
		return -ENOTSUP;
	}
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC};
	int rcvbuf = 1 << 20, err = -ENOTSUP;
	uint32_t ack = (uint32_t)getpid() * 65536u + atomic_fetch_add(&seq, 2);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail; /* EPERM: no CAP_NET_ADMIN */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (cn_send(fd, PROC_CN_MCAST_LISTEN, ack) < 0 || (err = cn_wait_ack(fd, ack)))
		goto fail;
	return fd;
fail:
	kq__sys_close(fd);
	if (err == -ENOTSUP)
		atomic_store_explicit(&cn_refused, true, memory_order_relaxed);
	return err;
}

int kq__proc_cn_get(struct kq *kq)
{
	if (kq->kq_procfd >= 0) {
		kq->kq_procusers++;
		return 0;
	}
	int fd = cn_open();
	if (fd < 0)
		return fd;
	fd = kq__private_fd(kq, fd);
	int err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, fd, EPOLLIN, KQ_TAG_PROC << KQ_TAG_SHIFT);
	if (err) {
		kq__private_close(kq, fd);
		return err;
	}
	kq->kq_procfd = fd;
	kq->kq_procusers = 1;
	return 0;
}

void kq__proc_cn_put(struct kq *kq)
{
	if (--kq->kq_procusers > 0 || kq->kq_procfd < 0)
		return;
	/* The kernel counts listeners to decide whether to report at all. */
	cn_send(kq->kq_procfd, PROC_CN_MCAST_IGNORE, 0);
	kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, kq->kq_procfd, 0, 0);
	kq__private_close(kq, kq->kq_procfd);
	kq->kq_procfd = -1;
}

/* A KQUEUE_CPONFORK copy: the inherited socket is the parent's. */
int kq__proc_cn_fork(struct kq *kq)
{
	if (kq->kq_procfd < 0)
		return 0;
	kq__private_close(kq, kq->kq_procfd);
	kq->kq_procfd = -1;
	uint32_t users = kq->kq_procusers;
	int err = kq__proc_cn_get(kq);
	kq->kq_procusers = users;
	return err;
}

/* One event, kq_lock held: the knote of the process it is about, if any. */
static void cn_event(struct kq *kq, const struct proc_event *ev)
{
	uint32_t what = ev->what, fired = 0;
	pid_t pid = what == PROC_EVENT_FORK ? ev->event_data.fork.parent_tgid
	                                    : ev->event_data.exec.process_tgid;
	if ((what != PROC_EVENT_FORK && what != PROC_EVENT_EXEC) || pid <= 0)
		return;
	if (what == PROC_EVENT_FORK &&
	    ev->event_data.fork.child_pid != ev->event_data.fork.child_tgid)
		return; /* a new thread */
	struct knote *kn = kq__hash_find(kq, EVFILT_PROC, (uintptr_t)pid);
	if (!kn)
		return;
	uint32_t want = kn->kn_u.proc.want;
	if (what == PROC_EVENT_EXEC)
		fired = want & NOTE_EXEC;
	else
		fired = want & NOTE_FORK;
	if (what == PROC_EVENT_FORK && (want & NOTE_TRACK) &&
	    kq__proc_track(kq, kn, ev->event_data.fork.child_tgid))
		fired |= NOTE_TRACKERR;
	if (!fired)
		return;
	kn->kn_u.proc.fired |= fired;
	kq__activate(kq, kn);
	/* An exit that followed comes in the same event, as on FreeBSD
	 * where nothing is reported late. */
	kq__proc_check(kq, kn);
}

/*
 * Applies every event the socket holds (kq_lock held).  Not again from
 * inside: a NOTE_TRACK child that exited already asks from its attach.
 */
void kq__proc_cn_drain(struct kq *kq)
{
	static _Thread_local bool draining;
	char buf[8192] __attribute__((aligned(8)));
	if (kq->kq_procfd < 0 || draining)
		return;
	draining = true;
	for (;;) {
		struct sockaddr_nl from;
		socklen_t fl = sizeof(from);
		ssize_t n =
		        recvfrom(kq->kq_procfd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n < 0 && errno == ENOBUFS)
			continue; /* overflowed: what was lost is lost */
		if (n <= 0)
			break;
		if (from.nl_pid == 0) /* only the kernel speaks here */
			cn_parse(buf, (size_t)n, UINT32_MAX, cn_event, kq);
	}
	draining = false;
}

/* The connector socket is readable. */
void kq__proc_cn_read(struct kq *kq)
{
	kq__mutex_lock(&kq->kq_lock);
	kq__proc_cn_drain(kq);
	kq__mutex_unlock(&kq->kq_lock);
}
