/*
 * close(), dup2(), dup3() and close_range() interposed, so that closing an fd
 * removes its knotes as FreeBSD's kernel does (I4), and closing a kqueue
 * frees it and wakes its waiters.  The hooks run before the real call: epoll
 * registrations must be removed while the number still names the file.
 * The real calls are made with syscall(2), which works for the shared and
 * the static library alike.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kq_private.h"

int kq__sys_close(int fd)
{
	return (int)syscall(SYS_close, fd);
}

static void close_one_cb(struct kq *kq, void *arg)
{
	kq__fd_close(kq, *(int *)arg);
}

/* The fd side: every kqueue drops its knotes on the number. */
static void hook_close_fd(int fd)
{
	if (!KQ_BROKEN(KQ_BREAK_I4))
		kq__foreach(close_one_cb, &fd);
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

__attribute__((visibility("default"))) int close(int fd)
{
	hook_close(fd);
	return kq__sys_close(fd);
}

__attribute__((visibility("default"))) int dup3(int oldfd, int newfd, int flags)
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

__attribute__((visibility("default"))) int dup2(int oldfd, int newfd)
{
	if (oldfd == newfd)
		return fcntl(oldfd, F_GETFD) < 0 ? -1 : newfd;
	return dup3(oldfd, newfd, 0);
}

__attribute__((visibility("default"))) int close_range(unsigned int first, unsigned int last,
                                                       int flags)
{
	if (!(flags & CLOSE_RANGE_CLOEXEC) && first <= last) {
		struct range r = {first, last};
		kq__close_kqueue_range(first, last);
		kq__foreach(range_kq_cb, &r);
	}
	return (int)syscall(SYS_close_range, first, last, flags);
}
