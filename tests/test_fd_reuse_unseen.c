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

/* Both ends of a closed unseen; a new pair b takes a[0]'s number. */
static void reuse_by_a_socketpair(const int a[2], int b[2])
{
	raw_close(a[0]);
	raw_close(a[1]);
	CHECK_EQ(socketpair_stream(b), 0);
	CHECK_EQ(b[0], a[0]);
}

/*
 * a[0]'s READ and EVFILT_USER ident user in serial group gid, READ
 * delivered: the group is held.  Then a closed unseen and its number reused
 * by a new pair b.
 */
static void held_group_then_reuse(int kq, int a[2], uintptr_t user, uint64_t gid, int b[2])
{
	CHECK_EQ(socketpair_stream(a), 0);
	struct kevent ch[2];
	EV_SET(&ch[0], a[0], EVFILT_READ, EV_ADD | EV_SERIAL, 0, 0, UD(1));
	EV_SET(&ch[1], user, EVFILT_USER, EV_ADD | EV_SERIAL | EV_CLEAR, 0, 0, UD(1));
	ch[0].ext[1] = ch[1].ext[1] = gid;
	CHECK_EQ(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	write_n(a[1], 1);
	EXPECT_ONE(kq, (uintptr_t)a[0], EVFILT_READ, 1000);
	reuse_by_a_socketpair(a, b);
}

static void reuse_after_raw_close_registers_the_new_socket(void)
{
	int kq = kq_new();
	int a[2], b[2];
	CHECK_EQ(socketpair_stream(a), 0);
	KOK(kq, (uintptr_t)a[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	int fd = a[0];
	reuse_by_a_socketpair(a, b);
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
	reuse_by_a_socketpair(a, b);
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
	reuse_by_a_socketpair(a, b);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	EXPECT_NONE(kq, 50); /* no WRITE of the new socket under the old udata */
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_WRITE, EV_DISABLE, 0, 0), ENOENT);
	close(b[0]);
	close(b[1]);
	close(kq);
}

/* A regular file of n bytes, unlinked, open for reading. */
static int temp_file(size_t n)
{
	char path[] = "/tmp/baton-reuse-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK_EQ(unlink(path), 0);
	char buf[64] = {0};
	CHECK(n <= sizeof(buf));
	CHECK_EQ(write(fd, buf, n), (long)n);
	CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
	return fd;
}

/* A delivered EV_DISPATCH knote of a socket; the socket closed unseen. */
static int dispatched_then_closed_unseen(int kq, int *keep_old)
{
	int a[2];
	CHECK_EQ(socketpair_stream(a), 0);
	KOK(kq, (uintptr_t)a[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(1));
	write_n(a[1], 1);
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)a[0], EVFILT_READ, 1000);
	CHECK(ev.udata == UD(1));
	if (keep_old) {
		/* the old socket lives on under another number: its
		 * registration stays in the kernel, reporting to nobody */
		keep_old[0] = dup(a[0]);
		keep_old[1] = a[1];
		CHECK(keep_old[0] >= 0);
	} else {
		raw_close(a[1]);
	}
	raw_close(a[0]);
	return a[0];
}

/*
 * The number went to a regular file, which epoll refuses: the old knote's
 * re-arm must not take the file over with poll semantics.  FreeBSD: the close
 * took the knote, ENOENT.
 */
static void enable_after_unseen_close_and_reuse_by_a_file_is_enoent(void)
{
	int kq = kq_new();
	int fd = dispatched_then_closed_unseen(kq, NULL);
	int f = temp_file(5);
	CHECK_EQ(f, fd);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_ENABLE, 0, 0), ENOENT);
	EXPECT_NONE(kq, 50);
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 1000);
	CHECK(ev.udata == UD(2));
	CHECK_EQ(ev.data, 5);
	close(f);
	close(kq);
}

/* EV_ADD re-enabling the old knote's filter registers the file as new. */
static void readd_after_unseen_close_and_reuse_by_a_file(void)
{
	int kq = kq_new();
	int fd = dispatched_then_closed_unseen(kq, NULL);
	int f = temp_file(7);
	CHECK_EQ(f, fd);
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 1000);
	CHECK(ev.udata == UD(2));
	CHECK_EQ(ev.data, 7);
	CHECK(!(ev.flags & EV_DISPATCH)); /* a new knote, not the old one's flags */
	close(f);
	close(kq);
}

/*
 * EV_ADD that re-arms (the knote was dispatched), with the old socket still
 * open elsewhere: the new socket is registered anew and reports under the
 * new udata; the old one's data never comes back under the old (I4).
 */
static void readd_after_unseen_close_and_reuse_with_the_old_file_alive(void)
{
	int kq = kq_new(), old[2], b[2];
	int fd = dispatched_then_closed_unseen(kq, old);
	CHECK_EQ(socketpair_stream(b), 0);
	CHECK_EQ(b[0], fd);
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	EXPECT_NONE(kq, 20); /* the new socket is empty; the old byte is not its */
	write_n(old[1], 1);
	EXPECT_NONE(kq, 50);
	write_n(b[1], 3);
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 1000);
	CHECK(ev.udata == UD(2));
	CHECK_EQ(ev.data, 3);
	CHECK(!(ev.flags & EV_DISPATCH));
	close(old[0]);
	close(old[1]);
	close(b[0]);
	close(b[1]);
	close(kq);
}

