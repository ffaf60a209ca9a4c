/*
 * EVFILT_EMPTY on TCP sockets: the send queue drains as the peer's ACKs come
 * in, and Linux wakes no poller for that (an ACK wakes writers only after a
 * write found the buffer full).  An EMPTY knote that finds data still in
 * flight puts its fd here; the kqueue's timerfd looks again after about one
 * round trip (TCP_INFO's smoothed RTT, within DRAIN_MIN_NS..DRAIN_MAX_NS,
 * backing off while the queue stays full), and every fd found still waiting
 * comes back.  Other sockets need none of
 * this: their queue drains when the peer reads (AF_UNIX) or the packet leaves
 * (UDP), and that wakes an EPOLLOUT edge.
 */
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "kq_private.h"

#define DRAIN_MIN_NS 200000LL    /* loopback ACKs come within microseconds */
#define DRAIN_MAX_NS 100000000LL /* a slow path is still looked at 10 times a second */

/*
 * One round trip, doubled for every look that found the queue still full: a
 * peer that stopped reading (a closed window) costs ten looks a second, not
 * one per round trip.
 */
static int64_t drain_delay(int fd, unsigned tries)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int64_t ns = DRAIN_MIN_NS;
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_rtt * 1000LL > ns)
		ns = ti.tcpi_rtt * 1000LL;
	for (; tries > 0 && ns < DRAIN_MAX_NS; tries--)
		ns *= 2;
	return ns > DRAIN_MAX_NS ? DRAIN_MAX_NS : ns;
}

void kq__drain_wait(struct kq *kq, struct kq_fdent *fe)
{
	KQ_ASSERT_LOCKED(&fe->fe_lock);
	if (fe->fe_draining)
		return;
	int64_t at = kq__now_ns() + drain_delay(fe->fe_fd, fe->fe_drain_tries);
	if (fe->fe_drain_tries < 255)
		fe->fe_drain_tries++;
	kq__mutex_lock(&kq->kq_lock);
	if (kq->kq_ndrains == kq->kq_draincap) {
		uint32_t cap = kq->kq_draincap ? kq->kq_draincap * 2 : 8;
		int *d = realloc(kq->kq_drains, cap * sizeof(*d));
		if (!d) { /* looked at again by the next report or change, not lost for good */
			kq__mutex_unlock(&kq->kq_lock);
			return;
		}
		kq->kq_drains = d;
		kq->kq_draincap = cap;
	}
	kq->kq_drains[kq->kq_ndrains++] = fe->fe_fd;
	fe->fe_draining = true;
	if (!kq->kq_drain_at || at < kq->kq_drain_at)
		kq->kq_drain_at = at;
	kq__timerfd_soon(kq, kq->kq_drain_at);
	kq__mutex_unlock(&kq->kq_lock);
}

/*
 * The timerfd fired (for us or for a timer): when the drains are due, take
 * the list and look at each fd's EMPTY knote again; when not yet, make sure
 * the timerfd still comes back for them (a timer's expiry re-armed it for
 * the next timer).
 */
void kq__drain_retry(struct kq *kq)
{
	kq__mutex_lock(&kq->kq_lock);
	int *fds = NULL;
	uint32_t n = 0;
	if (kq->kq_ndrains && kq->kq_drain_at > kq__now_ns()) {
		kq__timerfd_soon(kq, kq->kq_drain_at);
	} else if (kq->kq_ndrains) {
		fds = kq->kq_drains;
		n = kq->kq_ndrains;
		kq->kq_drains = NULL;
		kq->kq_ndrains = kq->kq_draincap = 0;
		kq->kq_drain_at = 0;
	}
	kq__mutex_unlock(&kq->kq_lock);
	/* Their fd locks come before kq_lock: take them after. */
	for (uint32_t i = 0; i < n; i++)
		kq__fd_drain_check(kq, fds[i]);
	free(fds);
}

void kq__drain_free(struct kq *kq)
{
	free(kq->kq_drains);
	kq->kq_drains = NULL;
	kq->kq_ndrains = kq->kq_draincap = 0;
	kq->kq_drain_at = 0;
}
