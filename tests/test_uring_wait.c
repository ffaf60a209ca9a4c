/*
 * The io_uring wait (BATON_URING_WAIT=1, src/uring_wait.c): a call's oneshot
 * re-arms go to the kernel with its wait.  What kqueue(2) promises must not
 * change: an EV_ENABLE'd EV_DISPATCH knote reports again, even when a later
 * change of the same changelist replaced its registration before the queued
 * re-arm ran; a timeout still returns 0 and a signal EINTR, with the re-arm
 * made.  On a kernel without IORING_OP_EPOLL_WAIT the same cases run on
 * epoll's calls (the fallback) and must pass just the same.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

static void change(struct kevent *kev, int fd, short filter, unsigned short flags)
{
	EV_SET(kev, fd, filter, flags, 0, 0, NULL);
}

/* A READ EV_DISPATCH knote on sv[0] that has fired once: disabled, registration spent. */
static int fired_dispatch(int kq, int sv[2])
{
	CHECK(socketpair_stream(sv) == 0);
	KOK(kq, sv[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, NULL);
	write_n(sv[1], 1);
	EXPECT_ONE(kq, sv[0], EVFILT_READ, 2000);
	read_n(sv[0], 1);
	return sv[0];
}

/*
 * EV_ENABLE queues a re-arm (old generation); EV_DELETE and EV_ADD of the
 * same changelist register the fd again (new generation) before the queued
 * re-arm runs with the wait.  The re-arm must not leave the old generation
 * in the kernel: the readable socket reports.
 */
static void rearm_overtaken_by_delete_and_add(void)
{
	int kq = kq_new(), sv[2];
	int fd = fired_dispatch(kq, sv);
	write_n(sv[1], 3);
	struct kevent ch[3], ev[4];
	change(&ch[0], fd, EVFILT_READ, EV_ENABLE);
	change(&ch[1], fd, EVFILT_READ, EV_DELETE);
	change(&ch[2], fd, EVFILT_READ, EV_ADD | EV_DISPATCH);
	struct timespec ts = ts_ms(2000);
	int n = kevent(kq, ch, 3, ev, 4, &ts);
	CHECK_EQ(n, 1);
	CHECK_EQ(ev[0].ident, fd);
	CHECK_EQ(ev[0].filter, EVFILT_READ);
	CHECK_EQ(ev[0].data, 3);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

/* The same with a WRITE knote added after the queued re-arm of READ. */
static void rearm_overtaken_by_a_sibling(void)
{
	int kq = kq_new(), sv[2];
	int fd = fired_dispatch(kq, sv);
	struct kevent ch[3], ev[4];
	change(&ch[0], fd, EVFILT_READ, EV_ENABLE);
	change(&ch[1], fd, EVFILT_READ, EV_DELETE);
	change(&ch[2], fd, EVFILT_WRITE, EV_ADD | EV_DISPATCH);
	struct timespec ts = ts_ms(2000);
	int n = kevent(kq, ch, 3, ev, 4, &ts);
	CHECK_EQ(n, 1);
	CHECK_EQ(ev[0].ident, fd);
	CHECK_EQ(ev[0].filter, EVFILT_WRITE);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

/* Forty re-arms in one changelist, all ready: each reports once. */
static void rearms_of_many_fds_in_one_call(void)
{
	enum { N = 40 };
	int kq = kq_new(), sv[N][2];
	for (int i = 0; i < N; i++)
		fired_dispatch(kq, sv[i]);
	struct kevent ch[N], ev[N];
	for (int i = 0; i < N; i++) {
		change(&ch[i], sv[i][0], EVFILT_READ, EV_ENABLE);
		write_n(sv[i][1], 1);
	}
	int got = 0;
	struct timespec ts = ts_ms(2000);
	int n = kevent(kq, ch, N, ev, N, &ts);
	while (n > 0) {
		got += n;
		if (got >= N)
			break;
		n = kevent(kq, NULL, 0, ev, N, &ts);
	}
	CHECK_EQ(got, N);
	for (int i = 0; i < N; i++) {
		close(sv[i][0]);
		close(sv[i][1]);
	}
	close(kq);
}

static int ov_kq, ov_fd, ov_n;
static struct kevent ov_ev;

static void *enable_and_wait(void *arg)
{
	(void)arg;
	struct kevent ch;
	change(&ch, ov_fd, EVFILT_READ, EV_ENABLE);
	struct timespec ts = ts_ms(1500);
	ov_n = kevent(ov_kq, &ch, 1, &ov_ev, 1, &ts);
	return NULL;
}

/*
 * A thread's EV_ENABLE of sv[0]'s fired dispatch knote, held back (test
 * builds: 300 ms) after it is queued; returns when it is queued.
 */
static pthread_t start_held_enable(int sv[2])
{
	ov_kq = kq_new();
	ov_fd = fired_dispatch(ov_kq, sv);
	setenv("BATON_TEST_REARM_DELAY_MS", "300", 1);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, enable_and_wait, NULL) == 0);
	usleep(100 * 1000); /* the EV_ENABLE is queued, not yet sent */
	return t;
}

/* The one event that thread's wait or a poll after it returns. */
static struct kevent join_and_collect_one(pthread_t t, long ms)
{
	pthread_join(t, NULL);
	unsetenv("BATON_TEST_REARM_DELAY_MS");
	struct kevent ev[2];
	int n = ov_n == 1 ? 0 : kpoll(ov_kq, ev, 2, ms);
	CHECK_EQ(ov_n + n, 1);
	return ov_n == 1 ? ov_ev : ev[0];
}

/*
 * Another thread closes the number (dup2 of a new readable socket onto it)
 * and adds a dispatch knote for the new socket while an EV_ENABLE of the
 * old one's knote is queued: the new knote reports, once, with its udata
 * (the close waits for the queued re-arm, which must not land on the new
 * registration).  Test builds hold the re-arm back for 300 ms.
 */
static void rearm_overtaken_by_close_and_new_file(void)
{
	int sv[2], nv[2];
	pthread_t t = start_held_enable(sv);
	CHECK(socketpair_stream(nv) == 0);
	CHECK(dup2(nv[0], ov_fd) == ov_fd); /* closes the old socket: its knote goes */
	close(nv[0]);
	write_n(nv[1], 1);
	KOK(ov_kq, ov_fd, EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(7));
	struct kevent got = join_and_collect_one(t, 1000);
	CHECK_EQ(got.ident, ov_fd);
	CHECK_EQ(got.filter, EVFILT_READ);
	CHECK_EQ(got.data, 1);
	CHECK(got.udata == UD(7));
	EXPECT_NONE(ov_kq, 50);
	close(ov_fd);
	close(sv[1]);
	close(nv[1]);
	close(ov_kq);
}

/*
 * The same, overtaken by another thread's changes of the same fd: its
 * READ knote deleted and a WRITE knote added (a new registration, a new
 * generation) while the EV_ENABLE of READ is queued.  The queued re-arm
 * lands on the new registration with the old mask and generation: the
 * writable socket must still report WRITE, once.  (Failed before
 * fe_regseq: the WRITE never came.)
 */
static void rearm_overtaken_by_another_thread(void)
{
	int sv[2];
	pthread_t t = start_held_enable(sv);
	KOK(ov_kq, ov_fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	KOK(ov_kq, ov_fd, EVFILT_WRITE, EV_ADD | EV_DISPATCH, 0, 0, UD(9));
	struct kevent got = join_and_collect_one(t, 1000);
	CHECK_EQ(got.ident, ov_fd);
	CHECK_EQ(got.filter, EVFILT_WRITE);
	CHECK(got.udata == UD(9));
	EXPECT_NONE(ov_kq, 50);
	close(sv[0]);
	close(sv[1]);
	close(ov_kq);
}

/*
 * close() while another thread's re-arm of the number is queued, and the
 * number goes to a descriptor of the library's own (EVFILT_PROC's pidfd,
 * the lowest free number under a low fd limit): the re-arm must not take that registration over
 * (the exit would be reported with the socket's tag and dropped).  The
 * close waits for the queued re-arm.  (Failed before: NOTE_EXIT was lost.)
 */
static void rearm_does_not_take_over_the_next_descriptor(void)
{
	int sv[2];
	pthread_t t = start_held_enable(sv);
	/* a low limit keeps the library's descriptors where they are made
	 * (kq__private_fd moves them near the limit): the pidfd gets ov_fd */
	struct rlimit old, low;
	CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
	low = old;
	low.rlim_cur = 40;
	CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	CHECK(close(ov_fd) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(7);
	KOK(ov_kq, (uintptr_t)pid, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, UD(3));
	CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
	struct kevent got = join_and_collect_one(t, 2000);
	CHECK_EQ(got.ident, pid);
	CHECK_EQ(got.filter, EVFILT_PROC);
	CHECK(got.fflags & NOTE_EXIT);
	CHECK(waitpid(pid, NULL, 0) == pid);
	close(sv[1]);
	close(ov_kq);
}

/* A re-arm with a wait that times out: 0 events, and the re-arm holds. */
static void rearm_then_timeout(void)
{
	int kq = kq_new(), sv[2];
	int fd = fired_dispatch(kq, sv);
	struct kevent ch, ev;
	change(&ch, fd, EVFILT_READ, EV_ENABLE);
	struct timespec ts = ts_ms(50);
	double t0 = now_ms();
	CHECK_EQ(kevent(kq, &ch, 1, &ev, 1, &ts), 0);
	CHECK(now_ms() - t0 >= 45);
	write_n(sv[1], 2);
	struct kevent got = EXPECT_ONE(kq, fd, EVFILT_READ, 2000);
	CHECK_EQ(got.data, 2);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

static void on_usr1(int sig)
{
	(void)sig;
}

struct poke {
	pthread_t target;
	int ms;
};

static void *poke_later(void *arg)
{
	struct poke *p = arg;
	usleep((useconds_t)p->ms * 1000);
	pthread_kill(p->target, SIGUSR1);
	return NULL;
}

/* A re-arm with a wait a signal ends: EINTR, and the re-arm holds. */
static void rearm_then_signal(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1; /* no SA_RESTART: kevent() is not restarted */
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	int kq = kq_new(), sv[2];
	int fd = fired_dispatch(kq, sv);
	struct kevent ch, ev;
	change(&ch, fd, EVFILT_READ, EV_ENABLE);
	struct poke p = {pthread_self(), 50};
	pthread_t t;
	CHECK(pthread_create(&t, NULL, poke_later, &p) == 0);
	errno = 0;
	int n = kevent(kq, &ch, 1, &ev, 1, NULL);
	CHECK_EQ(n, -1);
	CHECK_EQ(errno, EINTR);
	pthread_join(t, NULL);
	write_n(sv[1], 1);
	EXPECT_ONE(kq, fd, EVFILT_READ, 2000);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

struct later_write {
	int fd, ms;
};

static void *write_later(void *arg)
{
	struct later_write *w = arg;
	usleep((useconds_t)w->ms * 1000);
	write_n(w->fd, 3);
	return NULL;
}

/*
 * A thread with a ring whose call has no re-arms sleeps in it from the first
 * io_uring_enter (the wait, its cancel and the exclusive poll together): a
 * timeout gives 0 events after it, a signal EINTR, a write the event.  (The
 * calls of the tests above gave this thread its ring.)
 */
static void waits_without_rearms(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	int kq = kq_new(), sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
	struct kevent ch, ev;
	change(&ch, sv[0], EVFILT_READ, EV_ADD);
	CHECK_EQ(kevent(kq, &ch, 1, NULL, 0, NULL), 0);
	for (int round = 0; round < 3; round++) {
		struct timespec ts = ts_ms(50);
		double t0 = now_ms();
		CHECK_EQ(kevent(kq, NULL, 0, &ev, 1, &ts), 0);
		CHECK(now_ms() - t0 >= 45);

		struct poke p = {pthread_self(), 50};
		pthread_t t;
		CHECK(pthread_create(&t, NULL, poke_later, &p) == 0);
		errno = 0;
		CHECK_EQ(kevent(kq, NULL, 0, &ev, 1, NULL), -1);
		CHECK_EQ(errno, EINTR);
		pthread_join(t, NULL);

		struct later_write w = {sv[1], 50};
		CHECK(pthread_create(&t, NULL, write_later, &w) == 0);
		CHECK_EQ(kevent(kq, NULL, 0, &ev, 1, NULL), 1);
		CHECK_EQ((int)ev.ident, sv[0]);
		CHECK_EQ(ev.data, 3);
		pthread_join(t, NULL);
		char buf[8];
		CHECK_EQ(read(sv[0], buf, sizeof(buf)), 3);
	}
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

/*
 * Two threads on one kqueue, each re-arming what it got: every byte written
 * is read exactly once and no knote is in two threads at once (I1).
 */
enum { PAIRS = 16, ROUNDS = 4000 };
static int tkq, tsv[PAIRS][2];
static atomic_int busy[PAIRS], handled, overlap;

static void *serve(void *arg)
{
	(void)arg;
	struct kevent ch[8], ev[8];
	int nch = 0;
	while (atomic_load(&handled) < ROUNDS) {
		struct timespec ts = ts_ms(20);
		int n = kevent(tkq, ch, nch, ev, 8, &ts);
		CHECK(n >= 0);
		nch = 0;
		for (int i = 0; i < n; i++) {
			int k = (int)(intptr_t)ev[i].udata;
			if (atomic_exchange(&busy[k], 1))
				atomic_fetch_add(&overlap, 1);
			char c;
			CHECK_EQ(read(tsv[k][0], &c, 1), 1);
			CHECK_EQ(write(tsv[k][1], &c, 1), 1);
			atomic_store(&busy[k], 0);
			atomic_fetch_add(&handled, 1);
			EV_SET(&ch[nch++], tsv[k][0], EVFILT_READ, EV_ENABLE, 0, 0, UD(k));
		}
	}
	if (nch)
		CHECK_EQ(kevent(tkq, ch, nch, NULL, 0, NULL), 0);
	return NULL;
}

static void threads_rearm_and_wait(void)
{
	tkq = kq_new();
	for (int k = 0; k < PAIRS; k++) {
		CHECK(socketpair_stream(tsv[k]) == 0);
		KOK(tkq, tsv[k][0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, UD(k));
		write_n(tsv[k][1], 1);
	}
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&t[i], NULL, serve, NULL) == 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(atomic_load(&overlap), 0);
	CHECK(atomic_load(&handled) >= ROUNDS);
	for (int k = 0; k < PAIRS; k++) {
		close(tsv[k][0]);
		close(tsv[k][1]);
	}
	close(tkq);
}

int main(void)
{
	setenv("BATON_URING_WAIT", "1", 1);
	RUN(rearm_overtaken_by_delete_and_add);
	RUN(rearm_overtaken_by_a_sibling);
	RUN(rearms_of_many_fds_in_one_call);
	RUN(rearm_overtaken_by_close_and_new_file);
	RUN(rearm_overtaken_by_another_thread);
	RUN(rearm_does_not_take_over_the_next_descriptor);
	RUN(rearm_then_timeout);
	RUN(rearm_then_signal);
	RUN(waits_without_rearms);
	RUN(threads_rearm_and_wait);
	return 0;
}
