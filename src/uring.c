/*
 * READ and WRITE byte counts of one epoll batch in one io_uring_enter.
 *
 * FreeBSD's data costs Linux one system call per event (FIONREAD; on a
 * socket WRITE, SO_SNDBUF and SIOCOUTQ).  Linux >= 6.7 serves the same
 * socket calls as IORING_OP_URING_CMD (SOCKET_URING_OP_SIOCINQ, _SIOCOUTQ,
 * _GETSOCKOPT), so the counts a wait's reports will need go to the kernel
 * together, before the filters look at the reports: the filters' verdicts
 * depend on the counts (NOTE_LOWAT, an empty pipe), so they must be there
 * before an event is committed.  A count taken a little earlier is the same
 * kind of snapshot the ioctl took (another thread may read between it and
 * the program's read either way).
 *
 * What the kernel serves was probed, not believed (kernel 6.18): TCP and UDP
 * answer all three; AF_UNIX answers SO_SNDBUF only (its proto has no
 * ioctl: EOPNOTSUPP), pipes nothing.  So a fd is batched only once its
 * READ/WRITE knote was attached or a filter counted it the slow way and
 * asked for it (kq__count_want, a hint tagged with the fd's generation),
 * and a refusal is remembered for that fd, and
 * for every TCP socket when TCP itself is refused (an older kernel).  Where
 * io_uring cannot be set up at all (ENOSYS, EPERM: io_uring_disabled,
 * seccomp) the process never tries again.  Nothing is decided at build time.
 *
 * Rings: KQ_NCRING for the counts (and KQ_NWRING for uring_wait.c), made
 * on first use, each under a mutex
 * taken with trylock: a thread that finds them all busy counts with the
 * ioctl instead of waiting.  They are never closed while the process lives:
 * closing a ring makes the kernel queue work to every thread that submitted
 * to it (TWA_SIGNAL), which ends a sleeping epoll_wait() with EINTR — seen:
 * a kqueue's close made another kevent() fail with EINTR.  Their fds are
 * private (kq__private_fd with no kqueue: the program's close() and
 * close_range() leave them alone, close-on-exec); their memory is not
 * inherited by fork (MADV_DONTFORK): a child forgets them and makes its own.
 */
#include <errno.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kq_private.h"
#include "uring.h"

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
/* Linux 6.7's uapi; Debian 12's headers are 6.1's. */
#ifndef SOCKET_URING_OP_SIOCINQ
#define SOCKET_URING_OP_SIOCINQ    0
#define SOCKET_URING_OP_SIOCOUTQ   1
#define SOCKET_URING_OP_GETSOCKOPT 2
#endif

#define KQ_NRING   (KQ_NCRING + KQ_NWRING) /* count rings, then wait rings */
#define KQ_NCRING  4
#define KQ_RING_SQ 512 /* a WRITE count is two commands, 256 reports a wait */
#define CNT_MAX    256

/* fe_count: generation (low 24 bits) << 8 | kind << 6 | refused << 4 |
 * unsupported << 2 | wanted; kind: 0 TCP, 1 other stream, 2 datagram,
 * 3 a stream socket whose family was not looked up (filt_fd.c: fe_unsure) */
#define H_GEN(h)  ((h) >> 8)
#define GEN24(g)  ((g)&0xffffffu)
#define H_WANT(h) ((h)&3u)
#define H_NOSUP   2 /* shift: the kernel has no such command (EOPNOTSUPP) */
#define H_REFUSED 4 /* shift: refused for this fd, for any reason */
#define H_KIND(h) (((h) >> 6) & 3u)

static atomic_bool ring_off; /* io_uring cannot be set up in this process */
/* KQ_CNT_* the kernel has no command for, on TCP [0] and on other stream
 * sockets [1] (AF_UNIX: asked once, not once per fd); datagram sockets mix
 * kinds it serves (UDP) and does not (AF_UNIX), so they are known per fd. */
