/*
 * Serial groups (EV_SERIAL, CONTRACT.md "Serial groups"), one rule at a time,
 * single-threaded (a helper thread only where the rule names another
 * thread): the default group of a socket's READ and WRITE, explicit ids in
 * ext[1] (a timer and a user event joining a socket's group through its fd
 * number), the ext[1] returned, the hold (nothing returned until EV_ENABLE
 * of any member; the holding call may return several members), what
 * happens during a hold being kept, EV_DISPATCH and EV_ONESHOT members,
 * moving, joining and leaving (EBUSY while held), deleting and closing
 * members, dissolving, and EV_FORCEONESHOT on a held member.
 */
#include "util.h"

#include <pthread.h>

#ifndef EV_SERIAL
#error "EV_SERIAL is Baton's extension: <sys/event.h> must define it"
#endif

#define SHORT_MS 40  /* "nothing comes": how long we look */
#define LONG_MS 2000 /* "it comes": how long we are willing to wait */

/* One change with ext[1] = gid; returns 0 or the errno it failed with. */
static int gchange(int kq, uintptr_t ident, short filter, unsigned short flags,
		   unsigned fflags, int64_t data, void *udata, uint64_t gid)
{
	struct kevent ch;
	EV_SET(&ch, ident, filter, flags, fflags, data, udata);
	ch.ext[1] = gid;
	errno = 0;
	int n = kevent(kq, &ch, 1, NULL, 0, NULL);
	if (n == 0)
		return 0;
	CHECK_EQ(n, -1);
	return errno;
}

/* EV_ADD | EV_SERIAL | extra in group gid (0: the default group). */
#define SADD(kq, ident, filter, extra, fflags, data, udata, gid)               \
	CHECK_EQ(gchange((kq), (uintptr_t)(ident), (filter),                  \
			 EV_ADD | EV_SERIAL | (extra), (fflags), (data),       \
			 (udata), (gid)),                                      \
		 0)

/* EV_ENABLE of a member: releases its group. */
/* EV_KEEPUDATA: every change but EV_DELETE sets udata otherwise. */
#define RELEASE(kq, ident, filter)                                             \
	KOK((kq), (uintptr_t)(ident), (filter), EV_ENABLE | EV_KEEPUDATA, 0, 0, NULL)

#define TRIGGER(kq, ident)                                                     \
	KOK((kq), (ident), EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER, 0, NULL)

/* Checks an event is (ident, filter) of group gid, flags including EV_SERIAL. */
#define CHECK_MEMBER(e, id, filt, gid)                                         \
	do {                                                                   \
		CHECK_EQ((e).ident, (uintptr_t)(id));                          \
		CHECK_EQ((e).filter, (filt));                                  \
		CHECK_EQ((e).ext[1], (uint64_t)(gid));                         \
		CHECK((e).flags & EV_SERIAL);                                  \
		CHECK(!((e).flags & EV_ERROR));                                \
	} while (0)

static void sockpair(int sv[2])
{
	CHECK(socketpair_stream(sv) == 0);
	set_nonblock(sv[0]);
	set_nonblock(sv[1]);
}

static void drain_fd(int fd)
{
	char buf[4096];
	while (read(fd, buf, sizeof buf) > 0) {
	}
}

/* A kevent() call made by another thread. */
struct tcall {
	int kq;
	const struct kevent *ch;
	int nch;
	int nev;
	long ms;
	int n;
	int err;
	struct kevent ev[8];
};

static void *tcall_fn(void *p)
{
	struct tcall *t = p;
	struct timespec ts = ts_ms(t->ms);
	memset(t->ev, 0, sizeof t->ev);
	t->n = kevent(t->kq, t->ch, t->nch, t->ev, t->nev, &ts);
	t->err = errno;
	return NULL;
}

/* Runs kevent(kq, ch, nch, ev, 8, ms) in another thread; returns its result. */
static int call_in_thread(int kq, const struct kevent *ch, int nch, long ms,
			  struct kevent *out)
{
	struct tcall t = {kq, ch, nch, 8, ms, 0, 0, {{0}}};
	pthread_t tid;
	CHECK(pthread_create(&tid, NULL, tcall_fn, &t) == 0);
	CHECK(pthread_join(tid, NULL) == 0);
	if (out)
		memcpy(out, t.ev, sizeof t.ev);
	errno = t.err;
	return t.n;
}

/* ---- the default group; the hold ---- */

