/*
 * Several changes to one fd in one changelist, as FreeBSD's kqueue_kevent()
 * applies them: one by one, in order, each with its own result.  A change
 * that fails reports EV_ERROR with its errno (or, with no room for events,
 * ends the call with -1 and leaves the rest unread); EV_RECEIPT reports
 * every change, 0 on success, and with no room the list ends after the
 * first receipt (kqueue(2): "the changes are applied until an error or a
 * receipt finds no room").  Baton registers READ and WRITE of a new fd in
 * one epoll_ctl: none of that may show.  Also: a listening socket's READ
 * data is its backlog, a socket reused after a close the hooks did not see
 * is a new file to a pair of EV_ADDs.
 */
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/syscall.h>

#define BADFLAG 0x0800 /* not an EV_* flag: EINVAL */

static int apply(int kq, const struct kevent *ch, int n, struct kevent *out, int nout)
{
	struct timespec zero = {0, 0};
	if (out)
		memset(out, 0, sizeof(*out) * (size_t)nout);
	return kevent(kq, ch, n, out, nout, &zero);
}

/* Is (fd, filter) a knote of kq?  EV_DELETE would say ENOENT otherwise. */
static bool has_knote(int kq, int fd, short filter)
{
	struct kevent ch;
	EV_SET(&ch, fd, filter, EV_ENABLE, 0, 0, NULL);
	int r = kevent(kq, &ch, 1, NULL, 0, NULL);
	CHECK(r == 0 || errno == ENOENT);
	return r == 0;
}

