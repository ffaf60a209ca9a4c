/*
 * The kqueue object: creation, the process-wide fd -> kqueue table, close
 * and fork.
 *
 * A struct kq is type-stable: once allocated it is never given back to
 * malloc, only recycled for a later kqueue.  That lets kq__get() find a
 * kqueue without a global lock: it takes a reference and then checks that
 * the table still maps the fd to it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "kq_private.h"

#ifdef BATON_TEST_HOOKS
int kq__break_mask;
#endif

/* fd -> kq, two levels so memory follows the fds used, not the limit */
#define KT_CHUNK 1024
#define KT_TOP   4096 /* 4M fds */
static _Atomic(struct kq *) *_Atomic kt_top[KT_TOP];

static pthread_mutex_t kq_global =
        PTHREAD_MUTEX_INITIALIZER; /* kq_freelist, kt chunk creation, atfork */
static struct kq *kq_freelist;     /* kq_global; recycled structs, linked via kq_fdt */
static pthread_once_t kq_once = PTHREAD_ONCE_INIT;

/*
 * Live kqueues in a compact array, so that close() of any fd visits only
 * them.  Slots are claimed with CAS; kq_live_hi only grows.
 */
#define KQ_LIVE_MAX 4096
static _Atomic(struct kq *) kq_live[KQ_LIVE_MAX];
static atomic_int kq_live_hi;

static int live_add(struct kq *kq)
{
	for (int i = 0; i < KQ_LIVE_MAX; i++) {
		struct kq *expect = NULL;
		if (atomic_compare_exchange_strong(&kq_live[i], &expect, kq)) {
			int hi = atomic_load(&kq_live_hi);
			while (hi < i + 1 && !atomic_compare_exchange_weak(&kq_live_hi, &hi, i + 1))
				;
			kq->kq_live_slot = i;
			return 0;
		}
	}
	return -EMFILE;
}

static void live_remove(struct kq *kq)
{
	if (kq->kq_live_slot >= 0)
		atomic_store(&kq_live[kq->kq_live_slot], NULL);
	kq->kq_live_slot = -1;
}

static _Atomic(struct kq *) *kt_slot(int fd, bool create)
{
	if (fd < 0 || fd >= KT_TOP * KT_CHUNK)
		return NULL;
	_Atomic(struct kq *) *chunk =
	        atomic_load_explicit(&kt_top[fd / KT_CHUNK], memory_order_acquire);
	if (!chunk && create) {
		pthread_mutex_lock(&kq_global);
		chunk = atomic_load(&kt_top[fd / KT_CHUNK]);
		if (!chunk) {
			chunk = calloc(KT_CHUNK, sizeof(*chunk));
			if (chunk)
				atomic_store_explicit(&kt_top[fd / KT_CHUNK], chunk,
				                      memory_order_release);
		}
		pthread_mutex_unlock(&kq_global);
	}
	return chunk ? &chunk[fd % KT_CHUNK] : NULL;
}

static bool same_file(int a, int b)
{
	pid_t me = getpid();
	return syscall(SYS_kcmp, me, me, KCMP_FILE, a, b) == 0;
}

/*
 * fd is not a number we handed out: it may be a dup (dup(), F_DUPFD) of a
 * kqueue.  Slow path, taken only for numbers the table does not know.
 */
static struct kq *kq_adopt(int fd, _Atomic(struct kq *) **slotp)
{
	int hi = atomic_load(&kq_live_hi);
	for (int i = 0; i < hi; i++) {
		struct kq *kq = atomic_load(&kq_live[i]);
		if (!kq || atomic_load(&kq->kq_dead) || !same_file(fd, kq->kq_epfd))
			continue;
		_Atomic(struct kq *) *slot = kt_slot(fd, true);
		struct kq *expect = NULL;
		atomic_fetch_add(&kq->kq_refs, 1); /* the new name's reference */
		if (slot && atomic_compare_exchange_strong(slot, &expect, kq)) {
			atomic_fetch_add(&kq->kq_names, 1);
			*slotp = slot;
			return kq;
		}
		kq__put(kq);
	}
	return NULL;
}

