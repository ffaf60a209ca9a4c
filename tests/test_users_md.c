/*
 * One test per line of /work/shared/USERS.md that a single thread can
 * show: what bit users of other kqueue ports, and what Baton does instead.
 * (The lines about waiting threads, thundering herds and EV_DISPATCH across
 * threads are stress tests.)
 */
#include "util.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

static long status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	CHECK(f != NULL);
	char line[256];
	long v = -1;
	size_t kl = strlen(key);
	while (fgets(line, sizeof line, f))
		if (strncmp(line, key, kl) == 0 && line[kl] == ':')
			v = strtol(line + kl + 1, NULL, 10);
	fclose(f);
	CHECK(v >= 0);
	return v;
}

/* USERS.md: hang at exit; helper threads. Baton: no helper threads. */
static void no_helper_threads_and_exit_is_prompt(void)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	CHECK(sigprocmask(SIG_BLOCK, &s, NULL) == 0);
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	KOK(kq, 2, EVFILT_TIMER, EV_ADD, 0, 5, NULL);
	KOK(kq, SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	struct kevent ev[8];
	usleep(20000);
	CHECK(kpoll(kq, ev, 8, 100) >= 3);
	CHECK_EQ(status_kb("Threads"), 1);

	/* a process with a busy kqueue exits at once, through exit() */
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int k = kqueue();
		struct kevent ch[2];
		EV_SET(&ch[0], 1, EVFILT_TIMER, EV_ADD, 0, 1, NULL);
		EV_SET(&ch[1], 2, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
		if (k < 0 || kevent(k, ch, 2, NULL, 0, NULL) != 0)
			_exit(3);
		exit(0);
	}
	double t0 = now_ms();
	int st = 0;
	pid_t w = 0;
	while ((w = waitpid(pid, &st, WNOHANG)) == 0 && now_ms() - t0 < 2000)
		usleep(1000);
	if (w == 0)
		kill(pid, SIGKILL);
	CHECK_EQ(w, pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
	close(p[0]);
	close(p[1]);
	close(kq);
	CHECK(sigprocmask(SIG_UNBLOCK, &s, NULL) == 0);
}

/*
 * USERS.md: arrays sized by RLIMIT_NOFILE. Baton: memory follows the fds
 * registered. 64 kqueues, each watching one fd near the limit, stay well
 * under what a table sized by the limit would take.
 */
static void memory_follows_registered_fds_not_the_fd_limit(void)
{
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rl.rlim_cur = rl.rlim_max; /* as high as we may go */
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	long limit = (long)rl.rlim_cur;
	int p[2];
	CHECK(pipe(p) == 0);
	int high = (int)(limit > 100000 ? 99999 : limit - 1);
	CHECK_EQ(dup2(p[0], high), high);
	close(kq_new()); /* one-time setup */
	long vm0 = status_kb("VmSize"), rss0 = status_kb("VmRSS");
	enum { NKQ = 64 };
	int kqs[NKQ];
	for (int i = 0; i < NKQ; i++) {
		kqs[i] = kq_new();
		KOK(kqs[i], (uintptr_t)high, EVFILT_READ, EV_ADD, 0, 0, NULL);
		KOK(kqs[i], (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	}
	long dvm = status_kb("VmSize") - vm0, drss = status_kb("VmRSS") - rss0;
	fprintf(stderr, "   fd limit %ld: %d kqueues grew VmSize %ld kB, VmRSS %ld kB\n",
		limit, NKQ, dvm, drss);
	/* at most 512 kB of address space and 256 kB resident per kqueue
	 * (sanitizer runtimes add shadow memory of their own) */
#ifndef BATON_SANITIZED
	CHECK(dvm < NKQ * 512);
	CHECK(drss < NKQ * 256);
#endif
	write_n(p[1], 1);
	for (int i = 0; i < NKQ; i++) {
		struct kevent ev[2];
		CHECK_EQ(kpoll(kqs[i], ev, 2, 100), 2);
		close(kqs[i]);
	}
	close(high);
	close(p[0]);
	close(p[1]);
}

/* USERS.md: re-adding a timer with a new period is ignored (libkqueue #116). */
static void readd_of_a_timer_rearms_it_with_the_new_period_and_unit(void)
{
	int kq = kq_new();
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_SECONDS, 10, NULL);
	KOK(kq, 1, EVFILT_TIMER, EV_ADD, NOTE_USECONDS, 20000, NULL);
	double t0 = now_ms();
	EXPECT_ONE(kq, 1, EVFILT_TIMER, 500);
	double el = now_ms() - t0;
	CHECK(el < 300);
	EXPECT_ONE(kq, 1, EVFILT_TIMER, 500); /* still periodic, new period */
	close(kq);
}

/* USERS.md: knotes outlive close(); a dup'd fd keeps events alive (#99). */
static void close_removes_the_knote_even_with_a_dup_open(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	int d = dup(sv[0]);
	CHECK(d >= 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	close(sv[0]);
	write_n(sv[1], 10);
	EXPECT_NONE(kq, 30);
	close(d);
	close(sv[1]);
	close(kq);
}

/* USERS.md: nevents = 1 loses the WRITE event of a readable socket (#89). */
static void nevents_one_returns_read_and_write_of_a_socket_in_turn(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	write_n(sv[1], 1);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	int nr = 0, nw = 0;
	for (int i = 0; i < 6; i++) {
		struct kevent e;
		CHECK_EQ(kpoll(kq, &e, 1, 50), 1);
		CHECK_EQ(e.ident, sv[0]);
		if (e.filter == EVFILT_READ)
			nr++;
		else if (e.filter == EVFILT_WRITE)
			nw++;
	}
	CHECK_EQ(nr, 3);
	CHECK_EQ(nw, 3);
	/* also with EV_DISPATCH (a re-add keeps the flags: add anew) */
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD | EV_DISPATCH, 0, 0, NULL);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, NULL);
	struct kevent a, b;
	CHECK_EQ(kpoll(kq, &a, 1, 50), 1);
	CHECK_EQ(kpoll(kq, &b, 1, 50), 1);
	CHECK(a.filter != b.filter);
	EXPECT_NONE(kq, 20);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

/* USERS.md: one fd per timer / user event hits EMFILE. Baton: none. */
static void twenty_thousand_timers_and_user_events_need_no_fds(void)
{
	int kq = kq_new();
	KOK(kq, 999999, EVFILT_TIMER, EV_ADD, 0, 100000, NULL);
	KOK(kq, 999999, EVFILT_USER, EV_ADD, 0, 0, NULL);
	int before = count_fds();
	struct rlimit old, rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
	rl = old;
	rl.rlim_cur = (rlim_t)before + 8; /* almost no fds to spare */
	CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	enum { N = 20000 };
	for (int i = 0; i < N; i++) {
		KOK(kq, (uintptr_t)i, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, 10 + i % 50, NULL);
		KOK(kq, (uintptr_t)i, EVFILT_USER, EV_ADD | EV_ONESHOT, NOTE_TRIGGER, 0, NULL);
	}
	CHECK_EQ(count_fds(), before);
	static struct kevent ev[1024];
	int timers = 0, users = 0;
	double t0 = now_ms();
	while ((timers < N || users < N) && now_ms() - t0 < 10000) {
		int n = kpoll(kq, ev, 1024, 50);
		CHECK(n >= 0);
		for (int k = 0; k < n; k++) {
			if (ev[k].filter == EVFILT_TIMER)
				timers++;
			else if (ev[k].filter == EVFILT_USER)
				users++;
		}
	}
	CHECK_EQ(timers, N);
	CHECK_EQ(users, N);
	CHECK_EQ(count_fds(), before);
	CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
	close(kq);
}

int main(void)
{
	RUN(no_helper_threads_and_exit_is_prompt);
	RUN(memory_follows_registered_fds_not_the_fd_limit);
	RUN(readd_of_a_timer_rearms_it_with_the_new_period_and_unit);
	RUN(close_removes_the_knote_even_with_a_dup_open);
	RUN(nevents_one_returns_read_and_write_of_a_socket_in_turn);
	RUN(twenty_thousand_timers_and_user_events_need_no_fds);
	return 0;
}
