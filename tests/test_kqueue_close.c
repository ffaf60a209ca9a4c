/*
 * Closing a kqueue's number (close, dup2 or close_range over it) is a close
 * like any other: the knotes other kqueues hold on that number go with it
 * (SEMANTICS I4), and a file that reuses the number starts clean.  Dups of a
 * kqueue keep it alive; closing the last name frees it, whichever it is.
 */
#include "util.h"

#include <linux/close_range.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* Raises the soft fd limit to want (or the hard limit); returns the limit. */
static long raise_nofile(long want)
{
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	if ((long)rl.rlim_cur < want) {
		rl.rlim_cur = (long)rl.rlim_max < want ? rl.rlim_max : (rlim_t)want;
		CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	}
	return (long)rl.rlim_cur;
}

#ifndef BATON_SANITIZED
/* calloc that fails on demand (the sanitizers bring their own allocator) */
extern void *__libc_calloc(size_t n, size_t size);
static int calloc_fails_after = -1;
void *calloc(size_t n, size_t size)
{
	if (calloc_fails_after == 0) {
		errno = ENOMEM;
		return NULL;
	}
	if (calloc_fails_after > 0)
		calloc_fails_after--;
	return __libc_calloc(n, size);
}
#endif

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

enum { DUP, DUPFD, DUPFD_CLOEXEC, DUP2, DUP3, NDUPS };

static int dup_kqueue(int kq, int how)
{
	int d = -1;
	switch (how) {
	case DUP:
		d = dup(kq);
		break;
	case DUPFD:
		d = fcntl(kq, F_DUPFD, 0);
		break;
	case DUPFD_CLOEXEC:
		d = fcntl(kq, F_DUPFD_CLOEXEC, 0);
		break;
	case DUP2:
		d = dup2(kq, 900);
		break;
	case DUP3:
		d = dup3(kq, 901, O_CLOEXEC);
		break;
	}
	CHECK(d >= 0);
	return d;
}

