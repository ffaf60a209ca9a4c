/* B2 on raw epoll driven through io_uring: the measurement behind issue 14's
 * io_uring backend.  The same EPOLLIN|EPOLLONESHOT registrations as
 * b2_dispatch_epoll, but each thread has a ring of its own and hands the
 * kernel its batch's re-arms (IORING_OP_EPOLL_CTL) and its next wait
 * (IORING_OP_EPOLL_WAIT, Linux >= 6.15) in one io_uring_enter(): one system
 * call an event fewer than epoll_ctl + epoll_wait.  This is what a backend
 * folding kevent()'s changelist into its wait could gain at best, and how it
 * behaves with T threads on one epoll (the ring's wait polls the epoll file,
 * as poll() would, instead of sleeping in its exclusive wait queue).
 * Exits 77 (skipped) where the kernel has no IORING_OP_EPOLL_WAIT. */
#include <linux/io_uring.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>

#include "b2_pingpong.h"

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
/* Newer than Debian 12's uapi headers (an enum there: no #ifdef) */
#define OP_EPOLL_CTL  29
#define OP_EPOLL_WAIT 59
#define SETUP_SINGLE_ISSUER (1U << 12)
#define SETUP_DEFER_TASKRUN (1U << 13)
#define ENTER_EXT_ARG       (1U << 3)

struct ext_arg {
	uint64_t sigmask;
	uint32_t sigmask_sz, min_wait_usec;
	uint64_t ts;
};

enum { UD_CTL = 1, UD_WAIT = 2 };

struct ring {
	int fd;
	unsigned *sq_tail, *cq_head, *cq_tail, sq_mask, cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

static int ep;

static void b2_setup_queue(void)
{
	struct epoll_event ev;
	int i;

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	for (i = 0; i < 2 * b2.pairs; i++) {
		ev.events = EPOLLIN | EPOLLONESHOT;
		ev.data.ptr = &b2.socks[i];
		if (epoll_ctl(ep, EPOLL_CTL_ADD, b2.socks[i].fd, &ev))
			die("epoll_ctl(ADD)");
	}
}

static void ring_init(struct ring *r)
{
	struct io_uring_params p;
	char *m;
	unsigned i, *array;
	size_t sqlen, cqlen;

	memset(&p, 0, sizeof(p));
	p.flags = SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN;
	r->fd = (int)syscall(__NR_io_uring_setup, 64, &p);
	if (r->fd < 0) { /* ENOSYS, EPERM (io_uring_disabled), EINVAL (< 6.1) */
		perror("b2_dispatch_uring: io_uring_setup");
		exit(77);
	}
	if (!(p.features & IORING_FEAT_SINGLE_MMAP) || !(p.features & IORING_FEAT_EXT_ARG)) {
		fprintf(stderr, "b2_dispatch_uring: kernel too old for this peer\n");
		exit(77);
	}
	sqlen = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	cqlen = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	m = mmap(NULL, sqlen > cqlen ? sqlen : cqlen, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
	r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (m == MAP_FAILED || r->sqes == MAP_FAILED)
		die("mmap(io_uring)");
	r->sq_tail = (unsigned *)(m + p.sq_off.tail);
	r->sq_mask = *(unsigned *)(m + p.sq_off.ring_mask);
	r->cq_head = (unsigned *)(m + p.cq_off.head);
	r->cq_tail = (unsigned *)(m + p.cq_off.tail);
	r->cq_mask = *(unsigned *)(m + p.cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(m + p.cq_off.cqes);
	array = (unsigned *)(m + p.sq_off.array);
	for (i = 0; i < p.sq_entries; i++)
		array[i] = i;
}

static struct io_uring_sqe *sqe_at(struct ring *r, unsigned tail)
{
	struct io_uring_sqe *s = &r->sqes[tail & r->sq_mask];

	memset(s, 0, sizeof(*s));
	return s;
}

static void *b2_worker(void *arg)
{
	struct b2_thread *t = arg;
	struct epoll_event evs[1024], rearm[1024];
	struct ring r;
	struct ext_arg ea;
	struct __kernel_timespec ts = {0, 10 * 1000000L};
	unsigned tail, head, end;
	int i, n, nre = 0, waiting = 0;
	long got;

	ring_init(&r);
	memset(&ea, 0, sizeof(ea));
	ea.ts = (uint64_t)(uintptr_t)&ts;
	while (!b2_stopped()) {
		struct io_uring_sqe *s;
		unsigned k = 0;

		tail = *r.sq_tail;
		for (i = 0; i < nre; i++) {
			s = sqe_at(&r, tail + k++);
			s->opcode = OP_EPOLL_CTL;
			s->fd = ep;
			s->len = EPOLL_CTL_MOD; /* the op in len, the target in off */
			s->off = (uint64_t)((struct b2_sock *)rearm[i].data.ptr)->fd;
			s->addr = (uint64_t)(uintptr_t)&rearm[i];
			s->user_data = UD_CTL;
		}
		nre = 0;
		if (!waiting) {
			s = sqe_at(&r, tail + k++);
			s->opcode = OP_EPOLL_WAIT;
			s->fd = ep;
			s->addr = (uint64_t)(uintptr_t)evs;
			s->len = (unsigned)b2.batch;
			s->user_data = UD_WAIT;
			waiting = 1;
		}
		atomic_store_explicit((_Atomic unsigned *)r.sq_tail, tail + k, memory_order_release);
		got = syscall(__NR_io_uring_enter, r.fd, k, 1, IORING_ENTER_GETEVENTS | ENTER_EXT_ARG,
			      &ea, sizeof(ea));
		if (got < 0 && errno != ETIME && errno != EINTR)
			die("io_uring_enter");
		n = 0;
		head = *r.cq_head;
		end = atomic_load_explicit((_Atomic unsigned *)r.cq_tail, memory_order_acquire);
		for (; head != end; head++) {
			const struct io_uring_cqe *c = &r.cqes[head & r.cq_mask];

			if (c->user_data == UD_WAIT) {
				waiting = 0;
				if (c->res == -EINVAL || c->res == -EOPNOTSUPP) {
					fprintf(stderr, "b2_dispatch_uring: no IORING_OP_EPOLL_WAIT here\n");
					exit(77);
				}
				n = c->res > 0 ? c->res : 0;
			} else if (c->res < 0 && t->errors++ == 0) {
				fprintf(stderr, "EPOLL_CTL(MOD): %s\n", strerror(-c->res));
			}
		}
		atomic_store_explicit((_Atomic unsigned *)r.cq_head, head, memory_order_release);
		for (i = 0; i < n; i++) {
			struct b2_sock *sk = evs[i].data.ptr;

			b2_handle(t, sk);
			atomic_store_explicit(&sk->armed, 1, memory_order_relaxed);
			rearm[nre].events = EPOLLIN | EPOLLONESHOT;
			rearm[nre++].data.ptr = sk;
		}
		if (n > 0)
			b2_count(t, n);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	return b2_main(argc, argv, "epoll_uring");
}
