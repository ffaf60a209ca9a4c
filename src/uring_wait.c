/*
 * The io_uring wait (BATON_URING_WAIT=1; epoll's own calls are the default).
 *
 * A thread serving EV_DISPATCH or serial knotes re-arms each event it
 * handled (EV_ENABLE in its next changelist): with epoll that is one
 * EPOLL_CTL_MOD system call per event, then epoll_wait().  Here the re-arms
 * fe_sync() would make for the call's changes are queued (up to
 * KQ_DEFER_MAX), and the first wait of the call hands them to the kernel
 * with the wait itself: IORING_OP_EPOLL_CTL for each and IORING_OP_EPOLL_WAIT
 * (Linux 6.15) in one io_uring_enter, which returns when all are done.
 *
 * Only re-arms of oneshot registrations are queued: making one again is
 * harmless (the knotes' state, under fe_lock, decides what is delivered),
 * while a redundant modification of an edge registration would report its
 * bits again.  A queued re-arm names the fd by its number and may run after
 * the change that queued it released fe_lock, so a later change of the
 * registration (another thread's, or a close and a new file on the number
 * and its EV_ADD) may run first; even one made earlier may, if it was
 * queued by a thread that submitted later.  Every change of a registration
 * moves fe_regseq: a re-arm whose fe_regseq moved on is made again from the
 * knotes once it has run (kq__fd_rearm_done), before the call returns, and
 * a stale generation it put in the kernel only makes reports be dropped
 * until then.  Nothing is lost: the kernel looks at the file again on each
 * modification.  What a queued re-arm cannot do is fail the change: the
 * file closed where the hooks could not see it (ENOENT) takes its knotes
 * away after the EV_ENABLE was reported done, not with an error for it.
 *
 * Rings: KQ_NWRING of uring.c's private rings (never closed: see uring.c).
 * A thread that queued re-arms takes one and keeps it until it exits, and
 * from then on every wait of its outermost calls that may sleep goes
 * through it: io_uring sends a thread task work (TWA_SIGNAL) for its
 * requests, even after they completed (an io-wq worker that blocked on the
 * epoll's mutex for a re-arm asks it to start another), and that ends a
 * sleeping epoll_wait() with EINTR, but not io_uring's own wait, which runs
 * the work and waits on.  A thread that finds every ring taken, a nested
 * call (a signal handler's kevent()), and a kernel without the operations
 * make the re-arms with epoll_ctl() as before.  When nothing was ready the
 * thread sleeps in an exclusive poll of the epoll instead of the wait
 * (sleep_ring); a timeout or a signal ends either with
 * IORING_OP_ASYNC_CANCEL, and events taken meanwhile are delivered.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kq_private.h"
#include "uring.h"

#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif
#define OP_EPOLL_WAIT 59 /* Linux 6.15's uapi; Debian 12's headers are 6.1's */

#define KQ_DEFER_MAX   64
#define KQ_WAIT_MAX    256 /* events one wait takes (kevent.c's KQ_EVBUF) */
#define UD_WAIT        (~0ULL)
#define UD_CANCEL      (~0ULL - 1)
#define UD_POLL        (~0ULL - 2)
#define UD_CANCEL_WAIT (~0ULL - 3)

enum { MODE_UNSET, MODE_OFF, MODE_ON };
static atomic_int mode;

/* The re-arms of this thread's kevent() call, while it applies changes (open). */
struct rearm {
	struct kq_fdent *fe;
	struct epoll_event ev;
	uint32_t seq; /* fe_regseq it was queued under */
	int res;
	bool done;
};
/* Made for a thread at its first queued call: most threads never need it. */
struct dqueue {
	int n;
	struct rearm q[KQ_DEFER_MAX];
};
#define TLS_IE __attribute__((tls_model("initial-exec")))
static _Thread_local struct dqueue *dq TLS_IE;
/* The call's kqueue while its changes may queue re-arms, or NULL. */
_Thread_local struct kq *kq__defer_kq TLS_IE;
static pthread_key_t dq_key;
static pthread_once_t dq_key_once = PTHREAD_ONCE_INIT;

