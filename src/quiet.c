/*
 * The wait of a quiet kqueue: one whose knotes are all EVFILT_USER, so that
 * nothing in the kernel can make it ready, only another thread's trigger.
 * Its waiters sleep on a futex word instead of in epoll_wait(), and a
 * trigger wakes one with FUTEX_WAKE instead of the eventfd: a futex round
 * trip costs less than the epoll wake path (ep_poll_callback, the ready
 * list, ep_send_events), and a poll with a zero timeout costs no system
 * call at all.
 *
 * The eventfd still carries every wake that no quiet waiter takes, so the
 * kqueue's fd stays pollable: kq__wake_flush() writes it when no thread
 * sleeps here, and every call that collects events flushes again if it
 * leaves knotes queued.  A poller of the kqueue's fd is not woken for an
 * event a waiter inside kevent() takes at once, which is a race it could
 * lose on FreeBSD too.
 *
 * The first change of any other filter makes the kqueue loud for good
 * (kq_loud): from then on its waiters sleep in epoll_wait(), and those
 * asleep here are woken to move there before the change registers anything.
 *
 * No wake-up is lost (I3).  A waiter counts itself in kq_qwaiters, reads
 * kq_qseq, then looks at the queue, kq_loud and kq_dead; a waker makes its
 * condition true, then reads kq_qwaiters and bumps kq_qseq before
 * FUTEX_WAKE.  Both pairs are ordered by sequentially consistent accesses,
 * so either the waker sees the waiter and its bump makes the FUTEX_WAIT
 * return at once, or the waiter sees the condition and does not sleep.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kq_private.h"

/* A sleeper cancelled in its wait (pthread_cancel) is a sleeper no more. */
static void sleeper_cancelled(void *kq)
{
	atomic_fetch_sub(&((struct kq *)kq)->kq_qwaiters, 1);
}

static void wake_sleepers(struct kq *kq, int n)
{
	atomic_fetch_add(&kq->kq_qseq, 1);
	syscall(SYS_futex, &kq->kq_qseq, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

int kq__quiet_wait(struct kq *kq, int ms)
{
	if (ms == 0)
		return 0; /* nothing but a trigger can be ready, and it is queued */
	int r = 0;
	atomic_fetch_add(&kq->kq_qwaiters, 1);
	unsigned seen = atomic_load(&kq->kq_qseq);
	if (atomic_load(&kq->kq_nready) == 0 && !atomic_load(&kq->kq_loud) &&
	    !atomic_load(&kq->kq_dead)) {
		/*
		 * Always a timeout (forever: 2^30 s, after which the caller
		 * sleeps again): without one the kernel restarts the wait
		 * after a handler installed with SA_RESTART, and kevent(),
		 * as FreeBSD's, must return EINTR whatever the handler's flags.
		 */
		struct timespec t = {ms < 0 ? 1L << 30 : ms / 1000,
		                     ms < 0 ? 0 : (ms % 1000) * 1000000L};
		/*
		 * A cancellation point, as epoll_wait() is and FreeBSD's
		 * kevent(): glibc's syscall() is not one, so cancellation is
		 * asynchronous for the system call alone.
		 */
		int type, err;
		pthread_cleanup_push(sleeper_cancelled, kq);
		pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, &type);
		err = syscall(SYS_futex, &kq->kq_qseq, FUTEX_WAIT_PRIVATE, seen, &t, NULL, 0) < 0
		              ? errno
		              : 0;
		pthread_setcanceltype(type, NULL);
		pthread_cleanup_pop(0);
		if (err == EINTR)
			r = -EINTR;
	}
	atomic_fetch_sub(&kq->kq_qwaiters, 1);
	return r;
}

bool kq__quiet_wake(struct kq *kq)
{
	/* The queue grew before: ordered against the waiter's look at it. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&kq->kq_qwaiters, memory_order_relaxed) == 0)
		return false;
	wake_sleepers(kq, 1);
	return true;
}

void kq__quiet_end(struct kq *kq)
{
	if (atomic_exchange(&kq->kq_loud, true))
		return;
	if (atomic_load(&kq->kq_qwaiters) > 0)
		wake_sleepers(kq, INT_MAX);
}

void kq__quiet_wake_all(struct kq *kq)
{
	if (atomic_load(&kq->kq_qwaiters) > 0)
		wake_sleepers(kq, INT_MAX);
}
