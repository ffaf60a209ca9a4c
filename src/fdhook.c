/*
 * close(), dup2(), dup3(), close_range() and closefrom() interposed, so that closing an fd
 * removes its knotes as FreeBSD's kernel does (I4), and closing a kqueue
 * frees it and wakes its waiters.  The hooks run before the real call: epoll
 * registrations must be removed while the number still names the file.
 * The real calls are made with syscall(2), which works for the shared and
 * the static library alike.
 *
 * Each hook has a kqueue side (the number may name a kqueue, or be one of a
 * kqueue's own descriptors: kqueue.c) and an fd side (every kqueue drops its
 * knotes on the number: filt_fd.c).  dup() and fcntl(F_DUPFD*) are
 * interposed too, so that every name of a kqueue is known when it is made
 * (close and fork then cost what the kqueue's names cost), and so is
 * fcntl(F_GETFD/F_SETFD), which shows a kqueue name's close-on-exec flag as
 * the program set it (the kernel's is always set: see kqueue.c).
 *
 * Binding: the entry points are exported as name@@BATON_0, which a program
 * or library linked with -lbaton refers to; code linked against libc alone
 * (libev, libevent, a dlopen'ed module) refers to libc's version of the name
 * (close@GLIBC_2.2.5 on x86-64) instead, and the dynamic linker binds such a
 * reference only to a definition of that very version.  So each entry point
 * is also exported under libc's version (KQ_LIBC_VER_*, found by
 * src/CMakeLists.txt): the first object in the search order that has it
 * wins, which is libbaton whenever it is loaded before libc (linked into the
 * program, or LD_PRELOAD).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kq_private.h"
#ifdef BATON_HAVE_LIBC_VERSIONS
#include "libc_versions.h"
#endif

#define KQ_EXPORT __attribute__((visibility("default")))

_Thread_local unsigned kq__depth __attribute__((tls_model("initial-exec")));
_Thread_local unsigned kq__hooking __attribute__((tls_model("initial-exec")));

int kq__sys_close(int fd)
{
	return (int)syscall(SYS_close, fd);
}

int kq__sys_fcntl(int fd, int cmd, long arg)
{
	return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

/* ---- fd side: every kqueue drops its knotes on the numbers ---- */

/*
 * Outside any libbaton call (kq__depth 0 on entry) the knotes go at once, as
 * FreeBSD's close does.  Inside one we are a signal handler on top of it:
 * the fd is only marked, and the next holder of its lock removes them.
 */
struct closing {
	unsigned first, last;
	bool locked_ok;
};

static void close_one_cb(struct kq *kq, void *arg)
{
	struct closing *c = arg;
	kq__fd_close(kq, (int)c->first, c->locked_ok);
}

static void hook_close_fd(int fd, bool locked_ok)
{
	struct closing c = {(unsigned)fd, (unsigned)fd, locked_ok};
	if (!KQ_BROKEN(KQ_BREAK_I4))
		kq__foreach(close_one_cb, &c);
}

static void range_fd_cb(struct kq *kq, struct kq_fdent *fe, void *arg)
{
	struct closing *r = arg;
	if ((unsigned)fe->fe_fd >= r->first && (unsigned)fe->fe_fd <= r->last)
		kq__fd_close(kq, fe->fe_fd, r->locked_ok);
}

static void range_kq_cb(struct kq *kq, void *arg)
{
	if (!KQ_BROKEN(KQ_BREAK_I4))
		kq__fdt_foreach(kq, range_fd_cb, arg);
}

static void hook_close_range_fd(unsigned first, unsigned last, bool locked_ok)
{
	struct closing r = {first, last, locked_ok};
	kq__foreach(range_kq_cb, &r);
}

/* ---- kqueue side ---- */

/*
 * A kqueue's number is an fd like any other: other kqueues may watch it, so
 * its knotes go too (FreeBSD's fdclose does not care what the file is).
 */
static bool hook_close(int fd) /* true if fd named a kqueue (now marked closing) */
{
	bool locked_ok = kq__depth == 0;
	KQ_HOOK_ENTER();
	bool was_kqueue = kq__close_kqueue(fd);
	hook_close_fd(fd, locked_ok);
	KQ_HOOK_LEAVE();
	return was_kqueue;
}

/* The real close_range() of [first, last], leaving the kqueues' own
 * descriptors out: to the program those numbers are not open. */
static int close_range_around_private(unsigned first, unsigned last, int flags)
{
	int r = 0;
	for (unsigned lo = first;;) {
		long p = kq__next_private(lo, last);
		unsigned hi = p < 0 ? last : (unsigned)p - 1;
		if ((p < 0 || (unsigned)p > lo) && syscall(SYS_close_range, lo, hi, flags) < 0)
			r = -1;
		if (p < 0 || (unsigned)p >= last)
			return r;
		lo = (unsigned)p + 1;
	}
}

