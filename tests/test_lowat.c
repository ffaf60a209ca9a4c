/*
 * NOTE_LOWAT, from FreeBSD's kqueue(2) and kern (filt_soread, filt_sowrite,
 * filt_piperead, filt_pipewrite): on a socket, READ is ready once data >=
 * the low-water mark given in data (or at EOF), WRITE once the free space
 * is; an EV_ADD with a new mark re-evaluates the knote at once; pipes have
 * no low-water mark (ready with any data / PIPE_BUF of room).
 */
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>

/* Runs one behaviour on a connected pair (writer, reader). */
#define RUN_ON(fn, w, r)                                                       \
	do {                                                                   \
		fprintf(stderr, "-- %s (%d -> %d)\n", #fn, (w), (r));          \
		fn((w), (r));                                                  \
	} while (0)

static void unix_pair(int sv[2])
{
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	set_nonblock(sv[0]);
	set_nonblock(sv[1]);
}

static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in addr;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(l >= 0);
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(l, (struct sockaddr *)&addr, sizeof addr) == 0);
	socklen_t len = sizeof addr;
	CHECK(getsockname(l, (struct sockaddr *)&addr, &len) == 0);
	CHECK(listen(l, 4) == 0);
	*a = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(*a >= 0);
	CHECK(connect(*a, (struct sockaddr *)&addr, sizeof addr) == 0);
	*b = accept(l, NULL, NULL);
	CHECK(*b >= 0);
	close(l);
	set_nonblock(*a);
	set_nonblock(*b);
}

/* Below the mark: nothing; at it: READ with all the data. */
static void read_below_and_at_the_mark(int a, int b)
{
	int kq = kq_new();
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_ADD, NOTE_LOWAT, 8, NULL);
	write_n(a, 3);
	EXPECT_NONE(kq, 50);
	write_n(a, 4);
	EXPECT_NONE(kq, 50);
	write_n(a, 1);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 500);
	CHECK_EQ(e.data, 8);
	/* level: stays ready while at the mark */
	e = EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 100);
	CHECK_EQ(e.data, 8);
	/* read below the mark again: quiet */
	read_n(b, 2);
	EXPECT_NONE(kq, 50);
	read_n(b, 6);
	close(kq);
}

/* EV_ADD with a new mark: the knote is looked at again with it, at once. */
static void readd_changes_the_mark(int a, int b)
{
	int kq = kq_new();
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_ADD, NOTE_LOWAT, 10, UD(1));
	write_n(a, 5);
	EXPECT_NONE(kq, 50);
	/* lower: ready now, with no new data */
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_ADD, NOTE_LOWAT, 4, UD(2));
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 500);
	CHECK_EQ(e.data, 5);
	CHECK(e.udata == UD(2));
	CHECK_EQ(e.fflags, 0);
	/* higher: quiet again, though the data is still there */
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_ADD, NOTE_LOWAT, 100, UD(3));
	EXPECT_NONE(kq, 50);
	write_n(a, 94);
	EXPECT_NONE(kq, 50);
	write_n(a, 1);
	e = EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 500);
	CHECK_EQ(e.data, 100);
	/* no mark at all: any byte */
	read_n(b, 99);
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_ADD, 0, 0, UD(4));
	e = EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 500);
	CHECK_EQ(e.data, 1);
	read_n(b, 1);
	EXPECT_NONE(kq, 30);
	close(kq);
}

/* A level knote re-added with a mark stops firing below it. */
static void readd_from_level_to_mark(int a, int b)
{
	int kq = kq_new();
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_ADD, 0, 0, NULL);
	write_n(a, 5);
	EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 500);
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_ADD, NOTE_LOWAT, 10, NULL);
	EXPECT_NONE(kq, 50);
	write_n(a, 5);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 500);
	CHECK_EQ(e.data, 10);
	read_n(b, 10);
	close(kq);
}

static void read_mark_on_sockets(void)
{
	int a, b, sv[2];
	tcp_pair(&a, &b);
	unix_pair(sv);
	RUN_ON(read_below_and_at_the_mark, a, b);
	RUN_ON(read_below_and_at_the_mark, sv[1], sv[0]);
	RUN_ON(readd_changes_the_mark, a, b);
	RUN_ON(readd_changes_the_mark, sv[1], sv[0]);
	RUN_ON(readd_from_level_to_mark, a, b);
	RUN_ON(readd_from_level_to_mark, sv[1], sv[0]);
	close(a);
	close(b);
	close(sv[0]);
	close(sv[1]);
}

/* WRITE: ready once the free space reaches the mark; re-add re-evaluates. */
static void write_mark(void)
{
	int kq = kq_new(), sv[2];
	unix_pair(sv);
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, NOTE_LOWAT, 1, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_WRITE, 500);
	int64_t room = e.data;
	CHECK(room > 0);
	/* more room than the buffer can ever have: never ready */
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, NOTE_LOWAT, room * 4, NULL);
	EXPECT_NONE(kq, 50);
	/* just the room there is: ready at once */
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, NOTE_LOWAT, room, NULL);
	e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_WRITE, 500);
	CHECK(e.data >= room);
	/* use some room: below the mark until the peer reads */
	write_n(sv[0], 1000);
	EXPECT_NONE(kq, 50);
	read_n(sv[1], 1000);
	e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_WRITE, 500);
	CHECK(e.data >= room);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

/* Pipes: FreeBSD's pipe filters have no low-water mark. */
static void pipes_have_no_mark(void)
{
	int kq = kq_new(), p[2];
	CHECK(pipe(p) == 0);
	set_nonblock(p[0]);
	set_nonblock(p[1]);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, NOTE_LOWAT, 100, NULL);
	write_n(p[1], 3);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 500);
	CHECK_EQ(e.data, 3);
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ADD, NOTE_LOWAT, 1 << 30, NULL);
	struct kevent ev[4];
	CHECK_EQ(kpoll(kq, ev, 4, 500), 2);
	int w = find_ev(ev, 2, (uintptr_t)p[1], EVFILT_WRITE);
	CHECK(w >= 0);
	CHECK(ev[w].data > 0);
	close(p[0]);
	close(p[1]);
	close(kq);
}

/* The mark is a byte count: negative is EINVAL, and nothing is changed. */
static void bad_marks(void)
{
	int kq = kq_new(), sv[2];
	unix_pair(sv);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, NOTE_LOWAT, 5, NULL);
	CHECK_EQ(kchange_err(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, NOTE_LOWAT, -1), EINVAL);
	write_n(sv[1], 3);
	EXPECT_NONE(kq, 50); /* the mark of 5 is still there */
	write_n(sv[1], 2);
	EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 500);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

int main(void)
{
	RUN(read_mark_on_sockets);
	RUN(write_mark);
	RUN(pipes_have_no_mark);
	RUN(bad_marks);
	return 0;
}