struct kq *kq__get(int fd)
{
	_Atomic(struct kq *) *slot = kt_slot(fd, false);
	struct kq *kq = slot ? atomic_load_explicit(slot, memory_order_acquire) : NULL;
	if (!kq && (fd < 0 || !(kq = kq_adopt(fd, &slot))))
		return NULL;
	atomic_fetch_add(&kq->kq_refs, 1);
	if (atomic_load(slot) != kq || atomic_load(&kq->kq_dead)) {
		kq__put(kq);
		return NULL;
	}
	return kq;
}

bool kq__is_kqueue_fd(int fd)
{
	_Atomic(struct kq *) *slot = kt_slot(fd, false);
	return slot && atomic_load(slot) != NULL;
}

static void close_if(int *fd)
{
	if (*fd >= 0)
		kq__sys_close(*fd);
	*fd = -1;
}

/* Frees what a kqueue holds.  Runs once, by whoever drops the last ref. */
static void kq_release(struct kq *kq)
{
	close_if(&kq->kq_epfd);
	close_if(&kq->kq_wakefd);
	close_if(&kq->kq_timerfd);
	close_if(&kq->kq_sigfd);
	close_if(&kq->kq_inofd);
	free(kq->kq_watches);
	kq->kq_watches = NULL;
	kq->kq_nwatches = kq->kq_watchcap = 0;
	kq__knote_free_all(kq);
	kq__fdt_destroy(kq);
	free(kq->kq_hash);
	free(kq->kq_timers);
	kq->kq_hash = NULL;
	kq->kq_timers = NULL;
	kq__group_destroy_all(kq);
	pthread_mutex_destroy(&kq->kq_lock);
	pthread_mutex_destroy(&kq->kq_glock);
}

/*
 * Dead kqueues whose last reference a close() hook in a signal handler
 * would have dropped: freeing takes kq_global and free(), which the
 * interrupted thread may hold.  They keep that reference on this stack (so
 * they are not recycled meanwhile) until the next kq__put() outside a
 * handler drops it.
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
	if (kq__depth > 1) { /* a hook on top of a libbaton call: a signal handler */
		int r = atomic_load(&kq->kq_refs);
		while (r > 1 && !atomic_compare_exchange_weak(&kq->kq_refs, &r, r - 1))
			;
		if (r > 1)
			return;
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
	if (atomic_load(&kq->kq_dead) && kq->kq_epfd >= 0 && atomic_load(&kq->kq_refs) == 0) {
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
static _Thread_local bool wake_due;

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
	if (atomic_exchange(&kq->kq_wake_pending, true))
		return;
	uint64_t one = 1;
	/* EAGAIN means the counter is huge: a wake is pending anyway. */
	(void)!write(kq->kq_wakefd, &one, sizeof(one));
}

static void kq_child_atfork(void);
static void kq_prepare_atfork(void)
{
	pthread_mutex_lock(&kq_global);
}
static void kq_parent_atfork(void)
{
	pthread_mutex_unlock(&kq_global);
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
		/* Keep kq_refs (the first field): a late kq__get() may be
		 * adding a transient reference to it right now. */
		memset((char *)kq + offsetof(struct kq, kq_fd), 0,
		       sizeof(*kq) - offsetof(struct kq, kq_fd));
	}
	kq->kq_fd = kq->kq_epfd = kq->kq_wakefd = kq->kq_timerfd = kq->kq_sigfd = kq->kq_inofd = -1;
	kq->kq_live_slot = -1;
	return kq;
}

/*
 * The descriptors behind the user's number: a private dup of the epoll fd
 * (it stays valid while calls are in flight, even after the user's number
 * was closed and reused), the wake eventfd and the timerfd, registered
 * edge-triggered: one write wakes one waiter, and nobody has to read them.
 */
