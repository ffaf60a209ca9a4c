/*
 * The kqueue object: creation, the process-wide fd -> kqueue table, close
 * and fork.
 *
 * A struct kq is type-stable: once allocated it is never given back to
 * malloc, only recycled for a later kqueue.  That lets kq__get() find a
 * kqueue without a global lock: it takes a reference and then checks that
 * the table still maps the fd to it.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "kq_private.h"
#include "uring.h"

#ifdef BATON_TEST_HOOKS
int kq__break_mask;
#endif

/*
 * fd -> kqueue, two levels so memory follows the fds used, not the limit.
 * A slot holds the struct kq pointer with two tag bits: KT_PRIVATE marks
 * one of the kqueue's own descriptors (epoll dup, eventfd, timerfd,
 * signalfd, inotify), which the program must not touch; a name of the
 * kqueue itself carries KT_CLOEXEC, the close-on-exec flag the program sees
 * (the kernel's is always set: see kq_name_cloexec).  Every name the
 * kqueue has is here: the number kqueue() returned, every dup made through
 * the interposed dup/dup2/dup3/fcntl, and any other dup kevent() was given
 * (kq_adopt).  kq_names counts them, so close() knows the last one without
 * looking at the process's other fds.
 *
 * KT_CLOSING alone (no kqueue) marks a name whose close() has begun: from
 * the hook until the real close returns, the number is still open but no
 * longer a kqueue, and a kevent() racing the close must say EBADF (closed),
 * not EINVAL (an open file that is not a kqueue).
 */
#define KT_CHUNK   1024
#define KT_TOP     4096 /* 4M fds */
#define KT_PRIVATE ((uintptr_t)1)
#define KT_CLOEXEC ((uintptr_t)2)
#define KT_CLOSING ((uintptr_t)4)
#define KT_TAGS    (KT_PRIVATE | KT_CLOEXEC | KT_CLOSING)
static _Atomic(uintptr_t) *_Atomic kt_top[KT_TOP];

static inline struct kq *kt_kq(uintptr_t v)
{
	return (struct kq *)(v & ~KT_TAGS);
}

/* A name of a kqueue (not one of its private descriptors), or NULL. */
static inline struct kq *kt_name(uintptr_t v)
{
	return (v & KT_PRIVATE) ? NULL : kt_kq(v);
}

static pthread_mutex_t kq_global =
        PTHREAD_MUTEX_INITIALIZER; /* kq_freelist, kq__live links, kt chunk creation, atfork */
static struct kq *kq_freelist;     /* kq_global; recycled structs, linked via kq_fdt */
static pthread_once_t kq_once = PTHREAD_ONCE_INIT;

/*
 * Live kqueues, so that close() of any fd visits only them: a doubly linked
 * list changed under kq_global and walked without a lock (kq__foreach, from
 * close()).  Structs are never freed, so a walker standing on one that was
 * unlinked still follows a valid kq_lnext: back into the list, or to its
 * end.  No cap: memory follows the number of kqueues.
 */
_Atomic(struct kq *) kq__live; /* also walked by sighook.c's signal handler */

static void live_add(struct kq *kq) /* kq_global held */
{
	struct kq *head = atomic_load(&kq__live);
	kq->kq_lprev = NULL;
	atomic_store(&kq->kq_lnext, head);
	if (head)
		head->kq_lprev = kq;
	atomic_store_explicit(&kq__live, kq, memory_order_release);
	kq->kq_listed = true;
}

static void live_remove(struct kq *kq) /* kq_global held */
{
	if (!kq->kq_listed)
		return;
	struct kq *next = atomic_load(&kq->kq_lnext);
	if (kq->kq_lprev)
		atomic_store(&kq->kq_lprev->kq_lnext, next);
	else
		atomic_store(&kq__live, next);
	if (next)
		next->kq_lprev = kq->kq_lprev;
	kq->kq_listed = false;
}

/* The atfork child handler runs with kq_global held (and alone); only it
 * writes this, in the child, where it is the only thread. */
static bool kq_in_fork_child;

/* The slot of fd if its chunk exists: inline, as every kevent() asks. */
static inline _Atomic(uintptr_t) *kt_find(int fd)
{
	if ((unsigned)fd >= KT_TOP * KT_CHUNK)
		return NULL;
	_Atomic(uintptr_t) *chunk =
	        atomic_load_explicit(&kt_top[fd / KT_CHUNK], memory_order_acquire);
	return chunk ? &chunk[fd % KT_CHUNK] : NULL;
}

