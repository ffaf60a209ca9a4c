/*
 * close() is async-signal-safe (POSIX), and a handler may close a kqueue.
 * Its last name closed, the kqueue is freed; that must not wait for a lock
 * the interrupted thread holds inside libbaton: here the thread is making
 * kqueues (kqueue(), dup()), which take the process-wide lock kqueues are
 * made and freed under.  A thread that stops making progress is a deadlock.
 */
#include "stress_util.h"

#include <signal.h>
#include <stdbool.h>

static atomic_int victim = -1;
static atomic_int closed_in_handler;
static atomic_long made;
static atomic_bool done, finished;

static void on_usr1(int sig)
{
	(void)sig;
	int saved = errno;
	int fd = atomic_exchange(&victim, -1);
	if (fd >= 0) {
		close(fd);
		atomic_fetch_add(&closed_in_handler, 1);
	}
	errno = saved;
}

static void *worker(void *arg)
{
	(void)arg;
	while (!atomic_load(&done)) {
		int kq = kqueue();
		SCHECK(kq >= 0);
		/* a dup made and closed: the other path that makes names */
		int d = dup(kq);
		SCHECK(d >= 0);
		SCHECK(close(d) == 0);
		int old = atomic_exchange(&victim, kq);
		if (old >= 0)
			SCHECK(close(old) == 0);
		atomic_fetch_add(&made, 1);
	}
	int old = atomic_exchange(&victim, -1);
	if (old >= 0)
		SCHECK(close(old) == 0);
	atomic_store(&finished, true);
	return NULL;
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	SCHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	stress_watchdog("close() of a kqueue in a signal handler", 60);
	pthread_t t;
	SCHECK(pthread_create(&t, NULL, worker, NULL) == 0);
	int want = stress_rounds(20000);
	double end = now_ms() + STRESS_PHASE_MS, seen_at = now_ms();
	long seen = 0;
	while (atomic_load(&closed_in_handler) < want && now_ms() < end) {
		pthread_kill(t, SIGUSR1);
		stress_sleep_us(20);
		long m = atomic_load(&made);
		if (m != seen) {
			seen = m;
			seen_at = now_ms();
		} else if (now_ms() - seen_at > 3000) {
			VIOLATION("close() async-signal-safe",
			          "no kqueue made for 3 s after %ld: the handler's close() "
			          "deadlocked the thread it interrupted",
			          m);
		}
	}
	atomic_store(&done, true);
	for (double stop = now_ms() + 3000; !atomic_load(&finished);) {
		if (now_ms() > stop)
			VIOLATION("close() async-signal-safe",
			          "the thread did not finish: the handler's close() "
			          "deadlocked the thread it interrupted");
		stress_sleep_us(1000);
	}
	SCHECK(pthread_join(t, NULL) == 0);
	fprintf(stderr, "%d kqueues closed in the handler, %ld made\n",
	        atomic_load(&closed_in_handler), atomic_load(&made));
	SCHECK(atomic_load(&closed_in_handler) > 0);
	return 0;
}