static void read_and_write_of_a_socket_share_the_default_group(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, UD(1), 0);
	SADD(kq, s[0], EVFILT_WRITE, 0, 0, 0, UD(2), 0);
	write_n(s[1], 5);
	struct kevent ev[8];
	/* the holding call returns both members (one epoll report of the fd) */
	int n = kpoll(kq, ev, 8, LONG_MS);
	CHECK_EQ(n, 2);
	int r = find_ev(ev, n, (uintptr_t)s[0], EVFILT_READ);
	int w = find_ev(ev, n, (uintptr_t)s[0], EVFILT_WRITE);
	CHECK(r >= 0 && w >= 0);
	CHECK_MEMBER(ev[r], s[0], EVFILT_READ, s[0]);
	CHECK_MEMBER(ev[w], s[0], EVFILT_WRITE, s[0]);
	CHECK(ev[r].udata == UD(1));
	CHECK(ev[w].udata == UD(2));
	CHECK_EQ(ev[r].data, 5);
	CHECK(ev[w].data > 0);
	/* flags: the knote's, EV_SERIAL kept (CONTRACT.md "Returned events") */
	CHECK_EQ(ev[r].flags, EV_SERIAL);
	CHECK_EQ(ev[w].flags, EV_SERIAL);
	/* held: both still ready, but neither a later call of this thread nor
	 * a call of another thread gets them */
	EXPECT_NONE(kq, SHORT_MS);
	EXPECT_NONE(kq, 0);
	CHECK_EQ(call_in_thread(kq, NULL, 0, SHORT_MS, NULL), 0);
	/* more data meanwhile: still nothing */
	write_n(s[1], 5);
	EXPECT_NONE(kq, SHORT_MS);
	/* EV_ENABLE of any member releases the group */
	RELEASE(kq, s[0], EVFILT_WRITE);
	n = kpoll(kq, ev, 8, LONG_MS);
	CHECK_EQ(n, 2);
	r = find_ev(ev, n, (uintptr_t)s[0], EVFILT_READ);
	CHECK(r >= 0 && find_ev(ev, n, (uintptr_t)s[0], EVFILT_WRITE) >= 0);
	CHECK_EQ(ev[r].data, 10);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, s[0], EVFILT_READ);
	n = kpoll(kq, ev, 8, LONG_MS);
	CHECK_EQ(n, 2);
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void a_held_group_does_not_hold_back_other_knotes(void)
{
	int kq = kq_new(), s[2], t[2];
	sockpair(s);
	sockpair(t);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, NULL, 0);
	KOK(kq, (uintptr_t)t[0], EVFILT_READ, EV_ADD, 0, 0, NULL); /* not serial */
	write_n(s[1], 1);
	EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS); /* s's group held */
	KOK(kq, 30, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL); /* not serial */
	EXPECT_ONE(kq, 30, EVFILT_USER, LONG_MS);               /* level, again and again */
	EXPECT_ONE(kq, 30, EVFILT_USER, LONG_MS);
	KOK(kq, 30, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	write_n(t[1], 1);
	EXPECT_ONE(kq, (uintptr_t)t[0], EVFILT_READ, LONG_MS);
	EXPECT_ONE(kq, (uintptr_t)t[0], EVFILT_READ, LONG_MS);
	close(t[0]);
	close(t[1]);
	EXPECT_NONE(kq, SHORT_MS);
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void another_thread_may_release(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, NULL, 0);
	write_n(s[1], 1);
	EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	EXPECT_NONE(kq, SHORT_MS);
	struct kevent ch;
	EV_SET(&ch, (uintptr_t)s[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	/* the other thread releases (nevents 0: applies the change only) */
	struct tcall t = {kq, &ch, 1, 0, 0, 0, 0, {{0}}};
	pthread_t tid;
	CHECK(pthread_create(&tid, NULL, tcall_fn, &t) == 0);
	CHECK(pthread_join(tid, NULL) == 0);
	CHECK_EQ(t.n, 0);
	EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	/* the other thread releases and waits in one call: it gets it */
	struct kevent ev[8];
	int n = call_in_thread(kq, &ch, 1, LONG_MS, ev);
	CHECK_EQ(n, 1);
	CHECK_MEMBER(ev[0], s[0], EVFILT_READ, s[0]);
	EXPECT_NONE(kq, SHORT_MS); /* held by the other thread's call now */
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void release_and_wait_in_one_call(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, NULL, 0);
	write_n(s[1], 3);
	EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	struct kevent ch, ev[4];
	struct timespec ts = ts_ms(LONG_MS);
	for (int i = 0; i < 3; i++) {
		EV_SET(&ch, (uintptr_t)s[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
		memset(ev, 0, sizeof ev);
		CHECK_EQ(kevent(kq, &ch, 1, ev, 4, &ts), 1);
		CHECK_MEMBER(ev[0], s[0], EVFILT_READ, s[0]);
		CHECK_EQ(ev[0].data, 3);
		EXPECT_NONE(kq, 0);
	}
	/* a release that finds nothing ready waits, and wakes for new data */
	drain_fd(s[0]);
	EV_SET(&ch, (uintptr_t)s[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	struct timespec shortts = ts_ms(SHORT_MS);
	CHECK_EQ(kevent(kq, &ch, 1, ev, 4, &shortts), 0);
	write_n(s[1], 1);
	EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void disable_of_a_member_does_not_release(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, NULL, 0);
	SADD(kq, 40, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL, (uint64_t)s[0]);
	struct kevent e = EXPECT_ONE(kq, 40, EVFILT_USER, LONG_MS);
	CHECK_MEMBER(e, 40, EVFILT_USER, s[0]);
	KOK(kq, 40, EVFILT_USER, EV_DISABLE | EV_KEEPUDATA, 0, 0, NULL);
	write_n(s[1], 1);
	EXPECT_NONE(kq, SHORT_MS);
	KOK(kq, (uintptr_t)s[0], EVFILT_READ, EV_DISABLE | EV_KEEPUDATA, 0, 0, NULL);
	KOK(kq, (uintptr_t)s[0], EVFILT_READ, EV_ENABLE | EV_KEEPUDATA, 0, 0, NULL); /* releases */
	e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, s[0], EVFILT_READ, s[0]);
	EXPECT_NONE(kq, SHORT_MS); /* the user event is still disabled */
	close(s[0]);
	close(s[1]);
	close(kq);
}

/* ---- explicit group ids ---- */

static void two_sockets_in_one_explicit_group(void)
{
	int kq = kq_new(), a[2], b[2], c[2];
	sockpair(a);
	sockpair(b);
	sockpair(c);
	const uint64_t gid = 1000000;
	SADD(kq, a[0], EVFILT_READ, 0, 0, 0, UD(1), gid);
	SADD(kq, b[0], EVFILT_READ, 0, 0, 0, UD(2), gid);
	SADD(kq, c[0], EVFILT_READ, 0, 0, 0, UD(3), gid + 1); /* another group */
	write_n(a[1], 1);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)a[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, a[0], EVFILT_READ, gid);
	CHECK(e.udata == UD(1));
	drain_fd(a[0]);
	write_n(b[1], 1);
	EXPECT_NONE(kq, SHORT_MS); /* b is in a's group, which is held */
	write_n(c[1], 1);
	e = EXPECT_ONE(kq, (uintptr_t)c[0], EVFILT_READ, LONG_MS); /* other group */
	CHECK_MEMBER(e, c[0], EVFILT_READ, gid + 1);
	/* EV_ENABLE of a member that was not returned releases just as well */
	RELEASE(kq, b[0], EVFILT_READ);
	e = EXPECT_ONE(kq, (uintptr_t)b[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, b[0], EVFILT_READ, gid);
	CHECK(e.udata == UD(2));
	drain_fd(b[0]);
	write_n(a[1], 1);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, a[0], EVFILT_READ);
	e = EXPECT_ONE(kq, (uintptr_t)a[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, a[0], EVFILT_READ, gid);
	/* both ready at the release: the holding call may take both */
	write_n(b[1], 1);
	RELEASE(kq, a[0], EVFILT_READ);
	struct kevent ev[8];
	int n = kpoll(kq, ev, 8, LONG_MS), got = n;
	CHECK(n >= 1);
	if (n == 1) { /* the other comes after a release, not before */
		EXPECT_NONE(kq, SHORT_MS);
		RELEASE(kq, a[0], EVFILT_READ);
		got += kpoll(kq, ev + 1, 7, LONG_MS);
	}
	CHECK(find_ev(ev, got, (uintptr_t)a[0], EVFILT_READ) >= 0);
	CHECK(find_ev(ev, got, (uintptr_t)b[0], EVFILT_READ) >= 0);
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
		close(c[i]);
	}
	close(kq);
}

static void a_socket_joins_another_sockets_default_group(void)
{
	int kq = kq_new(), a[2], b[2];
	sockpair(a);
	sockpair(b);
	SADD(kq, a[0], EVFILT_READ, 0, 0, 0, NULL, 0);
	/* b's READ with ext[1] = a[0]: a's default group */
	SADD(kq, b[0], EVFILT_READ, 0, 0, 0, NULL, (uint64_t)a[0]);
	write_n(b[1], 1);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)b[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, b[0], EVFILT_READ, a[0]);
	write_n(a[1], 1);
	EXPECT_NONE(kq, SHORT_MS);
	drain_fd(b[0]);
	RELEASE(kq, b[0], EVFILT_READ);
	e = EXPECT_ONE(kq, (uintptr_t)a[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, a[0], EVFILT_READ, a[0]);
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
	}
	close(kq);
}

static void timer_and_user_event_join_a_sockets_group_by_its_fd(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	const uint64_t gid = (uint64_t)s[0];
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, UD(1), 0);
	SADD(kq, 50, EVFILT_USER, EV_CLEAR, 0, 0, UD(2), gid);
	TRIGGER(kq, 50);
	struct kevent e = EXPECT_ONE(kq, 50, EVFILT_USER, LONG_MS);
	CHECK_MEMBER(e, 50, EVFILT_USER, gid);
	CHECK(e.udata == UD(2));
	/* the timer joins the held group (20 ms period) */
	double tadd0 = now_ms();
	SADD(kq, 51, EVFILT_TIMER, 0, 0, 20, UD(3), gid);
	double tadd1 = now_ms();
	/* the timer fires and data arrives: all kept back while held */
	write_n(s[1], 4);
	while (now_ms() - tadd0 < 150)
		EXPECT_NONE(kq, 30);
	double trel0 = now_ms();
	RELEASE(kq, s[0], EVFILT_READ);
	struct kevent ev[8];
	int n = kpoll(kq, ev, 8, LONG_MS);
	double trel1 = now_ms();
	CHECK_EQ(n, 2);
	int r = find_ev(ev, n, (uintptr_t)s[0], EVFILT_READ);
	int t = find_ev(ev, n, 51, EVFILT_TIMER);
	CHECK(r >= 0 && t >= 0);
	CHECK_MEMBER(ev[r], s[0], EVFILT_READ, gid);
	CHECK_MEMBER(ev[t], 51, EVFILT_TIMER, gid);
	CHECK(ev[t].udata == UD(3));
	CHECK_EQ(ev[r].data, 4);
	/* ~150 ms of a 20 ms timer: every expiration counted, in one event */
	CHECK(ev[t].data >= (int64_t)((trel0 - tadd1) / 20) - 1);
	CHECK(ev[t].data <= (int64_t)((trel1 - tadd0) / 20) + 1);
	CHECK(ev[t].data >= 5);
	/* one member of the group is another's group too: the user event is
	 * still held while the timer's call holds the group */
	TRIGGER(kq, 50);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, 51, EVFILT_TIMER);
	n = kpoll(kq, ev, 8, LONG_MS);
	CHECK(n >= 1 && find_ev(ev, n, 50, EVFILT_USER) >= 0);
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void ext1_zero_gives_other_filters_a_group_of_their_own(void)
{
	int kq = kq_new();
	SADD(kq, 60, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL, 0); /* level */
	SADD(kq, 61, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL, 0);
	struct kevent ev[4];
	CHECK_EQ(kpoll(kq, ev, 1, LONG_MS), 1);
	uintptr_t first = ev[0].ident;
	CHECK_MEMBER(ev[0], first, EVFILT_USER, 0); /* own group: ext[1] = 0 */
	/* the other one is in a group of its own: not held back */
	CHECK_EQ(kpoll(kq, ev, 1, LONG_MS), 1);
	uintptr_t second = ev[0].ident;
	CHECK(second != first && (second == 60 || second == 61));
	CHECK_MEMBER(ev[0], second, EVFILT_USER, 0);
	EXPECT_NONE(kq, SHORT_MS); /* both held, each by its own group */
	RELEASE(kq, first, EVFILT_USER);
	EXPECT_ONE(kq, first, EVFILT_USER, LONG_MS);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, second, EVFILT_USER);
	EXPECT_ONE(kq, second, EVFILT_USER, LONG_MS);
	/* a timer with ext[1] = 0 too */
	SADD(kq, 62, EVFILT_TIMER, 0, 0, 5, NULL, 0);
	struct kevent e = EXPECT_ONE(kq, 62, EVFILT_TIMER, LONG_MS);
	CHECK_MEMBER(e, 62, EVFILT_TIMER, 0);
	EXPECT_NONE(kq, 30);
	close(kq);
}

static void ext1_of_a_knote_without_serial_is_passed_through(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	struct kevent ch;
	EV_SET(&ch, 70, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, UD(7));
	ch.ext[0] = 11;
	ch.ext[1] = 22;
	ch.ext[2] = 33;
	ch.ext[3] = 44;
	CHECK_EQ(kevent(kq, &ch, 1, NULL, 0, NULL), 0);
	EV_SET(&ch, (uintptr_t)s[0], EVFILT_READ, EV_ADD, 0, 0, UD(8));
	ch.ext[1] = (uint64_t)s[0]; /* looks like a group id: it is not */
	CHECK_EQ(kevent(kq, &ch, 1, NULL, 0, NULL), 0);
	write_n(s[1], 1);
	for (int round = 0; round < 3; round++) { /* never held */
		struct kevent ev[4];
		int n = kpoll(kq, ev, 4, LONG_MS);
		if (n == 1) {
			int m = kpoll(kq, ev + 1, 3, LONG_MS);
			CHECK(m >= 1);
			n += m;
		}
		int u = find_ev(ev, n, 70, EVFILT_USER);
		int r = find_ev(ev, n, (uintptr_t)s[0], EVFILT_READ);
		CHECK(u >= 0 && r >= 0);
		CHECK_EQ(ev[u].ext[0], 11);
		CHECK_EQ(ev[u].ext[1], 22);
		CHECK_EQ(ev[u].ext[2], 33);
		CHECK_EQ(ev[u].ext[3], 44);
		CHECK_EQ(ev[u].flags, 0);
		CHECK_EQ(ev[r].ext[1], (uint64_t)s[0]);
		CHECK_EQ(ev[r].flags, 0);
	}
	close(s[0]);
	close(s[1]);
	close(kq);
}

/* ---- what happens during a hold is kept ---- */

static void level_data_arriving_during_a_hold_is_returned_after(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	const uint64_t gid = 3000000;
	SADD(kq, 80, EVFILT_USER, EV_CLEAR, NOTE_TRIGGER, 0, NULL, gid);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, NULL, gid);
	EXPECT_ONE(kq, 80, EVFILT_USER, LONG_MS);
	write_n(s[1], 3);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, 80, EVFILT_USER);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, s[0], EVFILT_READ, gid);
	CHECK_EQ(e.data, 3);
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void clear_edges_during_a_hold_are_returned_after(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	const uint64_t gid = 3000001;
	SADD(kq, 81, EVFILT_USER, EV_CLEAR, NOTE_TRIGGER, 0, NULL, gid);
	SADD(kq, s[0], EVFILT_READ, EV_CLEAR, 0, 0, NULL, gid);
	EXPECT_ONE(kq, 81, EVFILT_USER, LONG_MS);
	/* the READ's only edges come during the hold */
	write_n(s[1], 1);
	EXPECT_NONE(kq, SHORT_MS);
	write_n(s[1], 2);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, 81, EVFILT_USER);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, s[0], EVFILT_READ, gid);
	CHECK_EQ(e.data, 3);
	CHECK(e.flags & EV_CLEAR);
	/* EV_CLEAR: once.  (Releasing with the data still unread returns it
	 * again without new data, like the re-enable of EV_CLEAR|EV_DISPATCH;
	 * a handler reads until EAGAIN before it releases, as here.) */
	read_n(s[0], 3);
	RELEASE(kq, s[0], EVFILT_READ);
	EXPECT_NONE(kq, SHORT_MS);
	write_n(s[1], 1);
	e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_EQ(e.data, 1);
	/* an EV_CLEAR edge of the member that holds, during its own hold */
	read_n(s[0], 1);
	write_n(s[1], 2);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, s[0], EVFILT_READ);
	e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_EQ(e.data, 2);
	read_n(s[0], 2);
	RELEASE(kq, s[0], EVFILT_READ);
	EXPECT_NONE(kq, SHORT_MS);
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void timer_expirations_during_a_hold_add_up(void)
{
	int kq = kq_new();
	SADD(kq, 82, EVFILT_TIMER, 0, 0, 20, NULL, 0); /* 20 ms, own group */
	double t1b = now_ms();
	struct kevent e = EXPECT_ONE(kq, 82, EVFILT_TIMER, LONG_MS);
	double t1a = now_ms();
	CHECK_MEMBER(e, 82, EVFILT_TIMER, 0);
	CHECK(e.data >= 1);
	while (now_ms() - t1a < 200)
		EXPECT_NONE(kq, 25);
	double t2b = now_ms();
	RELEASE(kq, 82, EVFILT_TIMER);
	e = EXPECT_ONE(kq, 82, EVFILT_TIMER, LONG_MS);
	double t2a = now_ms();
	CHECK_MEMBER(e, 82, EVFILT_TIMER, 0);
	/* 200 ms held: about 10 expirations, all in one event */
	CHECK(e.data >= (int64_t)((t2b - t1a) / 20) - 1);
	CHECK(e.data <= (int64_t)((t2a - t1b) / 20) + 1);
	CHECK(e.data >= 8);
	close(kq);
}