static _Atomic(uintptr_t) *kt_slot(int fd, bool create)
{
	if (fd < 0 || fd >= KT_TOP * KT_CHUNK)
		return NULL;
	_Atomic(uintptr_t) *chunk =
	        atomic_load_explicit(&kt_top[fd / KT_CHUNK], memory_order_acquire);
	if (!chunk && create) {
		bool lock = !kq_in_fork_child;
		if (lock)
			pthread_mutex_lock(&kq_global);
		chunk = atomic_load(&kt_top[fd / KT_CHUNK]);
		if (!chunk) {
			chunk = calloc(KT_CHUNK, sizeof(*chunk));
			if (chunk)
				atomic_store_explicit(&kt_top[fd / KT_CHUNK], chunk,
				                      memory_order_release);
		}
		if (lock)
			pthread_mutex_unlock(&kq_global);
	}
	return chunk ? &chunk[fd % KT_CHUNK] : NULL;
}

static uintptr_t kt_get(int fd)
{
	_Atomic(uintptr_t) *slot = kt_slot(fd, false);
	return slot ? atomic_load_explicit(slot, memory_order_acquire) : 0;
}

static bool same_file(int a, int b)
{
	pid_t me = getpid();
	return syscall(SYS_kcmp, me, me, KCMP_FILE, a, b) == 0;
}

/*
 * A name of kq went away (closed, or found replaced).  If it was the last,
 * every waiter is woken (they return EBADF) and the kqueue is freed when the
 * last call leaves.  Drops the name's reference.
 */
static void name_gone(struct kq *kq, int fd)
{
	if (kq->kq_fd == fd)
		kq->kq_fd = -1;
	if (atomic_fetch_sub(&kq->kq_names, 1) > 1 || atomic_exchange(&kq->kq_dead, true)) {
		kq__put(kq);
		return;
	}
	kq__quiet_wake_all(kq);
	/* Level-triggered and never read: every epoll_wait returns now. */
	uint64_t one = 1;
	(void)!write(kq->kq_wakefd, &one, sizeof(one));
	kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_MOD, kq->kq_wakefd, EPOLLIN, KQ_TAG_WAKE << KQ_TAG_SHIFT);
	kq__put(kq);
}

/*
 * fd is a new name of kq.  The kernel's close-on-exec flag of every name is
 * set, whatever the program asked for: a child that execs (posix_spawn,
 * vfork, fork + exec, where no atfork hook runs) must not inherit a kqueue,
 * as on FreeBSD, and after an exec the number would be an epoll fd that no
 * libbaton knows.  The flag the program set is kept in the table
 * (KT_CLOEXEC) and is what fcntl(F_GETFD) reports.
 */
static int name_add(struct kq *kq, int fd, bool cloexec)
{
	_Atomic(uintptr_t) *slot = kt_slot(fd, true);
	if (!slot)
		return -ENOMEM;
	syscall(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);
	atomic_fetch_add(&kq->kq_refs, 1); /* the name's reference */
	atomic_fetch_add(&kq->kq_names, 1);
	uintptr_t old = atomic_exchange(slot, (uintptr_t)kq | (cloexec ? KT_CLOEXEC : 0));
	/* A name closed behind our back (a raw close system call). */
	if (kt_name(old))
		name_gone(kt_kq(old), fd);
	return 0;
}

/*
 * fd is not a number we saw made: it may be a dup made with a raw system
 * call.  Slow path, taken only for numbers the table does not know.
 */
static struct kq *kq_adopt(int fd, _Atomic(uintptr_t) **slotp)
{
	for (struct kq *kq = atomic_load_explicit(&kq__live, memory_order_acquire); kq;
	     kq = atomic_load_explicit(&kq->kq_lnext, memory_order_acquire)) {
		int look = atomic_load(&kq->kq_lookfd);
		if (!atomic_load(&kq->kq_listed) || atomic_load(&kq->kq_dead) || look < 0 ||
		    !same_file(fd, look))
			continue;
		_Atomic(uintptr_t) *slot = kt_slot(fd, true);
		int fdflags = (int)syscall(SYS_fcntl, fd, F_GETFD);
		uintptr_t expect = 0, v = (uintptr_t)kq |
		                          (fdflags > 0 && (fdflags & FD_CLOEXEC) ? KT_CLOEXEC : 0);
		atomic_fetch_add(&kq->kq_refs, 1); /* the new name's reference */
		atomic_fetch_add(&kq->kq_names, 1);
		if (slot && atomic_compare_exchange_strong(slot, &expect, v)) {
			syscall(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);
			*slotp = slot;
			return kq;
		}
		atomic_fetch_sub(&kq->kq_names, 1);
		kq__put(kq);
	}
	return NULL;
}