static void dq_key_make(void)
{
	if (pthread_key_create(&dq_key, free))
		dq_key = (pthread_key_t)-1;
}

static bool enabled(void)
{
	int m = atomic_load_explicit(&mode, memory_order_relaxed);
	if (__builtin_expect(m == MODE_UNSET, 0)) {
		const char *e = getenv("BATON_URING_WAIT");
		m = e && *e && strcmp(e, "0") ? MODE_ON : MODE_OFF;
		atomic_store_explicit(&mode, m, memory_order_relaxed);
	}
	return m == MODE_ON;
}

void kq__defer_begin(struct kq *kq)
{
	if (kq__depth != 1 || !enabled())
		return;
	if (!dq) {
		pthread_once(&dq_key_once, dq_key_make);
		if (dq_key == (pthread_key_t)-1 || !(dq = calloc(1, sizeof(*dq))))
			return;
		if (pthread_setspecific(dq_key, dq)) {
			free(dq);
			dq = NULL;
			return;
		}
	}
	kq__defer_kq = kq;
}

void kq__defer_close(void)
{
	if (kq__depth == 1)
		kq__defer_kq = NULL;
}

static struct rearm *queued(const struct kq_fdent *fe)
{
	for (int i = 0; i < dq->n; i++)
		if (dq->q[i].fe == fe)
			return &dq->q[i];
	return NULL;
}

bool kq__defer_rearm(struct kq *kq, struct kq_fdent *fe, uint32_t events, uint64_t data)
{
	if (kq__defer_kq != kq || kq__depth != 1)
		return false;
	/* A second re-arm of the fd in the changelist replaces the first. */
	struct rearm *r = queued(fe);
	if (!r && dq->n == KQ_DEFER_MAX)
		return false;
	if (!r) {
		r = &dq->q[dq->n++];
		atomic_fetch_add(&fe->fe_rearms, 1);
	}
	r->fe = fe;
	r->ev.events = events;
	r->ev.data.u64 = data;
	r->seq = atomic_load_explicit(&fe->fe_regseq, memory_order_relaxed);
	r->done = false;
	return true;
}

void kq__defer_drop(struct kq *kq, struct kq_fdent *fe)
{
	struct rearm *r;
	if (kq__defer_kq == kq && kq__depth == 1 && (r = queued(fe))) {
		atomic_fetch_sub(&fe->fe_rearms, 1);
		*r = dq->q[--dq->n];
	}
}

/* The queued re-arms have run (or failed): look at each (no lock held). */
static void finish(struct kq *kq)
{
	if (!dq)
		return;
	for (int i = 0; i < dq->n; i++) {
		struct rearm *r = &dq->q[i];
		if (!r->done)
			r->res = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_MOD, r->fe->fe_fd, r->ev.events,
			                    r->ev.data.u64);
		/* The common case needs no lock: nothing came after it. */
		if (r->res ||
		    atomic_load_explicit(&r->fe->fe_regseq, memory_order_acquire) != r->seq)
			kq__fd_rearm_done(kq, r->fe, r->seq, r->res, &r->ev);
		atomic_fetch_sub(&r->fe->fe_rearms, 1);
	}
	dq->n = 0;
}

void kq__defer_flush(struct kq *kq)
{
	if (kq__depth != 1)
		return;
	kq__defer_kq = NULL;
	if (dq && dq->n)
		finish(kq);
}

static struct io_uring_sqe *sqe_at(struct kq_ring *r, unsigned slot)
{
	struct io_uring_sqe *s = &r->sqes[slot & r->sq_mask];
	memset(s, 0, sizeof(*s));
	return s;
}

#define NONE LONG_MIN /* a result not seen yet */
/* The results of a call's own requests in its ring. */
struct results {
	long wait;   /* the IORING_OP_EPOLL_WAIT */
	long cancel; /* sleep_ring's cancel of it */
	long poll;   /* sleep_ring's exclusive poll of the epoll */
};

