/*
 * An fd closed where the close hooks cannot see it (a raw
 * syscall(SYS_close), fclose() inside libc) still leaves its number to a new
 * file: EV_ADD on the new file registers it and its events come, never one
 * with the old udata (SEMANTICS I4, CONTRACT.md "Changes").  And devices for
 * which FreeBSD has no kqueue filter fail at EV_ADD with ENODEV, as there,
 * instead of a knote that never fires.
 */
#include "util.h"

#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

static void raw_close(int fd)
{
	CHECK_EQ(syscall(SYS_close, fd), 0);
}

static void reuse_after_raw_close_registers_the_new_socket(void)
{
	int kq = kq_new();
	int a[2], b[2];
	CHECK_EQ(socketpair_stream(a), 0);
	KOK(kq, (uintptr_t)a[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	int fd = a[0];
	raw_close(a[0]);
	raw_close(a[1]);
	CHECK_EQ(socketpair_stream(b), 0);
	CHECK_EQ(b[0], fd);
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	EXPECT_NONE(kq, 20);
	write_n(b[1], 3);
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 1000);
	CHECK(ev.udata == UD(2));
	CHECK_EQ(ev.data, 3);
	close(b[0]);
	close(b[1]);
	close(kq);
}

static void reuse_after_fclose_registers_the_new_pipe(void)
{
	int kq = kq_new();
	int p[2], q[2];
	CHECK_EQ(pipe(p), 0);
	FILE *f = fdopen(p[0], "r");
	CHECK(f != NULL);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ADD | EV_DISPATCH, 0, 0, UD(1));
	int fd = p[0];
	CHECK_EQ(fclose(f), 0);
	raw_close(p[1]);
	CHECK_EQ(pipe(q), 0);
	CHECK_EQ(q[0], fd);
	KOK(kq, (uintptr_t)q[0], EVFILT_READ, EV_ADD, 0, 0, UD(2));
	KOK(kq, (uintptr_t)q[1], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)q[1], EVFILT_WRITE, 1000);
	CHECK(ev.udata == UD(2));
	KOK(kq, (uintptr_t)q[1], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	write_n(q[1], 4);
	ev = EXPECT_ONE(kq, (uintptr_t)q[0], EVFILT_READ, 1000);
	CHECK(ev.udata == UD(2));
	CHECK_EQ(ev.data, 4);
	close(q[0]);
	close(q[1]);
	close(kq);
}

/* eventfds share one inode: the identity is not enough to tell them apart */
static void reuse_after_raw_close_registers_the_new_eventfd(void)
{
	int kq = kq_new();
	int e1 = eventfd(0, EFD_NONBLOCK);
	CHECK(e1 >= 0);
	KOK(kq, (uintptr_t)e1, EVFILT_READ, EV_ADD, 0, 0, UD(1));
	raw_close(e1);
	int e2 = eventfd(0, EFD_NONBLOCK);
	CHECK_EQ(e2, e1);
	KOK(kq, (uintptr_t)e2, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	EXPECT_NONE(kq, 20);
	uint64_t one = 1;
	CHECK_EQ(write(e2, &one, sizeof(one)), (long)sizeof(one));
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)e2, EVFILT_READ, 1000);
	CHECK(ev.udata == UD(2));
	close(e2);
	close(kq);
}

/* A raw close with nothing reusing the number: EV_ADD says EBADF. */
static void add_after_raw_close_of_the_number_is_ebadf(void)
{
	int kq = kq_new();
	int a[2];
	CHECK_EQ(socketpair_stream(a), 0);
	KOK(kq, (uintptr_t)a[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	int fd = a[0];
	raw_close(a[0]);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0), EBADF);
	close(a[1]);
	close(kq);
}

/*
 * FreeBSD drops an fd's knotes when it is closed: a later change to them
 * (EV_ENABLE, EV_DISABLE, EV_DELETE) on a number that a new file took meets
 * no knote, ENOENT (kqueue_register's look-up, kern_event.c).  Here the close
 * went past the hooks; the old knotes must not move over to the new file, or
 * the old udata comes back with the new file's events (I4).
 */
static void enable_after_unseen_close_and_reuse_is_enoent(void)
{
	int kq = kq_new();
	int a[2], b[2];
	CHECK_EQ(socketpair_stream(a), 0);
	KOK(kq, (uintptr_t)a[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(1));
	write_n(a[1], 1);
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)a[0], EVFILT_READ, 1000);
	CHECK(ev.udata == UD(1)); /* delivered: disabled until EV_ENABLE */
	int fd = a[0];
	raw_close(a[0]);
	raw_close(a[1]);
	CHECK_EQ(socketpair_stream(b), 0);
	CHECK_EQ(b[0], fd);
	write_n(b[1], 2);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_ENABLE, 0, 0), ENOENT);
	EXPECT_NONE(kq, 50);
	/* the new file registers and reports as a new file */
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	ev = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 1000);
	CHECK(ev.udata == UD(2));
	CHECK_EQ(ev.data, 2);
	close(b[0]);
	close(b[1]);
	close(kq);
}

static void delete_of_one_filter_after_unseen_close_and_reuse(void)
{
	int kq = kq_new();
	int a[2], b[2];
	CHECK_EQ(socketpair_stream(a), 0);
	KOK(kq, (uintptr_t)a[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	KOK(kq, (uintptr_t)a[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)a[0], EVFILT_WRITE, 1000);
	CHECK(ev.udata == UD(1));
	int fd = a[0];
	raw_close(a[0]);
	raw_close(a[1]);
	CHECK_EQ(socketpair_stream(b), 0);
	CHECK_EQ(b[0], fd);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	EXPECT_NONE(kq, 50); /* no WRITE of the new socket under the old udata */
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_WRITE, EV_DISABLE, 0, 0), ENOENT);
	close(b[0]);
	close(b[1]);
	close(kq);
}

static void devices_without_kqueue_support_are_enodev(void)
{
	static const char *const devs[] = {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"};
	int kq = kq_new();
	for (size_t i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
		int fd = open(devs[i], O_RDONLY);
		CHECK(fd >= 0);
		int err = kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0);
		if (err != ENODEV)
			fprintf(stderr, "%s: EV_ADD gave %d\n", devs[i], err);
		CHECK_EQ(err, ENODEV);
		/* nothing was left behind */
		CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
		close(fd);
	}
	int fd = open("/dev/null", O_WRONLY);
	CHECK(fd >= 0);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_WRITE, EV_ADD, 0, 0), ENODEV);
	close(fd);
	EXPECT_NONE(kq, 20);
	close(kq);
}

int main(void)
{
	RUN(reuse_after_raw_close_registers_the_new_socket);
	RUN(reuse_after_fclose_registers_the_new_pipe);
	RUN(reuse_after_raw_close_registers_the_new_eventfd);
	RUN(add_after_raw_close_of_the_number_is_ebadf);
	RUN(enable_after_unseen_close_and_reuse_is_enoent);
	RUN(delete_of_one_filter_after_unseen_close_and_reuse);
	RUN(devices_without_kqueue_support_are_enodev);
	return 0;
}