struct kq *kq__get(int fd)
{
	_Atomic(uintptr_t) *slot = kt_find(fd);
	uintptr_t v = slot ? atomic_load_explicit(slot, memory_order_acquire) : 0;
	struct kq *kq = kt_name(v);
	if (!kq && (v || fd < 0 || !(kq = kq_adopt(fd, &slot))))
		return NULL;
	if (!kq__ref_if_held(kq))
		return NULL; /* released: its names are gone */
	if (kt_name(atomic_load(slot)) != kq || atomic_load(&kq->kq_dead)) {
		kq__put(kq);
		return NULL;
	}
	return kq;
}

bool kq__is_kqueue_fd(int fd)
{
	return kt_name(kt_get(fd)) != NULL;
}

bool kq__is_private_fd(int fd)
{
	return (kt_get(fd) & KT_PRIVATE) != 0;
}

/*
 * The kqueue's own descriptors keep out of the program's way: they sit at
 * the top of the numbers below min(RLIMIT_NOFILE, KQ_PRIV_TOP), where
 * "lowest free number" allocation and dup2() onto stdio never meet them, and
 * are close-on-exec.  KQ_PRIV_TOP bounds the kernel's fd table (it grows to
 * the highest number in use, and fork copies it).  The table marks them, so
 * the interposed calls can keep them alive and kevent() refuses them.
 */
#define KQ_PRIV_TOP 4096

#ifdef __SANITIZE_THREAD__
/*
 * ThreadSanitizer follows descriptors through its interceptors: a number
 * closed with the raw system call stays open to it, and the next file
 * another thread gets on that number looks like a race with ours (the
 * transient low number of a new eventfd, say).  In its builds our own
 * descriptors are closed through its close(), found once at the first
 * kqueue(); that ends in our close(), which kq__raw_close sends straight
 * to the system call (no hook: nobody watches these numbers).
 */
_Thread_local bool kq__raw_close;
static int (*_Atomic tsan_close)(int);
static void private_close_init(void)
{
	atomic_store(&tsan_close, (int (*)(int))dlsym(RTLD_DEFAULT, "close"));
}
static int private_sys_close(int fd)
{
	int (*fn)(int) = atomic_load(&tsan_close);
	if (!fn)
		return kq__sys_close(fd);
	bool was = kq__raw_close;
	kq__raw_close = true;
	int r = fn(fd);
	kq__raw_close = was;
	return r;
}
#else
static void private_close_init(void)
{
}
#define private_sys_close kq__sys_close
#endif

int kq__private_fd(struct kq *kq, int fd)
{
	if (fd < 0)
		return fd;
	struct rlimit rl;
	long top = KQ_PRIV_TOP;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)top)
		top = (long)rl.rlim_cur;
	/* From a base near the top, lower as the region fills. */
	for (long step = 64; step < top && top - step > fd; step *= 2) {
		int n = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, top - step);
		if (n >= 0) {
			private_sys_close(fd);
			fd = n;
			break;
		}
		if (errno != EMFILE)
			break;
	}
	_Atomic(uintptr_t) *slot = kt_slot(fd, true);
	if (slot)
		atomic_store(slot, (uintptr_t)kq | KT_PRIVATE);
	return fd;
}

void kq__private_close(struct kq *kq, int fd)
{
	if (fd < 0)
		return;
	_Atomic(uintptr_t) *slot = kt_slot(fd, false);
	uintptr_t v = (uintptr_t)kq | KT_PRIVATE;
	if (slot)
		atomic_compare_exchange_strong(slot, &v, 0);
	private_sys_close(fd);
}

static void close_if(struct kq *kq, int *fd)
{
	kq__private_close(kq, *fd);
	*fd = -1;
}

/* A dead kqueue's own descriptors, once no call uses them (async-signal-safe). */
static void kq_close_fds(struct kq *kq)
{
	atomic_store(&kq->kq_lookfd, -1);
	close_if(kq, &kq->kq_epfd);
	close_if(kq, &kq->kq_wakefd);
	close_if(kq, &kq->kq_timerfd);
	close_if(kq, &kq->kq_sigfd);
	close_if(kq, &kq->kq_inofd);
	kq__proc_close_fds(kq);
	/* Its signals are not watched any more: the program's dispositions
	 * come back now (async-signal-safe; a fork child counts anew). */
	if (!kq_in_fork_child)
		kq__signal_release(kq);
}

/* Frees what a kqueue holds.  Runs once, by whoever drops the last ref. */
static void kq_release(struct kq *kq)
{
	kq_close_fds(kq);
	kq->kq_released = true;
	free(kq->kq_watches);
	kq->kq_watches = NULL;
	kq->kq_nwatches = kq->kq_watchcap = 0;
	kq__drain_free(kq);
	kq__vnode_free(kq);
	kq__knote_free_all(kq);
	kq__fdt_destroy(kq);
	kq__ht_free(&kq->kq_hash);
	kq__theap_free(kq);
	kq__group_destroy_all(kq);
	pthread_mutex_destroy(&kq->kq_glock);
}

