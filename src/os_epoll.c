/*
 * The backend: the only file that talks to epoll.
 *
 * Linux quirks this file and its callers work around:
 * - epoll keys a registration by (open file, fd number) and keeps it while any
 *   dup of the file is open, so close() alone does not remove it: the close
 *   hooks (fdhook.c) remove registrations before the real close, and every
 *   registration carries a generation so a stale event is recognised.
 * - EPOLLERR and EPOLLHUP are reported even when not asked for: a registration
 *   nobody wants is deleted, not modified to 0.
 * - Regular files and directories cannot be registered (EPERM): their knotes
 *   are served from the ready queue (filt_fd.c).
 * - An EPOLLONESHOT registration is disarmed, not removed, after it fires:
 *   re-arming is EPOLL_CTL_MOD.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kq_private.h"

int kq__ep_create(void)
{
	int fd = epoll_create1(EPOLL_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int kq__ep_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = {.events = events, .data.u64 = data};
	/*
	 * The system call itself, not libc's wrapper (the same one line):
	 * ThreadSanitizer intercepts the wrapper and counts it as a use of
	 * fd, and the close hook's EPOLL_CTL_DEL runs inside TSan's close()
	 * interceptor, after TSan already marked the number closed, so the
	 * next file on the number looked like a race.
	 */
	return syscall(SYS_epoll_ctl, epfd, op, fd, &ev) < 0 ? -errno : 0;
}

int kq__ep_wait(int epfd, void *evbuf, int max, int timeout_ms)
{
	int n = epoll_wait(epfd, evbuf, max, timeout_ms);
	return n < 0 ? -errno : n;
}