/*
 * EV_ADD of the fd's other filter (its registration's mask changes) after
 * an unseen close and reuse: the old READ knote went with the close.
 */
static void add_of_the_other_filter_after_unseen_close_and_reuse(void)
{
	int kq = kq_new(), a[2], b[2];
	CHECK_EQ(socketpair_stream(a), 0);
	KOK(kq, (uintptr_t)a[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	int fd = a[0];
	reuse_by_a_socketpair(a, b);
	write_n(b[1], 2);
	KOK(kq, (uintptr_t)fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, UD(2));
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_WRITE, 1000);
	CHECK(ev.udata == UD(2));
	EXPECT_NONE(kq, 50); /* no READ under the old udata */
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	close(b[0]);
	close(b[1]);
	close(kq);
}

/*
 * An EV_ADD the old knote refuses (it may not leave its held serial group:
 * EBUSY) is a new knote's on the new file, and succeeds.
 */
static void readd_refused_by_the_old_knote_succeeds_on_the_new_file(void)
{
	int kq = kq_new(), a[2], b[2];
	held_group_then_reuse(kq, a, 77, 6000001, b);
	int fd = b[0];
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	write_n(b[1], 4);
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 1000);
	CHECK(ev.udata == UD(2));
	CHECK_EQ(ev.data, 4);
	close(b[0]);
	close(b[1]);
	close(kq);
}

/*
 * Both filters re-added in one changelist after an unseen close and reuse:
 * the first change finds the new file, the second is a new knote's too, and
 * nothing of the old knotes (udata 1) comes back.
 */
static void readd_of_both_filters_in_one_list_after_unseen_close_and_reuse(void)
{
	int kq = kq_new(), a[2], b[2];
	CHECK_EQ(socketpair_stream(a), 0);
	KOK(kq, (uintptr_t)a[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	KOK(kq, (uintptr_t)a[0], EVFILT_WRITE, EV_ADD | EV_DISPATCH, 0, 0, UD(1));
	EXPECT_ONE(kq, (uintptr_t)a[0], EVFILT_WRITE, 1000);
	int fd = a[0];
	reuse_by_a_socketpair(a, b);
	write_n(b[1], 6);
	struct kevent ch[2], ev[4];
	EV_SET(&ch[0], fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, UD(2));
	EV_SET(&ch[1], fd, EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(2));
	CHECK_EQ(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	int n = kpoll(kq, ev, 4, 1000);
	CHECK_EQ(n, 2);
	for (int i = 0; i < n; i++) {
		CHECK(ev[i].udata == UD(2));
		CHECK(ev[i].filter == EVFILT_READ || ev[i].filter == EVFILT_WRITE);
		if (ev[i].filter == EVFILT_READ) {
			CHECK_EQ(ev[i].data, 6);
			CHECK(ev[i].flags & EV_DISPATCH);
		} else {
			CHECK(ev[i].flags & EV_CLEAR);
			CHECK(!(ev[i].flags & EV_DISPATCH));
		}
	}
	EXPECT_NONE(kq, 50); /* READ dispatched, WRITE edge: quiet now */
	close(b[0]);
	close(b[1]);
	close(kq);
}

/*
 * EV_ADD | EV_ENABLE of a serial knote would release its group: after an
 * unseen close and reuse it is the new socket's knote that is made, in a
 * group of its own that nobody holds, and the old knote's group (held, with
 * a member elsewhere) is not released by it.
 */
static void serial_readd_with_enable_after_unseen_close_and_reuse(void)
{
	int kq = kq_new(), a[2], b[2];
	held_group_then_reuse(kq, a, 78, 6000002, b);
	int fd = b[0];
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD | EV_ENABLE | EV_SERIAL, 0, 0, UD(2));
	write_n(b[1], 5);
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 1000);
	CHECK(ev.udata == UD(2));
	CHECK_EQ(ev.data, 5);
	CHECK(ev.ext[1] != 6000002);
	/* the old group is still held: its other member waits */
	KOK(kq, 78, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	EXPECT_NONE(kq, 50);
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
	RUN(enable_after_unseen_close_and_reuse_by_a_file_is_enoent);
	RUN(readd_after_unseen_close_and_reuse_by_a_file);
	RUN(readd_after_unseen_close_and_reuse_with_the_old_file_alive);
	RUN(add_of_the_other_filter_after_unseen_close_and_reuse);
	RUN(readd_refused_by_the_old_knote_succeeds_on_the_new_file);
	RUN(readd_of_both_filters_in_one_list_after_unseen_close_and_reuse);
	RUN(serial_readd_with_enable_after_unseen_close_and_reuse);
	RUN(devices_without_kqueue_support_are_enodev);
	return 0;
}