/*
 * Dead kqueues whose last reference a hook (close, dup2...: maybe in a
 * signal handler) or a call on top of a libbaton call dropped: freeing
 * takes kq_global and free(), which the interrupted thread may hold.  Their
 * descriptors are closed at once (system calls only); the struct keeps that
 * reference on this stack (so it is not recycled meanwhile) until the next
 * kq__put() outside a hook, or kqueue(), frees it.
 */
static _Atomic(struct kq *) kq_orphans;

static void orphans_put(void)
{
	struct kq *kq = atomic_exchange(&kq_orphans, NULL);
	while (kq) {
		struct kq *next = kq->kq_orphan_next;
		kq__put(kq);
		kq = next;
	}
}

void kq__put(struct kq *kq)
{
	if (kq__hooking || kq__depth > 1) {
		int r = atomic_load(&kq->kq_refs);
		while (r > 1 && !atomic_compare_exchange_weak(&kq->kq_refs, &r, r - 1))
			;
		if (r > 1)
			return;
		/* Ours is the last reference: nobody else uses the descriptors.
		 * A struct recycled meanwhile is not dead, or has none left. */
		if (atomic_load(&kq->kq_dead))
			kq_close_fds(kq);
		kq->kq_orphan_next = atomic_load(&kq_orphans);
		while (!atomic_compare_exchange_weak(&kq_orphans, &kq->kq_orphan_next, kq))
			;
		return;
	}
	if (atomic_load_explicit(&kq_orphans, memory_order_relaxed))
		orphans_put();
	if (atomic_fetch_sub(&kq->kq_refs, 1) != 1)
		return;
	/*
	 * Zero refs: either the kqueue was closed and this was the last call
	 * in flight, or a late kq__get() on a recycled struct backed out.
	 * Only a dead, not yet released kqueue is released.
	 */
	pthread_mutex_lock(&kq_global);
	if (atomic_load(&kq->kq_dead) && !kq->kq_released && atomic_load(&kq->kq_refs) == 0) {
		live_remove(kq);
		kq_release(kq);
		kq->kq_fdt = (struct kq_fdtable *)kq_freelist;
		kq_freelist = kq;
	}
	pthread_mutex_unlock(&kq_global);
}

/*
 * Wake-ups are only noted while locks are held (kq__wake) and written at the
 * end of the kevent() call that caused them (kq__wake_flush), with no lock
 * held: the woken thread would otherwise run into the lock its waker still
 * holds (two futex calls more per wake-up when both share a CPU).  A call
 * that collects events looks at the queue itself, so it writes only if it
 * leaves knotes behind; a wake it did not need would also leave the kqueue
 * fd spuriously readable to poll() and to an outer kqueue.
 */
static _Thread_local bool wake_due __attribute__((tls_model("initial-exec")));

void kq__wake(struct kq *kq)
{
	(void)kq;
	wake_due = true;
}

void kq__wake_flush(struct kq *kq, bool collecting)
{
	bool due = wake_due || collecting;
	wake_due = false;
	if (!due || KQ_BROKEN(KQ_BREAK_I3) ||
	    atomic_load_explicit(&kq->kq_nready, memory_order_relaxed) == 0)
		return;
	/* A thread asleep on a quiet kqueue's futex takes it (quiet.c). */
	if (!atomic_load_explicit(&kq->kq_loud, memory_order_relaxed) && kq__quiet_wake(kq))
		return;
	if (atomic_exchange(&kq->kq_wake_pending, true))
		return;
	uint64_t one = 1;
	/* EAGAIN means the counter is huge: a wake is pending anyway. */
	(void)!write(kq->kq_wakefd, &one, sizeof(one));
}

static void kq_child_atfork(void);
/*
 * kq_global is held from prepare to parent/child, with handlers of the
 * program's own in between that may close(): inside a libbaton call for the
 * hooks, which then take no lock (as in a signal handler meanwhile).
 */
static void kq_prepare_atfork(void)
{
	kq__foreach(kq__vnode_prefork, NULL); /* before any lock of ours is held */
	KQ_ENTER();
	pthread_mutex_lock(&kq_global);
}
static void kq_parent_atfork(void)
{
	pthread_mutex_unlock(&kq_global);
	KQ_LEAVE();
}

