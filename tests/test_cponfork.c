/*
 * KQUEUE_CPONFORK (FreeBSD 15): the child gets a copy of the kqueue at the
 * same number, with its fd, timer and user registrations and pending events,
 * working on kernel objects of its own; the parent's kqueue is untouched.
 */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

static void child_copy_serves_fds_and_timers(void)
{
	int kq = kqueuex(KQUEUE_CPONFORK);
	CHECK(kq >= 0);
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	KOK(kq, 7, EVFILT_TIMER, EV_ADD, 0, 5, UD(2));
	KOK(kq, 3, EVFILT_USER, EV_ADD | EV_DISPATCH, 0, 0, UD(3));
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int code = 0;
		struct kevent ev[4];
		/* fd registrations live in the child's own epoll */
		if (write(p[1], "abc", 3) != 3)
			code |= 1;
		double end = now_ms() + 1000;
		int got_read = 0, got_timer = 0;
		while ((!got_read || !got_timer) && now_ms() < end) {
			int n = kpoll(kq, ev, 4, 100);
			for (int i = 0; i < n; i++) {
				got_read |= ev[i].filter == EVFILT_READ && ev[i].data == 3 &&
				            ev[i].udata == UD(1);
				got_timer |= ev[i].filter == EVFILT_TIMER && ev[i].udata == UD(2);
			}
		}
		if (!got_read)
			code |= 2;
		if (!got_timer)
			code |= 4;
		/* changes in the child stay in the child */
		struct kevent ch;
		EV_SET(&ch, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
		if (kevent(kq, &ch, 1, NULL, 0, NULL) != 0)
			code |= 8;
		EV_SET(&ch, 3, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
		if (kevent(kq, &ch, 1, NULL, 0, NULL) != 0)
			code |= 16;
		_exit(code);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
	/* parent: READ still registered (the pipe holds the child's bytes),
	 * its user event was never triggered here */
	struct kevent ev[8];
	double end = now_ms() + 500;
	int got_read = 0, got_user = 0;
	while (!got_read && now_ms() < end) {
		int n = kpoll(kq, ev, 8, 50);
		for (int i = 0; i < n; i++) {
			got_read |= ev[i].filter == EVFILT_READ && ev[i].data == 3;
			got_user |= ev[i].filter == EVFILT_USER;
		}
	}
	CHECK(got_read);
	CHECK(!got_user);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void plain_kqueue_is_still_closed_in_the_child(void)
{
	int kq = kqueuex(0), copy = kqueuex(KQUEUE_CPONFORK);
	CHECK(kq >= 0 && copy >= 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit((fd_is_open(kq) ? 1 : 0) | (fd_is_open(copy) ? 0 : 2));
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
	close(kq);
	close(copy);
}

/*
 * The copy is the kqueue at every number it has in the parent: a dup keeps
 * it (the first number closed), and each name is the child's own kqueue,
 * readable when the child's copy has an event.
 */
static void child_copy_is_at_every_name(void)
{
	int kq = kqueuex(KQUEUE_CPONFORK);
	CHECK(kq >= 0);
	int d1 = dup(kq), d2 = dup(kq);
	CHECK(d1 >= 0 && d2 >= 0);
	CHECK_EQ(close(kq), 0);
	KOK(d1, 5, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, UD(5));
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int code = 0;
		struct kevent ch, ev;
		EV_SET(&ch, 5, EVFILT_USER, 0, NOTE_TRIGGER, 0, UD(6));
		if (kevent(d2, &ch, 1, NULL, 0, NULL) != 0)
			code |= 1;
		/* the child's event makes the child's names readable */
		if (!kq_readable(d1, 200) || !kq_readable(d2, 200))
			code |= 2;
		if (kpoll(d1, &ev, 1, 200) != 1 || ev.udata != UD(6))
			code |= 4;
		_exit(code);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
	/* the parent's kqueue saw none of it */
	EXPECT_NONE(d2, 20);
	close(d1);
	close(d2);
}

int main(void)
{
	RUN(child_copy_serves_fds_and_timers);
	RUN(plain_kqueue_is_still_closed_in_the_child);
	RUN(child_copy_is_at_every_name);
	fprintf(stderr, "test_cponfork: ok\n");
	return 0;
}