/* Takes the ring's completions into *res and the re-arms'. */
static int reap(struct kq_ring *r, struct results *res)
{
	int seen = 0;
	unsigned head = *r->cq_head;
	unsigned end = atomic_load_explicit((_Atomic unsigned *)r->cq_tail, memory_order_acquire);
	for (; head != end; head++, seen++) {
		const struct io_uring_cqe *c = &r->cqes[head & r->cq_mask];
		if (c->user_data == UD_WAIT)
			res->wait = c->res;
		else if (c->user_data == UD_POLL)
			res->poll = c->res;
		else if (c->user_data == UD_CANCEL_WAIT)
			res->cancel = c->res;
		else if (dq && c->user_data < (uint64_t)dq->n) {
			dq->q[c->user_data].res = c->res;
			dq->q[c->user_data].done = true;
		}
	}
	atomic_store_explicit((_Atomic unsigned *)r->cq_head, head, memory_order_release);
	return seen;
}

static long enter(struct kq_ring *r, unsigned submit, unsigned want, int ms)
{
	int fd = atomic_load_explicit(&r->fd, memory_order_relaxed); /* dup2 may move it */
	struct __kernel_timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	struct io_uring_getevents_arg arg = {.ts = ms >= 0 ? (uint64_t)(uintptr_t)&ts : 0};
	long got = syscall(__NR_io_uring_enter, fd, submit, want,
	                   IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof(arg));
	return got < 0 ? -errno : got;
}

/* Queues a cancel of request `what` (its own result under `as`);
 * IOSQE_IO_LINK: what follows runs only if the cancel found it pending. */
static void queue_cancel(struct kq_ring *r, uint64_t what, uint64_t as, unsigned flags)
{
	unsigned tail = *r->sq_tail;
	struct io_uring_sqe *s = sqe_at(r, tail);
	s->opcode = IORING_OP_ASYNC_CANCEL;
	s->addr = what;
	s->flags = (uint8_t)flags;
	s->user_data = as;
	atomic_store_explicit((_Atomic unsigned *)r->sq_tail, tail + 1, memory_order_release);
}

/* 0: exclusive polls of the epoll work or are untried; -1: refused. */
static atomic_int excl_refused;

/* The wait's cancel and, linked behind it, the exclusive poll (sleep_ring). */
static void queue_poll(struct kq *kq, struct kq_ring *r)
{
	queue_cancel(r, UD_WAIT, UD_CANCEL_WAIT, IOSQE_IO_LINK);
	unsigned tail = *r->sq_tail;
	struct io_uring_sqe *s = sqe_at(r, tail);
	s->opcode = IORING_OP_POLL_ADD;
	s->fd = kq->kq_epfd;
	s->poll32_events = EPOLLIN | EPOLLEXCLUSIVE;
	s->user_data = UD_POLL;
	atomic_store_explicit((_Atomic unsigned *)r->sq_tail, tail + 1, memory_order_release);
}

/*
 * Nothing was ready for the wait: sleep until something is, or ms (> 0)
 * passes, or a signal comes.  The pending wait is not slept in: io_uring
 * waits for it with a poll of the epoll file that is not exclusive, so every
 * thread asleep in its ring would wake for each report (the herd that made
 * the wait lose to epoll_wait() at 32 threads, and already at two where
 * threads sleep often).  Instead the wait is cancelled and, linked behind
 * the cancel so that it is armed only if the cancel caught the wait before
 * it took anything, an EPOLLEXCLUSIVE poll of the epoll sleeps in its
 * place: a report wakes one such sleeper, as it wakes one thread in
 * epoll_wait().
 *
 * A woken poll took that wake from every other sleeper, so once one was
 * armed the reports are always taken with epoll_wait(0) before returning,
 * however the poll ended (woken, timed out, a signal): a report left behind
 * would wait for the next report's wake.  Returns what kq__ep_wait() would;
 * -EAGAIN: the wait was not caught (it took events, or is taking them), the
 * caller goes on with it; -ENOSYS: the poll was refused (epoll_wait()).
 */