static void kq_init_once(void)
{
#ifdef BATON_TEST_HOOKS
	const char *b = getenv("BATON_BREAK");
	for (; b && *b; b++) {
		if (b[0] == 'I' && b[1] >= '1' && b[1] <= '5')
			kq__break_mask |= 1 << (b[1] - '0');
		if (b[0] == 'G' && b[1] >= '1' && b[1] <= '3')
			kq__break_mask |= 1 << (KQ_BREAK_G1 + b[1] - '1');
	}
#endif
	private_close_init();
	pthread_atfork(kq_prepare_atfork, kq_parent_atfork, kq_child_atfork);
}

static struct kq *kq_alloc(void)
{
	pthread_mutex_lock(&kq_global);
	struct kq *kq = kq_freelist;
	if (kq)
		kq_freelist = (struct kq *)kq->kq_fdt;
	pthread_mutex_unlock(&kq_global);
	if (!kq) {
		kq = calloc(1, sizeof(*kq));
		if (!kq)
			return NULL;
	} else {
		/* Keep kq_refs and the live links (the first fields): a late
		 * kq__get() may be adding a transient reference to it right
		 * now, and a close() may be walking past it. */
		memset((char *)kq + offsetof(struct kq, kq_fd), 0,
		       sizeof(*kq) - offsetof(struct kq, kq_fd));
	}
	atomic_store(&kq->kq_dead, false);
	atomic_store(&kq->kq_lookfd, -1);
	kq->kq_fd = kq->kq_epfd = kq->kq_wakefd = kq->kq_timerfd = kq->kq_sigfd = kq->kq_inofd =
	        kq->kq_procfd = -1;
	return kq;
}

/*
 * The descriptors behind the user's number: a private dup of the epoll fd
 * (it stays valid while calls are in flight, even after the user's number
 * was closed and reused), the wake eventfd and the timerfd, registered
 * edge-triggered: one write wakes one waiter, and nobody has to read them.
 * Raw dup: the interposed one would make the dup a name of the kqueue.
 */
static int kq_backend(struct kq *kq)
{
	kq->kq_epfd = kq__private_fd(kq, (int)syscall(SYS_fcntl, kq->kq_fd, F_DUPFD_CLOEXEC, 0));
	if (kq->kq_epfd < 0)
		return -errno;
	atomic_store(&kq->kq_lookfd, kq->kq_epfd);
	kq->kq_wakefd = kq__private_fd(kq, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	if (kq->kq_wakefd < 0)
		return -errno;
	kq->kq_timerfd =
	        kq__private_fd(kq, timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
	if (kq->kq_timerfd < 0)
		return -errno;
	int err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, kq->kq_wakefd, EPOLLIN | EPOLLET,
	                     KQ_TAG_WAKE << KQ_TAG_SHIFT);
	if (!err)
		err = kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, kq->kq_timerfd, EPOLLIN | EPOLLET,
		                 KQ_TAG_TIMER << KQ_TAG_SHIFT);
	return err;
}

static int kq_create(unsigned flags)
{
	pthread_once(&kq_once, kq_init_once);
	if (flags & ~(unsigned)(KQUEUE_CLOEXEC | KQUEUE_CPONFORK))
		return -EINVAL;
	struct kq *kq = kq_alloc();
	if (!kq)
		return -ENOMEM;
	int err;
	kq__mutex_init(&kq->kq_lock);
	pthread_mutex_init(&kq->kq_glock, NULL);
	kq->kq_flags = flags;
	kq->kq_fd = kq__ep_create(); /* close-on-exec: see name_add */
	if (kq->kq_fd < 0) {
		err = kq->kq_fd;
		kq->kq_fd = -1;
		goto fail;
	}
	err = kq_backend(kq);
	if (!err)
		err = kq__fdt_init(kq);
	if (err)
		goto fail;
	_Atomic(uintptr_t) *slot = kt_slot(kq->kq_fd, true);
	if (!slot) {
		err = -ENOMEM; /* never 0: that would return fd 0 */
		goto fail;
	}
	pthread_mutex_lock(&kq_global);
	live_add(kq);
	pthread_mutex_unlock(&kq_global);
	atomic_fetch_add(&kq->kq_refs, 1); /* the table's reference */
	atomic_store(&kq->kq_names, 1);
	int fd = kq->kq_fd;
	uintptr_t old = atomic_exchange_explicit(
	        slot, (uintptr_t)kq | (flags & KQUEUE_CLOEXEC ? KT_CLOEXEC : 0),
	        memory_order_acq_rel);
	/* A kqueue closed behind our back (a raw close system call) had the
	 * number: that name is gone, and with its last one the kqueue. */
	if (kt_name(old))
		name_gone(kt_kq(old), fd);
	return fd;

fail:
	if (kq->kq_fd >= 0)
		kq__sys_close(kq->kq_fd);
	kq->kq_fd = -1;
	atomic_store(&kq->kq_dead, true);
	kq_release(kq);
	pthread_mutex_lock(&kq_global);
	kq->kq_fdt = (struct kq_fdtable *)kq_freelist;
	kq_freelist = kq;
	pthread_mutex_unlock(&kq_global);
	return err;
}

