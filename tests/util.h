/*
 * Helpers shared by the single-threaded semantic tests: one-change kevent()
 * calls, waiting for one event, finding an event in a list, counting open
 * fds.  Everything fails through harness.h's CHECK macros.
 */
#ifndef BATON_TEST_UTIL_H
#define BATON_TEST_UTIL_H

#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdint.h>
#include <sys/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define UD(x) ((void *)(uintptr_t)(x))

static inline int kq_new(void)
{
	int kq = kqueue();
	CHECK(kq >= 0);
	return kq;
}

/* A TCP socket listening on a free loopback port; its address in *addr. */
static inline int tcp_listener(struct sockaddr_in *addr)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(l >= 0);
	memset(addr, 0, sizeof *addr);
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(l, (struct sockaddr *)addr, sizeof *addr) == 0);
	socklen_t len = sizeof *addr;
	CHECK(getsockname(l, (struct sockaddr *)addr, &len) == 0);
	CHECK(listen(l, 16) == 0);
	return l;
}

/* Applies one change, no eventlist; returns kevent()'s result. */
static inline int kchange(int kq, uintptr_t ident, short filter,
			  unsigned short flags, unsigned int fflags,
			  int64_t data, void *udata)
{
	struct kevent ch;
	EV_SET(&ch, ident, filter, flags, fflags, data, udata);
	return kevent(kq, &ch, 1, NULL, 0, NULL);
}

/* Applies one change that must succeed. */
#define KOK(kq, ident, filter, flags, fflags, data, udata)                     \
	CHECK_EQ(kchange((kq), (ident), (filter), (flags), (fflags), (data),   \
			 (udata)), 0)

/*
 * Applies one change with no room for events, so nothing is collected;
 * returns the errno the change failed with, 0 if it succeeded.
 */
static inline int kchange_err(int kq, uintptr_t ident, short filter,
			      unsigned short flags, unsigned int fflags,
			      int64_t data)
{
	errno = 0;
	int n = kchange(kq, ident, filter, flags, fflags, data, NULL);
	if (n == 0)
		return 0;
	if (n != -1 || errno == 0) {
		fprintf(stderr, "kchange_err: kevent returned %d errno %d\n", n, errno);
		return -1;
	}
	return errno;
}

/* Collects up to n events waiting at most ms milliseconds (-1: forever). */
static inline int kpoll(int kq, struct kevent *out, int n, long ms)
{
	struct timespec ts = ts_ms(ms < 0 ? 0 : ms);
	memset(out, 0, sizeof(*out) * (size_t)(n > 0 ? n : 0));
	return kevent(kq, NULL, 0, out, n, ms < 0 ? NULL : &ts);
}

/* Checks that nothing is returned within ms milliseconds. */
#define EXPECT_NONE(kq, ms)                                                    \
	do {                                                                   \
		struct kevent en_ev_;                                          \
		int en_n_ = kpoll((kq), &en_ev_, 1, (ms));                     \
		if (en_n_ != 0)                                                \
			fprintf(stderr, "unexpected event ident %lu filter %d " \
				"flags 0x%x data %lld\n",                      \
				(unsigned long)en_ev_.ident, en_ev_.filter,    \
				en_ev_.flags, (long long)en_ev_.data);         \
		CHECK_EQ(en_n_, 0);                                            \
	} while (0)

/* Waits up to ms for exactly one event, which must be (ident, filter). */
static inline struct kevent expect_one_at(const char *file, int line, int kq,
					  uintptr_t ident, short filter,
					  long ms)
{
	struct kevent ev[4];
	int n = kpoll(kq, ev, 4, ms);
	if (n != 1 || ev[0].ident != ident || ev[0].filter != filter) {
		fprintf(stderr, "%s:%d: expected one event (%lu, %d), got %d",
			file, line, (unsigned long)ident, filter, n);
		for (int i = 0; i < n; i++)
			fprintf(stderr, " [%lu %d flags 0x%x data %lld]",
				(unsigned long)ev[i].ident, ev[i].filter,
				ev[i].flags, (long long)ev[i].data);
		fprintf(stderr, " (errno %d)\n", errno);
		exit(1);
	}
	return ev[0];
}
#define EXPECT_ONE(kq, ident, filter, ms)                                      \
	expect_one_at(__FILE__, __LINE__, (kq), (ident), (filter), (ms))