atomic_uint kq__count_off[4]; /* as kind_nosup, all set when the ring is off */
#define kind_nosup kq__count_off
static atomic_uint kind_ok[4]; /* KQ_CNT_* seen served, by kind */

/*
 * What a kind is known not to be served: TCP and other streams are all
 * alike; unlooked-up streams (3) are TCP or AF_UNIX, so a refusal there
 * stands for the kind only while none was ever served (a program of AF_UNIX
 * streams asks once; one that mixes them asks once per AF_UNIX fd).
 */
static inline unsigned kind_off(unsigned k)
{
	if (k == 2)
		return 0;
	unsigned off = atomic_load_explicit(&kind_nosup[k], memory_order_relaxed);
	return k == 3 ? off & ~atomic_load_explicit(&kind_ok[3], memory_order_relaxed) : off;
}
static atomic_uint next_pick; /* spreads threads over the rings */
static struct kq_ring rings[KQ_NRING] = {
        [0 ... KQ_NRING - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1},
};

enum { HAVE_IN = 1, HAVE_OUTQ = 2, HAVE_SNDBUF = 4 };

/* The counts of the batch this thread's dispatch() is delivering. */
struct cnt {
	const struct kq_fdent *fe;
	int fd;
	uint32_t gen;
	uint8_t want, have, kind;
	int inq, outq, sndbuf;
};
static _Thread_local struct {
	const struct epoll_event *ev; /* the reports dispatch() delivers, or NULL */
	int nev;
	int n, cur; /* n < 0: no batch made for them yet */
	struct cnt e[CNT_MAX];
} tb;

static void ring_disable(void)
{
	atomic_store(&ring_off, true);
	atomic_fetch_or(&kq__count_off[0], KQ_CNT_IN | KQ_CNT_OUT);
	atomic_fetch_or(&kq__count_off[1], KQ_CNT_IN | KQ_CNT_OUT);
	atomic_fetch_or(&kq__count_off[3], KQ_CNT_IN | KQ_CNT_OUT);
}

static void hint_refuse(struct kq_fdent *fe, uint32_t gen, unsigned kind, unsigned what, int err)
{
	if (err == -EOPNOTSUPP && kind != 2) /* streams: see kind_off() */
		atomic_fetch_or_explicit(&kind_nosup[kind], what, memory_order_relaxed);
	unsigned h = atomic_load_explicit(&fe->fe_count, memory_order_relaxed);
	unsigned bits = (what << H_REFUSED) | (err == -EOPNOTSUPP ? what << H_NOSUP : 0);
	while (H_GEN(h) == GEN24(gen) &&
	       !atomic_compare_exchange_weak_explicit(&fe->fe_count, &h, h | bits,
	                                              memory_order_relaxed, memory_order_relaxed))
		;
}

void kq__count_want(struct kq_fdent *fe, unsigned what)
{
	if (atomic_load_explicit(&ring_off, memory_order_relaxed))
		return;
	unsigned k = fe->fe_tcp ? 0 : fe->fe_type != FT_STREAM ? 2 : fe->fe_unsure ? 3 : 1;
	if (kind_off(k) & what)
		return;
	uint32_t gen = GEN24(fe->fe_gen & KQ_GEN_MASK);
	unsigned h = atomic_load_explicit(&fe->fe_count, memory_order_relaxed), nh;
	do {
		nh = (H_GEN(h) == gen ? h : gen << 8) | k << 6; /* gen: a new file on the number */
		if ((nh >> H_REFUSED) & what)
			return;
		nh |= what;
		if (nh == h)
			return;
	} while (!atomic_compare_exchange_weak_explicit(&fe->fe_count, &h, nh, memory_order_relaxed,
	                                                memory_order_relaxed));
}