static int sleep_ring(struct kq *kq, struct kq_ring *r, struct results *res, void *evbuf, int max,
                      int ms, int64_t deadline, bool queued, bool *interrupted)
{
	unsigned submit = 0;
	if (!queued) {
		queue_poll(kq, r);
		submit = 2;
	}
	bool cancelled = false;
	/* Until the cancel's fate is known, then the poll's, and the wait's if
	 * the cancel caught it (its CQE may come after the poll's). */
	while (res->cancel == NONE || res->poll == NONE ||
	       (res->cancel == 0 && res->wait == NONE)) {
		int wait_ms = -1;
		if (res->cancel == 0 && res->poll == NONE && !cancelled) { /* armed */
			bool stop = *interrupted;
			if (!stop && ms > 0) {
				int64_t rest = deadline - kq__now_ns();
				stop = rest <= 0;
				wait_ms = (int)((rest + 999999) / 1000000);
			}
			if (stop) {
				queue_cancel(r, UD_POLL, UD_CANCEL, 0);
				submit++;
				cancelled = true;
				wait_ms = -1;
			}
		}
		long got = enter(r, submit, 1, wait_ms);
		submit = 0;
		if (reap(r, res) == 0 && got < 0 && got != -EINTR && got != -ETIME) {
			r->dead = true; /* lost: the ring is not used again */
			break;
		}
		if (got == -EINTR)
			*interrupted = true;
		if (res->cancel != NONE && res->cancel != 0 && res->poll != NONE)
			return -EAGAIN; /* never armed: the wait goes on (or is done) */
	}
	if (res->cancel != 0)
		return -EAGAIN; /* the ring died before the poll was armed */
	if (res->poll == -EINVAL || res->poll == -EOPNOTSUPP) {
		atomic_store_explicit(&excl_refused, -1, memory_order_relaxed);
		return -ENOSYS; /* never armed: epoll_wait() from now on */
	}
	int n = kq__ep_wait(kq->kq_epfd, evbuf, max, 0);
	return n == 0 && *interrupted ? -EINTR : n;
}

/*
 * The re-arms and (ms != 0) the wait in ring r.  The first io_uring_enter
 * submits both and returns once the re-arms are done (at once, unless the
 * kernel handed one to a worker): their results are looked at before the
 * wait may sleep, so that a re-arm that overtook another thread's change is
 * made good at once, not when this thread wakes.  Most often the wait is
 * done too (events were ready); else the thread sleeps (sleep_ring).
 * Returns the wait's result as kq__ep_wait() would, or -ENOSYS: the ring
 * did not take the wait (the caller waits with epoll_wait()).
 */
