/*
 * Helpers shared by the multithreaded stress tests (tests/stress_*.c) for
 * the invariants of SEMANTICS.md section 3.  Everything a test thread shares
 * with another is a C11 atomic, so the tests themselves are race-free under
 * ThreadSanitizer; every wait is bounded (kevent timeouts, a watchdog alarm).
 */
#ifndef BATON_STRESS_UTIL_H
#define BATON_STRESS_UTIL_H

#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

/* The thread counts every stress test runs. */
static const int stress_threads[] = {2, 8, 32};
#define STRESS_NTHREADS (int)(sizeof stress_threads / sizeof stress_threads[0])

/* A phase stops after its rounds or after this long, whichever is first,
 * so a slow build (ThreadSanitizer) still finishes well inside the CTest
 * timeout. */
#define STRESS_PHASE_MS 4000.0

static const char *volatile stress_phase_name = "start";
static int stress_watchdog_secs;

static void stress_on_alarm(int sig)
{
	(void)sig;
	static const char a[] = "WATCHDOG: phase \"";
	static const char b[] = "\" did not finish in time (a thread hangs?)\n";
	const char *p = stress_phase_name;
	if (write(2, a, sizeof a - 1) < 0 || write(2, p, strlen(p)) < 0 ||
	    write(2, b, sizeof b - 1) < 0) {
	}
	_exit(3);
}

/* Arms (or re-arms) a watchdog for the next phase: the process dies with
 * a message if the phase takes longer than secs. */
static inline void stress_watchdog(const char *phase, int secs)
{
	static int installed;
	if (!installed) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = stress_on_alarm;
		sigaction(SIGALRM, &sa, NULL);
		installed = 1;
	}
	stress_phase_name = phase;
	stress_watchdog_secs = secs;
	alarm((unsigned)secs);
}

/* One violation is enough: say what happened and stop the process at once
 * (no exit handlers, other threads may still be running). */
#define VIOLATION(inv, ...)                                                    \
	do {                                                                   \
		char vbuf_[512];                                               \
		snprintf(vbuf_, sizeof vbuf_, __VA_ARGS__);                    \
		fprintf(stderr, "%s:%d: VIOLATION of %s: %s\n", __FILE__,      \
			__LINE__, inv, vbuf_);                                 \
		fflush(stderr);                                                \
		_exit(1);                                                      \
	} while (0)

/* A failed call of the test's own plumbing (not an invariant). */
#define SCHECK(cond)                                                           \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: CHECK failed: %s (errno %d %s)\n", \
				__FILE__, __LINE__, #cond, errno,              \
				strerror(errno));                              \
			fflush(stderr);                                        \
			_exit(1);                                              \
		}                                                              \
	} while (0)

static inline void stress_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	SCHECK(fl >= 0);
	SCHECK(fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
}

/* A non-blocking AF_UNIX stream socketpair. */
static inline void stress_socketpair(int sv[2])
{
	SCHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	stress_nonblock(sv[0]);
	stress_nonblock(sv[1]);
}

/* Applies one change, without waiting; returns 0 or the errno of the
 * change (reported through EV_RECEIPT). */
static inline int stress_change(int kq, uintptr_t ident, short filter,
				unsigned short flags, unsigned fflags,
				int64_t data, void *udata)
{
	struct kevent ch, out;
	EV_SET(&ch, ident, filter, flags | EV_RECEIPT, fflags, data, udata);
	int n = kevent(kq, &ch, 1, &out, 1, NULL);
	if (n < 0)
		return errno;
	if (n != 1 || !(out.flags & EV_ERROR)) {
		fprintf(stderr, "stress_change: kevent returned %d, flags %#x\n",
			n, n == 1 ? out.flags : 0);
		_exit(1);
	}
	return (int)out.data;
}

/* Applies one change that must succeed. */
#define CHANGE_OK(kq, ident, filter, flags, fflags, data, udata)               \
	do {                                                                   \
		int cerr_ = stress_change(kq, ident, filter, flags, fflags,    \
					  data, udata);                        \
		if (cerr_ != 0) {                                              \
			fprintf(stderr, "%s:%d: change {%lu, %d, %#x} failed: %s\n", \
				__FILE__, __LINE__, (unsigned long)(ident),    \
				(int)(filter), (unsigned)(flags),              \
				strerror(cerr_));                              \
			fflush(stderr);                                        \
			_exit(1);                                              \
		}                                                              \
	} while (0)

/* Every returned event must be a real event, not an error of a change. */
static inline void stress_no_errors(const struct kevent *ev, int n)
{
	for (int i = 0; i < n; i++)
		if (ev[i].flags & EV_ERROR) {
			fprintf(stderr,
				"kevent returned EV_ERROR for {%lu, %d}: %s\n",
				(unsigned long)ev[i].ident, ev[i].filter,
				strerror((int)ev[i].data));
			fflush(stderr);
			_exit(1);
		}
}

/* A small per-thread random generator (xorshift), seeded per thread. */
static inline uint32_t stress_rand(uint32_t *s)
{
	uint32_t x = *s ? *s : 0x9e3779b9u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

/* Starts n threads running fn(&args[i]); args is an array of elements of
 * size sz. */
static inline void stress_start(pthread_t *tids, int n, void *(*fn)(void *),
				void *args, size_t sz)
{
	for (int i = 0; i < n; i++)
		SCHECK(pthread_create(&tids[i], NULL, fn,
				      (char *)args + (size_t)i * sz) == 0);
}

static inline void stress_join(pthread_t *tids, int n)
{
	for (int i = 0; i < n; i++)
		SCHECK(pthread_join(tids[i], NULL) == 0);
}

static inline void stress_sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

/* Runs one phase of a stress test at each thread count, under the watchdog. */
static inline void stress_phases(const char *what, void (*run)(int nthreads))
{
	char name[64];
	for (int i = 0; i < STRESS_NTHREADS; i++) {
		snprintf(name, sizeof name, "%s, %d threads", what, stress_threads[i]);
		stress_watchdog(name, 60);
		run(stress_threads[i]);
	}
}

#endif
