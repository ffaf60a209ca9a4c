/*
 * How a change applies to a knote that already exists (FreeBSD's
 * kqueue_register): udata is set by every change but EV_DELETE unless
 * EV_KEEPUDATA; a re-add takes udata, fflags and data but keeps the knote's
 * EV_CLEAR, EV_ONESHOT, EV_DISPATCH and EV_RECEIPT, and ext[] as first
 * given; only EV_FORCEONESHOT adds EV_ONESHOT.  Also the order of change
 * application and timeout checking in kevent(), huge timeouts, an fd number
 * past the fd limit, and NOTE_ABSTIME timers that stay active once expired.
 * (CONTRACT.md "Changes", "Returned events", "Waiting".)
 */
#include "util.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>

/* ---- udata (item 9) ---- */

/* nginx's thread-pool notify: registered with udata 0, triggered with the
 * event as udata, without EV_ADD. */
static void trigger_without_add_sets_udata(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(0x77));
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK(e.udata == UD(0x77));
	/* EV_KEEPUDATA keeps it */
	KOK(kq, 1, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER, 0, UD(0x88));
	e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK(e.udata == UD(0x77));
	close(kq);
}

static void enable_and_disable_set_udata(void)
{
	int kq = kq_new();
	KOK(kq, 2, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, UD(1));
	KOK(kq, 2, EVFILT_USER, EV_DISABLE, 0, 0, UD(2));
	EXPECT_NONE(kq, 0);
	KOK(kq, 2, EVFILT_USER, EV_ENABLE | EV_KEEPUDATA, 0, 0, UD(3));
	struct kevent e = EXPECT_ONE(kq, 2, EVFILT_USER, 0);
	CHECK(e.udata == UD(2));
	KOK(kq, 2, EVFILT_USER, EV_ENABLE, 0, 0, UD(4));
	e = EXPECT_ONE(kq, 2, EVFILT_USER, 0);
	CHECK(e.udata == UD(4));
	close(kq);
}

static void fd_knote_enable_sets_udata(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	write_n(p[1], 1);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(10));
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 100);
	CHECK(e.udata == UD(10));
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ENABLE, 0, 0, UD(11));
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 100);
	CHECK(e.udata == UD(11));
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ENABLE | EV_KEEPUDATA, 0, 0, UD(12));
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 100);
	CHECK(e.udata == UD(11));
	/* WRITE too, with EV_DISABLE then EV_ENABLE keeping it */
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ADD, 0, 0, UD(20));
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_DISABLE, 0, 0, UD(21));
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ENABLE | EV_KEEPUDATA, 0, 0, UD(22));
	e = EXPECT_ONE(kq, (uintptr_t)p[1], EVFILT_WRITE, 100);
	CHECK(e.udata == UD(21));
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void add_with_keepudata_is_einval(void)
{
	int kq = kq_new();
	CHECK_EQ(kchange_err(kq, 3, EVFILT_USER, EV_ADD | EV_KEEPUDATA, 0, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, 3, EVFILT_USER, EV_DELETE, 0, 0), ENOENT); /* not added */
	KOK(kq, 3, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, UD(5));
	CHECK_EQ(kchange_err(kq, 3, EVFILT_USER, EV_ADD | EV_KEEPUDATA, 0, 0), EINVAL);
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_KEEPUDATA, 0, 0),
	         EINVAL);
	struct kevent e = EXPECT_ONE(kq, 3, EVFILT_USER, 0);
	CHECK(e.udata == UD(5));
	close(p[0]);
	close(p[1]);
	close(kq);
}

/* ---- re-add (item 10) ---- */

static int kadd_ext(int kq, uintptr_t ident, short filter, unsigned short flags, unsigned fflags,
                    int64_t data, void *udata, uint64_t x)
{
	struct kevent ch;
	EV_SET(&ch, ident, filter, flags, fflags, data, udata);
	for (int i = 0; i < 4; i++)
		ch.ext[i] = x + (uint64_t)i;
	return kevent(kq, &ch, 1, NULL, 0, NULL);
}

