/*
 * close() is async-signal-safe (POSIX): a signal handler may close a
 * kqueue's last name whatever the thread it interrupted was doing, malloc()
 * included.  So the close frees no memory there: the kqueue is gone for the
 * program and its descriptors are closed when close() returns, as on
 * FreeBSD; its memory goes back later.  The test counts the free() calls
 * made inside the handler (its own free() forwards to libc's); under a
 * sanitizer, which has its own free(), ThreadSanitizer's check of
 * signal-unsafe calls in handlers does that job.
 */
#include "util.h"

#include <signal.h>
#include <stdatomic.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define BATON_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BATON_TEST_SANITIZED 1
#endif

static volatile sig_atomic_t victim = -1, in_handler;
static atomic_int frees_in_handler;

#ifndef BATON_TEST_SANITIZED
extern void __libc_free(void *p);
void free(void *p)
{
	if (in_handler)
		atomic_fetch_add(&frees_in_handler, 1);
	__libc_free(p);
}
#endif

static void on_usr1(int sig)
{
	(void)sig;
	int saved = errno;
	in_handler = 1;
	close(victim);
	in_handler = 0;
	errno = saved;
}

static void last_name_closed_in_a_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	int p[2];
	CHECK(pipe(p) == 0);
	int before = count_fds();
	for (int round = 0; round < 3; round++) {
		int kq = kq_new();
		/* knotes of every kind: memory to give back */
		KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		KOK(kq, 1, EVFILT_USER, EV_ADD, 0, 0, NULL);
		KOK(kq, 2, EVFILT_TIMER, EV_ADD, 0, 60000, NULL);
		victim = kq;
		CHECK_EQ(raise(SIGUSR1), 0);
		CHECK_EQ(atomic_load(&frees_in_handler), 0);
		/* gone, with its own descriptors */
		CHECK(!fd_is_open(kq));
		CHECK_EQ(count_fds(), before);
		struct kevent ev;
		struct timespec zero = {0, 0};
		errno = 0;
		CHECK_EQ(kevent(kq, NULL, 0, &ev, 1, &zero), -1);
		CHECK_EQ(errno, EBADF);
	}
	/* the pipe's knotes went with their kqueues */
	int kq = kq_new();
	write_n(p[1], 1);
	EXPECT_NONE(kq, 20);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, UD(9));
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 200);
	CHECK(e.udata == UD(9));
	close(kq);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	RUN(last_name_closed_in_a_handler);
	return 0;
}
