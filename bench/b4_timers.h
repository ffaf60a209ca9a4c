/*
 * B4: timers.  For K timers (-k), in one process:
 *
 *   add     K one-shot timers due in about an hour (in a scrambled order of
 *           deadlines): time per add, RSS growth per timer (VmRSS), fds used;
 *   cancel  all of them: time per cancel;
 *   fire    K one-shot timers due on 1 ms ticks over a window of
 *           max(200 ms, K x 2 us) (so 50..500 timers per tick), starting
 *           3x the add time + 100 ms from now, harvested until all fired:
 *           lateness (now - deadline) p50 / p99 / max, and CPU time per
 *           fired timer (add + harvest of the fire phase, process CPU clock).
 *
 * An implementation that cannot hold K timers (one fd per timer) reports how
 * many it held (failed_at) and skips the fire phase.  Changes go in batches
 * of -b timers (only Baton's changelist uses the batch; the others have a
 * one-call-per-timer API).
 *
 * Each program defines b4_init(), b4_add(first, n) (returns how many it
 * added), b4_cancel(first, n) and b4_harvest() (calls b4_fired(id) for each
 * expiry until b4.nfired == the number added), and calls b4_main().
 */
#ifndef BENCH_B4_TIMERS_H
#define BENCH_B4_TIMERS_H

#include "common.h"

static struct {
	long k, batch;
	int64_t *deadline; /* absolute CLOCK_MONOTONIC ns, per timer id */
	int64_t *late;     /* lateness per fired timer */
	long nfired;
	long bad;          /* expiries of unknown/duplicate ids or too early */
	unsigned char *seen;
} b4;

static void b4_init(void);
static long b4_add(long first, long n);
static void b4_cancel(long first, long n);
static void b4_harvest(void);

static inline void b4_fired(long id)
{
	int64_t now = now_ns();

	if (id < 0 || id >= b4.k || b4.seen[id] || now < b4.deadline[id]) {
		b4.bad++;
		return;
	}
	b4.seen[id] = 1;
	b4.late[b4.nfired++] = now - b4.deadline[id];
}

static int64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Deadlines in ticks of `tick` ns from start, ids scrambled over the ticks:
 * id i gets slot (i * 2654435761) mod k, and slot s falls in tick
 * s * ticks / k.  So each tick has k/ticks timers due at the same instant,
 * which a good implementation delivers in one batch.
 */
static void b4_set_deadlines(int64_t start, long ticks, int64_t tick)
{
	long i;

	for (i = 0; i < b4.k; i++) {
		uint64_t slot = ((uint64_t)i * 2654435761u) % (uint64_t)b4.k;

		b4.deadline[i] = start + (int64_t)(slot * (uint64_t)ticks / (uint64_t)b4.k) * tick;
	}
}

/* Add ids [0, k) in batches; returns how many were added. */
static long b4_add_all(void)
{
	long i, n, got;

	for (i = 0; i < b4.k; i += n) {
		n = b4.k - i < b4.batch ? b4.k - i : b4.batch;
		got = b4_add(i, n);
		if (got < n)
			return i + got;
	}
	return b4.k;
}

static void b4_cancel_all(long added)
{
	long i, n;

	for (i = 0; i < added; i += n) {
		n = added - i < b4.batch ? added - i : b4.batch;
		b4_cancel(i, n);
	}
}