/* Which counts the report (fd, gen, events) will need from the batch. */
static unsigned wanted(struct kq *kq, int fd, uint32_t gen, uint32_t events, struct kq_fdent **fep)
{
	struct kq_fdent *fe = kq__fdt_lookup(kq, fd);
	if (!fe)
		return 0;
	unsigned h = atomic_load_explicit(&fe->fe_count, memory_order_relaxed);
	if (H_GEN(h) != GEN24(gen))
		return 0;
	unsigned w = H_WANT(h) & ~(h >> H_REFUSED);
	if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		w &= ~(unsigned)KQ_CNT_IN;
	if (!(events & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
		w &= ~(unsigned)KQ_CNT_OUT;
	*fep = fe;
	return w;
}

static int ring_map(struct kq_ring *r, int fd, const struct io_uring_params *p)
{
	size_t sq = p->sq_off.array + p->sq_entries * sizeof(unsigned);
	size_t cq = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
	r->maplen = sq > cq ? sq : cq;
	r->sqelen = p->sq_entries * sizeof(struct io_uring_sqe);
	r->map = mmap(NULL, r->maplen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
	              IORING_OFF_SQ_RING);
	if (r->map == MAP_FAILED)
		return -errno;
	r->sqemap = mmap(NULL, r->sqelen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
	                 IORING_OFF_SQES);
	if (r->sqemap == MAP_FAILED) {
		int err = -errno;
		munmap(r->map, r->maplen);
		return err;
	}
	/* A fork child must not share the parent's ring: it makes its own. */
	madvise(r->map, r->maplen, MADV_DONTFORK);
	madvise(r->sqemap, r->sqelen, MADV_DONTFORK);
	char *m = r->map;
	r->sq_head = (unsigned *)(m + p->sq_off.head);
	r->sq_tail = (unsigned *)(m + p->sq_off.tail);
	r->sq_mask = *(unsigned *)(m + p->sq_off.ring_mask);
	r->cq_head = (unsigned *)(m + p->cq_off.head);
	r->cq_tail = (unsigned *)(m + p->cq_off.tail);
	r->cq_mask = *(unsigned *)(m + p->cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)(m + p->cq_off.cqes);
	r->sqes = r->sqemap;
	unsigned *array = (unsigned *)(m + p->sq_off.array);
	for (unsigned i = 0; i < p->sq_entries; i++)
		array[i] = i; /* slot i of the ring is SQE i, once for all */
	return 0;
}

static int ring_setup(struct kq_ring *r)
{
#ifdef BATON_TEST_HOOKS
	if (getenv("BATON_NO_URING")) { /* tests: the fallback, as without io_uring */
		ring_disable();
		return -ENOSYS;
	}
#endif
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
	int fd = (int)syscall(__NR_io_uring_setup, KQ_RING_SQ, &p);
	if (fd < 0 && errno == EINVAL) { /* before 5.19: no such flags */
		memset(&p, 0, sizeof(p));
		fd = (int)syscall(__NR_io_uring_setup, KQ_RING_SQ, &p);
	}
	if (fd < 0) {
		int err = -errno;
		if (err == -ENOSYS || err == -EPERM || err == -EACCES || err == -EINVAL)
			ring_disable(); /* not here, and never will be */
		return err;
	}
	int err = (p.features & IORING_FEAT_SINGLE_MMAP) ? ring_map(r, fd, &p) : -ENOSYS;
	if (err) {
		kq__sys_close(fd);
		return err;
	}
	atomic_store_explicit(&r->fd, kq__private_fd(NULL, fd), memory_order_relaxed);
	return 0;
}

/* A ring of rings[base, base + n) this thread holds (unlock when done), or NULL. */
static struct kq_ring *ring_take(int base, int n)
{
	static _Thread_local unsigned pick;
	if (!pick)
		pick = atomic_fetch_add_explicit(&next_pick, 1, memory_order_relaxed) + 1;
	for (int i = 0; i < n; i++) {
		struct kq_ring *r = &rings[base + (pick + i) % n];
		if (pthread_mutex_trylock(&r->lock))
			continue;
		if (!r->dead && atomic_load_explicit(&r->fd, memory_order_relaxed) < 0 &&
		    ring_setup(r))
			r->dead = true;
		if (!r->dead)
			return r;
		pthread_mutex_unlock(&r->lock);
		if (atomic_load_explicit(&ring_off, memory_order_relaxed))
			return NULL;
	}
	return NULL;
}

static void prep(struct kq_ring *r, unsigned slot, int fd, unsigned op, uint64_t ud, int *optval)
{
	struct io_uring_sqe *s = &r->sqes[slot & r->sq_mask];
	memset(s, 0, sizeof(*s));
	s->opcode = IORING_OP_URING_CMD;
	s->fd = fd;
	s->cmd_op = op;
	s->user_data = ud;
	if (optval) { /* 6.7's layout: level, optname in addr; optlen at 44; optval in addr3 */
		s->addr = (uint64_t)SOL_SOCKET | (uint64_t)SO_SNDBUF << 32;
		s->file_index = sizeof(int);
		s->addr3 = (uint64_t)(uintptr_t)optval;
	}
}

static void take_result(struct cnt *c, unsigned kind, int res)
{
	static const uint8_t bit[3] = {HAVE_IN, HAVE_OUTQ, HAVE_SNDBUF};
	if (res >= 0 && kind != 2 && c->kind != 2)
		atomic_fetch_or_explicit(&kind_ok[c->kind], kind ? KQ_CNT_OUT : KQ_CNT_IN,
		                         memory_order_relaxed);
	if (res >= 0) {
		if (kind == 0)
			c->inq = res;
		else if (kind == 1)
			c->outq = res;
		c->have |= bit[kind];
	} else if (res == -EOPNOTSUPP || res == -EINVAL || res == -ENOTSOCK || res == -ENOTTY) {
		hint_refuse((struct kq_fdent *)c->fe, c->gen, c->kind,
		            kind ? KQ_CNT_OUT : KQ_CNT_IN, res);
	}
}

/* The commands for tb.e[0..n) in one round trip (r held). */
static void submit(struct kq_ring *r, int n)
{
	unsigned tail = *r->sq_tail, k = 0;
	int fd = atomic_load_explicit(&r->fd, memory_order_relaxed);
	for (int i = 0; i < n; i++) {
		struct cnt *c = &tb.e[i];
		if (c->want & KQ_CNT_IN)
			prep(r, tail + k++, c->fd, SOCKET_URING_OP_SIOCINQ, (uint64_t)i << 2, NULL);
		if (c->want & KQ_CNT_OUT) {
			prep(r, tail + k++, c->fd, SOCKET_URING_OP_SIOCOUTQ, (uint64_t)i << 2 | 1,
			     NULL);
			prep(r, tail + k++, c->fd, SOCKET_URING_OP_GETSOCKOPT, (uint64_t)i << 2 | 2,
			     &c->sndbuf);
		}
	}
	atomic_store_explicit((_Atomic unsigned *)r->sq_tail, tail + k, memory_order_release);
	long done = syscall(__NR_io_uring_enter, fd, k, k, IORING_ENTER_GETEVENTS, NULL, 0);
	if (done != (long)k)
		r->dead = true; /* commands may be left in the ring: not used again */
	unsigned head = *r->cq_head;
	unsigned end = atomic_load_explicit((_Atomic unsigned *)r->cq_tail, memory_order_acquire);
	for (; head != end; head++) {
		const struct io_uring_cqe *cqe = &r->cqes[head & r->cq_mask];
		uint64_t i = cqe->user_data >> 2;
		if (i < (uint64_t)n)
			take_result(&tb.e[i], (unsigned)(cqe->user_data & 3), cqe->res);
	}
	atomic_store_explicit((_Atomic unsigned *)r->cq_head, head, memory_order_release);
}

void kq__count_reports(const struct epoll_event *ev, int nev)
{
	tb.ev = ev; /* batch() goes to the ring for two commands or more */
	tb.nev = nev;
	tb.n = -1;
}

/* The batch for this dispatch's reports: made when a filter first wants one. */
static void batch(struct kq *kq)
{
	int n = 0, ncmd = 0;
	bool probe = false; /* a kind not known to be served: worth one command */
	tb.n = tb.cur = 0;
	if (atomic_load_explicit(&ring_off, memory_order_relaxed))
		return;
	for (int i = 0; i < tb.nev && n < CNT_MAX; i++) {
		uint64_t d = tb.ev[i].data.u64;
		if ((d >> KQ_TAG_SHIFT) != KQ_TAG_FD)
			continue;
		struct kq_fdent *fe = NULL;
		int fd = (int)(uint32_t)d;
		uint32_t gen = (uint32_t)(d >> 32) & KQ_GEN_MASK;
		unsigned w = wanted(kq, fd, gen, tb.ev[i].events, &fe);
		if (!w)
			continue;
		unsigned k = H_KIND(atomic_load_explicit(&fe->fe_count, memory_order_relaxed));
		w &= ~kind_off(k);
		if (!w)
			continue;
		tb.e[n] = (struct cnt){
		        .fe = fe, .fd = fd, .gen = gen, .want = (uint8_t)w, .kind = (uint8_t)k};
		ncmd += (w & KQ_CNT_IN ? 1 : 0) + (w & KQ_CNT_OUT ? 2 : 0);
		probe |= k == 2 || (w & ~atomic_load_explicit(&kind_ok[k], memory_order_relaxed));
		n++;
	}
	/* One command costs what the ioctl does: only to learn what is served. */
	if (ncmd == 0 || (ncmd < 2 && !probe))
		return;
	struct kq_ring *r = ring_take(0, KQ_NCRING);
	if (!r)
		return;
	submit(r, n);
	pthread_mutex_unlock(&r->lock);
	tb.n = n;
}

/* The batch's entry for fe: reports come in order, each fd once. */
static struct cnt *lookup(struct kq *kq, const struct kq_fdent *fe, unsigned what)
{
	unsigned h = atomic_load_explicit(&fe->fe_count, memory_order_relaxed);
	if (!(h & what & ~(h >> H_REFUSED)) || (kind_off(H_KIND(h)) & what))
		return NULL; /* not a fd the batch counts */
	if (tb.n < 0)
		batch(kq);
	for (int i = tb.cur; i < tb.n; i++) {
		if (tb.e[i].fe == fe) {
			tb.cur = i;
			return &tb.e[i];
		}
	}
	return NULL;
}

bool kq__count_take_in(struct kq *kq, const struct kq_fdent *fe, int *inq)
{
	struct cnt *c = tb.ev ? lookup(kq, fe, KQ_CNT_IN) : NULL;
	if (!c || !(c->have & HAVE_IN))
		return false;
	*inq = c->inq;
	return true;
}

bool kq__count_take_out(struct kq *kq, const struct kq_fdent *fe, int *outq, int *sndbuf)
{
	struct cnt *c = tb.ev ? lookup(kq, fe, KQ_CNT_OUT) : NULL;
	if (!c || (c->have & (HAVE_OUTQ | HAVE_SNDBUF)) != (HAVE_OUTQ | HAVE_SNDBUF))
		return false;
	*outq = c->outq;
	*sndbuf = c->sndbuf;
	return true;
}

/* The fork child: the rings' memory did not come along, their fds did. */
void kq__ring_fork(void)
{
	for (int i = 0; i < KQ_NRING; i++) {
		struct kq_ring *r = &rings[i];
		pthread_mutex_init(&r->lock, NULL);
		int fd = atomic_exchange(&r->fd, -1);
		if (fd >= 0)
			kq__private_close(NULL, fd); /* the parent's stays open there */
		r->dead = false;
	}
}

/* dup2() onto a ring's fd: the ring moved to moved. */
bool kq__ring_evict(int fd, int moved)
{
	for (int i = 0; i < KQ_NRING; i++) {
		int old = fd;
		if (atomic_compare_exchange_strong(&rings[i].fd, &old, moved))
			return true;
	}
	return false;
}

struct kq_ring *kq__wring_take(void)
{
	return ring_take(KQ_NCRING, KQ_NWRING);
}