static void user_triggers_during_a_hold_are_returned_after(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, NULL, 0);
	SADD(kq, 83, EVFILT_USER, EV_CLEAR, 0, 0, UD(83), (uint64_t)s[0]);
	write_n(s[1], 1);
	EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	KOK(kq, 83, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFCOPY | 0x42, 7, UD(83));
	EXPECT_NONE(kq, SHORT_MS);
	KOK(kq, 83, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFOR | 0x100, 9, UD(83));
	EXPECT_NONE(kq, SHORT_MS);
	drain_fd(s[0]);
	RELEASE(kq, s[0], EVFILT_READ);
	struct kevent e = EXPECT_ONE(kq, 83, EVFILT_USER, LONG_MS);
	CHECK_MEMBER(e, 83, EVFILT_USER, s[0]);
	CHECK_EQ(e.fflags, 0x142);
	CHECK_EQ(e.data, 9);
	CHECK(e.udata == UD(83));
	/* EV_CLEAR: the two triggers are one event */
	RELEASE(kq, s[0], EVFILT_READ);
	EXPECT_NONE(kq, SHORT_MS);
	close(s[0]);
	close(s[1]);
	close(kq);
}

/* ---- EV_DISPATCH and EV_ONESHOT members ---- */

static void dispatch_member_is_enabled_by_its_own_enable(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	SADD(kq, s[0], EVFILT_READ, EV_DISPATCH, 0, 0, NULL, 0);
	SADD(kq, 90, EVFILT_USER, EV_CLEAR, 0, 0, NULL, (uint64_t)s[0]);
	write_n(s[1], 2);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, s[0], EVFILT_READ, s[0]);
	CHECK_EQ(e.flags, EV_DISPATCH | EV_SERIAL);
	EXPECT_NONE(kq, SHORT_MS);
	/* EV_ENABLE of another member releases, READ stays disabled */
	RELEASE(kq, 90, EVFILT_USER);
	EXPECT_NONE(kq, SHORT_MS);
	TRIGGER(kq, 90);
	EXPECT_ONE(kq, 90, EVFILT_USER, LONG_MS); /* the group was free */
	/* EV_ENABLE of the READ: releases and enables it */
	RELEASE(kq, s[0], EVFILT_READ);
	e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_EQ(e.data, 2);
	EXPECT_NONE(kq, SHORT_MS);
	/* release and enable in one call that waits */
	struct kevent ch, ev[4];
	struct timespec ts = ts_ms(LONG_MS);
	EV_SET(&ch, (uintptr_t)s[0], EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	CHECK_EQ(kevent(kq, &ch, 1, ev, 4, &ts), 1);
	CHECK_MEMBER(ev[0], s[0], EVFILT_READ, s[0]);
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void oneshot_member_leaves_and_the_hold_stays(void)
{
	int kq = kq_new(), s[2], t[2];
	sockpair(s);
	sockpair(t);
	const uint64_t gid = 4000000;
	SADD(kq, s[0], EVFILT_READ, EV_ONESHOT, 0, 0, NULL, gid);
	SADD(kq, 91, EVFILT_USER, EV_CLEAR, 0, 0, NULL, gid);
	write_n(s[1], 1);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, s[0], EVFILT_READ, gid);
	CHECK(e.flags & EV_ONESHOT);
	CHECK_EQ(kchange_err(kq, (uintptr_t)s[0], EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	/* the user event is still a member: the group is still held */
	TRIGGER(kq, 91);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, 91, EVFILT_USER);
	e = EXPECT_ONE(kq, 91, EVFILT_USER, LONG_MS);
	CHECK_MEMBER(e, 91, EVFILT_USER, gid);
	/* a oneshot that was the last member dissolves its group */
	SADD(kq, t[0], EVFILT_READ, EV_ONESHOT, 0, 0, NULL, 0);
	write_n(t[1], 1);
	EXPECT_ONE(kq, (uintptr_t)t[0], EVFILT_READ, LONG_MS);
	SADD(kq, t[0], EVFILT_READ, 0, 0, 0, NULL, 0);
	e = EXPECT_ONE(kq, (uintptr_t)t[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, t[0], EVFILT_READ, t[0]);
	for (int i = 0; i < 2; i++) {
		close(s[i]);
		close(t[i]);
	}
	close(kq);
}

/* ---- moving, joining, leaving ---- */

static void a_free_member_moves_to_another_group(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	const uint64_t g1 = 5000000, g2 = 5000001;
	SADD(kq, 100, EVFILT_USER, 0, 0, 0, NULL, g1);
	SADD(kq, 101, EVFILT_USER, EV_CLEAR, 0, 0, NULL, g2);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, UD(1), g1);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, UD(2), g2); /* free: moves */
	TRIGGER(kq, 100);
	EXPECT_ONE(kq, 100, EVFILT_USER, LONG_MS); /* g1 held */
	write_n(s[1], 1);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, s[0], EVFILT_READ, g2);
	CHECK(e.udata == UD(2));
	TRIGGER(kq, 101);
	EXPECT_NONE(kq, SHORT_MS); /* g2 held by the READ's call */
	drain_fd(s[0]);
	RELEASE(kq, s[0], EVFILT_READ);
	e = EXPECT_ONE(kq, 101, EVFILT_USER, LONG_MS);
	CHECK_MEMBER(e, 101, EVFILT_USER, g2);
	/* back into the default group (ext[1] = 0), while g2 is free */
	RELEASE(kq, 101, EVFILT_USER);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, UD(3), 0);
	write_n(s[1], 1);
	e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, s[0], EVFILT_READ, s[0]);
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void a_member_of_a_held_group_cannot_move_or_leave(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	const uint64_t g1 = 5000002, g2 = 5000003;
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, UD(1), g1);
	SADD(kq, 102, EVFILT_USER, EV_CLEAR, 0, 0, UD(1), g1);
	write_n(s[1], 1);
	EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_EQ(gchange(kq, (uintptr_t)s[0], EVFILT_READ, EV_ADD | EV_SERIAL, 0, 0, UD(2), g2),
		 EBUSY);
	CHECK_EQ(gchange(kq, (uintptr_t)s[0], EVFILT_READ, EV_ADD | EV_SERIAL, 0, 0, UD(2), 0),
		 EBUSY);
	CHECK_EQ(gchange(kq, (uintptr_t)s[0], EVFILT_READ, EV_ADD, 0, 0, UD(2), 0), EBUSY);
	/* the other member, which was not returned, is bound just the same */
	CHECK_EQ(gchange(kq, 102, EVFILT_USER, EV_ADD | EV_SERIAL, 0, 0, UD(2), g2), EBUSY);
	CHECK_EQ(gchange(kq, 102, EVFILT_USER, EV_ADD, 0, 0, UD(2), g1), EBUSY);
	/* EBUSY changed nothing: still held, still in g1, old udata */
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, s[0], EVFILT_READ);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, s[0], EVFILT_READ, g1);
	CHECK(e.udata == UD(1));
	TRIGGER(kq, 102);
	EXPECT_NONE(kq, SHORT_MS);
	drain_fd(s[0]);
	RELEASE(kq, s[0], EVFILT_READ);
	e = EXPECT_ONE(kq, 102, EVFILT_USER, LONG_MS);
	CHECK_MEMBER(e, 102, EVFILT_USER, g1);
	CHECK(e.udata == UD(1));
	/* once released it moves */
	RELEASE(kq, 102, EVFILT_USER);
	CHECK_EQ(gchange(kq, 102, EVFILT_USER, EV_ADD | EV_SERIAL, 0, 0, UD(3), g2), 0);
	TRIGGER(kq, 102);
	e = EXPECT_ONE(kq, 102, EVFILT_USER, LONG_MS);
	CHECK_MEMBER(e, 102, EVFILT_USER, g2);
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void joining_a_held_group_waits_for_the_release(void)
{
	int kq = kq_new(), s[2], t[2];
	sockpair(s);
	sockpair(t);
	const uint64_t gid = 6000000;
	SADD(kq, 110, EVFILT_USER, EV_CLEAR, NOTE_TRIGGER, 0, NULL, gid);
	EXPECT_ONE(kq, 110, EVFILT_USER, LONG_MS);
	write_n(s[1], 1);
	/* the holder adds a socket to its group */
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, NULL, gid);
	EXPECT_NONE(kq, SHORT_MS);
	/* and a timer that fires at once */
	SADD(kq, 111, EVFILT_TIMER, EV_ONESHOT, 0, 1, NULL, gid);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, 110, EVFILT_USER);
	struct kevent ev[8];
	int n = kpoll(kq, ev, 8, LONG_MS);
	CHECK_EQ(n, 2);
	int r = find_ev(ev, n, (uintptr_t)s[0], EVFILT_READ);
	int tm = find_ev(ev, n, 111, EVFILT_TIMER);
	CHECK(r >= 0 && tm >= 0);
	CHECK_MEMBER(ev[r], s[0], EVFILT_READ, gid);
	CHECK_MEMBER(ev[tm], 111, EVFILT_TIMER, gid);
	CHECK(ev[tm].flags & EV_ONESHOT);
	/* a held default group: the socket's WRITE joins it */
	SADD(kq, t[0], EVFILT_READ, 0, 0, 0, NULL, 0);
	write_n(t[1], 1);
	EXPECT_ONE(kq, (uintptr_t)t[0], EVFILT_READ, LONG_MS);
	SADD(kq, t[0], EVFILT_WRITE, 0, 0, 0, NULL, 0);
	EXPECT_NONE(kq, SHORT_MS);
	drain_fd(t[0]);
	RELEASE(kq, t[0], EVFILT_READ);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)t[0], EVFILT_WRITE, LONG_MS);
	CHECK_MEMBER(e, t[0], EVFILT_WRITE, t[0]);
	for (int i = 0; i < 2; i++) {
		close(s[i]);
		close(t[i]);
	}
	close(kq);
}