/* ---- the entry points ---- */

static int do_close(int fd)
{
#ifdef __SANITIZE_THREAD__
	if (kq__raw_close) /* one of ours, through ThreadSanitizer (kqueue.c) */
		return kq__sys_close(fd);
#endif
	if (kq__is_private_fd(fd)) {
		errno = EBADF; /* not open, as far as the program can know */
		return -1;
	}
	bool was_kqueue = hook_close(fd);
	int r = kq__sys_close(fd);
	if (was_kqueue)
		kq__close_kqueue_done((unsigned)fd, (unsigned)fd);
	return r;
}

static int do_dup(int fd)
{
	int r = (int)syscall(SYS_dup, fd);
	if (r >= 0)
		kq__dup_kqueue(fd, r, false);
	return r;
}

static int do_dup3(int oldfd, int newfd, int flags)
{
	if (oldfd == newfd || (flags & ~O_CLOEXEC)) {
		errno = EINVAL;
		return -1;
	}
	if (syscall(SYS_fcntl, oldfd, F_GETFD) < 0)
		return -1; /* EBADF, and newfd stays open */
	kq__private_evict(newfd);
	bool was_kqueue = hook_close(newfd);
	int r = (int)syscall(SYS_dup3, oldfd, newfd, flags);
	if (was_kqueue)
		kq__close_kqueue_done((unsigned)newfd, (unsigned)newfd);
	if (r >= 0)
		kq__dup_kqueue(oldfd, r, (flags & O_CLOEXEC) != 0);
	return r;
}

static int do_dup2(int oldfd, int newfd)
{
	if (oldfd == newfd)
		return syscall(SYS_fcntl, oldfd, F_GETFD) < 0 ? -1 : newfd;
	return do_dup3(oldfd, newfd, 0);
}

static int do_close_range(unsigned first, unsigned last, int flags)
{
	/* EINVAL, and nothing closed: the hooks must not run either. */
	if (first > last || (flags & ~(CLOSE_RANGE_CLOEXEC | CLOSE_RANGE_UNSHARE)))
		return (int)syscall(SYS_close_range, first, last, flags);
	int kqueues = 0;
	if (!(flags & CLOSE_RANGE_CLOEXEC)) {
		bool locked_ok = kq__depth == 0;
		KQ_HOOK_ENTER();
		kqueues = kq__close_kqueue_range(first, last);
		hook_close_range_fd(first, last, locked_ok);
		KQ_HOOK_LEAVE();
	}
	int r = close_range_around_private(first, last, flags);
	if (kqueues)
		kq__close_kqueue_done(first, last);
	if (r == 0 && (flags & CLOSE_RANGE_CLOEXEC))
		kq__name_cloexec_range(first, last); /* what F_GETFD shows */
	return r;
}

/* glibc's closefrom() calls the close_range system call itself. */
static void do_closefrom(int lowfd)
{
	if (lowfd < 0)
		lowfd = 0;
	if (do_close_range((unsigned)lowfd, ~0U, 0) == 0)
		return;
	for (long fd = lowfd, max = sysconf(_SC_OPEN_MAX); fd < max; fd++)
		do_close((int)fd); /* a kernel without close_range */
}

/*
 * fcntl: the dups and the close-on-exec flag of kqueue names; everything
 * else goes to libc's own fcntl (its F_GETOWN and cancellation handling),
 * found once with RTLD_NEXT (a static program without dlsym gets the
 * system call).
 */
typedef int (*fcntl_fn)(int, int, ...);

static fcntl_fn next_fcntl(_Atomic(fcntl_fn) *cache, const char *name)
{
	fcntl_fn f = atomic_load_explicit(cache, memory_order_acquire);
	if (!f) {
		f = (fcntl_fn)dlsym(RTLD_NEXT, name);
		atomic_store_explicit(cache, f, memory_order_release);
	}
	return f;
}

static int do_fcntl(_Atomic(fcntl_fn) *cache, const char *name, int fd, int cmd, void *arg)
{
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC: {
		int r = (int)syscall(SYS_fcntl, fd, cmd, arg);
		if (r >= 0)
			kq__dup_kqueue(fd, r, cmd == F_DUPFD_CLOEXEC);
		return r;
	}
	case F_GETFD: {
		int r = (int)syscall(SYS_fcntl, fd, cmd);
		int user = r >= 0 ? kq__name_getfd(fd) : -1;
		return user >= 0 ? (r & ~FD_CLOEXEC) | user : r;
	}
	case F_SETFD:
		if (kq__name_setfd(fd, (int)(intptr_t)arg))
			arg = (void *)((intptr_t)arg | FD_CLOEXEC);
		return (int)syscall(SYS_fcntl, fd, cmd, arg);
	}
	fcntl_fn f = next_fcntl(cache, name);
	return f ? f(fd, cmd, arg) : (int)syscall(SYS_fcntl, fd, cmd, arg);
}