/* Index of (ident, filter) in ev[0..n), or -1. */
static inline int find_ev(const struct kevent *ev, int n, uintptr_t ident,
			  short filter)
{
	for (int i = 0; i < n; i++)
		if (ev[i].ident == ident && ev[i].filter == filter)
			return i;
	return -1;
}

/*
 * The fds open in this process (the walk's own directory fd left out): their
 * number, and when map is given, a bitmap of those below nbits.
 */
static inline int open_fds(unsigned char *map, int nbits)
{
	if (map)
		memset(map, 0, (size_t)(nbits + 7) / 8);
	DIR *d = opendir("/proc/self/fd");
	CHECK(d != NULL);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		n++;
		if (map && fd < nbits)
			map[fd / 8] |= (unsigned char)(1 << (fd % 8));
	}
	closedir(d);
	return n;
}

/* Number of open fds of this process. */
static inline int count_fds(void)
{
	return open_fds(NULL, 0);
}

static inline int fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

/*
 * Waits (up to 5 s) until thread tid sleeps in an epoll wait system call,
 * so that a signal sent next interrupts the wait and not the way there
 * (a loaded machine can take longer than any fixed sleep).
 */
static inline void read_task_file(pid_t tid, const char *name, char *buf, size_t size)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/%s", (int)tid, name);
	memset(buf, 0, size);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	ssize_t r = read(fd, buf, size - 1);
	close(fd);
	CHECK(r > 0);
}

static inline void wait_blocked_in_epoll(pid_t tid)
{
	for (int i = 0; i < 5000; i++) {
		char buf[32];
		read_task_file(tid, "syscall", buf, sizeof buf);
		long nr = strtol(buf, NULL, 10);
		if (nr == SYS_epoll_wait || nr == SYS_epoll_pwait || nr == SYS_epoll_pwait2)
			return;
		usleep(1000);
	}
	CHECK(!"thread never blocked in epoll_wait");
}

/* Waits (up to 5 s) until thread tid sleeps (state S), in whatever call. */
static inline void wait_asleep(pid_t tid)
{
	for (int i = 0; i < 5000; i++) {
		char buf[512];
		read_task_file(tid, "stat", buf, sizeof buf);
		char *end = strrchr(buf, ')');
		if (end && end[1] == ' ' && end[2] == 'S')
			return;
		usleep(1000);
	}
	CHECK(!"thread never slept");
}

/* Cancels thread t, which must end cancelled within 3 s. */
static inline void cancel_and_join(pthread_t t)
{
	CHECK(pthread_cancel(t) == 0);
	void *res = NULL;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 3;
	CHECK_EQ(pthread_timedjoin_np(t, &res, &until), 0);
	CHECK(res == PTHREAD_CANCELED);
}

/* A handler (or SIG_DFL / SIG_IGN) for sig with the given sa_flags. */
static inline void set_action(int sig, void (*fn)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = flags;
	CHECK(sigaction(sig, &sa, NULL) == 0);
}

static inline void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	CHECK(fl >= 0);
	CHECK(fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
}

static inline void write_n(int fd, size_t n)
{
	char buf[4096];
	memset(buf, 'x', sizeof buf);
	while (n > 0) {
		size_t k = n < sizeof buf ? n : sizeof buf;
		ssize_t w = write(fd, buf, k);
		CHECK(w > 0);
		n -= (size_t)w;
	}
}

static inline void read_n(int fd, size_t n)
{
	char buf[4096];
	while (n > 0) {
		size_t k = n < sizeof buf ? n : sizeof buf;
		ssize_t r = read(fd, buf, k);
		CHECK(r > 0);
		n -= (size_t)r;
	}
}

static inline int socketpair_stream(int sv[2])
{
	return socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
}

/* Waits up to ms for the kqueue fd to poll readable; returns 1 if it did. */
static inline int kq_readable(int kq, int ms)
{
	struct pollfd pfd = {kq, POLLIN, 0};
	int n = poll(&pfd, 1, ms);
	CHECK(n >= 0);
	return n == 1 && (pfd.revents & POLLIN);
}

#endif