static void readd_without_serial_leaves_the_group(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	const uint64_t gid = 7000000;
	SADD(kq, 120, EVFILT_USER, 0, 0, 0, NULL, gid); /* level once triggered */
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, NULL, gid);
	/* free: leaves; its ext[1] is now just passed through */
	CHECK_EQ(gchange(kq, (uintptr_t)s[0], EVFILT_READ, EV_ADD, 0, 0, UD(9), gid), 0);
	TRIGGER(kq, 120);
	EXPECT_ONE(kq, 120, EVFILT_USER, LONG_MS); /* gid held */
	write_n(s[1], 1);
	for (int i = 0; i < 3; i++) {
		struct kevent e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
		CHECK_EQ(e.flags, 0);
		CHECK_EQ(e.ext[1], gid);
		CHECK(e.udata == UD(9));
	}
	/* the group is still held by the user event's call */
	RELEASE(kq, 120, EVFILT_USER);
	struct kevent ev[8];
	int n = kpoll(kq, ev, 8, LONG_MS);
	CHECK(find_ev(ev, n, 120, EVFILT_USER) >= 0);
	close(s[0]);
	close(s[1]);
	close(kq);
}

/* ---- deleting, closing, dissolving ---- */

static void deleting_and_closing_members_while_held(void)
{
	int kq = kq_new(), a[2], b[2], c[2];
	sockpair(a);
	sockpair(b);
	sockpair(c);
	const uint64_t gid = 8000000;
	SADD(kq, a[0], EVFILT_READ, 0, 0, 0, NULL, gid);
	SADD(kq, b[0], EVFILT_READ, 0, 0, 0, NULL, gid);
	SADD(kq, 130, EVFILT_USER, EV_CLEAR, NOTE_TRIGGER, 0, NULL, gid);
	EXPECT_ONE(kq, 130, EVFILT_USER, LONG_MS);
	/* deleting the member that was returned: the others keep the hold */
	KOK(kq, 130, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	write_n(a[1], 1);
	EXPECT_NONE(kq, SHORT_MS);
	/* closing a member: same */
	write_n(b[1], 1);
	close(b[0]);
	close(b[1]);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, a[0], EVFILT_READ);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)a[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, a[0], EVFILT_READ, gid);
	/* closing the last member, while held, dissolves the group and its
	 * hold: a new member of the same id is returned at once */
	close(a[0]);
	close(a[1]);
	write_n(c[1], 1);
	SADD(kq, c[0], EVFILT_READ, 0, 0, 0, NULL, gid);
	e = EXPECT_ONE(kq, (uintptr_t)c[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, c[0], EVFILT_READ, gid);
	/* deleting the last member: same */
	KOK(kq, (uintptr_t)c[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	SADD(kq, 131, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL, gid);
	e = EXPECT_ONE(kq, 131, EVFILT_USER, LONG_MS);
	CHECK_MEMBER(e, 131, EVFILT_USER, gid);
	/* re-adding the deleted user event joins the held group: waits */
	SADD(kq, 130, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL, gid);
	EXPECT_NONE(kq, SHORT_MS);
	KOK(kq, 131, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	/* 130 is the only member left and the group still held */
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, 130, EVFILT_USER);
	EXPECT_ONE(kq, 130, EVFILT_USER, LONG_MS);
	close(c[0]);
	close(c[1]);
	close(kq);
}

static void closing_a_held_socket_frees_its_number(void)
{
	int kq = kq_new(), s[2], t[2];
	sockpair(s);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, NULL, 0);
	SADD(kq, s[0], EVFILT_WRITE, 0, 0, 0, NULL, 0);
	write_n(s[1], 1);
	struct kevent ev[8];
	CHECK(kpoll(kq, ev, 8, LONG_MS) >= 1);
	int fd = s[0];
	close(s[0]);
	close(s[1]);
	sockpair(t); /* the lowest free numbers: most likely fd again */
	int nfd = t[0] == fd ? t[0] : t[1] == fd ? t[1] : -1;
	if (nfd < 0) {
		fprintf(stderr, "   (fd %d not reused, checking %d)\n", fd, t[0]);
		nfd = t[0];
	}
	int peer = nfd == t[0] ? t[1] : t[0];
	write_n(peer, 1);
	SADD(kq, nfd, EVFILT_READ, 0, 0, 0, UD(5), 0);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)nfd, EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, nfd, EVFILT_READ, nfd);
	CHECK(e.udata == UD(5));
	EXPECT_NONE(kq, SHORT_MS);
	close(t[0]);
	close(t[1]);
	close(kq);
}