static int kq_backend(struct kq *kq)
{
	kq->kq_epfd = fcntl(kq->kq_fd, F_DUPFD_CLOEXEC, 0);
	kq->kq_wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	kq->kq_timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (kq->kq_epfd < 0 || kq->kq_wakefd < 0 || kq->kq_timerfd < 0)
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
	int err = -ENOMEM;
	pthread_mutex_init(&kq->kq_lock, NULL);
	pthread_mutex_init(&kq->kq_glock, NULL);
	kq->kq_flags = flags;
	kq->kq_fd = kq__ep_create();
	if (kq->kq_fd < 0) {
		err = kq->kq_fd;
		kq->kq_fd = -1;
		goto fail;
	}
	if (!(flags & KQUEUE_CLOEXEC) && fcntl(kq->kq_fd, F_SETFD, 0) < 0)
		goto fail_errno;
	err = kq_backend(kq);
	if (!err)
		err = kq__fdt_init(kq);
	if (!err)
		err = live_add(kq);
	if (err)
		goto fail;
	_Atomic(struct kq *) *slot = kt_slot(kq->kq_fd, true);
	if (!slot)
		goto fail;                 /* -ENOMEM */
	atomic_fetch_add(&kq->kq_refs, 1); /* the table's reference */
	atomic_store(&kq->kq_names, 1);
	atomic_store_explicit(slot, kq, memory_order_release);
	return kq->kq_fd;

fail_errno:
	err = -errno;
fail:
	live_remove(kq);
	close_if(&kq->kq_fd);
	atomic_store(&kq->kq_dead, true);
	kq_release(kq);
	pthread_mutex_lock(&kq_global);
	kq->kq_fdt = (struct kq_fdtable *)kq_freelist;
	kq_freelist = kq;
	pthread_mutex_unlock(&kq_global);
	return err;
}

/* Does a number other than fd (and our own dup) still name kq's file? */
static bool other_name_exists(struct kq *kq, int fd)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return false;
	bool found = false;
	struct dirent *de;
	while (!found && (de = readdir(d))) {
		int n = atoi(de->d_name);
		if (de->d_name[0] < '0' || de->d_name[0] > '9' || n == fd || n == kq->kq_epfd ||
		    n == dirfd(d))
			continue;
		found = same_file(n, kq->kq_epfd);
	}
	closedir(d);
	return found;
}

/*
 * close(fd) of a kqueue number.  If another number (a dup) still names the
 * kqueue, only this name goes.  Otherwise every waiter is woken (they
 * return EBADF) and the kqueue is freed when the last call leaves.
 */
int kq__close_kqueue(int fd)
{
	_Atomic(struct kq *) *slot = kt_slot(fd, false);
	struct kq *kq = slot ? atomic_exchange(slot, NULL) : NULL;
	if (!kq)
		return 0;
	if (atomic_fetch_sub(&kq->kq_names, 1) > 1 || other_name_exists(kq, fd)) {
		if (kq->kq_fd == fd)
			kq->kq_fd = -1;
		kq__put(kq);
		return 1;
	}
	atomic_store(&kq->kq_dead, true);
	live_remove(kq);
	/* Level-triggered and never read: every epoll_wait returns now. */
	uint64_t one = 1;
	(void)!write(kq->kq_wakefd, &one, sizeof(one));
	kq__ep_ctl(kq->kq_epfd, EPOLL_CTL_MOD, kq->kq_wakefd, EPOLLIN, KQ_TAG_WAKE << KQ_TAG_SHIFT);
	kq__put(kq);
	return 1;
}

/* Closes every number that names kq's file, but our own dup. */
static void close_all_names(struct kq *kq)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		int n = atoi(de->d_name);
		if (de->d_name[0] >= '0' && de->d_name[0] <= '9' && n != kq->kq_epfd &&
		    n != dirfd(d) && same_file(n, kq->kq_epfd))
			kq__sys_close(n);
	}
	closedir(d);
}

/*
 * KQUEUE_CPONFORK in the child: the same kqueue at the same number, with its
 * registrations and pending events, but kernel objects of its own (the
 * inherited ones are shared with the parent).  Only the forking thread
 * exists, so every lock is made anew.
 */
