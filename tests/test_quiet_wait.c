/*
 * A kqueue whose knotes are all EVFILT_USER waits on a futex, not in
 * epoll_wait() (src/quiet.c).  What FreeBSD's kevent() does must not
 * change with it: a sleeper wakes for a trigger, for a knote of another
 * filter added while it sleeps, for the close of the kqueue; EINTR holds
 * whatever SA_RESTART says (kern_kevent turns ERESTART into EINTR); and the
 * kqueue's fd polls readable exactly while events are pending, also when a
 * sleeper took fewer than were queued.  (The timeouts are test_api_errors',
 * whose kqueues are quiet.)
 */
#include "util.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>

struct waiter {
	int kq, nevents, n, err;
	long ms; /* < 0: timeout NULL */
	_Atomic pid_t tid;
	double took;
	struct kevent ev[4];
};

static void *wait_thread(void *p)
{
	struct waiter *w = p;
	w->tid = (pid_t)syscall(SYS_gettid);
	struct timespec ts = ts_ms(w->ms);
	double t0 = now_ms();
	w->n = kevent(w->kq, NULL, 0, w->ev, w->nevents, w->ms < 0 ? NULL : &ts);
	w->err = errno;
	w->took = now_ms() - t0;
	return NULL;
}

static void start(pthread_t *t, struct waiter *w)
{
	w->tid = 0;
	CHECK(pthread_create(t, NULL, wait_thread, w) == 0);
	while (!w->tid)
		usleep(1000);
	wait_asleep(w->tid);
	usleep(20000); /* inside its wait, not on the way there */
}

static void sleeper_wakes_for_a_trigger(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	for (int round = 0; round < 2; round++) {
		struct waiter w = {.kq = kq, .nevents = 1, .ms = round ? 5000 : -1};
		pthread_t t;
		start(&t, &w);
		/* as FreeBSD, the change sets udata too */
		KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(2 + round));
		CHECK(pthread_join(t, NULL) == 0);
		CHECK_EQ(w.n, 1);
		CHECK_EQ(w.ev[0].ident, 1);
		CHECK(w.ev[0].udata == UD(2 + round));
		CHECK(w.took < 3000);
	}
	close(kq);
}

/* The sleeper must move to epoll_wait(), or it sleeps through the pipe. */
static void sleeper_wakes_for_a_knote_of_another_filter(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	int p[2];
	CHECK(pipe(p) == 0);
	struct waiter w = {.kq = kq, .nevents = 1, .ms = 5000};
	pthread_t t;
	start(&t, &w);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(2));
	usleep(20000);
	write_n(p[1], 3);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_EQ(w.n, 1);
	CHECK_EQ(w.ev[0].ident, (uintptr_t)p[0]);
	CHECK_EQ(w.ev[0].filter, EVFILT_READ);
	CHECK_EQ(w.ev[0].data, 3);
	CHECK(w.took < 3000);
	close(p[0]);
	close(p[1]);
	close(kq);

	/* a timer added while it sleeps fires into its wait */
	kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	w.kq = kq;
	w.ms = -1;
	start(&t, &w);
	KOK(kq, 9, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 30, UD(9));
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_EQ(w.n, 1);
	CHECK_EQ(w.ev[0].filter, EVFILT_TIMER);
	CHECK_EQ(w.ev[0].ident, 9);
	close(kq);
}