/* ---- EV_FORCEONESHOT on a member of a held group ---- */

static void forced_timer_of_a_held_group_comes_once_after_the_release(void)
{
	int kq = kq_new();
	const uint64_t gid = 9000000;
	SADD(kq, 140, EVFILT_USER, EV_CLEAR, NOTE_TRIGGER, 0, NULL, gid);
	SADD(kq, 141, EVFILT_TIMER, 0, NOTE_SECONDS, 3600, UD(141), gid);
	EXPECT_ONE(kq, 140, EVFILT_USER, LONG_MS);
	KOK(kq, 141, EVFILT_TIMER, EV_FORCEONESHOT | EV_KEEPUDATA, 0, 0, NULL);
	EXPECT_NONE(kq, SHORT_MS);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, 140, EVFILT_USER);
	struct kevent e = EXPECT_ONE(kq, 141, EVFILT_TIMER, LONG_MS);
	CHECK_MEMBER(e, 141, EVFILT_TIMER, gid);
	CHECK(e.flags & EV_ONESHOT);
	CHECK(e.udata == UD(141));
	CHECK_EQ(kchange_err(kq, 141, EVFILT_TIMER, EV_DELETE, 0, 0), ENOENT);
	RELEASE(kq, 140, EVFILT_USER);
	EXPECT_NONE(kq, SHORT_MS);
	/* the group is alive with its other member */
	TRIGGER(kq, 140);
	EXPECT_ONE(kq, 140, EVFILT_USER, LONG_MS);
	close(kq);
}

