/*
 * close(), dup2(), dup3() and close_range() interposed, so that closing an fd
 * removes its knotes as FreeBSD's kernel does (I4), and closing a kqueue
 * frees it and wakes its waiters.  The hooks run before the real call: epoll
 * registrations must be removed while the number still names the file.
 * The real calls are made with syscall(2), which works for the shared and
 * the static library alike.
 *
 * Each hook has a kqueue side (the number may name a kqueue: kqueue.c) and
 * an fd side (every kqueue drops its knotes on the number: filt_fd.c).
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
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kq_private.h"
#ifdef BATON_HAVE_LIBC_VERSIONS
#include "libc_versions.h"
#endif

#define KQ_EXPORT __attribute__((visibility("default")))

int kq__sys_close(int fd)
{
	return (int)syscall(SYS_close, fd);
}

/* ---- fd side: every kqueue drops its knotes on the numbers ---- */

static void close_one_cb(struct kq *kq, void *arg)
{
	kq__fd_close(kq, *(int *)arg);
}

static void hook_close_fd(int fd)
{
	if (!KQ_BROKEN(KQ_BREAK_I4))
		kq__foreach(close_one_cb, &fd);
}

struct range {
	unsigned first, last;
};

static void range_fd_cb(struct kq *kq, struct kq_fdent *fe, void *arg)
{
	struct range *r = arg;
	if ((unsigned)fe->fe_fd >= r->first && (unsigned)fe->fe_fd <= r->last)
		kq__fd_close(kq, fe->fe_fd);
}

static void range_kq_cb(struct kq *kq, void *arg)
{
	if (!KQ_BROKEN(KQ_BREAK_I4))
		kq__fdt_foreach(kq, range_fd_cb, arg);
}

static void hook_close_range_fd(unsigned first, unsigned last)
{
	struct range r = {first, last};
	kq__foreach(range_kq_cb, &r);
}

/*
 * A kqueue's number is an fd like any other: other kqueues may watch it, so
 * its knotes go too (FreeBSD's fdclose does not care what the file is).
 */
static void hook_close(int fd)
{
	kq__close_kqueue(fd);
	hook_close_fd(fd);
}

/* ---- the entry points ---- */

static int do_close(int fd)
{
	hook_close(fd);
	return kq__sys_close(fd);
}

static int do_dup3(int oldfd, int newfd, int flags)
{
	if (oldfd == newfd || (flags & ~O_CLOEXEC)) {
		errno = EINVAL;
		return -1;
	}
	if (fcntl(oldfd, F_GETFD) < 0)
		return -1; /* EBADF, and newfd stays open */
	hook_close(newfd);
	return (int)syscall(SYS_dup3, oldfd, newfd, flags);
}

static int do_dup2(int oldfd, int newfd)
{
	if (oldfd == newfd)
		return fcntl(oldfd, F_GETFD) < 0 ? -1 : newfd;
	return do_dup3(oldfd, newfd, 0);
}

static int do_close_range(unsigned first, unsigned last, int flags)
{
	if (!(flags & CLOSE_RANGE_CLOEXEC) && first <= last) {
		kq__close_kqueue_range(first, last);
		hook_close_range_fd(first, last);
	}
	return (int)syscall(SYS_close_range, first, last, flags);
}

KQ_EXPORT int close(int fd)
{
	return do_close(fd);
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
