/*
 * close(), dup2(), dup3() and close_range() remove the knotes of the fd
 * they close; a new file that reuses the number never gets an event of the
 * old one, and EV_ADD on it works (CONTRACT.md "Waiting", SEMANTICS I4).
 */
#include "util.h"

#include <linux/close_range.h>
#include <sys/eventfd.h>

/* Puts fd at a number >= at (and closes the original). */
static int move_fd(int fd, int at)
{
	int n = fcntl(fd, F_DUPFD, at);
	CHECK(n >= at);
	CHECK_EQ(close(fd), 0);
	return n;
}

static void close_removes_the_knotes_of_the_fd(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	write_n(sv[1], 5);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	CHECK(kq_readable(kq, 200));
	int fd = sv[0];
	CHECK_EQ(close(sv[0]), 0);
	EXPECT_NONE(kq, 20);
	/* the number is free: changes on it are EBADF, not ENOENT */
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0), EBADF);
	/* reuse the number: no old knote, EV_ADD works */
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK_EQ(p[0], fd);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_WRITE, EV_DELETE, 0, 0), ENOENT);
	EXPECT_NONE(kq, 20);
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	EXPECT_NONE(kq, 20);
	write_n(p[1], 3);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 100);
	CHECK_EQ(e.data, 3);
	CHECK(e.udata == UD(2));
	close(p[0]);
	close(p[1]);
	close(sv[1]);
	close(kq);
}

static void pending_event_of_a_closed_fd_is_not_returned_for_its_successor(void)
{
	int kq = kq_new();
	for (int round = 0; round < 50; round++) {
		int efd = eventfd(1, 0); /* readable at once */
		CHECK(efd >= 0);
		KOK(kq, (uintptr_t)efd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(1));
		CHECK(kq_readable(kq, 200));
		CHECK_EQ(close(efd), 0);
		int again = eventfd(0, 0); /* same number, not readable */
		CHECK_EQ(again, efd);
		EXPECT_NONE(kq, 0);
		KOK(kq, (uintptr_t)again, EVFILT_READ, EV_ADD, 0, 0, UD(2));
		EXPECT_NONE(kq, 0);
		uint64_t one = 1;
		CHECK(write(again, &one, 8) == 8);
		struct kevent e = EXPECT_ONE(kq, (uintptr_t)again, EVFILT_READ, 100);
		CHECK(e.udata == UD(2));
		CHECK_EQ(close(again), 0);
	}
	close(kq);
}

static void close_of_a_dup_removes_only_that_fds_knotes(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	int d = dup(p[0]);
	CHECK(d >= 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	KOK(kq, (uintptr_t)d, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	write_n(p[1], 1);
	struct kevent ev[4];
	CHECK_EQ(kpoll(kq, ev, 4, 100), 2);
	/* the file stays open through d, but p[0]'s knote goes */
	int old = p[0];
	CHECK_EQ(close(p[0]), 0);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)d, EVFILT_READ, 50);
	CHECK(e.udata == UD(2));
	KOK(kq, (uintptr_t)d, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	write_n(p[1], 1);
	EXPECT_NONE(kq, 20);
	CHECK_EQ(kchange_err(kq, (uintptr_t)old, EVFILT_READ, EV_DELETE, 0, 0), EBADF);
	close(d);
	close(p[1]);
	close(kq);
}

/*
 * A dispatched knote's fired registration is left in epoll by the close (it
 * reports nothing until modified): with the file kept open by a dup, nothing
 * of it comes back, neither to the dup nor to files that take the number, nor
 * once the file itself is dup'd back onto the number and added anew.
 */
static void close_of_a_dispatched_fd_whose_file_lives_on(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(1));
	write_n(sv[1], 1);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 100);
	CHECK(e.udata == UD(1));
	int fd = sv[0], d = dup(sv[0]);
	CHECK(d >= 0);
	CHECK_EQ(close(sv[0]), 0);
	write_n(sv[1], 2);
	EXPECT_NONE(kq, 30);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_ENABLE, 0, 0), EBADF);
	/* another file on the number: only its own events, under its knote */
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK_EQ(p[0], fd);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_ENABLE, 0, 0), ENOENT);
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(2));
	EXPECT_NONE(kq, 20);
	write_n(p[1], 4);
	e = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 100);
	CHECK(e.udata == UD(2));
	CHECK_EQ(e.data, 4);
	CHECK_EQ(close(p[0]), 0);
	close(p[1]);
	/* the old socket back on its number, added anew: 3 bytes wait */
	CHECK_EQ(dup2(d, fd), fd);
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, UD(3));
	e = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 100);
	CHECK(e.udata == UD(3));
	CHECK_EQ(e.data, 3);
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	close(fd);
	close(d);
	close(sv[1]);
	close(kq);
}

