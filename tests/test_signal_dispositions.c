/*
 * EVFILT_SIGNAL whatever the disposition, from FreeBSD's kqueue(2): the
 * filter records every attempt to deliver the signal, even one marked
 * SIG_IGN, except SIGCHLD when ignored; the program's handler still runs
 * (kqueue has lower precedence); several kqueues each see it.  And what an
 * interposed sigaction()/signal() must keep: the program reads back the
 * action it set, flags and all, and gets it back in the kernel when the
 * last knote goes.
 */
#include "util.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define SFLAGS(e) ((e).flags & ~EV_CLEAR)

/* The action the kernel holds, read behind libc's (and libbaton's) back. */
struct kact {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

static struct kact kernel_action(int sig)
{
	struct kact k;
	CHECK(syscall(SYS_rt_sigaction, sig, NULL, &k, sizeof(k.mask)) == 0);
	return k;
}

static volatile sig_atomic_t hits, depth, max_depth, info_ok, seen_in_handler, reraise;
static int handler_kq = -1;

/*
 * ThreadSanitizer runs a program's handler late (at its next intercepted
 * call): wait for it a little.  Elsewhere it has run when raise() returns.
 */
static void settle(volatile sig_atomic_t *v, int want)
{
	for (int i = 0; i < 1000 && *v < want; i++)
		usleep(1000);
}

static void on_sig(int sig)
{
	(void)sig;
	hits++;
}

static void on_info(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	hits++;
	info_ok = sig == SIGUSR1 && si->si_code == SI_QUEUE && si->si_value.sival_int == 42;
}


static void expect_data(int kq, int sig, long data)
{
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)sig, EVFILT_SIGNAL, 500);
	CHECK_EQ(e.data, data);
	CHECK_EQ(SFLAGS(e), 0);
}

static void handled_signal_is_recorded_and_handler_runs(void)
{
	hits = 0;
	set_action(SIGUSR1, on_sig, SA_RESTART);
	int kq = kq_new();
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(1));
	CHECK(kill(getpid(), SIGUSR1) == 0);
	settle(&hits, 1);
	CHECK_EQ(hits, 1);
	expect_data(kq, SIGUSR1, 1);
	CHECK(raise(SIGUSR1) == 0);
	CHECK(raise(SIGUSR1) == 0);
	settle(&hits, 3);
	CHECK_EQ(hits, 3);
	expect_data(kq, SIGUSR1, 2);
	EXPECT_NONE(kq, 20);
	close(kq);
	set_action(SIGUSR1, SIG_DFL, 0);
}

static void siginfo_handler_gets_its_info(void)
{
	hits = info_ok = 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_info;
	sa.sa_flags = SA_SIGINFO;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	int kq = kq_new();
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	union sigval v = {.sival_int = 42};
	CHECK(sigqueue(getpid(), SIGUSR1, v) == 0);
	settle(&hits, 1);
	CHECK_EQ(hits, 1);
	CHECK(info_ok);
	expect_data(kq, SIGUSR1, 1);
	close(kq);
	set_action(SIGUSR1, SIG_DFL, 0);
}

/* FreeBSD records the signal before the handler runs (kern_sig.c). */
static void on_sig_polls(int sig)
{
	struct kevent e;
	struct timespec zero = {0, 0};
	int n = kevent(handler_kq, NULL, 0, &e, 1, &zero);
	seen_in_handler = n == 1 && e.ident == (uintptr_t)sig && e.data == 1;
}