static int b4_main(int argc, char **argv, const char *impl)
{
	long long rss0, rss1;
	long fd0, fd1, added, i;
	int64_t t0, t_add, t_cancel, c0, c1, start;
	char fire[256], failed[32];
	int reserve[2];

	b4.k = 10000;
	b4.batch = 256;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-k") && i + 1 < argc)
			b4.k = arg_long(argv[++i], "-k");
		else if (!strcmp(argv[i], "-b") && i + 1 < argc)
			b4.batch = arg_long(argv[++i], "-b");
		else {
			fprintf(stderr, "usage: b4_* [-k timers] [-b batch]\n");
			return 2;
		}
	}
	if (b4.k < 1 || b4.batch < 1 || b4.batch > 4096)
		return 2;
	raise_fd_limit();
	b4.deadline = malloc(sizeof(int64_t) * (size_t)b4.k);
	b4.late = malloc(sizeof(int64_t) * (size_t)b4.k);
	b4.seen = malloc((size_t)b4.k);
	if (!b4.deadline || !b4.late || !b4.seen)
		die("malloc");
	/* touch our own arrays now so they are not counted as timer memory */
	memset(b4.late, 0, sizeof(int64_t) * (size_t)b4.k);
	memset(b4.seen, 0, (size_t)b4.k);
	/* two spare fds, given back before reading /proc after the adds, so
	 * that an implementation that ran out of fds can still be measured */
	reserve[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	reserve[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (reserve[0] < 0 || reserve[1] < 0)
		die("open /dev/null");
	fd0 = count_fds() - 2; /* before init: the queue's own fds count */
	b4_init();

	/* add: due in an hour */
	b4_set_deadlines(now_ns() + 3600 * (int64_t)1000000000, 1000, 1000000);
	rss0 = rss_bytes();
	t0 = now_ns();
	added = b4_add_all();
	t_add = now_ns() - t0;
	close(reserve[0]);
	close(reserve[1]);
	rss1 = rss_bytes();
	fd1 = count_fds();

	/* cancel */
	t0 = now_ns();
	b4_cancel_all(added);
	t_cancel = now_ns() - t0;

	/* fire */
	if (added == b4.k) {
		long ticks = b4.k / 500 > 200 ? b4.k / 500 : 200;
		/* room for the adds of this phase even on a busy machine */
		int64_t offset = 3 * t_add + 100000000;

		start = now_ns();
		b4_set_deadlines(start + offset, ticks, 1000000);
		c0 = cpu_ns();
		if (b4_add_all() != b4.k)
			die("fire phase: could not add %ld timers again", b4.k);
		if (now_ns() > start + offset)
			fprintf(stderr, "b4 %s: fire-phase adds overran the first "
				"deadline by %.1f ms; lateness includes it\n", impl,
				(double)(now_ns() - start - offset) / 1e6);
		b4_harvest();
		c1 = cpu_ns();
		if (b4.bad)
			fprintf(stderr, "b4 %s: %ld bad expiries\n", impl, b4.bad);
		snprintf(fire, sizeof fire,
			 "fire_cpu_ns=%.1f late_p50_us=%.1f late_p99_us=%.1f "
			 "late_max_us=%.1f bad_expiries=%ld",
			 (double)(c1 - c0) / (double)b4.k,
			 (double)percentile_i64(b4.late, (size_t)b4.nfired, 50) / 1e3,
			 (double)percentile_i64(b4.late, (size_t)b4.nfired, 99) / 1e3,
			 (double)percentile_i64(b4.late, (size_t)b4.nfired, 100) / 1e3,
			 b4.bad);
	} else {
		snprintf(fire, sizeof fire,
			 "fire_cpu_ns=null late_p50_us=null late_p99_us=null "
			 "late_max_us=null bad_expiries=null");
	}
	if (added == b4.k)
		snprintf(failed, sizeof failed, "null");
	else
		snprintf(failed, sizeof failed, "%ld", added);
	printf("RESULT cfg=b4/k%ld impl=%s add_ns=%.1f cancel_ns=%.1f "
	       "add_total_ms=%.1f rss_per_timer_b=%.1f fds_used=%ld held=%ld "
	       "failed_at=%s %s\n",
	       b4.k, impl, (double)t_add / (double)(added ? added : 1),
	       (double)t_cancel / (double)(added ? added : 1), (double)t_add / 1e6,
	       (double)(rss1 - rss0) / (double)(added ? added : 1), fd1 - fd0,
	       added, failed, fire);
	fflush(stdout);
	return b4.bad ? 1 : 0;
}

#endif /* BENCH_B4_TIMERS_H */