static void forced_read_of_a_held_group_comes_once_after_the_release(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, UD(1), 0);
	SADD(kq, s[0], EVFILT_WRITE, 0, 0, 0, UD(2), 0);
	/* WRITE is ready: hold the group with it; READ has no data */
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_WRITE, LONG_MS);
	KOK(kq, (uintptr_t)s[0], EVFILT_READ, EV_FORCEONESHOT | EV_KEEPUDATA, 0, 0, NULL);
	EXPECT_NONE(kq, SHORT_MS);
	KOK(kq, (uintptr_t)s[0], EVFILT_WRITE, EV_DISABLE | EV_KEEPUDATA, 0, 0, NULL);
	RELEASE(kq, s[0], EVFILT_READ); /* EV_ENABLE of the forced member itself */
	e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, s[0], EVFILT_READ, s[0]);
	CHECK(e.flags & EV_ONESHOT);
	CHECK(e.udata == UD(1));
	CHECK_EQ(e.data, 0);
	CHECK_EQ(kchange_err(kq, (uintptr_t)s[0], EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	write_n(s[1], 1);
	RELEASE(kq, s[0], EVFILT_WRITE);
	e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_WRITE, LONG_MS);
	EXPECT_NONE(kq, SHORT_MS);
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void forced_disabled_member_comes_once_it_is_enabled(void)
{
	int kq = kq_new(), s[2];
	sockpair(s);
	SADD(kq, s[0], EVFILT_READ, EV_DISPATCH, 0, 0, NULL, 0);
	SADD(kq, 142, EVFILT_USER, EV_CLEAR, 0, 0, NULL, (uint64_t)s[0]);
	write_n(s[1], 1);
	EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS); /* held, disabled */
	KOK(kq, (uintptr_t)s[0], EVFILT_READ, EV_FORCEONESHOT | EV_KEEPUDATA, 0, 0, NULL);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, 142, EVFILT_USER); /* free again, READ still disabled */
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, s[0], EVFILT_READ);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_READ, LONG_MS);
	CHECK(e.flags & EV_ONESHOT);
	CHECK_EQ(kchange_err(kq, (uintptr_t)s[0], EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	RELEASE(kq, 142, EVFILT_USER);
	EXPECT_NONE(kq, SHORT_MS);
	close(s[0]);
	close(s[1]);
	close(kq);
}

static void forced_member_closed_before_the_release_never_comes(void)
{
	int kq = kq_new(), s[2], t[2];
	sockpair(s);
	const uint64_t gid = 9000002;
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, UD(1), gid);
	SADD(kq, 150, EVFILT_USER, EV_CLEAR, NOTE_TRIGGER, 0, NULL, gid);
	SADD(kq, 151, EVFILT_TIMER, 0, NOTE_SECONDS, 3600, NULL, gid);
	EXPECT_ONE(kq, 150, EVFILT_USER, LONG_MS);
	KOK(kq, (uintptr_t)s[0], EVFILT_READ, EV_FORCEONESHOT | EV_KEEPUDATA, 0, 0, NULL);
	KOK(kq, 151, EVFILT_TIMER, EV_FORCEONESHOT | EV_KEEPUDATA, 0, 0, NULL);
	EXPECT_NONE(kq, SHORT_MS);
	/* the holder tears down: closes the socket, deletes the timer */
	int fd = s[0];
	close(s[0]);
	close(s[1]);
	KOK(kq, 151, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	/* a new file at the same number, watched the same way, not ready */
	sockpair(t);
	int nfd = t[0] == fd ? t[0] : t[1] == fd ? t[1] : t[0];
	int peer = nfd == t[0] ? t[1] : t[0];
	SADD(kq, nfd, EVFILT_READ, 0, 0, 0, UD(2), gid);
	EXPECT_NONE(kq, SHORT_MS);
	RELEASE(kq, 150, EVFILT_USER);
	EXPECT_NONE(kq, 100); /* neither the old READ, nor the new one */
	CHECK_EQ(kchange_err(kq, 151, EVFILT_TIMER, EV_DELETE, 0, 0), ENOENT);
	/* the new file's READ is an ordinary member */
	write_n(peer, 1);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)nfd, EVFILT_READ, LONG_MS);
	CHECK_MEMBER(e, nfd, EVFILT_READ, gid);
	CHECK_EQ(e.flags, EV_SERIAL);
	CHECK(e.udata == UD(2));
	CHECK_EQ(e.data, 1);
	close(t[0]);
	close(t[1]);
	/* the same with the default group: dissolved by the close */
	sockpair(s);
	SADD(kq, s[0], EVFILT_READ, 0, 0, 0, UD(3), 0);
	SADD(kq, s[0], EVFILT_WRITE, 0, 0, 0, UD(4), 0);
	EXPECT_ONE(kq, (uintptr_t)s[0], EVFILT_WRITE, LONG_MS);
	KOK(kq, (uintptr_t)s[0], EVFILT_READ, EV_FORCEONESHOT | EV_KEEPUDATA, 0, 0, NULL);
	fd = s[0];
	close(s[0]);
	close(s[1]);
	sockpair(t);
	nfd = t[0] == fd ? t[0] : t[1] == fd ? t[1] : t[0];
	SADD(kq, nfd, EVFILT_READ, 0, 0, 0, UD(5), 0);
	EXPECT_NONE(kq, 100);
	close(t[0]);
	close(t[1]);
	close(kq);
}

