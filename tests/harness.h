/*
 * A small test harness: each test file is its own program (one CTest test)
 * and fails loudly on the first broken expectation, naming file and line.
 */
#ifndef BATON_TEST_HARNESS_H
#define BATON_TEST_HARNESS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/event.h>
#include <time.h>

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: CHECK failed: %s (errno %d %s)\n", \
				__FILE__, __LINE__, #cond, errno,              \
				strerror(errno));                              \
			exit(1);                                               \
		}                                                              \
	} while (0)

#define CHECK_EQ(a, b)                                                         \
	do {                                                                   \
		long long va_ = (long long)(a), vb_ = (long long)(b);          \
		if (va_ != vb_) {                                              \
			fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", \
				__FILE__, __LINE__, #a, va_, #b, vb_);         \
			exit(1);                                               \
		}                                                              \
	} while (0)

/* Runs one named behaviour of a test program. */
#define RUN(fn)                                                                \
	do {                                                                   \
		fprintf(stderr, "-- %s\n", #fn);                               \
		fn();                                                          \
	} while (0)

static inline struct timespec ts_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	return ts;
}

static inline double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Stress tests run shorter when asked to show that a broken build fails. */
static inline int stress_rounds(int full)
{
	const char *q = getenv("BATON_STRESS_QUICK");
	return q && *q == '1' ? (full / 10 > 0 ? full / 10 : 1) : full;
}

#endif