static void count_is_there_when_the_handler_runs(void)
{
	seen_in_handler = 0;
	handler_kq = kq_new();
	set_action(SIGUSR2, on_sig_polls, 0);
	KOK(handler_kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	CHECK(kill(getpid(), SIGUSR2) == 0);
	settle(&seen_in_handler, 1);
	CHECK(seen_in_handler);
	EXPECT_NONE(handler_kq, 10);
	close(handler_kq);
	set_action(SIGUSR2, SIG_DFL, 0);
}

static void ignored_signal_is_recorded(void)
{
	set_action(SIGUSR2, SIG_IGN, 0);
	int kq = kq_new();
	KOK(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	for (int i = 0; i < 3; i++)
		CHECK(kill(getpid(), SIGUSR2) == 0);
	expect_data(kq, SIGUSR2, 3); /* and the process is still here */
	KOK(kq, SIGUSR2, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
	CHECK(kernel_action(SIGUSR2).handler == (void *)SIG_IGN);
	close(kq);
	set_action(SIGUSR2, SIG_DFL, 0);
}

static void default_ignored_signals_are_recorded(void)
{
	const int sigs[] = {SIGURG, SIGWINCH, SIGCONT, SIGCHLD};
	int kq = kq_new();
	for (int i = 0; i < 4; i++) {
		set_action(sigs[i], SIG_DFL, 0);
		KOK(kq, (uintptr_t)sigs[i], EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	}
	for (int i = 0; i < 3; i++) {
		CHECK(kill(getpid(), sigs[i]) == 0);
		expect_data(kq, sigs[i], 1);
	}
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(0);
	expect_data(kq, SIGCHLD, 1);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid); /* still a zombie to reap: SIG_DFL kept */
	close(kq);
	for (int i = 0; i < 4; i++)
		CHECK(kernel_action(sigs[i]).handler == (void *)SIG_DFL);
}

static void ignored_sigchld_is_not_recorded(void)
{
	set_action(SIGCHLD, SIG_IGN, 0);
	int kq = kq_new();
	KOK(kq, SIGCHLD, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	CHECK(kernel_action(SIGCHLD).handler == (void *)SIG_IGN); /* children reaped */
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(0);
	usleep(50000);
	EXPECT_NONE(kq, 50);
	errno = 0;
	CHECK(waitpid(pid, NULL, 0) == -1 && errno == ECHILD);
	close(kq);
	set_action(SIGCHLD, SIG_DFL, 0);
}

/* SIG_DFL that ends the process: recorded on FreeBSD, and the process dies. */
static void default_terminating_signal_still_kills(void)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int kq = kqueue();
		struct kevent ch;
		EV_SET(&ch, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
		if (kq < 0 || kevent(kq, &ch, 1, NULL, 0, NULL) != 0)
			_exit(2);
		signal(SIGUSR1, SIG_DFL);
		raise(SIGUSR1);
		_exit(3);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGUSR1);
}

static bool same_action(const struct sigaction *a, const struct sigaction *b)
{
	if (a->sa_handler != b->sa_handler || a->sa_flags != b->sa_flags)
		return false;
	for (int s = 1; s < 65; s++)
		if (sigismember(&a->sa_mask, s) != sigismember(&b->sa_mask, s))
			return false;
	return true;
}

static void old_action_round_trips(void)
{
	struct sigaction a, b, before, got;
	memset(&a, 0, sizeof(a));
	a.sa_sigaction = on_info;
	a.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	sigemptyset(&a.sa_mask);
	sigaddset(&a.sa_mask, SIGUSR2);
	sigaddset(&a.sa_mask, SIGRTMIN);
	CHECK(sigaction(SIGUSR1, &a, NULL) == 0);
	CHECK(sigaction(SIGUSR1, NULL, &before) == 0);
	int kq = kq_new();
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	CHECK(kernel_action(SIGUSR1).handler != (void *)on_info); /* ours now */
	CHECK(sigaction(SIGUSR1, NULL, &got) == 0);
	CHECK(same_action(&got, &before));
	/* a new action while watched: the old one comes back, then the new */
	memset(&b, 0, sizeof(b));
	b.sa_handler = on_sig;
	b.sa_flags = SA_NODEFER;
	sigemptyset(&b.sa_mask);
	CHECK(sigaction(SIGUSR1, &b, &got) == 0);
	CHECK(same_action(&got, &before));
	struct sigaction b_read;
	CHECK(sigaction(SIGUSR1, NULL, &b_read) == 0);
	CHECK(b_read.sa_handler == on_sig);
	CHECK((b_read.sa_flags & (SA_NODEFER | SA_SIGINFO | SA_RESTART)) == SA_NODEFER);
	/* the last knote gone: the kernel has exactly what the program set */
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
#ifndef BATON_SANITIZED /* ThreadSanitizer gives the kernel a handler of its own */
	struct kact k = kernel_action(SIGUSR1);
	CHECK(k.handler == (void *)on_sig);
	CHECK((k.flags & (SA_NODEFER | SA_SIGINFO | SA_RESTART)) == SA_NODEFER);
#endif
	CHECK(sigaction(SIGUSR1, NULL, &got) == 0);
	CHECK(same_action(&got, &b_read));
	close(kq);
	set_action(SIGUSR1, SIG_DFL, 0);
}

static void signal_after_add_keeps_both_working(void)
{
	hits = 0;
	int kq = kq_new();
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	CHECK(signal(SIGUSR1, on_sig) == SIG_DFL);
	CHECK(kill(getpid(), SIGUSR1) == 0);
	settle(&hits, 1);
	CHECK_EQ(hits, 1);
	expect_data(kq, SIGUSR1, 1);
	CHECK(signal(SIGUSR1, SIG_IGN) == on_sig);
	CHECK(kill(getpid(), SIGUSR1) == 0);
	settle(&hits, 1);
	CHECK_EQ(hits, 1);
	expect_data(kq, SIGUSR1, 1);
	CHECK(signal(SIGUSR1, SIG_DFL) == SIG_IGN);
	close(kq); /* the kqueue's knotes go with it */
	CHECK(kernel_action(SIGUSR1).handler == (void *)SIG_DFL);
}

static void two_kqueues_each_see_it(void)
{
	set_action(SIGUSR2, SIG_IGN, 0);
	int kq1 = kq_new(), kq2 = kq_new();
	KOK(kq1, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(1));
	KOK(kq2, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, UD(2));
	CHECK(kill(getpid(), SIGUSR2) == 0);
	CHECK(kill(getpid(), SIGUSR2) == 0);
	expect_data(kq1, SIGUSR2, 2);
	expect_data(kq2, SIGUSR2, 2);
	/* deleting one leaves the other watching */
	KOK(kq1, SIGUSR2, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
	CHECK(kill(getpid(), SIGUSR2) == 0);
	expect_data(kq2, SIGUSR2, 1);
	EXPECT_NONE(kq1, 10);
	close(kq1);
	close(kq2);
	set_action(SIGUSR2, SIG_DFL, 0);
}

static void resethand_runs_the_handler_once(void)
{
	hits = 0;
	set_action(SIGURG, on_sig, SA_RESETHAND);
	int kq = kq_new();
	KOK(kq, SIGURG, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	CHECK(kill(getpid(), SIGURG) == 0);
	settle(&hits, 1);
	CHECK_EQ(hits, 1);
	struct sigaction got;
	CHECK(sigaction(SIGURG, NULL, &got) == 0);
	CHECK(got.sa_handler == SIG_DFL);
	CHECK(kill(getpid(), SIGURG) == 0);
	settle(&hits, 1);
	CHECK_EQ(hits, 1);
	expect_data(kq, SIGURG, 2); /* SIG_DFL of SIGURG: still recorded */
	close(kq);
}

static void on_nested(int sig)
{
	depth++;
	if (depth > max_depth)
		max_depth = depth;
	if (reraise) {
		reraise = 0;
		raise(sig);
	}
	depth--;
}

static void nodefer_lets_the_handler_nest(void)
{
	int kq = kq_new();
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	max_depth = depth = 0;
	reraise = 1;
	set_action(SIGUSR1, on_nested, SA_NODEFER);
	CHECK(raise(SIGUSR1) == 0);
#ifndef BATON_SANITIZED /* ThreadSanitizer runs handlers late, one at a time */
	CHECK_EQ(max_depth, 2);
#endif
	expect_data(kq, SIGUSR1, 2);
	max_depth = depth = 0;
	reraise = 1;
	set_action(SIGUSR1, on_nested, 0); /* deferred: runs after the first returns */
	CHECK(raise(SIGUSR1) == 0);
	settle(&max_depth, 1);
	CHECK_EQ(max_depth, 1);
	expect_data(kq, SIGUSR1, 2);
	close(kq);
	set_action(SIGUSR1, SIG_DFL, 0);
}

/* Blocked: never lost, never counted twice. */
static void blocked_signal_is_counted_once(void)
{
	sigset_t s, old;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	CHECK(pthread_sigmask(SIG_BLOCK, &s, &old) == 0);
	int kq1 = kq_new(), kq2 = kq_new();
	KOK(kq1, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	KOK(kq2, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	CHECK(kill(getpid(), SIGUSR1) == 0);
	expect_data(kq1, SIGUSR1, 1);
	expect_data(kq2, SIGUSR1, 1);
	CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0); /* nothing left: alive */
	EXPECT_NONE(kq1, 10);
	EXPECT_NONE(kq2, 10);
	/* with a handler the program gets it when it unblocks, counted once */
	hits = 0;
	set_action(SIGUSR1, on_sig, 0);
	CHECK(pthread_sigmask(SIG_BLOCK, &s, NULL) == 0);
	CHECK(kill(getpid(), SIGUSR1) == 0);
	struct kevent e;
	kpoll(kq1, &e, 1, 20);
	settle(&hits, 0);
	CHECK_EQ(hits, 0);
	CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
	settle(&hits, 1);
	CHECK_EQ(hits, 1);
	expect_data(kq2, SIGUSR1, 1);
	close(kq1);
	close(kq2);
	set_action(SIGUSR1, SIG_DFL, 0);
}

static void sigkill_and_sigstop_are_accepted(void)
{
	int kq = kq_new();
	KOK(kq, SIGKILL, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	KOK(kq, SIGSTOP, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	CHECK(kernel_action(SIGKILL).handler == (void *)SIG_DFL);
	KOK(kq, SIGSTOP, EVFILT_SIGNAL, EV_DELETE, 0, 0, NULL);
	close(kq);
}

/* A child that goes on to exec must find SIG_IGN where the program set it. */
static void fork_child_gets_the_programs_action_back(void)
{
	set_action(SIGUSR2, SIG_IGN, 0);
	int kq = kq_new();
	KOK(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	CHECK(kernel_action(SIGUSR2).handler != (void *)SIG_IGN);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		_exit(kernel_action(SIGUSR2).handler == (void *)SIG_IGN ? 0 : 1);
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(kill(getpid(), SIGUSR2) == 0);
	expect_data(kq, SIGUSR2, 1); /* the parent still watches */
	close(kq);
	set_action(SIGUSR2, SIG_DFL, 0);
}

/* KQUEUE_CPONFORK: the child's copy watches the signal in the child. */
static void cponfork_copy_records_the_childs_signals(void)
{
	set_action(SIGUSR2, SIG_IGN, 0);
	int kq = kqueuex(KQUEUE_CPONFORK);
	CHECK(kq >= 0);
	KOK(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		struct kevent e;
		struct timespec ts = ts_ms(1000);
		if (kernel_action(SIGUSR2).handler == (void *)SIG_IGN)
			_exit(1); /* still watched here: libbaton's handler stays */
		raise(SIGUSR2);
		raise(SIGUSR2);
		int n = kevent(kq, NULL, 0, &e, 1, &ts);
		_exit(n == 1 && e.ident == SIGUSR2 && e.data == 2 ? 0 : 2);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
	EXPECT_NONE(kq, 20); /* the child's signals were its own */
	close(kq);
	CHECK(kernel_action(SIGUSR2).handler == (void *)SIG_IGN);
	set_action(SIGUSR2, SIG_DFL, 0);
}

static void sysv_signal_and_sigignore_go_through(void)
{
	hits = 0;
	int kq = kq_new();
	KOK(kq, SIGWINCH, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	CHECK(sysv_signal(SIGWINCH, on_sig) == SIG_DFL);
	CHECK(raise(SIGWINCH) == 0);
	CHECK(raise(SIGWINCH) == 0); /* SA_RESETHAND: the second finds SIG_DFL */
	settle(&hits, 1);
	CHECK_EQ(hits, 1);
	expect_data(kq, SIGWINCH, 2);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
	CHECK(sigignore(SIGWINCH) == 0); /* old, but interposed too */
#pragma GCC diagnostic pop
	struct sigaction got;
	CHECK(sigaction(SIGWINCH, NULL, &got) == 0);
	CHECK(got.sa_handler == SIG_IGN);
	CHECK(raise(SIGWINCH) == 0);
	expect_data(kq, SIGWINCH, 1);
	close(kq);
	CHECK(kernel_action(SIGWINCH).handler == (void *)SIG_IGN);
	set_action(SIGWINCH, SIG_DFL, 0);
}

struct waitarg {
	int kq, n, err;
	_Atomic pid_t tid;
	struct kevent e;
};

static void *wait_once(void *p)
{
	struct waitarg *w = p;
	w->tid = (pid_t)syscall(SYS_gettid);
	struct timespec ts = ts_ms(2000);
	w->n = kevent(w->kq, NULL, 0, &w->e, 1, &ts);
	w->err = errno;
	return NULL;
}

/*
 * FreeBSD's kevent() sleeps through an ignored signal (it only records it)
 * and returns EINTR for one the program handles.
 */
static void ignored_signal_does_not_interrupt_a_wait(void)
{
	set_action(SIGUSR2, SIG_IGN, 0);
	int kq = kq_new();
	KOK(kq, SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	struct waitarg w = {kq, 0, 0, 0, {0}};
	pthread_t t;
	CHECK(pthread_create(&t, NULL, wait_once, &w) == 0);
	while (!w.tid)
		usleep(1000);
	wait_blocked_in_epoll(w.tid);
	CHECK(pthread_kill(t, SIGUSR2) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK_EQ(w.n, 1);
	CHECK_EQ(w.e.ident, SIGUSR2);
	CHECK_EQ(w.e.data, 1);
	hits = 0;
	set_action(SIGUSR2, on_sig, 0);
	w.tid = 0;
	CHECK(pthread_create(&t, NULL, wait_once, &w) == 0);
	while (!w.tid)
		usleep(1000);
	wait_blocked_in_epoll(w.tid);
	CHECK(pthread_kill(t, SIGUSR2) == 0);
	CHECK(pthread_join(t, NULL) == 0);
#ifndef BATON_SANITIZED /* ThreadSanitizer runs the handler after the wait */
	CHECK_EQ(w.n, -1);
	CHECK_EQ(w.err, EINTR);
#endif
	settle(&hits, 1);
	CHECK_EQ(hits, 1);
	close(kq);
	set_action(SIGUSR2, SIG_DFL, 0);
}

int main(void)
{
	RUN(handled_signal_is_recorded_and_handler_runs);
	RUN(siginfo_handler_gets_its_info);
	RUN(count_is_there_when_the_handler_runs);
	RUN(ignored_signal_is_recorded);
	RUN(default_ignored_signals_are_recorded);
	RUN(ignored_sigchld_is_not_recorded);
	RUN(default_terminating_signal_still_kills);
	RUN(old_action_round_trips);
	RUN(signal_after_add_keeps_both_working);
	RUN(two_kqueues_each_see_it);
	RUN(resethand_runs_the_handler_once);
	RUN(nodefer_lets_the_handler_nest);
	RUN(blocked_signal_is_counted_once);
	RUN(sigkill_and_sigstop_are_accepted);
	RUN(fork_child_gets_the_programs_action_back);
	RUN(cponfork_copy_records_the_childs_signals);
	RUN(sysv_signal_and_sigignore_go_through);
	RUN(ignored_signal_does_not_interrupt_a_wait);
	return 0;
}