/* close(fd) of a kqueue's name: 1 if fd was one (now forgotten). */
int kq__close_kqueue(int fd)
{
	_Atomic(uintptr_t) *slot = kt_slot(fd, false);
	uintptr_t v = slot ? atomic_load(slot) : 0;
	do {
		if (!kt_name(v))
			return 0;
	} while (!atomic_compare_exchange_weak(slot, &v, KT_CLOSING));
	name_gone(kt_kq(v), fd);
	return 1;
}

void kq__close_kqueue_done(unsigned first, unsigned last)
{
	for (unsigned t = first / KT_CHUNK; t < KT_TOP && t <= last / KT_CHUNK; t++) {
		_Atomic(uintptr_t) *chunk = atomic_load_explicit(&kt_top[t], memory_order_acquire);
		unsigned i = t == first / KT_CHUNK ? first % KT_CHUNK : 0;
		for (; chunk && i < KT_CHUNK && t * KT_CHUNK + i <= last; i++) {
			uintptr_t v = KT_CLOSING;
			if (atomic_load_explicit(&chunk[i], memory_order_relaxed) == v)
				atomic_compare_exchange_strong(&chunk[i], &v, 0);
		}
	}
}

bool kq__is_closing_name(int fd)
{
	return kt_get(fd) == KT_CLOSING;
}

/* dup(), dup2(), dup3() or fcntl(F_DUPFD*) made newfd from oldfd. */
void kq__dup_kqueue(int oldfd, int newfd, bool cloexec)
{
	struct kq *kq = kt_name(kt_get(oldfd));
	KQ_HOOK_ENTER(); /* kq_global, malloc: see kq_make */
	if (kq) {
		name_add(kq, newfd, cloexec);
	} else if (kt_name(kt_get(newfd))) {
		kq__close_kqueue(newfd); /* a stale name: closed behind our back */
		kq__close_kqueue_done((unsigned)newfd, (unsigned)newfd);
	}
	KQ_HOOK_LEAVE();
}

/* fcntl(F_GETFD) of a kqueue's name: the flag the program set, or -1. */
int kq__name_getfd(int fd)
{
	uintptr_t v = kt_get(fd);
	if (!kt_name(v))
		return -1;
	return v & KT_CLOEXEC ? FD_CLOEXEC : 0;
}

/* fcntl(F_SETFD) of a kqueue's name: keeps the flag; false if not a name. */
bool kq__name_setfd(int fd, int fdflags)
{
	_Atomic(uintptr_t) *slot = kt_slot(fd, false);
	uintptr_t v = slot ? atomic_load(slot) : 0, nv;
	do {
		if (!kt_name(v))
			return false;
		nv = (fdflags & FD_CLOEXEC) ? v | KT_CLOEXEC : v & ~KT_CLOEXEC;
	} while (!atomic_compare_exchange_weak(slot, &v, nv));
	return true;
}

/*
 * dup2()/dup3() onto fd, one of a kqueue's own descriptors: it moves to
 * another number first, and its epoll registration with it (epoll keys a
 * registration by file and number).  A kevent() call that read the old
 * number just before may still use it once; the move is rare (the numbers
 * are at the top of the range) and that window is the price of not
 * locking every use of these descriptors.
 */
void kq__private_evict(int fd)
{
	uintptr_t v = kt_get(fd);
	if (!(v & KT_PRIVATE))
		return;
	struct kq *kq = kt_kq(v);
	KQ_ENTER(); /* kt_slot() may take kq_global: see kq_make */
	int n = kq__private_fd(kq, (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 0));
	KQ_LEAVE();
	if (n < 0)
		return;
	if (!kq) { /* an io_uring ring's (uring.c), no kqueue's */
		kq__ring_evict(fd, n);
		atomic_compare_exchange_strong(kt_slot(fd, false), &v, 0);
		return;
	}
	struct {
		int *fd;
		uint32_t events;
		uint64_t tag;
	} own[] = {
	        {&kq->kq_epfd, 0, 0},
	        {&kq->kq_wakefd, atomic_load(&kq->kq_dead) ? EPOLLIN : EPOLLIN | EPOLLET,
	         KQ_TAG_WAKE},
	        {&kq->kq_timerfd, EPOLLIN | EPOLLET, KQ_TAG_TIMER},
	        {&kq->kq_sigfd, EPOLLIN, KQ_TAG_SIGNAL},
	        {&kq->kq_inofd, EPOLLIN, KQ_TAG_INOTIFY},
	        {&kq->kq_procfd, EPOLLIN, KQ_TAG_PROC},
	};
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
		if (*own[i].fd != fd)
			continue;
		if (own[i].events) {
			kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_ADD, n, own[i].events,
			           own[i].tag << KQ_TAG_SHIFT);
			kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_DEL, fd, 0, 0);
		}
		__atomic_store_n(own[i].fd, n, __ATOMIC_RELEASE);
		if (own[i].fd == &kq->kq_epfd)
			atomic_store(&kq->kq_lookfd, n);
	}
	atomic_compare_exchange_strong(kt_slot(fd, false), &v, 0);
}

