/*
 * Byte counts for READ and WRITE in one kernel round trip (uring.c).
 *
 * dispatch() shows the epoll reports of one wait to kq__count_reports()
 * before it delivers them (and NULL after).  The first filter that wants a
 * count the kernel can batch (kq__count_take_*) has the counts all those
 * reports will need (SIOCINQ, SIOCOUTQ, SO_SNDBUF, for the fds io_uring
 * serves them for) made in one io_uring_enter, and the filters take them
 * from there instead of asking one system call at a time.  Anything not in
 * the batch is counted as before (the ioctl).
 */
#ifndef BATON_URING_H
#define BATON_URING_H

#include <linux/io_uring.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include "kq_private.h"

/* Which counts a fd's filters ask for (kq__count_want). */
enum { KQ_CNT_IN = 1, KQ_CNT_OUT = 2 };

void kq__count_reports(const struct epoll_event *ev, int nev);

/* KQ_CNT_* the kernel does not batch on TCP [0], on other stream sockets [1]
 * (uring.c: kind_off() for the rest). */
extern atomic_uint kq__count_off[4];

/* Known not to be batched: count with the ioctl, ask nothing (fe_lock held). */
static inline bool kq__count_skip(const struct kq_fdent *fe, unsigned what)
{
	/* an fe_unsure socket may be TCP or not: only its own refusal counts */
	return fe->fe_type != FT_DGRAM && !fe->fe_unsure &&
	       (atomic_load_explicit(&kq__count_off[!fe->fe_tcp], memory_order_relaxed) & what);
}
/* The batched count of fe's fd, if this wait's batch holds it (fe_lock held). */
bool kq__count_take_in(struct kq *kq, const struct kq_fdent *fe, int *inq);
bool kq__count_take_out(struct kq *kq, const struct kq_fdent *fe, int *outq, int *sndbuf);
/* A filter counted fe the slow way: batch that count from the next report on. */
void kq__count_want(struct kq_fdent *fe, unsigned what);

/*
 * A private io_uring ring (uring.c), taken whole by one thread at a time
 * (lock) for one round trip: the counts' pool, and the pool uring_wait.c
 * hands a kevent()'s re-arms and its wait to.
 */
struct kq_ring {
	pthread_mutex_t lock; /* trylock: busy means "do without" */
	atomic_int fd;        /* lock to set up; -1: none; kq__ring_evict moves it */
	bool dead;            /* lock: failed, not used again */
	unsigned *sq_head, *sq_tail, *cq_head, *cq_tail; /* lock: the shared ring indices */
	unsigned sq_mask, cq_mask;                       /* lock */
	struct io_uring_sqe *sqes;                       /* lock */
	struct io_uring_cqe *cqes;                       /* lock */
	void *map, *sqemap;                              /* lock */
	size_t maplen, sqelen;                           /* lock */
	struct epoll_event *wbuf; /* lock; uring_wait.c's, never freed: a wait's events */
};
#define KQ_NWRING 64 /* wait rings: threads beyond that many wait with epoll_wait() */
/* A wait ring, held (unlocked when done; uring_wait.c keeps it per thread), or NULL. */
struct kq_ring *kq__wring_take(void);

void kq__ring_fork(void);               /* fork child: forget the parent's rings */
bool kq__ring_evict(int fd, int moved); /* dup2() onto a ring's number: it moved */

#endif