static void readd_keeps_behaviour_flags(void)
{
	int kq = kq_new();
	/* level user event: re-adding with EV_CLEAR|EV_ONESHOT|EV_DISPATCH
	 * does not make it any of those */
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 10, UD(1));
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_ONESHOT | EV_DISPATCH | EV_RECEIPT, NOTE_TRIGGER, 20,
	    UD(2));
	for (int i = 0; i < 3; i++) {
		struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
		CHECK_EQ(e.flags, 0);
		CHECK_EQ(e.data, 20);
		CHECK(e.udata == UD(2));
	}
	KOK(kq, 1, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	/* an EV_CLEAR one re-added without it stays EV_CLEAR */
	KOK(kq, 2, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	KOK(kq, 2, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, 2, EVFILT_USER, 0);
	CHECK_EQ(e.flags, EV_CLEAR);
	EXPECT_NONE(kq, 0);
	/* an EV_DISPATCH READ knote re-added without it stays dispatch */
	int p[2];
	CHECK(pipe(p) == 0);
	write_n(p[1], 3);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(4));
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(5));
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 100);
	CHECK_EQ(e.flags, EV_DISPATCH);
	CHECK(e.udata == UD(5));
	EXPECT_NONE(kq, 20);
	/* a plain one re-added with EV_ONESHOT stays: it comes back */
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ADD, 0, 0, UD(6));
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, 0, UD(7));
	for (int i = 0; i < 2; i++) {
		e = EXPECT_ONE(kq, (uintptr_t)p[1], EVFILT_WRITE, 100);
		CHECK_EQ(e.flags, 0);
	}
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void readd_keeps_ext(void)
{
	int kq = kq_new();
	CHECK_EQ(kadd_ext(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, UD(1), 100), 0);
	CHECK_EQ(kadd_ext(kq, 1, EVFILT_USER, EV_ADD, 0, 0, UD(2), 200), 0);
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(e.ext[i], 100 + i);
	CHECK(e.udata == UD(2));
	close(kq);
}

/* ---- forced oneshot then re-add (item 7) ---- */

static void forceoneshot_survives_a_readd(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, 0, 0, UD(1));
	KOK(kq, 1, EVFILT_USER, EV_FORCEONESHOT, 0, 0, UD(1));
	KOK(kq, 1, EVFILT_USER, EV_ADD, 0, 0, UD(2));
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK(e.flags & EV_ONESHOT);
	CHECK(e.udata == UD(2));
	EXPECT_NONE(kq, 0);
	CHECK_EQ(kchange_err(kq, 1, EVFILT_USER, EV_DELETE, 0, 0), ENOENT);
	/* a re-add with EV_CLEAR resets the trigger, not the forced return */
	KOK(kq, 2, EVFILT_USER, EV_ADD, 0, 0, UD(1));
	KOK(kq, 2, EVFILT_USER, EV_FORCEONESHOT, 0, 0, UD(1));
	KOK(kq, 2, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(2));
	e = EXPECT_ONE(kq, 2, EVFILT_USER, 0);
	CHECK_EQ(e.flags, EV_ONESHOT);
	EXPECT_NONE(kq, 0);

	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(3));
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_FORCEONESHOT, 0, 0, UD(3));
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(4));
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 100);
	CHECK(e.flags & EV_ONESHOT);
	CHECK(e.udata == UD(4));
	EXPECT_NONE(kq, 20);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	close(p[0]);
	close(p[1]);
	close(kq);
}

/* ---- signals re-added (item 6) ---- */

static void signal_readd_without_clear_stays_clear(void)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	CHECK(sigprocmask(SIG_BLOCK, &s, NULL) == 0);
	int kq = kq_new();
	KOK(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(1));
	KOK(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(2));
	CHECK(kill(getpid(), SIGUSR2) == 0);
	struct kevent e = EXPECT_ONE(kq, SIGUSR2, EVFILT_SIGNAL, 200);
	CHECK_EQ(e.data, 1);
	CHECK(e.flags & EV_CLEAR); /* set by the filter at attach, as FreeBSD */
	CHECK(e.udata == UD(2));
	EXPECT_NONE(kq, 20); /* one signal, one report */
	close(kq);
	struct timespec zero = {0, 0};
	while (sigtimedwait(&s, NULL, &zero) == SIGUSR2)
		;
}

/* ---- timeouts (item 12) ---- */