/*
 * close_range(): the first of a kqueue's own descriptors in [from, last],
 * or -1; the real call leaves them out.
 */
long kq__next_private(unsigned from, unsigned last)
{
	for (unsigned t = from / KT_CHUNK; t < KT_TOP && t <= last / KT_CHUNK; t++) {
		_Atomic(uintptr_t) *chunk = atomic_load_explicit(&kt_top[t], memory_order_acquire);
		for (unsigned i = 0; chunk && i < KT_CHUNK; i++) {
			unsigned fd = t * KT_CHUNK + i;
			if (fd >= from && fd <= last && (atomic_load(&chunk[i]) & KT_PRIVATE))
				return fd;
		}
	}
	return -1;
}

/*
 * KQUEUE_CPONFORK in the child: the same kqueue at the same number, with its
 * registrations and pending events, but kernel objects of its own (the
 * inherited ones are shared with the parent).  Only the forking thread
 * exists, so every lock is made anew.
 */
static int kq_child_copy(struct kq *kq)
{
	atomic_store(&kq->kq_qwaiters, 0); /* the parent's threads */
	kq__mutex_init(&kq->kq_lock);
	pthread_mutex_init(&kq->kq_glock, NULL);
	kq__group_fork(kq);
	int ep = kq__ep_create();
	if (ep < 0)
		return ep;
	/*
	 * Every name of the kqueue becomes the child's epoll, not only the
	 * number kqueue() returned (it may be closed, a dup left): each
	 * inherited one is the parent's file.  Raw dup3: the interposed one
	 * would close this kqueue.
	 */
	int err = 0;
	for (int t = 0; t < KT_TOP && !err; t++) {
		_Atomic(uintptr_t) *chunk = atomic_load(&kt_top[t]);
		for (int i = 0; chunk && i < KT_CHUNK && !err; i++) {
			int fd = t * KT_CHUNK + i;
			if (kt_name(atomic_load(&chunk[i])) != kq)
				continue;
			if (syscall(SYS_dup3, ep, fd, O_CLOEXEC) < 0)
				err = -errno;
			else if (kq->kq_fd < 0)
				kq->kq_fd = fd; /* kq_backend dups the epoll from it */
		}
	}
	kq__sys_close(ep);
	if (err)
		return err;
	close_if(kq, &kq->kq_epfd);
	close_if(kq, &kq->kq_wakefd);
	close_if(kq, &kq->kq_timerfd);
	close_if(kq, &kq->kq_sigfd);
	close_if(kq, &kq->kq_inofd);
	kq->kq_nwatches = 0;
	err = kq_backend(kq);
	if (!err)
		err = kq__signal_fork(kq);
	if (!err)
		err = kq__proc_fork(kq);
	if (err)
		return err;
	kq__timer_fork(kq);
	kq__fdt_foreach(kq, kq__fd_fork, NULL);
	kq__vnode_fork(kq);
	atomic_store(&kq->kq_refs, atomic_load(&kq->kq_names));
	atomic_store(&kq->kq_wake_pending, false);
	kq__wake(kq);
	kq__wake_flush(kq, true);
	return 0;
}

/*
 * In the child only the forking thread exists and no lock can be trusted:
 * close every kqueue's names and descriptors and drop its memory without
 * locking; copy those made with KQUEUE_CPONFORK.  The names are found in
 * the fd -> kqueue table, so the cost follows the kqueues' names, not the
 * process's open fds.
 */
