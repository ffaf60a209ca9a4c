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

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct kq;
struct kq_fdent;

/* Which counts a fd's filters ask for (kq__count_want). */
enum { KQ_CNT_IN = 1, KQ_CNT_OUT = 2 };

void kq__count_reports(const struct epoll_event *ev, int nev);
/* The batched count of fe's fd, if this wait's batch holds it (fe_lock held). */
bool kq__count_take_in(struct kq *kq, const struct kq_fdent *fe, int *inq);
bool kq__count_take_out(struct kq *kq, const struct kq_fdent *fe, int *outq, int *sndbuf);
/* A filter counted fe the slow way: batch that count from the next report on. */
void kq__count_want(struct kq_fdent *fe, unsigned what);

void kq__ring_fork(void);               /* fork child: forget the parent's rings */
bool kq__ring_evict(int fd, int moved); /* dup2() onto a ring's number: it moved */

#endif