static _Atomic(fcntl_fn) libc_fcntl, libc_fcntl64;

KQ_EXPORT int close(int fd)
{
	return do_close(fd);
}

KQ_EXPORT void closefrom(int lowfd)
{
	do_closefrom(lowfd);
}

KQ_EXPORT int dup(int fd)
{
	return do_dup(fd);
}

/* The argument is an int or a pointer; libc reads it as a pointer too. */
#define FCNTL_ARG(arg, cmd)             \
	va_list ap;                     \
	va_start(ap, cmd);              \
	void *arg = va_arg(ap, void *); \
	va_end(ap)

KQ_EXPORT int fcntl(int fd, int cmd, ...)
{
	FCNTL_ARG(arg, cmd);
	return do_fcntl(&libc_fcntl, "fcntl", fd, cmd, arg);
}

KQ_EXPORT int fcntl64(int fd, int cmd, ...)
{
	FCNTL_ARG(arg, cmd);
	return do_fcntl(&libc_fcntl64, "fcntl64", fd, cmd, arg);
}

KQ_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	return do_dup3(oldfd, newfd, flags);
}

KQ_EXPORT int dup2(int oldfd, int newfd)
{
	return do_dup2(oldfd, newfd);
}

KQ_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
	return do_close_range(first, last, flags);
}

/* ---- the same entry points under libc's versions (see the top) ---- */

#define KQ_LIBC_ALIAS(name, ver) __asm__(".symver kq__libc_" #name ", " #name "@" ver)

#ifdef KQ_LIBC_VER_close
KQ_LIBC_ALIAS(close, KQ_LIBC_VER_close);
KQ_EXPORT int kq__libc_close(int fd);
int kq__libc_close(int fd)
{
	return do_close(fd);
}
#endif
#ifdef KQ_LIBC_VER_closefrom
KQ_LIBC_ALIAS(closefrom, KQ_LIBC_VER_closefrom);
KQ_EXPORT void kq__libc_closefrom(int lowfd);
void kq__libc_closefrom(int lowfd)
{
	do_closefrom(lowfd);
}
#endif
#ifdef KQ_LIBC_VER_dup
KQ_LIBC_ALIAS(dup, KQ_LIBC_VER_dup);
KQ_EXPORT int kq__libc_dup(int fd);
int kq__libc_dup(int fd)
{
	return do_dup(fd);
}
#endif
#ifdef KQ_LIBC_VER_fcntl
KQ_LIBC_ALIAS(fcntl, KQ_LIBC_VER_fcntl);
KQ_EXPORT int kq__libc_fcntl(int fd, int cmd, ...);
int kq__libc_fcntl(int fd, int cmd, ...)
{
	FCNTL_ARG(arg, cmd);
	return do_fcntl(&libc_fcntl, "fcntl", fd, cmd, arg);
}
#endif
#ifdef KQ_LIBC_VER_fcntl64
KQ_LIBC_ALIAS(fcntl64, KQ_LIBC_VER_fcntl64);
KQ_EXPORT int kq__libc_fcntl64(int fd, int cmd, ...);
int kq__libc_fcntl64(int fd, int cmd, ...)
{
	FCNTL_ARG(arg, cmd);
	return do_fcntl(&libc_fcntl64, "fcntl64", fd, cmd, arg);
}
#endif
#ifdef KQ_LIBC_VER_dup2
KQ_LIBC_ALIAS(dup2, KQ_LIBC_VER_dup2);
KQ_EXPORT int kq__libc_dup2(int oldfd, int newfd);
int kq__libc_dup2(int oldfd, int newfd)
{
	return do_dup2(oldfd, newfd);
}
#endif
#ifdef KQ_LIBC_VER_dup3
KQ_LIBC_ALIAS(dup3, KQ_LIBC_VER_dup3);
KQ_EXPORT int kq__libc_dup3(int oldfd, int newfd, int flags);
int kq__libc_dup3(int oldfd, int newfd, int flags)
{
	return do_dup3(oldfd, newfd, flags);
}
#endif
#ifdef KQ_LIBC_VER_close_range
KQ_LIBC_ALIAS(close_range, KQ_LIBC_VER_close_range);
KQ_EXPORT int kq__libc_close_range(unsigned first, unsigned last, int flags);
int kq__libc_close_range(unsigned first, unsigned last, int flags)
{
	return do_close_range(first, last, flags);
}
#endif