static int ring_wait(struct kq *kq, struct kq_ring *r, void *evbuf, int max, int ms)
{
	int nq = dq ? dq->n : 0;
	if (max > KQ_WAIT_MAX)
		max = KQ_WAIT_MAX;
	unsigned tail = *r->sq_tail, k = 0;
	for (int i = 0; i < nq; i++) {
		struct io_uring_sqe *s = sqe_at(r, tail + k++);
		s->opcode = IORING_OP_EPOLL_CTL;
		s->fd = kq->kq_epfd;
		s->len = EPOLL_CTL_MOD; /* the op in len, the target in off */
		s->off = (uint64_t)dq->q[i].fe->fe_fd;
		s->addr = (uint64_t)(uintptr_t)&dq->q[i].ev;
		s->user_data = (uint64_t)i;
	}
	unsigned nctl = k;
	bool waits = ms != 0; /* a poll needs no ring: epoll_wait() after */
	if (waits) {
		struct io_uring_sqe *s = sqe_at(r, tail + k++);
		s->opcode = OP_EPOLL_WAIT;
		s->fd = kq->kq_epfd;
		/* the ring's buffer: if the wait could not be seen to its end
		 * (the ring failed), the kernel writes nothing into the caller's */
		s->addr = (uint64_t)(uintptr_t)r->wbuf;
		s->len = (unsigned)max;
		s->user_data = UD_WAIT;
	}
	atomic_store_explicit((_Atomic unsigned *)r->sq_tail, tail + k, memory_order_release);
	/* No re-arms to look at before sleeping: the cancel and the poll go
	 * with the wait, and the first enter sleeps (one system call less). */
	bool bare =
	        waits && nctl == 0 && !atomic_load_explicit(&excl_refused, memory_order_relaxed);
	if (bare) {
		queue_poll(kq, r);
		k += 2;
	}
	int64_t deadline = ms > 0 ? kq__now_ns() + (int64_t)ms * 1000000 : 0;
	long got = enter(r, k, bare ? 3 : nctl, bare ? ms : -1);
	unsigned taken =
	        atomic_load_explicit((_Atomic unsigned *)r->sq_head, memory_order_acquire) - tail;
	if (taken != k) {
		/* Refused (no memory...): what it did not take is left out,
		 * done by the caller, and the ring is not used again. */
		r->dead = true;
		*r->sq_tail = tail + taken;
		if (taken < nctl)
			nctl = taken;
		if (taken <= nctl)
			waits = false; /* the wait was not taken */
		bare = false;          /* nor all of the poll: the wait is waited for */
	}
	struct results res = {NONE, NONE, NONE};
	reap(r, &res);
	for (;;) {
		unsigned ctls = 0;
		for (int i = 0; i < (int)nctl; i++)
			ctls += dq->q[i].done;
		if (ctls == nctl)
			break;
		got = enter(r, 0, nctl - ctls, -1);
		if (reap(r, &res) == 0 && got < 0 && got != -EINTR) {
			r->dead = true; /* lost: never seen here (finish() makes them) */
			break;
		}
	}
	finish(kq);
	if (!waits)
		return taken == k ? kq__ep_wait(kq->kq_epfd, evbuf, max, 0) : -ENOSYS;
	/* A bare first enter that came back with the poll armed and not
	 * woken was cut short: by the timeout or by a signal (it says so only
	 * when it submitted nothing, so the clock tells which). */
	bool cancelled = false, expired = false;
	bool interrupted = bare && res.cancel == 0 && res.poll == NONE &&
	                   (ms < 0 || (ms > 0 && kq__now_ns() < deadline));
	if (bare || (res.wait == NONE && !r->dead &&
	             !atomic_load_explicit(&excl_refused, memory_order_relaxed))) {
		int n = sleep_ring(kq, r, &res, evbuf, max, ms, deadline, bare, &interrupted);
		if (n != -EAGAIN)
			return n;
		if (r->dead && res.wait == NONE)
			return interrupted ? -EINTR : -ENOSYS;
	}
	while (res.wait == NONE) {
		int wait_ms = -1;
		if (!cancelled && ms > 0 && !expired && !interrupted) {
			int64_t rest = deadline - kq__now_ns();
			expired = rest <= 0;
			wait_ms = (int)((rest + 999999) / 1000000);
		}
		if (!cancelled && (expired || interrupted)) {
			queue_cancel(r, UD_WAIT, UD_CANCEL, 0);
			cancelled = true;
			got = enter(r, 1, 1, -1);
		} else {
			got = enter(r, 0, 1, wait_ms);
			if (!cancelled && got == -EINTR)
				interrupted = true;
			else if (!cancelled && got == -ETIME)
				expired = true;
		}
		if (reap(r, &res) == 0 && got < 0 && got != -EINTR && got != -ETIME) {
			r->dead = true; /* lost: the ring is not used again */
			return cancelled ? (interrupted ? -EINTR : 0) : -ENOSYS;
		}
	}
	if (res.wait >= 0) { /* events taken, even by a cancelled wait */
		memcpy(evbuf, r->wbuf, sizeof(struct epoll_event) * (size_t)res.wait);
		return (int)res.wait;
	}
	if (res.wait == -EINVAL || res.wait == -EOPNOTSUPP)
		return -ENOSYS; /* epoll_wait() says what is wrong */
	if (res.wait == -ECANCELED || res.wait == -EAGAIN)
		return interrupted ? -EINTR : 0;
	return (int)res.wait;
}