static int kq_child_copy(struct kq *kq)
{
	pthread_mutex_init(&kq->kq_lock, NULL);
	pthread_mutex_init(&kq->kq_glock, NULL);
	kq__group_fork(kq);
	int ep = kq__ep_create();
	if (ep < 0)
		return ep;
	int flags = kq->kq_flags & KQUEUE_CLOEXEC ? O_CLOEXEC : 0;
	/* Raw dup3: the interposed one would close this kqueue. */
	if (kq->kq_fd >= 0 && syscall(SYS_dup3, ep, kq->kq_fd, flags) < 0) {
		kq__sys_close(ep);
		return -errno;
	}
	kq__sys_close(ep);
	close_if(&kq->kq_epfd);
	close_if(&kq->kq_wakefd);
	close_if(&kq->kq_timerfd);
	close_if(&kq->kq_sigfd);
	close_if(&kq->kq_inofd);
	kq->kq_nwatches = 0;
	int err = kq_backend(kq);
	if (!err)
		err = kq__signal_fork(kq);
	if (err)
		return err;
	kq__timer_fork(kq);
	kq__fdt_foreach(kq, kq__fd_fork, NULL);
	atomic_store(&kq->kq_refs, atomic_load(&kq->kq_names));
	atomic_store(&kq->kq_wake_pending, false);
	kq__wake(kq);
	kq__wake_flush(kq, true);
	return 0;
}

/*
 * In the child only the forking thread exists and no lock can be trusted:
 * close every kqueue's numbers and descriptors and drop its memory without
 * locking; copy those made with KQUEUE_CPONFORK.
 */
static void kq_child_atfork(void)
{
	int hi = atomic_load(&kq_live_hi);
	bool copied[KQ_LIVE_MAX] = {false};
	/* Copies first: their new descriptors must not take the numbers the
	 * closed kqueues leave free. */
	for (int i = 0; i < hi; i++) {
		struct kq *kq = atomic_load(&kq_live[i]);
		copied[i] = kq && (kq->kq_flags & KQUEUE_CPONFORK) && kq_child_copy(kq) == 0;
	}
	for (int i = 0; i < hi; i++) {
		struct kq *kq = atomic_load(&kq_live[i]);
		if (!kq || copied[i])
			continue;
		atomic_store(&kq->kq_dead, true);
		live_remove(kq);
		close_all_names(kq);
		pthread_mutex_init(&kq->kq_lock, NULL);
		pthread_mutex_init(&kq->kq_glock, NULL);
		kq_release(kq);
		atomic_store(&kq->kq_refs, 0);
		kq->kq_fdt = (struct kq_fdtable *)kq_freelist;
		kq_freelist = kq;
	}
	for (int t = 0; t < KT_TOP; t++) {
		_Atomic(struct kq *) *chunk = atomic_load(&kt_top[t]);
		for (int i = 0; chunk && i < KT_CHUNK; i++) {
			struct kq *kq = atomic_load(&chunk[i]);
			if (kq && atomic_load(&kq->kq_dead))
				atomic_store(&chunk[i], NULL);
		}
	}
	pthread_mutex_unlock(&kq_global);
}

/* close_range(): the kqueues whose numbers fall in [first, last]. */
void kq__close_kqueue_range(unsigned first, unsigned last)
{
	for (unsigned t = first / KT_CHUNK; t < KT_TOP && t <= last / KT_CHUNK; t++) {
		_Atomic(struct kq *) *chunk =
		        atomic_load_explicit(&kt_top[t], memory_order_acquire);
		for (unsigned i = 0; chunk && i < KT_CHUNK; i++) {
			unsigned fd = t * KT_CHUNK + i;
			if (fd >= first && fd <= last && atomic_load(&chunk[i]))
				kq__close_kqueue((int)fd);
		}
	}
}

/* Calls fn for every live kqueue (the close hooks). */
void kq__foreach(void (*fn)(struct kq *, void *), void *arg)
{
	int hi = atomic_load_explicit(&kq_live_hi, memory_order_acquire);
	for (int i = 0; i < hi; i++) {
		struct kq *kq = atomic_load_explicit(&kq_live[i], memory_order_acquire);
		if (!kq)
			continue;
		atomic_fetch_add(&kq->kq_refs, 1);
		if (atomic_load(&kq_live[i]) == kq && !atomic_load(&kq->kq_dead))
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

__attribute__((visibility("default"))) int kqueue(void)
{
	return api_result(kq_create(0));
}

__attribute__((visibility("default"))) int kqueuex(unsigned int flags)
{
	return api_result(kq_create(flags));
}

__attribute__((visibility("default"))) int kqueue1(int flags)
{
	if (flags & ~O_CLOEXEC)
		return api_result(-EINVAL);
	return api_result(kq_create(flags & O_CLOEXEC ? KQUEUE_CLOEXEC : 0));
}