static void close_removes_knotes_in_every_kqueue(void)
{
	int kq1 = kq_new(), kq2 = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	write_n(p[1], 1);
	KOK(kq1, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	KOK(kq2, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	close(p[0]);
	EXPECT_NONE(kq1, 20);
	EXPECT_NONE(kq2, 20);
	close(p[1]);
	close(kq1);
	close(kq2);
}

static void dup2_over_a_registered_fd_removes_its_knotes(void)
{
	int kq = kq_new();
	int a[2], b[2];
	CHECK(pipe(a) == 0);
	CHECK(pipe(b) == 0);
	write_n(a[1], 1);
	write_n(b[1], 1);
	KOK(kq, (uintptr_t)a[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	CHECK(kq_readable(kq, 200));
	/* a[0] now names b's read end: the knote on a's file is gone */
	CHECK_EQ(dup2(b[0], a[0]), a[0]);
	EXPECT_NONE(kq, 20);
	CHECK_EQ(kchange_err(kq, (uintptr_t)a[0], EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	KOK(kq, (uintptr_t)a[0], EVFILT_READ, EV_ADD, 0, 0, UD(3));
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)a[0], EVFILT_READ, 50);
	CHECK(e.udata == UD(3));
	CHECK_EQ(e.data, 1);
	/* dup3 likewise */
	int c[2];
	CHECK(pipe(c) == 0);
	CHECK_EQ(dup3(c[0], a[0], O_CLOEXEC), a[0]);
	EXPECT_NONE(kq, 20);
	CHECK_EQ(kchange_err(kq, (uintptr_t)a[0], EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	close(c[0]);
	close(c[1]);
	close(kq);
}

static void dup2_onto_itself_keeps_the_knotes(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	CHECK_EQ(dup2(p[0], p[0]), p[0]);
	write_n(p[1], 1);
	EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 50);
	/* dup3 onto itself is EINVAL and changes nothing */
	errno = 0;
	CHECK_EQ(dup3(p[0], p[0], 0), -1);
	CHECK_EQ(errno, EINVAL);
	EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 50);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void dup2_of_the_registered_fd_elsewhere_keeps_its_knotes(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	int other = eventfd(0, 0);
	CHECK(other >= 0);
	CHECK_EQ(dup2(p[0], other), other); /* closes the eventfd, not p[0] */
	write_n(p[1], 1);
	EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 50);
	close(other);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void close_range_removes_the_knotes_of_the_range(void)
{
	int kq = kq_new();
	enum { BASE = 700, N = 6 };
	int r[N], w[N];
	for (int i = 0; i < N; i++) {
		int p[2];
		CHECK(pipe(p) == 0);
		r[i] = move_fd(p[0], BASE + i);
		CHECK_EQ(r[i], BASE + i);
		w[i] = p[1];
		write_n(w[i], 1);
		KOK(kq, (uintptr_t)r[i], EVFILT_READ, EV_ADD, 0, 0, NULL);
	}
	struct kevent ev[N];
	CHECK_EQ(kpoll(kq, ev, N, 100), N);
	/* close 701..703 */
	CHECK_EQ(close_range(BASE + 1, BASE + 3, 0), 0);
	int n = kpoll(kq, ev, N, 20);
	CHECK_EQ(n, 3);
	CHECK(find_ev(ev, n, BASE + 0, EVFILT_READ) >= 0);
	CHECK(find_ev(ev, n, BASE + 4, EVFILT_READ) >= 0);
	CHECK(find_ev(ev, n, BASE + 5, EVFILT_READ) >= 0);
	/* CLOSE_RANGE_CLOEXEC closes nothing: the knotes stay */
	CHECK_EQ(close_range(BASE, BASE + 5, CLOSE_RANGE_CLOEXEC), 0);
	CHECK_EQ(kpoll(kq, ev, N, 20), 3);
	/* an open-ended range */
	CHECK_EQ(close_range(BASE + 4, ~0U, 0), 0);
	n = kpoll(kq, ev, N, 20);
	CHECK_EQ(n, 1);
	CHECK_EQ(ev[0].ident, BASE + 0);
	close(BASE + 0);
	EXPECT_NONE(kq, 20);
	for (int i = 0; i < N; i++)
		close(w[i]);
	close(kq);
}

static void close_range_over_a_kqueue_fd_frees_it(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	CHECK_EQ(close_range((unsigned)kq, (unsigned)kq, 0), 0);
	struct kevent ev;
	struct timespec zero = {0, 0};
	errno = 0;
	CHECK_EQ(kevent(kq, NULL, 0, &ev, 1, &zero), -1);
	CHECK_EQ(errno, EBADF);
	/* a kqueue that reuses the number starts empty */
	int kq2 = kq_new();
	CHECK_EQ(kq2, kq);
	EXPECT_NONE(kq2, 0);
	CHECK_EQ(kchange_err(kq2, 1, EVFILT_USER, EV_DELETE, 0, 0), ENOENT);
	close(kq2);
}

static void interposed_calls_keep_their_error_behaviour(void)
{
	errno = 0;
	CHECK_EQ(close(-1), -1);
	CHECK_EQ(errno, EBADF);
	errno = 0;
	CHECK_EQ(close(900), -1);
	CHECK_EQ(errno, EBADF);
	errno = 0;
	CHECK_EQ(dup2(900, 901), -1);
	CHECK_EQ(errno, EBADF);
	errno = 0;
	CHECK_EQ(dup3(900, 901, 0), -1);
	CHECK_EQ(errno, EBADF);
	errno = 0;
	CHECK_EQ(close_range(10, 5, 0), -1);
	CHECK_EQ(errno, EINVAL);
	int p[2];
	CHECK(pipe(p) == 0);
	errno = 0;
	CHECK_EQ(dup3(p[0], 905, 0x4000000), -1); /* unknown flag */
	CHECK_EQ(errno, EINVAL);
	CHECK(!fd_is_open(905));
	CHECK_EQ(dup2(p[0], 905), 905);
	CHECK(fd_is_open(905));
	CHECK_EQ(close(905), 0);
	close(p[0]);
	close(p[1]);
}

/*
 * close_range() with a flag the kernel does not know fails with EINVAL and
 * closes nothing: a kqueue in the range stays a kqueue, and the knotes of
 * the fds in it stay.
 */
static void close_range_that_fails_closes_nothing(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(3));
	unsigned lo = (unsigned)(kq < p[0] ? kq : p[0]), hi = (unsigned)(kq > p[1] ? kq : p[1]);
	errno = 0;
	CHECK_EQ(close_range(lo, hi, 0x40000000), -1);
	CHECK_EQ(errno, EINVAL);
	CHECK(fd_is_open(kq) && fd_is_open(p[0]));
	write_n(p[1], 1);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 200);
	CHECK(e.udata == UD(3));
	close(p[0]);
	close(p[1]);
	close(kq);
}

int main(void)
{
	RUN(close_removes_the_knotes_of_the_fd);
	RUN(pending_event_of_a_closed_fd_is_not_returned_for_its_successor);
	RUN(close_of_a_dup_removes_only_that_fds_knotes);
	RUN(close_of_a_dispatched_fd_whose_file_lives_on);
	RUN(close_removes_knotes_in_every_kqueue);
	RUN(dup2_over_a_registered_fd_removes_its_knotes);
	RUN(dup2_onto_itself_keeps_the_knotes);
	RUN(dup2_of_the_registered_fd_elsewhere_keeps_its_knotes);
	RUN(close_range_removes_the_knotes_of_the_range);
	RUN(close_range_over_a_kqueue_fd_frees_it);
	RUN(interposed_calls_keep_their_error_behaviour);
	RUN(close_range_that_fails_closes_nothing);
	return 0;
}