int main(void)
{
	RUN(read_and_write_of_a_socket_share_the_default_group);
	RUN(a_held_group_does_not_hold_back_other_knotes);
	RUN(another_thread_may_release);
	RUN(release_and_wait_in_one_call);
	RUN(disable_of_a_member_does_not_release);
	RUN(two_sockets_in_one_explicit_group);
	RUN(a_socket_joins_another_sockets_default_group);
	RUN(timer_and_user_event_join_a_sockets_group_by_its_fd);
	RUN(ext1_zero_gives_other_filters_a_group_of_their_own);
	RUN(ext1_of_a_knote_without_serial_is_passed_through);
	RUN(level_data_arriving_during_a_hold_is_returned_after);
	RUN(clear_edges_during_a_hold_are_returned_after);
	RUN(timer_expirations_during_a_hold_add_up);
	RUN(user_triggers_during_a_hold_are_returned_after);
	RUN(dispatch_member_is_enabled_by_its_own_enable);
	RUN(oneshot_member_leaves_and_the_hold_stays);
	RUN(a_free_member_moves_to_another_group);
	RUN(a_member_of_a_held_group_cannot_move_or_leave);
	RUN(joining_a_held_group_waits_for_the_release);
	RUN(readd_without_serial_leaves_the_group);
	RUN(deleting_and_closing_members_while_held);
	RUN(closing_a_held_socket_frees_its_number);
	RUN(forced_timer_of_a_held_group_comes_once_after_the_release);
	RUN(forced_read_of_a_held_group_comes_once_after_the_release);
	RUN(forced_disabled_member_comes_once_it_is_enabled);
	RUN(forced_member_closed_before_the_release_never_comes);
	fprintf(stderr, "test_serial: ok\n");
	return 0;
}
