/*
 * Closing a kqueue's number (close, dup2 or close_range over it) is a close
 * like any other: the knotes other kqueues hold on that number go with it
 * (SEMANTICS I4), and a file that reuses the number starts clean.  Dups of a
 * kqueue keep it alive; closing the last name frees it, whichever it is.
 */
#include "util.h"

#include <linux/close_range.h>

/* inner made readable: a USER event left triggered */
static int readable_kqueue(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	return kq;
}

enum { VIA_CLOSE, VIA_DUP2, VIA_CLOSE_RANGE };

/* outer watches inner; inner's number goes away in one of three ways and a
 * pipe takes it: outer must hold no knote on the number any more. */
static void knotes_on_a_closed_kqueue_go(int how)
{
	int outer = kq_new();
	int inner = readable_kqueue();
	KOK(outer, (uintptr_t)inner, EVFILT_READ, EV_ADD, 0, 0, UD(7));
	struct kevent e = EXPECT_ONE(outer, (uintptr_t)inner, EVFILT_READ, 200);
	CHECK(e.udata == UD(7));
	int p[2];
	CHECK(pipe(p) == 0);
	switch (how) {
	case VIA_CLOSE:
		CHECK_EQ(close(inner), 0);
		EXPECT_NONE(outer, 20);
		/* a closed number: EBADF, not a knote still there */
		CHECK_EQ(kchange_err(outer, (uintptr_t)inner, EVFILT_READ, EV_DELETE, 0, 0), EBADF);
		CHECK_EQ(fcntl(p[0], F_DUPFD, inner), inner); /* the lowest free from inner */
		break;
	case VIA_DUP2:
		CHECK_EQ(dup2(p[0], inner), inner);
		break;
	case VIA_CLOSE_RANGE:
		CHECK_EQ(close_range((unsigned)inner, (unsigned)inner, 0), 0);
		CHECK_EQ(fcntl(p[0], F_DUPFD, inner), inner);
		break;
	}
	/* the pipe is empty: nothing, and surely not with the old udata */
	EXPECT_NONE(outer, 20);
	CHECK_EQ(kchange_err(outer, (uintptr_t)inner, EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	/* EV_ADD on the new file works and reports it */
	KOK(outer, (uintptr_t)inner, EVFILT_READ, EV_ADD, 0, 0, UD(8));
	EXPECT_NONE(outer, 20);
	write_n(p[1], 2);
	e = EXPECT_ONE(outer, (uintptr_t)inner, EVFILT_READ, 200);
	CHECK(e.udata == UD(8));
	CHECK_EQ(e.data, 2);
	close(inner);
	close(p[0]);
	close(p[1]);
	close(outer);
}

static void close_of_a_kqueue_removes_other_kqueues_knotes_on_it(void)
{
	knotes_on_a_closed_kqueue_go(VIA_CLOSE);
}

static void dup2_over_a_kqueue_removes_other_kqueues_knotes_on_it(void)
{
	knotes_on_a_closed_kqueue_go(VIA_DUP2);
}

static void close_range_over_a_kqueue_removes_other_kqueues_knotes_on_it(void)
{
	knotes_on_a_closed_kqueue_go(VIA_CLOSE_RANGE);
}

/* A new kqueue at the number of a watched one is not reported for it. */
static void a_new_kqueue_at_the_number_is_not_watched(void)
{
	int outer = kq_new();
	int inner = readable_kqueue();
	KOK(outer, (uintptr_t)inner, EVFILT_READ, EV_ADD, 0, 0, UD(7));
	EXPECT_ONE(outer, (uintptr_t)inner, EVFILT_READ, 200);
	CHECK_EQ(close(inner), 0);
	int again = readable_kqueue();
	CHECK_EQ(again, inner); /* the lowest free number */
	EXPECT_NONE(outer, 20);
	CHECK_EQ(kchange_err(outer, (uintptr_t)inner, EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	close(inner);
	close(outer);
}

int main(void)
{
	RUN(close_of_a_kqueue_removes_other_kqueues_knotes_on_it);
	RUN(dup2_over_a_kqueue_removes_other_kqueues_knotes_on_it);
	RUN(close_range_over_a_kqueue_removes_other_kqueues_knotes_on_it);
	RUN(a_new_kqueue_at_the_number_is_not_watched);
	return 0;
}