static void close_wakes_a_sleeper_with_ebadf(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
	struct waiter w = {.kq = kq, .nevents = 1, .ms = 5000};
	pthread_t t;
	start(&t, &w);
	CHECK(close(kq) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_EQ(w.n, -1);
	CHECK_EQ(w.err, EBADF);
	CHECK(w.took < 3000);
}

static void on_usr1(int sig)
{
	(void)sig;
}

/* Both with and without SA_RESTART: kevent() is never restarted. */
static void a_handled_signal_interrupts_a_sleeper_with_eintr(void)
{
	for (int restart = 0; restart < 2; restart++) {
		set_action(SIGUSR1, on_usr1, restart ? SA_RESTART : 0);
		for (int forever = 0; forever < 2; forever++) {
			int kq = kq_new();
			KOK(kq, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
			struct waiter w = {.kq = kq, .nevents = 1, .ms = forever ? -1 : 4000};
			pthread_t t;
			start(&t, &w);
			CHECK(pthread_kill(t, SIGUSR1) == 0);
			CHECK(pthread_join(t, NULL) == 0);
#ifndef BATON_SANITIZED /* ThreadSanitizer runs the handler after the wait */
			CHECK_EQ(w.n, -1);
			CHECK_EQ(w.err, EINTR);
			CHECK(w.took < 3000);
#endif
			close(kq);
		}
	}
	signal(SIGUSR1, SIG_DFL);
}

#ifndef __SANITIZE_ADDRESS__
/*
 * kevent() is a cancellation point (on FreeBSD, and here where it waits in
 * epoll_wait()): a sleeper on the futex is cancelled too, and counts as a
 * sleeper no more, so a later trigger still wakes a poller of the fd.
 */
static void a_sleeper_can_be_cancelled(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	struct waiter w = {.kq = kq, .nevents = 1, .ms = -1};
	pthread_t t;
	start(&t, &w);
	cancel_and_join(t);
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	CHECK(kq_readable(kq, 500));
	EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	close(kq);
}
#endif

/*
 * Two triggers, a sleeper with room for one: the other stays pending, and
 * the kqueue's fd says so, as FreeBSD's does while its queue is not empty.
 */
static void a_leftover_keeps_the_kqueue_fd_readable(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	KOK(kq, 2, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	struct waiter w = {.kq = kq, .nevents = 1, .ms = 5000};
	pthread_t t;
	start(&t, &w);
	struct kevent ch[2];
	EV_SET(&ch[0], 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	EV_SET(&ch[1], 2, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	CHECK_EQ(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_EQ(w.n, 1);
	CHECK(kq_readable(kq, 500));
	struct kevent ev;
	CHECK_EQ(kpoll(kq, &ev, 1, 0), 1);
	CHECK(ev.ident != w.ev[0].ident);
	CHECK(!kq_readable(kq, 20));
	close(kq);
}

/* With nobody inside kevent(), a trigger wakes a poll() of the kqueue's fd. */
static void a_trigger_nobody_takes_wakes_a_poller(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	struct waiter w = {.kq = kq, .nevents = 1, .ms = 30};
	pthread_t t;
	start(&t, &w); /* a sleeper that leaves empty-handed */
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_EQ(w.n, 0);
	CHECK(!kq_readable(kq, 0));
	KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	CHECK(kq_readable(kq, 500));
	EXPECT_ONE(kq, 1, EVFILT_USER, 0);
	CHECK(!kq_readable(kq, 20));
	close(kq);
}

/* Many sleepers, many triggers: each trigger is taken by exactly one. */
struct storm {
	int kq;
	atomic_int got[16];
	atomic_int quit;
};

static void *storm_waiter(void *p)
{
	struct storm *s = p;
	while (!atomic_load(&s->quit)) {
		struct kevent ev[2];
		struct timespec ts = ts_ms(2000);
		int n = kevent(s->kq, NULL, 0, ev, 2, &ts);
		CHECK(n >= 0);
		for (int i = 0; i < n; i++)
			if (ev[i].ident < 16)
				atomic_fetch_add(&s->got[ev[i].ident], 1);
	}
	return NULL;
}

static void every_trigger_reaches_one_of_many_sleepers(void)
{
	struct storm s = {.kq = kq_new()};
	for (int i = 0; i < 16; i++)
		KOK(s.kq, (uintptr_t)i, EVFILT_USER, EV_ADD | EV_DISPATCH, 0, 0, NULL);
	KOK(s.kq, 99, EVFILT_USER, EV_ADD, 0, 0, NULL);
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		CHECK(pthread_create(&t[i], NULL, storm_waiter, &s) == 0);
	int want[16] = {0};
	for (int round = 1; round <= 300; round++) {
		int id = round % 16;
		/* re-enable (EV_DISPATCH) and trigger: one delivery each */
		KOK(s.kq, (uintptr_t)id, EVFILT_USER, EV_ENABLE, NOTE_TRIGGER, 0, NULL);
		double t0 = now_ms();
		want[id]++;
		while (atomic_load(&s.got[id]) < want[id] && now_ms() - t0 < 3000)
			usleep(100);
		CHECK_EQ(atomic_load(&s.got[id]), want[id]);
	}
	atomic_store(&s.quit, 1);
	KOK(s.kq, 99, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	for (int i = 0; i < 4; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	close(s.kq);
}

int main(void)
{
	RUN(sleeper_wakes_for_a_trigger);
	RUN(sleeper_wakes_for_a_knote_of_another_filter);
	RUN(close_wakes_a_sleeper_with_ebadf);
	RUN(a_handled_signal_interrupts_a_sleeper_with_eintr);
#ifndef __SANITIZE_ADDRESS__
	/* AddressSanitizer's runtime (gcc 12) reports its own sigaltstack()
	 * call in the cancellation's unwinding as a stack-buffer-overflow */
	RUN(a_sleeper_can_be_cancelled);
#endif
	RUN(a_leftover_keeps_the_kqueue_fd_readable);
	RUN(a_trigger_nobody_takes_wakes_a_poller);
	RUN(every_trigger_reaches_one_of_many_sleepers);
	return 0;
}