static void read_and_write_in_one_list_both_fire(void)
{
	int kq = kq_new(), s[2];
	CHECK_EQ(socketpair_stream(s), 0);
	write_n(s[1], 5);
	struct kevent ch[2], ev[4];
	EV_SET(&ch[0], s[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	EV_SET(&ch[1], s[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, UD(2));
	int n = apply(kq, ch, 2, ev, 4);
	CHECK_EQ(n, 2);
	int r = find_ev(ev, n, (uintptr_t)s[0], EVFILT_READ);
	int w = find_ev(ev, n, (uintptr_t)s[0], EVFILT_WRITE);
	CHECK(r >= 0 && w >= 0);
	CHECK(ev[r].udata == UD(1) && ev[w].udata == UD(2));
	CHECK_EQ(ev[r].data, 5);
	CHECK(ev[w].data > 0);
	EXPECT_NONE(kq, 20); /* EV_CLEAR: nothing new */
	write_n(s[1], 2);
	/* WRITE may come again: an EV_CLEAR edge on Linux is any wake-up of
	 * the socket (CONTRACT.md) */
	n = kpoll(kq, ev, 4, 1000);
	r = find_ev(ev, n, (uintptr_t)s[0], EVFILT_READ);
	CHECK(r >= 0);
	CHECK_EQ(ev[r].data, 7);
	close(s[0]);
	close(s[1]);
	close(kq);
}

/* EV_ADD of an existing knote modifies it: the last udata wins, one knote. */
static void the_same_knote_added_twice_is_one_knote(void)
{
	int kq = kq_new(), s[2];
	CHECK_EQ(socketpair_stream(s), 0);
	struct kevent ch[3], ev[4];
	EV_SET(&ch[0], s[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(1));
	EV_SET(&ch[1], s[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	EV_SET(&ch[2], s[0], EVFILT_READ, EV_ADD, 0, 0, UD(3));
	CHECK_EQ(apply(kq, ch, 3, NULL, 0), 0);
	CHECK_EQ(kpoll(kq, ev, 4, 1000), 1);
	CHECK(ev[0].filter == EVFILT_WRITE && ev[0].udata == UD(2));
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void add_read_write_then_delete_one(void)
{
	int kq = kq_new(), s[2];
	CHECK_EQ(socketpair_stream(s), 0);
	struct kevent ch[3];
	EV_SET(&ch[0], s[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	EV_SET(&ch[1], s[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	EV_SET(&ch[2], s[0], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	CHECK_EQ(apply(kq, ch, 3, NULL, 0), 0);
	EXPECT_NONE(kq, 20); /* writable, but WRITE is gone */
	CHECK(!has_knote(kq, s[0], EVFILT_WRITE));
	write_n(s[1], 1);
	CHECK(EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, 1000).udata == UD(1));
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void receipts_come_in_order_with_zero(void)
{
	int kq = kq_new(), s[2];
	CHECK_EQ(socketpair_stream(s), 0);
	struct kevent ch[2], ev[4];
	EV_SET(&ch[0], s[0], EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, UD(1));
	EV_SET(&ch[1], s[0], EVFILT_WRITE, EV_ADD | EV_RECEIPT, 0, 0, UD(2));
	CHECK_EQ(apply(kq, ch, 2, ev, 4), 2);
	for (int i = 0; i < 2; i++) {
		CHECK(ev[i].flags & EV_ERROR);
		CHECK_EQ(ev[i].data, 0);
		CHECK(ev[i].udata == UD(i + 1));
	}
	CHECK_EQ(ev[0].filter, EVFILT_READ);
	CHECK_EQ(ev[1].filter, EVFILT_WRITE);
	CHECK(has_knote(kq, s[0], EVFILT_READ) && has_knote(kq, s[0], EVFILT_WRITE));
	close(s[0]);
	close(s[1]);
	close(kq);
}

/* With no room, the first receipt ends the list: the second is not applied. */
static void a_receipt_without_room_ends_the_list(void)
{
	int kq = kq_new(), s[2];
	CHECK_EQ(socketpair_stream(s), 0);
	struct kevent ch[2];
	EV_SET(&ch[0], s[0], EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, UD(1));
	EV_SET(&ch[1], s[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	CHECK_EQ(apply(kq, ch, 2, NULL, 0), 0);
	CHECK(has_knote(kq, s[0], EVFILT_READ));
	CHECK(!has_knote(kq, s[0], EVFILT_WRITE));
	close(s[0]);
	close(s[1]);
	close(kq);
}

/* One bad change of two: its error alone, the other applied either way. */
static void an_error_in_the_pair_leaves_the_other_applied(void)
{
	for (int bad = 0; bad < 2; bad++) {
		int kq = kq_new(), s[2];
		CHECK_EQ(socketpair_stream(s), 0);
		struct kevent ch[2], ev[4];
		EV_SET(&ch[0], s[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
		EV_SET(&ch[1], s[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
		ch[bad].flags |= BADFLAG;
		CHECK_EQ(apply(kq, ch, 2, ev, 4), 1);
		CHECK(ev[0].flags & EV_ERROR);
		CHECK_EQ(ev[0].data, EINVAL);
		CHECK(ev[0].udata == UD(bad + 1));
		CHECK_EQ(has_knote(kq, s[0], EVFILT_READ), bad != 0);
		CHECK_EQ(has_knote(kq, s[0], EVFILT_WRITE), bad != 1);
		close(s[0]);
		close(s[1]);
		close(kq);
	}
}

/* No room: the first error ends the call, the rest is not applied. */
static void an_error_without_room_stops_the_list(void)
{
	int kq = kq_new(), s[2];
	CHECK_EQ(socketpair_stream(s), 0);
	struct kevent ch[2];
	EV_SET(&ch[0], s[0], EVFILT_READ, EV_ADD | BADFLAG, 0, 0, UD(1));
	EV_SET(&ch[1], s[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	errno = 0;
	CHECK_EQ(apply(kq, ch, 2, NULL, 0), -1);
	CHECK_EQ(errno, EINVAL);
	CHECK(!has_knote(kq, s[0], EVFILT_READ));
	CHECK(!has_knote(kq, s[0], EVFILT_WRITE));
	close(s[0]);
	close(s[1]);
	close(kq);
}

/* A closed number: each change says EBADF, in order, nothing is left. */
static void a_pair_on_a_closed_fd_is_two_ebadf(void)
{
	int kq = kq_new(), s[2];
	CHECK_EQ(socketpair_stream(s), 0);
	close(s[0]);
	struct kevent ch[3], ev[4];
	EV_SET(&ch[0], s[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	EV_SET(&ch[1], s[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	EV_SET(&ch[2], s[1], EVFILT_WRITE, EV_ADD, 0, 0, UD(3));
	CHECK_EQ(apply(kq, ch, 3, ev, 4), 2);
	for (int i = 0; i < 2; i++) {
		CHECK(ev[i].flags & EV_ERROR);
		CHECK_EQ(ev[i].data, EBADF);
		CHECK(ev[i].udata == UD(i + 1));
	}
	CHECK(EXPECT_ONE(kq, (uintptr_t)s[1], EVFILT_WRITE, 1000).udata == UD(3));
	close(s[1]);
	close(kq);
}

/* EMPTY is for sockets only: the pair's other change is applied alone. */
static void empty_on_a_pipe_in_a_pair_is_einval_alone(void)
{
	int kq = kq_new(), p[2];
	CHECK_EQ(pipe(p), 0);
	struct kevent ch[2], ev[4];
	EV_SET(&ch[0], p[1], EVFILT_WRITE, EV_ADD, 0, 0, UD(1));
	EV_SET(&ch[1], p[1], EVFILT_EMPTY, EV_ADD, 0, 0, UD(2));
	CHECK_EQ(apply(kq, ch, 2, ev, 4), 1);
	CHECK(ev[0].flags & EV_ERROR);
	CHECK_EQ(ev[0].data, EINVAL);
	CHECK_EQ(ev[0].filter, EVFILT_EMPTY);
	CHECK(EXPECT_ONE(kq, (uintptr_t)p[1], EVFILT_WRITE, 1000).udata == UD(1));
	close(p[0]);
	close(p[1]);
	close(kq);
}

/*
 * A listening socket's READ: data is the number of connections waiting
 * (FreeBSD's so_qlen), never a byte count; EMPTY is always true on it.  A
 * connection accepted from it, added READ+WRITE in one list, then EMPTY:
 * its send queue is empty, EMPTY fires with data 0.
 */
static void listening_and_accepted_sockets(void)
{
	int kq = kq_new();
	struct sockaddr_in a;
	int l = tcp_listener(&a);
	KOK(kq, (uintptr_t)l, EVFILT_READ, EV_ADD, 0, 0, UD(1));
	EXPECT_NONE(kq, 20);
	int c1 = socket(AF_INET, SOCK_STREAM, 0), c2 = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(c1, (struct sockaddr *)&a, sizeof a) == 0);
	CHECK(connect(c2, (struct sockaddr *)&a, sizeof a) == 0);
	usleep(20000);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)l, EVFILT_READ, 1000);
	CHECK(e.udata == UD(1));
	CHECK_EQ(e.data, 2);
	CHECK(!(e.flags & EV_EOF));
	int s = accept(l, NULL, NULL);
	CHECK(s >= 0);
	KOK(kq, (uintptr_t)l, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	struct kevent ch[2], ev[4];
	EV_SET(&ch[0], s, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(2));
	EV_SET(&ch[1], s, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, UD(3));
	CHECK_EQ(apply(kq, ch, 2, ev, 4), 1);
	CHECK(ev[0].filter == EVFILT_WRITE && ev[0].udata == UD(3));
	KOK(kq, (uintptr_t)s, EVFILT_EMPTY, EV_ADD | EV_ONESHOT, 0, 0, UD(4));
	e = EXPECT_ONE(kq, (uintptr_t)s, EVFILT_EMPTY, 1000);
	CHECK_EQ(e.data, 0);
	write_n(c1, 3);
	int n = kpoll(kq, ev, 4, 1000), r = find_ev(ev, n, (uintptr_t)s, EVFILT_READ);
	CHECK(r >= 0 && find_ev(ev, n, (uintptr_t)s, EVFILT_EMPTY) < 0);
	CHECK_EQ(ev[r].data, 3);
	KOK(kq, (uintptr_t)l, EVFILT_EMPTY, EV_ADD, 0, 0, UD(5));
	CHECK(EXPECT_ONE(kq, (uintptr_t)l, EVFILT_EMPTY, 1000).udata == UD(5));
	close(s);
	close(c1);
	close(c2);
	close(l);
	close(kq);
}

/*
 * A socket's knotes, then a close the hooks did not see and a new socket on
 * the number: a READ+WRITE pair registers the new one (its data, its
 * udata); so does an EV_ADD after all its knotes were disabled.
 */
static void unseen_close_and_reuse(void)
{
	for (int disabled = 0; disabled < 2; disabled++) {
		int kq = kq_new(), a[2], b[2];
		CHECK_EQ(socketpair_stream(a), 0);
		struct kevent ch[2], ev[4];
		EV_SET(&ch[0], a[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
		EV_SET(&ch[1], a[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, UD(1));
		CHECK_EQ(apply(kq, ch, 2, ev, 4), 1);
		if (disabled) {
			EV_SET(&ch[0], a[0], EVFILT_READ, EV_DISABLE, 0, 0, NULL);
			EV_SET(&ch[1], a[0], EVFILT_WRITE, EV_DISABLE, 0, 0, NULL);
			CHECK_EQ(apply(kq, ch, 2, NULL, 0), 0);
		}
		int fd = a[0];
		CHECK_EQ(syscall(SYS_close, a[0]), 0);
		CHECK_EQ(syscall(SYS_close, a[1]), 0);
		CHECK_EQ(socketpair_stream(b), 0);
		CHECK_EQ(b[0], fd);
		write_n(b[1], 4);
		EV_SET(&ch[0], fd, EVFILT_READ, EV_ADD, 0, 0, UD(2));
		EV_SET(&ch[1], fd, EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
		int n = apply(kq, ch, 2, ev, 4);
		CHECK_EQ(n, 2);
		int r = find_ev(ev, n, (uintptr_t)fd, EVFILT_READ);
		CHECK(r >= 0 && find_ev(ev, n, (uintptr_t)fd, EVFILT_WRITE) >= 0);
		CHECK(ev[0].udata == UD(2) && ev[1].udata == UD(2));
		CHECK_EQ(ev[r].data, 4);
		close(b[0]);
		close(b[1]);
		close(kq);
	}
}

int main(void)
{
	RUN(read_and_write_in_one_list_both_fire);
	RUN(the_same_knote_added_twice_is_one_knote);
	RUN(add_read_write_then_delete_one);
	RUN(receipts_come_in_order_with_zero);
	RUN(a_receipt_without_room_ends_the_list);
	RUN(an_error_in_the_pair_leaves_the_other_applied);
	RUN(an_error_without_room_stops_the_list);
	RUN(a_pair_on_a_closed_fd_is_two_ebadf);
	RUN(empty_on_a_pipe_in_a_pair_is_einval_alone);
	RUN(listening_and_accepted_sockets);
	RUN(unseen_close_and_reuse);
	return 0;
}