/* This thread's ring, kept until it exits (ring_key's destructor). */
static _Thread_local struct kq_ring *own TLS_IE;
static _Thread_local unsigned own_retry TLS_IE; /* none was free: calls until the next try */
static pthread_key_t ring_key;
static pthread_once_t ring_key_once = PTHREAD_ONCE_INIT;

static void ring_give_back(void *r)
{
	pthread_mutex_unlock(&((struct kq_ring *)r)->lock);
}

static void ring_key_make(void)
{
	if (pthread_key_create(&ring_key, ring_give_back))
		ring_key = (pthread_key_t)-1;
}

/* Does the kernel have both operations?  Asked once (IORING_REGISTER_PROBE). */
static bool ops_supported(int fd)
{
	struct {
		struct io_uring_probe p;
		struct io_uring_probe_op ops[OP_EPOLL_WAIT + 1];
	} pr;
	memset(&pr, 0, sizeof(pr));
	if (syscall(__NR_io_uring_register, fd, IORING_REGISTER_PROBE, &pr, OP_EPOLL_WAIT + 1) < 0)
		return false;
	return pr.p.ops_len > OP_EPOLL_WAIT &&
	       (pr.ops[IORING_OP_EPOLL_CTL].flags & IO_URING_OP_SUPPORTED) &&
	       (pr.ops[OP_EPOLL_WAIT].flags & IO_URING_OP_SUPPORTED);
}

static struct kq_ring *own_ring(void)
{
	if (own || own_retry-- > 0)
		return own;
	pthread_once(&ring_key_once, ring_key_make);
	struct kq_ring *r = ring_key == (pthread_key_t)-1 ? NULL : kq__wring_take();
	if (r && !r->wbuf)
		r->wbuf = malloc(sizeof(struct epoll_event) * KQ_WAIT_MAX);
	static atomic_int probed; /* 0: not yet, 1: yes, 2: no */
	if (r && !atomic_load_explicit(&probed, memory_order_relaxed))
		atomic_store(&probed,
		             ops_supported(atomic_load_explicit(&r->fd, memory_order_relaxed)) ? 1
		                                                                               : 2);
	if (atomic_load(&probed) == 2) /* before 6.15: epoll's calls */
		atomic_store_explicit(&mode, MODE_OFF, memory_order_relaxed);
	if (r && (!r->wbuf || atomic_load(&probed) == 2 || pthread_setspecific(ring_key, r))) {
		pthread_mutex_unlock(&r->lock);
		r = NULL;
	}
	own_retry = r ? 0 : 1024;
	return own = r;
}

void kq__ring_wait_fork(void)
{
	/* uring.c's kq__ring_fork made the rings anew, unlocked */
	if (own)
		pthread_setspecific(ring_key, NULL);
	own = NULL;
	own_retry = 0;
}

int kq__ep_wait_kq(struct kq *kq, void *evbuf, int max, int ms)
{
	/* A thread with a ring waits in it (see the top of the file). */
	if (__builtin_expect(!dq || dq->n == 0, 1) && (!own || ms == 0 || kq__depth != 1))
		return kq__ep_wait(kq->kq_epfd, evbuf, max, ms);
	if (kq__depth != 1 || kq__defer_kq)
		return kq__ep_wait(kq->kq_epfd, evbuf, max, ms);
#ifdef BATON_TEST_HOOKS
	/* tests: other threads' changes overtake the queued re-arms */
	const char *delay = getenv("BATON_TEST_REARM_DELAY_MS");
	if (delay)
		usleep((useconds_t)atoi(delay) * 1000);
#endif
	struct kq_ring *r = own_ring();
	int res = -ENOSYS;
	if (r && !r->dead && atomic_load_explicit(&mode, memory_order_relaxed) == MODE_ON)
		res = ring_wait(kq, r, evbuf, max, ms);
	else
		finish(kq);
	return res == -ENOSYS ? kq__ep_wait(kq->kq_epfd, evbuf, max, ms) : res;
}
