/*
 * struct kq_mutex's contended case (the fast paths are inline in
 * kq_private.h): the classic three-state futex lock.  A waiter marks the
 * word 2 before it sleeps, so the holder's release knows to wake one; a
 * woken waiter takes the lock as 2 again, since others may still sleep.
 * No spinning: the holders of fe_lock may be inside an epoll_ctl(), and on
 * a machine with fewer cores than threads a spinner only delays them.
 */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kq_private.h"

void kq__mutex_wait(struct kq_mutex *l)
{
	while (atomic_exchange_explicit(&l->m, 2, memory_order_acquire) != 0)
		syscall(SYS_futex, &l->m, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

void kq__mutex_wake(struct kq_mutex *l)
{
	syscall(SYS_futex, &l->m, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