/* Issue 11 item 17: the kqueue (3 fds) leaked when its dup was closed last. */
static void a_dup_closed_last_frees_the_kqueue(void)
{
	int before = count_fds();
	for (int round = 0; round < 200; round++) {
		int kq = kq_new();
		int d = dup_kqueue(kq, round % NDUPS);
		KOK(kq, 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
		CHECK_EQ(close(kq), 0);
		/* the dup keeps the kqueue, with its knotes (poll: kevent()
		 * on the dup would make it known the slow way) */
		CHECK(kq_readable(d, 0));
		CHECK_EQ(close(d), 0);
		struct kevent ev;
		struct timespec zero = {0, 0};
		errno = 0;
		CHECK_EQ(kevent(d, NULL, 0, &ev, 1, &zero), -1);
		CHECK_EQ(errno, EBADF);
	}
	CHECK_EQ(count_fds(), before);
}

#ifndef __SANITIZE_ADDRESS__
static void *wait_forever(void *arg)
{
	struct kevent ev;
	kevent(*(int *)arg, NULL, 0, &ev, 1, NULL);
	return NULL;
}

/*
 * kevent() is a cancellation point while it waits (as FreeBSD's).  The
 * cancelled call's reference goes with it: the kqueue, closed afterwards,
 * is freed with its descriptors (three stayed open before), whether it
 * waited in epoll_wait() (a pipe's knote) or on its futex (user events).
 */
static void a_wait_cancelled_leaves_nothing_behind(void)
{
	int before = count_fds();
	for (int loud = 0; loud < 2; loud++) {
		int kq = kq_new(), p[2];
		CHECK(pipe(p) == 0);
		if (loud)
			KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		KOK(kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
		pthread_t t;
		CHECK(pthread_create(&t, NULL, wait_forever, &kq) == 0);
		usleep(50000);
		cancel_and_join(t);
		/* still works for others */
		KOK(kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
		EXPECT_ONE(kq, 1, EVFILT_USER, 0);
		CHECK_EQ(close(kq), 0);
		close(p[0]);
		close(p[1]);
	}
	CHECK_EQ(count_fds(), before);
}
#endif

/* Issue 11 item 17: kqueue() failed with EMFILE past 4096 live kqueues. */
static void thousands_of_kqueues_live_at_once(void)
{
	enum { N = 4200 };
	if (raise_nofile(4 * N + 200) < 4 * N + 200) {
		fprintf(stderr, "   (skipped: RLIMIT_NOFILE below %d)\n", 4 * N + 200);
		return;
	}
	static int kqs[N];
	int before = count_fds();
	for (int i = 0; i < N; i++) {
		kqs[i] = kqueue();
		CHECK(kqs[i] >= 0);
	}
	/* the last one works, and close() still reaches every kqueue */
	int p[2];
	CHECK(pipe(p) == 0);
	KOK(kqs[0], (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	KOK(kqs[N - 1], (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	KOK(kqs[N - 1], 1, EVFILT_USER, EV_ADD, NOTE_TRIGGER, 0, NULL);
	EXPECT_ONE(kqs[N - 1], 1, EVFILT_USER, 0);
	close(p[0]);
	CHECK_EQ(kchange_err(kqs[0], (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0), EBADF);
	CHECK_EQ(kchange_err(kqs[N - 1], (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0), EBADF);
	close(p[1]);
	/* one close_range: N close() calls would each visit every kqueue */
	CHECK_EQ(close_range((unsigned)kqs[0], ~0U, 0), 0);
	CHECK_EQ(count_fds(), before);
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	CHECK(f != NULL);
	long size, res;
	CHECK(fscanf(f, "%ld %ld", &size, &res) == 2);
	fclose(f);
	return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Issue 11 item 17: each failing EV_ADD on a closed number allocated table memory. */
static void add_on_closed_numbers_costs_no_memory(void)
{
	int kq = kq_new();
	long before = rss_kb();
	for (int i = 0; i < 1000; i++) {
		uintptr_t fd = 1000 + 256 * (uintptr_t)i; /* one table chunk each */
		CHECK_EQ(kchange_err(kq, fd, EVFILT_READ, EV_ADD, 0, 0), EBADF);
	}
	long grown = rss_kb() - before;
	if (grown > 8 * 1024)
		fprintf(stderr, "RSS grew by %ld kB\n", grown);
	CHECK(grown <= 8 * 1024);
	close(kq);
}

/* Issue 11 item 17: kqueue() returned 0 (stdin) when an allocation failed. */
static void kqueue_never_returns_0_when_memory_runs_out(void)
{
#ifdef BATON_SANITIZED
	fprintf(stderr, "   (skipped in a sanitizer build)\n");
#else
	raise_nofile(4096);
	close(kq_new()); /* a recycled kqueue: its own allocation cannot fail */
	/* the kqueue's number in a part of the table not used yet */
	int fill[1200], n = 0;
	do
		CHECK((fill[n++] = fcntl(0, F_DUPFD, 0)) >= 0);
	while (fill[n - 1] < 1100 && n < 1200);
	for (int k = 0; k < 20; k++) {
		calloc_fails_after = k;
		errno = 0;
		int kq = kqueue();
		int err = errno;
		calloc_fails_after = -1;
		CHECK(kq != 0);
		if (kq < 0)
			CHECK_EQ(err, ENOMEM);
		else
			CHECK_EQ(close(kq), 0);
	}
	for (int i = 0; i < n; i++)
		close(fill[i]);
#endif
}

/* Issue 11 item 18: close() of a kqueue and fork() looked at every open fd. */
static void close_and_fork_cost_what_the_kqueues_names_cost(void)
{
	enum { NFDS = 10000 };
	if (raise_nofile(NFDS + 200) < NFDS + 200) {
		fprintf(stderr, "   (skipped: RLIMIT_NOFILE below %d)\n", NFDS + 200);
		return;
	}
	static int fds[NFDS];
	for (int i = 0; i < NFDS; i++)
		CHECK((fds[i] = fcntl(0, F_DUPFD_CLOEXEC, 0)) >= 0);
	double t0 = now_ms();
	for (int round = 0; round < 30; round++) {
		int kq = kq_new();
		int d = dup(kq);
		CHECK_EQ(close(kq), 0);
		CHECK_EQ(close(d), 0);
	}
	double closing = now_ms() - t0;
	int kqs[4];
	for (int i = 0; i < 4; i++)
		kqs[i] = kq_new();
	t0 = now_ms();
	for (int round = 0; round < 5; round++) {
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0)
			_exit(fd_is_open(kqs[0]) ? 1 : 0);
		int st;
		CHECK_EQ(waitpid(pid, &st, 0), pid);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	double forking = now_ms() - t0;
	fprintf(stderr, "   30 kqueue closes: %.1f ms, 5 forks: %.1f ms, %d fds open\n", closing,
	        forking, NFDS);
	/* a walk of 10 000 fds costs about 70 ms each time (30 closes: 2 s,
	 * 5 forks with 4 kqueues: 17 s); the sanitizers slow fork down */
#ifdef BATON_SANITIZED
	double limit = 6000;
#else
	double limit = 600;
#endif
	CHECK(closing < limit);
	CHECK(forking < limit);
	for (int i = 0; i < 4; i++)
		close(kqs[i]);
	CHECK_EQ(close_range((unsigned)fds[0], (unsigned)fds[NFDS - 1], 0), 0);
}

/*
 * A kqueue closed with the raw system call (a close the hooks do not see) is
 * freed once its number is reused by a new kqueue, as when a dup or another
 * file takes it: its own descriptors do not pile up.
 */
static void a_kqueue_closed_unseen_goes_when_a_kqueue_takes_its_number(void)
{
	int before = count_fds();
	for (int round = 0; round < 50; round++) {
		int kq = kq_new();
		KOK(kq, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
		CHECK_EQ(syscall(SYS_close, kq), 0);
		CHECK_EQ(kq_new(), kq); /* the lowest free number */
		CHECK_EQ(close(kq), 0);
	}
	CHECK_EQ(count_fds(), before);
}

/*
 * kevent() on a kqueue another thread is closing: the call came before the
 * close (it works) or after it (EBADF, as for any closed number); never
 * EINVAL, which says "an open file that is not a kqueue" (FreeBSD 15).
 */
static atomic_int race_kq = -1, race_stop, race_errno, race_round;
static atomic_long race_calls, race_ebadf;

static void *kevent_on_race_kq(void *arg)
{
	(void)arg;
	struct timespec zero = {0, 0};
	while (!atomic_load(&race_stop)) {
		int round = atomic_load(&race_round), k = atomic_load(&race_kq);
		if (k < 0)
			continue;
		struct kevent ev;
		errno = 0;
		int r = kevent(k, NULL, 0, &ev, 1, &zero);
		atomic_fetch_add(&race_calls, 1);
		if (r < 0 && errno == EBADF)
			atomic_fetch_add(&race_ebadf, 1);
		else if (r < 0 && atomic_load(&race_round) == round)
			atomic_store(&race_errno, errno); /* (not a new file at the number) */
	}
	return NULL;
}

static void kevent_racing_close_of_its_kqueue_says_ebadf(void)
{
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, kevent_on_race_kq, NULL), 0);
	for (int round = 0; round < 3000 && !atomic_load(&race_errno); round++) {
		atomic_fetch_add(&race_round, 1);
		int kq = kq_new();
		atomic_store(&race_kq, kq);
		for (long c0 = atomic_load(&race_calls); atomic_load(&race_calls) < c0 + 2;)
			;
		CHECK_EQ(close(kq), 0);
		/* a few calls on the closed number, then the next kqueue */
		for (long c0 = atomic_load(&race_calls); atomic_load(&race_calls) < c0 + 2;)
			;
		atomic_store(&race_kq, -1);
	}
	atomic_store(&race_stop, 1);
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_join(t[i], NULL), 0);
	if (atomic_load(&race_errno))
		fprintf(stderr, "   kevent() racing close() failed with %s\n",
		        strerror(atomic_load(&race_errno)));
	CHECK_EQ(atomic_load(&race_errno), 0);
	CHECK(atomic_load(&race_ebadf) > 0);
}

int main(void)
{
	RUN(kevent_racing_close_of_its_kqueue_says_ebadf);
	RUN(close_of_a_kqueue_removes_other_kqueues_knotes_on_it);
	RUN(dup2_over_a_kqueue_removes_other_kqueues_knotes_on_it);
	RUN(close_range_over_a_kqueue_removes_other_kqueues_knotes_on_it);
	RUN(a_new_kqueue_at_the_number_is_not_watched);
	RUN(a_dup_closed_last_frees_the_kqueue);
#ifndef __SANITIZE_ADDRESS__
	/* AddressSanitizer's runtime (gcc 12) reports its own sigaltstack()
	 * call in the cancellation's unwinding as a stack-buffer-overflow */
	RUN(a_wait_cancelled_leaves_nothing_behind);
#endif
	RUN(a_kqueue_closed_unseen_goes_when_a_kqueue_takes_its_number);
	RUN(add_on_closed_numbers_costs_no_memory);
	RUN(kqueue_never_returns_0_when_memory_runs_out);
	RUN(close_and_fork_cost_what_the_kqueues_names_cost);
	RUN(thousands_of_kqueues_live_at_once);
	return 0;
}
