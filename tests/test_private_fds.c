/*
 * A kqueue's own descriptors (its epoll dup, eventfd, timerfd, signalfd,
 * inotify) are not the program's: they do not take the low numbers the
 * program expects to get, dup2() and close_range() over their numbers do
 * not break the kqueue nor make it write into the program's files, a change
 * on one of their numbers is EBADF, and no child that execs inherits them
 * or the kqueue itself (FreeBSD: a kqueue is not inherited by a child).
 */
#include "util.h"

#include <linux/close_range.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

/*
 * Makes a kqueue with every kind of own descriptor it can have (a signal
 * registered, a regular file at EOF watched) and returns its number; priv
 * gets the numbers it opened besides.
 */
static int kqueue_with_private(int *priv, int *npriv)
{
	unsigned char before[1024], after[1024];
	open_fds(before, 8192);
	int kq = kq_new();
	KOK(kq, SIGURG, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	char path[] = "/tmp/baton_private_XXXXXX";
	int file = mkstemp(path);
	CHECK(file >= 0);
	unlink(path);
	KOK(kq, (uintptr_t)file, EVFILT_READ, EV_ADD, 0, 0, NULL);
	struct kevent ev[4];
	kpoll(kq, ev, 4, 20); /* at EOF: watched from now on */
	KOK(kq, (uintptr_t)file, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	close(file);
	open_fds(after, 8192);
	*npriv = 0;
	for (int n = 0; n < 8192; n++)
		if ((after[n / 8] & ~before[n / 8]) & (1 << (n % 8)) && n != kq)
			priv[(*npriv)++] = n;
	CHECK(*npriv >= 3);
	return kq;
}

static int lowest_free(void)
{
	int fd = fcntl(0, F_DUPFD, 0);
	CHECK(fd >= 0);
	close(fd);
	return fd;
}

static void private_descriptors_leave_the_low_numbers_to_the_program(void)
{
	int want = lowest_free();
	int priv[16], npriv;
	int kq = kqueue_with_private(priv, &npriv);
	CHECK_EQ(kq, want);
	/* the program's next fd is the one after the kqueue's */
	int next = lowest_free();
	CHECK_EQ(next, kq + 1);
	for (int i = 0; i < npriv; i++) {
		CHECK(priv[i] > next);
		CHECK(fcntl(priv[i], F_GETFD) & FD_CLOEXEC);
	}
	close(kq);
}

/* A daemon: stdio closed, kqueue made, /dev/null put on 1 and 2. */
static void a_daemon_can_reopen_stdio_after_making_its_kqueue(void)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int p[2];
		if (pipe(p) < 0)
			_exit(10);
		close(0);
		close(1);
		close(2);
		int kq = kqueue();
		if (kq != 0)
			_exit(11);
		int null = open("/dev/null", O_RDWR);
		if (null != 1 || dup2(null, 2) != 2)
			_exit(12);
		struct kevent ch[2], ev[2];
		EV_SET(&ch[0], 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
		EV_SET(&ch[1], (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		if (kevent(kq, ch, 2, NULL, 0, NULL) != 0 || write(p[1], "x", 1) != 1)
			_exit(13);
		struct timespec ts = {1, 0};
		if (kevent(kq, NULL, 0, ev, 2, &ts) != 2)
			_exit(14);
		_exit(0);
	}
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
}

struct waiter {
	int kq, got;
};

static void *wait_one(void *arg)
{
	struct waiter *w = arg;
	struct kevent ev;
	struct timespec ts = {5, 0};
	w->got = kevent(w->kq, NULL, 0, &ev, 1, &ts);
	return NULL;
}

/* A thread blocked in kevent() wakes for a USER trigger from another. */
static void wakes_a_blocked_waiter(int kq)
{
	struct waiter w = {kq, -2};
	pthread_t t;
	KOK(kq, 77, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	CHECK(pthread_create(&t, NULL, wait_one, &w) == 0);
	struct timespec nap = {0, 50 * 1000 * 1000};
	nanosleep(&nap, NULL);
	KOK(kq, 77, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	pthread_join(t, NULL);
	CHECK_EQ(w.got, 1);
	KOK(kq, 77, EVFILT_USER, EV_DELETE, 0, 0, NULL);
}

static void close_range_and_dup2_over_private_numbers_leave_the_kqueue_alone(void)
{
	int priv[16], npriv;
	int kq = kqueue_with_private(priv, &npriv);
	int lo = priv[0], hi = priv[npriv - 1];
	CHECK(lo > kq);
	CHECK_EQ(close_range((unsigned)lo, (unsigned)hi, 0), 0);
	/* the program puts a file of its own on every number it just freed */
	int p[2];
	CHECK(pipe2(p, O_NONBLOCK) == 0);
	for (int n = lo; n <= hi; n++)
		if (n != p[0] && n != p[1])
			CHECK_EQ(dup2(p[1], n), n);
	/* the kqueue still works: wakes, timers */
	wakes_a_blocked_waiter(kq);
	KOK(kq, 5, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 1, NULL);
	EXPECT_ONE(kq, 5, EVFILT_TIMER, 1000);
	/* and wrote nothing into the program's pipe */
	char c;
	errno = 0;
	CHECK_EQ(read(p[0], &c, 1), -1);
	CHECK_EQ(errno, EAGAIN);
	for (int n = lo; n <= hi; n++)
		if (n != p[0] && n != p[1])
			CHECK_EQ(close(n), 0);
	close(p[0]);
	close(p[1]);
	close(kq);
}

/* glibc's closefrom() makes the close_range system call itself */
static void closefrom_closes_the_programs_fds_only(void)
{
	pid_t pid = fork(); /* closefrom would take the test's own fds */
	CHECK(pid >= 0);
	if (pid == 0) {
		int kq = kqueue();
		int p[2];
		if (kq < 0 || pipe(p) < 0)
			_exit(10);
		struct kevent ch;
		EV_SET(&ch, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		if (kevent(kq, &ch, 1, NULL, 0, NULL) != 0 || p[0] < kq)
			_exit(11);
		closefrom(kq + 1);
		/* the pipe's knote went with it, the kqueue works */
		if (kevent(kq, &ch, 1, NULL, 0, NULL) != -1 || errno != EBADF)
			_exit(12);
		EV_SET(&ch, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
		struct timespec ts = {1, 0};
		if (kevent(kq, &ch, 1, &ch, 1, &ts) != 1 || ch.filter != EVFILT_USER)
			_exit(13);
		_exit(0);
	}
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
}

static void changes_and_close_on_a_private_number_are_ebadf(void)
{
	int priv[16], npriv;
	int kq = kqueue_with_private(priv, &npriv);
	for (int i = 0; i < npriv; i++) {
		uintptr_t n = (uintptr_t)priv[i];
		CHECK_EQ(kchange_err(kq, n, EVFILT_WRITE, EV_DELETE, 0, 0), EBADF);
		CHECK_EQ(kchange_err(kq, n, EVFILT_READ, EV_ADD, 0, 0), EBADF);
		CHECK_EQ(kchange_err(kq, n, EVFILT_WRITE, EV_ADD, 0, 0), EBADF);
		CHECK_EQ(kchange_err(kq, n, EVFILT_READ, EV_DELETE, 0, 0), EBADF);
		errno = 0;
		CHECK_EQ(close(priv[i]), -1);
		CHECK_EQ(errno, EBADF);
	}
	wakes_a_blocked_waiter(kq);
	close(kq);
}

/* Runs sh in a posix_spawn child: exit 0 if none of fds is open there. */
static int spawned_child_has_none_of(const int *fds, int n)
{
	char *argv[64];
	char nums[64][16];
	int a = 0;
	argv[a++] = "sh";
	argv[a++] = "-c";
	argv[a++] = "for n in \"$@\"; do if [ -e /proc/$$/fd/$n ]; then "
	            "echo \"fd $n inherited\" >&2; exit 1; fi; done";
	argv[a++] = "sh";
	for (int i = 0; i < n && a < 62; i++) {
		snprintf(nums[i], sizeof nums[i], "%d", fds[i]);
		argv[a++] = nums[i];
	}
	argv[a] = NULL;
	pid_t pid;
	CHECK_EQ(posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ), 0);
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void a_spawned_child_inherits_no_kqueue_descriptor(void)
{
	int fds[20], n;
	int kq = kqueue_with_private(fds, &n);
	int d = dup(kq);
	CHECK(d >= 0);
	/* what the program sees: the flags it asked for */
	CHECK_EQ(fcntl(kq, F_GETFD) & FD_CLOEXEC, 0);
	CHECK_EQ(fcntl(d, F_GETFD) & FD_CLOEXEC, 0);
	CHECK_EQ(fcntl(d, F_SETFD, FD_CLOEXEC), 0);
	CHECK_EQ(fcntl(d, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	CHECK_EQ(fcntl(d, F_SETFD, 0), 0);
	CHECK_EQ(fcntl(d, F_GETFD) & FD_CLOEXEC, 0);
	fds[n++] = kq;
	fds[n++] = d;
	CHECK_EQ(spawned_child_has_none_of(fds, n), 0);
	/* the check can fail: a plain fd is inherited */
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK_EQ(spawned_child_has_none_of(p, 1), 1);
	close(p[0]);
	close(p[1]);
	close(d);
	close(kq);
}

int main(void)
{
	RUN(private_descriptors_leave_the_low_numbers_to_the_program);
	RUN(a_daemon_can_reopen_stdio_after_making_its_kqueue);
	RUN(close_range_and_dup2_over_private_numbers_leave_the_kqueue_alone);
	RUN(closefrom_closes_the_programs_fds_only);
	RUN(changes_and_close_on_a_private_number_are_ebadf);
	RUN(a_spawned_child_inherits_no_kqueue_descriptor);
	return 0;
}