static void kq_child_atfork(void)
{
	struct kq *kq, *next;
	kq_in_fork_child = true;
	kq__sig_fork_begin();
	kq__ring_fork(); /* io_uring rings: the parent's */
	kq__ring_wait_fork();
	/*
	 * Orphans (dead, or recycled already) hold a reference that a later
	 * kq__put() would drop from whatever the struct is by then: the dead
	 * ones are released below whatever their count, so drop it now.
	 */
	for (kq = atomic_exchange(&kq_orphans, NULL); kq; kq = next) {
		next = kq->kq_orphan_next;
		atomic_fetch_sub(&kq->kq_refs, 1);
	}
	/* Copies first: their new descriptors must not take the numbers the
	 * closed kqueues leave free. */
	for (kq = atomic_load(&kq__live); kq; kq = atomic_load(&kq->kq_lnext)) {
		bool keep = !atomic_load(&kq->kq_dead) && (kq->kq_flags & KQUEUE_CPONFORK) &&
		            kq_child_copy(kq) == 0;
		if (!keep)
			atomic_store(&kq->kq_dead, true);
	}
	for (int t = 0; t < KT_TOP; t++) {
		_Atomic(uintptr_t) *chunk = atomic_load(&kt_top[t]);
		for (int i = 0; chunk && i < KT_CHUNK; i++) {
			struct kq *owner = kt_name(atomic_load(&chunk[i]));
			if (owner && atomic_load(&owner->kq_dead)) {
				kq__sys_close(t * KT_CHUNK + i);
				atomic_store(&chunk[i], 0);
			}
		}
	}
	for (kq = atomic_load(&kq__live); kq; kq = next) {
		next = atomic_load(&kq->kq_lnext);
		if (!atomic_load(&kq->kq_dead))
			continue;
		live_remove(kq);
		kq__mutex_init(&kq->kq_lock);
		pthread_mutex_init(&kq->kq_glock, NULL);
		kq_release(kq);
		atomic_store(&kq->kq_refs, 0);
		atomic_store(&kq->kq_names, 0);
		kq->kq_fdt = (struct kq_fdtable *)kq_freelist;
		kq_freelist = kq;
	}
	kq__sig_fork_end();
	kq_in_fork_child = false;
	pthread_mutex_unlock(&kq_global);
	KQ_LEAVE();
}

/* close_range(): the kqueues whose names fall in [first, last]. */
int kq__close_kqueue_range(unsigned first, unsigned last)
{
	int n = 0;
	for (unsigned t = first / KT_CHUNK; t < KT_TOP && t <= last / KT_CHUNK; t++) {
		_Atomic(uintptr_t) *chunk = atomic_load_explicit(&kt_top[t], memory_order_acquire);
		for (unsigned i = 0; chunk && i < KT_CHUNK; i++) {
			unsigned fd = t * KT_CHUNK + i;
			if (fd >= first && fd <= last && kt_name(atomic_load(&chunk[i])))
				n += kq__close_kqueue((int)fd);
		}
	}
	return n;
}

/* close_range(CLOSE_RANGE_CLOEXEC): the kqueue names in [first, last] show the flag. */
void kq__name_cloexec_range(unsigned first, unsigned last)
{
	for (unsigned t = first / KT_CHUNK; t < KT_TOP && t <= last / KT_CHUNK; t++) {
		_Atomic(uintptr_t) *chunk = atomic_load_explicit(&kt_top[t], memory_order_acquire);
		for (unsigned i = 0; chunk && i < KT_CHUNK; i++) {
			unsigned fd = t * KT_CHUNK + i;
			if (fd >= first && fd <= last && kt_name(atomic_load(&chunk[i])))
				kq__name_setfd((int)fd, FD_CLOEXEC);
		}
	}
}

/* Calls fn for every live kqueue (the close hooks). */
void kq__foreach(void (*fn)(struct kq *, void *), void *arg)
{
	for (struct kq *kq = atomic_load_explicit(&kq__live, memory_order_acquire); kq;
	     kq = atomic_load_explicit(&kq->kq_lnext, memory_order_acquire)) {
		if (!atomic_load(&kq->kq_listed) || atomic_load(&kq->kq_dead) ||
		    !kq__ref_if_held(kq))
			continue;
		if (atomic_load(&kq->kq_listed) && !atomic_load(&kq->kq_dead))
			fn(kq, arg);
		kq__put(kq);
	}
}

static int api_result(int r)
{
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return r;
}

/*
 * Making a kqueue takes kq_global and malloc's locks: a close() hook in a
 * signal handler on top of it must see a libbaton call in progress, or the
 * last name it closes would free a kqueue right there, on those locks.
 */
static int kq_make(unsigned flags)
{
	if (atomic_load_explicit(&kq_orphans, memory_order_relaxed))
		orphans_put(); /* their structs may serve this kqueue */
	KQ_ENTER();
	int r = kq_create(flags);
	KQ_LEAVE();
	return api_result(r);
}

__attribute__((visibility("default"))) int kqueue(void)
{
	return kq_make(0);
}

__attribute__((visibility("default"))) int kqueuex(unsigned int flags)
{
	return kq_make(flags);
}

__attribute__((visibility("default"))) int kqueue1(int flags)
{
	if (flags & ~O_CLOEXEC)
		return api_result(-EINVAL);
	return kq_make(flags & O_CLOEXEC ? KQUEUE_CLOEXEC : 0);
}