static void invalid_timeout_applies_the_changes_first(void)
{
	int kq = kq_new();
	struct kevent ch, ev[2];
	struct timespec bad[] = {{-1, 0}, {0, -1}, {0, 1000000000L}};
	for (unsigned i = 0; i < 3; i++) {
		EV_SET(&ch, 10 + i, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
		errno = 0;
		CHECK_EQ(kevent(kq, &ch, 1, ev, 2, &bad[i]), -1);
		CHECK_EQ(errno, EINVAL);
		EXPECT_ONE(kq, 10 + i, EVFILT_USER, 0);
		KOK(kq, 10 + i, EVFILT_USER, EV_DELETE, 0, 0, NULL);
	}
	/* nevents 0: nothing to wait for, the timeout is not looked at */
	EV_SET(&ch, 20, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	CHECK_EQ(kevent(kq, &ch, 1, NULL, 0, &bad[0]), 0);
	EXPECT_ONE(kq, 20, EVFILT_USER, 0);
	/* a receipt is returned before any wait */
	EV_SET(&ch, 21, EVFILT_USER, EV_ADD | EV_RECEIPT, 0, 0, UD(9));
	CHECK_EQ(kevent(kq, &ch, 1, ev, 2, &bad[0]), 1);
	CHECK_EQ(ev[0].flags, EV_ERROR);
	CHECK_EQ(ev[0].data, 0);
	close(kq);
}

struct trig {
	int kq;
	int ms;
};

static void *trigger_later(void *arg)
{
	struct trig *t = arg;
	usleep((useconds_t)t->ms * 1000);
	KOK(t->kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	return NULL;
}

static void huge_timeouts_wait_forever(void)
{
	struct timespec huge[] = {
	        {INT64_MAX, 0},     {INT64_MAX, 999999999},
	        {18446744073LL, 0}, {(int64_t)INT32_MAX + 1, 0},
	        {INT32_MAX, 0},
	};
	for (unsigned i = 0; i < sizeof huge / sizeof huge[0]; i++) {
		int kq = kq_new();
		KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
		struct trig t = {kq, 100};
		pthread_t th;
		CHECK(pthread_create(&th, NULL, trigger_later, &t) == 0);
		double t0 = now_ms();
		struct kevent ev;
		int n = kevent(kq, NULL, 0, &ev, 1, &huge[i]);
		double el = now_ms() - t0;
		CHECK(pthread_join(th, NULL) == 0);
		if (n != 1)
			fprintf(stderr, "timeout {%lld, %ld}: returned %d after %.0f ms\n",
			        (long long)huge[i].tv_sec, huge[i].tv_nsec, n, el);
		CHECK_EQ(n, 1);
		CHECK_EQ(ev.ident, 1);
		CHECK(el >= 80);
		close(kq);
	}
}

/* ---- fd numbers and timers (item 13) ---- */

static void add_past_the_fd_limit_is_ebadf(void)
{
	int kq = kq_new();
	uintptr_t big[] = {(uintptr_t)1 << 30, (uintptr_t)INT32_MAX, (uintptr_t)INT32_MAX - 1};
	for (unsigned i = 0; i < 3; i++) {
		CHECK_EQ(kchange_err(kq, big[i], EVFILT_READ, EV_ADD, 0, 0), EBADF);
		CHECK_EQ(kchange_err(kq, big[i], EVFILT_WRITE, EV_ADD, 0, 0), EBADF);
	}
	close(kq);
}

static void abstime_timer_stays_active_until_deleted(void)
{
	int kq = kq_new();
	/* 1 s after the epoch: long past */
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_ABSTIME | NOTE_SECONDS, 1, UD(1));
	for (int i = 0; i < 3; i++) {
		struct kevent e = EXPECT_ONE(kq, 1, EVFILT_TIMER, 200);
		CHECK_EQ(e.data, 1);
		CHECK_EQ(e.flags & EV_CLEAR, 0); /* only relative timers get it */
	}
	KOK(kq, 1, EVFILT_TIMER, EV_DISABLE, 0, 0, UD(1));
	EXPECT_NONE(kq, 20);
	KOK(kq, 1, EVFILT_TIMER, EV_ENABLE, 0, 0, UD(1));
	struct kevent e = EXPECT_ONE(kq, 1, EVFILT_TIMER, 200);
	CHECK_EQ(e.data, 1);
	KOK(kq, 1, EVFILT_TIMER, EV_DELETE, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	/* a relative timer is EV_CLEAR */
	KOK(kq, 2, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 1, NULL);
	e = EXPECT_ONE(kq, 2, EVFILT_TIMER, 200);
	CHECK(e.flags & EV_CLEAR);
	close(kq);
}

/* argv[1], if given, names the one behaviour to run (to see each fail alone). */
static const char *only;
#define TRY(fn)                                      \
	do {                                         \
		if (!only || strcmp(only, #fn) == 0) \
			RUN(fn);                     \
	} while (0)

int main(int argc, char **argv)
{
	only = argc > 1 ? argv[1] : NULL;
	TRY(trigger_without_add_sets_udata);
	TRY(enable_and_disable_set_udata);
	TRY(fd_knote_enable_sets_udata);
	TRY(add_with_keepudata_is_einval);
	TRY(readd_keeps_behaviour_flags);
	TRY(readd_keeps_ext);
	TRY(forceoneshot_survives_a_readd);
	TRY(signal_readd_without_clear_stays_clear);
	TRY(invalid_timeout_applies_the_changes_first);
	TRY(huge_timeouts_wait_forever);
	TRY(add_past_the_fd_limit_is_ebadf);
	TRY(abstime_timer_stays_active_until_deleted);
	return 0;
}
