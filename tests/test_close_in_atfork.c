/*
 * close() of a kqueue from a fork handler of the program (pthread_atfork):
 * the kqueue goes as with any close, and the child, which does not inherit
 * it, gets kqueues that work and free all their descriptors when closed.
 * The program's prepare handler is registered before libbaton's, so it runs
 * after it, while libbaton is getting ready for the fork.
 */
#include <pthread.h>
#include <sys/wait.h>

#include "util.h"

static int victim = -1;

static void prepare(void)
{
	if (victim >= 0)
		close(victim);
	victim = -1;
}

static int use_and_close(int kq, int round)
{
	int code = 0;
	struct kevent ch, ev;
	EV_SET(&ch, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, UD(round));
	if (kevent(kq, &ch, 1, NULL, 0, NULL) != 0)
		code |= 2;
	if (kpoll(kq, &ev, 1, 100) != 1 || ev.udata != UD(round))
		code |= 4;
	if (close(kq) != 0)
		code |= 8;
	return code;
}

static int child(void)
{
	int code = 0;
	int before = count_fds();
	for (int round = 0; round < 3; round++) {
		int a = kqueue(), b = kqueue();
		if (a < 0 || b < 0)
			return 1;
		code |= use_and_close(a, round) | use_and_close(b, round);
	}
	if (count_fds() != before)
		code |= 16; /* a kqueue's own descriptors left behind */
	return code;
}

static void a_kqueue_closed_in_a_fork_handler(void)
{
	CHECK_EQ(pthread_atfork(prepare, NULL, NULL), 0);
	int before = count_fds();
	int kq = kq_new(); /* libbaton's fork handlers come after ours */
	victim = kq_new();
	KOK(victim, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(child());
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
	CHECK_EQ(victim, -1);
	/* the parent's: the victim and kq gone, all their descriptors */
	KOK(kq, 2, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	EXPECT_ONE(kq, 2, EVFILT_USER, 0);
	CHECK_EQ(close(kq), 0);
	CHECK_EQ(count_fds(), before);
}

int main(void)
{
	alarm(60); /* a deadlock in the fork handlers fails, not hangs */
	RUN(a_kqueue_closed_in_a_fork_handler);
	return 0;
}
