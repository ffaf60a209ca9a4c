/*
 * Byte counts for READ and WRITE in one kernel round trip (uring.c).
 *
 * dispatch() hands the epoll reports of one wait to kq__count_batch() before
 * it delivers them: the counts those reports will need (SIOCINQ, SIOCOUTQ,
 * SO_SNDBUF), for the fds io_uring serves them for, go in one io_uring_enter.
 * The filters then take them with kq__count_take_*() instead of asking the
 * kernel one system call at a time; kq__count_batch_end() forgets them.
 * Anything not in the batch is counted as before (the ioctl).
 */
#ifndef BATON_URING_H
#define BATON_URING_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct kq;
struct kq_fdent;

/* Which counts a fd's filters ask for (kq__count_want). */
enum { KQ_CNT_IN = 1, KQ_CNT_OUT = 2 };

void kq__count_batch(struct kq *kq, const struct epoll_event *ev, int nev);
void kq__count_batch_end(void);
/* The batched count of fe's fd, if this call's batch holds it (fe_lock held). */
bool kq__count_take_in(const struct kq_fdent *fe, int *inq);
bool kq__count_take_out(const struct kq_fdent *fe, int *outq, int *sndbuf);
/* A filter counted fe the slow way: batch that count from the next report on. */
void kq__count_want(struct kq_fdent *fe, unsigned what);

void kq__ring_fork(void);               /* fork child: forget the parent's rings */
bool kq__ring_evict(int fd, int moved); /* dup2() onto a ring's number: it moved */

#endif
