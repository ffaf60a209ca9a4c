/*
 * Stress test for EVFILT_SIGNAL under SEMANTICS.md I3 "no lost wakeups":
 * every delivery of a watched signal is recorded once, whatever the
 * disposition, and a thread blocked in kevent(timeout NULL) wakes for it.
 *
 * BREAKS: I3
 *
 * Raiser threads raise() SIGUSR1 (a program handler counts each delivery)
 * and SIGUSR2 (SIG_IGN) in a loop while waiter threads block on the
 * kqueue(s) with timeout NULL and nevents 1, adding up each event's data.
 * raise() delivers to the calling thread before it returns, so the program
 * handler's count is exact, and the sum of data over the waiters of each
 * kqueue must come to it exactly: less within 5 s after the raisers stop
 * is a lost delivery or wakeup, more is a delivery counted twice.  Phase
 * "two kqueues" watches both signals from two kqueues at once (each must
 * see every delivery); phase "kill" sends process-directed signals with
 * kill(), which also land on the waiters (EINTR: they wait again).
 */
#include "stress_util.h"

#include <stdbool.h>
#include <sys/event.h>

#define QUIT_IDENT 77
#define NKQ        2

static atomic_long handled; /* the program's own handler */
static atomic_long sum[NKQ][2];
static atomic_int quit;
static atomic_long raised1, raised2; /* raise()s: each one delivery */

static void on_usr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&handled, 1);
}

struct warg {
	int kq, slot;
};

static void *waiter(void *p)
{
	struct warg *a = p;
	while (!atomic_load(&quit)) {
		struct kevent e;
		int n = kevent(a->kq, NULL, 0, &e, 1, NULL);
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n == 1);
		if (e.filter == EVFILT_USER)
			break; /* EV_CLEAR-less: every waiter sees it */
		SCHECK(e.filter == EVFILT_SIGNAL);
		if (e.data <= 0)
			VIOLATION("I3", "signal %lu reported with data %lld",
			          (unsigned long)e.ident, (long long)e.data);
		atomic_fetch_add(&sum[a->slot][e.ident == SIGUSR2], e.data);
	}
	return NULL;
}

struct rarg {
	int rounds;
	bool by_kill;
};

static void *raiser(void *p)
{
	struct rarg *a = p;
	double end = now_ms() + STRESS_PHASE_MS;
	for (int i = 0; i < a->rounds && now_ms() < end; i++) {
		int sig = (i & 1) ? SIGUSR2 : SIGUSR1;
		SCHECK((a->by_kill ? kill(getpid(), sig) : raise(sig)) == 0);
		atomic_fetch_add(sig == SIGUSR2 ? &raised2 : &raised1, 1);
	}
	return NULL;
}

/*
 * SIGUSR1's deliveries: raise() delivers each one before it returns, and
 * the program's handler saw each; kill()s coalesce, and then the handler's
 * count is the truth.  ThreadSanitizer defers (and may drop) the program's
 * handler, so there only the raise()s are known (-1: not known).
 */
static long expected_usr1(bool by_kill)
{
#ifdef BATON_SANITIZED
	return by_kill ? -1 : atomic_load(&raised1);
#else
	if (by_kill)
		return atomic_load(&handled);
	if (atomic_load(&handled) != atomic_load(&raised1))
		VIOLATION("I3", "the program's handler ran %ld times for %ld raise()s",
		          atomic_load(&handled), atomic_load(&raised1));
	return atomic_load(&raised1);
#endif
}

static void run(int nthreads, int nkq, bool by_kill)
{
	int kq[NKQ];
	atomic_store(&handled, 0);
	atomic_store(&raised1, 0);
	atomic_store(&raised2, 0);
	atomic_store(&quit, 0);
	for (int k = 0; k < nkq; k++) {
		kq[k] = kqueue();
		SCHECK(kq[k] >= 0);
		CHANGE_OK(kq[k], SIGUSR1, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
		CHANGE_OK(kq[k], SIGUSR2, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
		CHANGE_OK(kq[k], QUIT_IDENT, EVFILT_USER, EV_ADD, 0, 0, NULL);
		atomic_store(&sum[k][0], 0);
		atomic_store(&sum[k][1], 0);
	}
	int nwait = nthreads, nraise = nthreads > 2 ? nthreads / 2 : 2;
	pthread_t wt[64], rt[64];
	struct warg wa[64];
	struct rarg ra[64];
	for (int i = 0; i < nwait; i++)
		wa[i] = (struct warg){kq[i % nkq], i % nkq};
	stress_start(wt, nwait, waiter, wa, sizeof(wa[0]));
	for (int i = 0; i < nraise; i++)
		ra[i] = (struct rarg){stress_rounds(4000), by_kill};
	stress_start(rt, nraise, raiser, ra, sizeof(ra[0]));
	stress_join(rt, nraise);
	double deadline = now_ms() + 5000;
	for (;;) {
		/*
		 * A kill() may still be on its way to a thread after the raisers
		 * returned, and libbaton counts a delivery just before the
		 * program's handler runs: the handler's count can trail the
		 * kqueue's for a moment, so "more" is only a double count when
		 * it is still so at the deadline.
		 */
		long want1 = expected_usr1(by_kill);
		bool late = now_ms() > deadline;
		bool done = true;
		for (int k = 0; k < nkq; k++) {
			long got = atomic_load(&sum[k][0]);
			if (want1 >= 0 && got > want1 && (!by_kill || late))
				VIOLATION("I3",
				          "kqueue %d: SIGUSR1 counted %ld times, delivered %ld", k,
				          got, want1);
			done = done && (want1 < 0 || got == want1) &&
			       got == atomic_load(&sum[0][0]) &&
			       atomic_load(&sum[k][1]) == atomic_load(&sum[0][1]);
			if (!by_kill)
				done = done && atomic_load(&sum[k][1]) == atomic_load(&raised2);
		}
		if (done)
			break;
		if (late)
			VIOLATION("I3",
			          "SIGUSR1: delivered %ld, kqueue 0 saw %ld%s; SIGUSR2 seen %ld",
			          want1, atomic_load(&sum[0][0]),
			          nkq > 1 ? " (and kqueue 1 its own)" : "",
			          atomic_load(&sum[0][1]));
		stress_sleep_us(1000);
	}
	atomic_store(&quit, 1);
	for (int k = 0; k < nkq; k++)
		CHANGE_OK(kq[k], QUIT_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	stress_join(wt, nwait);
	for (int k = 0; k < nkq; k++)
		close(kq[k]);
}

static void one_kq(int n)
{
	run(n, 1, false);
}

static void two_kqs(int n)
{
	run(n, 2, false);
}

static void by_kill(int n)
{
	run(n, 2, true);
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	SCHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	SCHECK(signal(SIGUSR2, SIG_IGN) != SIG_ERR);
	stress_phases("one kqueue", one_kq);
	stress_phases("two kqueues", two_kqs);
	stress_phases("kill", by_kill);
	return 0;
}
