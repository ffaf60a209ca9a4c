/*
 * close() is async-signal-safe (POSIX), and programs call it from signal
 * handlers.  The interposed close() must then never wait for a lock the
 * interrupted thread may hold (an fd entry's lock, the kqueue's lock), and a
 * knote of the closed fd must still go away (I4): the next EV_ADD on the
 * number registers the new file, no event of the old file comes back.
 *
 * One worker thread loops over changes and kevent() collects on the fd
 * (every path that takes the fd's locks); the main thread interrupts it with
 * a signal whose handler closes that fd.  A hang is a deadlock: the watchdog
 * ends the test with a failure.
 */
#include "stress_util.h"

#include <signal.h>
#include <stdbool.h>

static int kq;
static volatile sig_atomic_t victim = -1;
static atomic_int closed_in_handler;
static atomic_bool done;

static void on_usr1(int sig)
{
	(void)sig;
	int saved = errno;
	int fd = victim;
	if (fd >= 0) {
		victim = -1;
		close(fd);
		atomic_fetch_add(&closed_in_handler, 1);
	}
	errno = saved;
}

static void *worker(void *arg)
{
	(void)arg;
	struct kevent ev[8];
	for (uintptr_t round = 1; !atomic_load(&done); round++) {
		int sv[2];
		stress_socketpair(sv);
		/* the new file at a number the handler may have closed just
		 * before: EV_ADD registers it, its event has the new udata */
		CHANGE_OK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, (void *)round);
		SCHECK(write(sv[1], "x", 1) == 1);
		int got = 0;
		for (int tries = 0; !got && tries < 2000; tries++) {
			struct timespec ts = {0, 1000000};
			int n = kevent(kq, NULL, 0, ev, 8, &ts);
			SCHECK(n >= 0 || errno == EINTR); /* the signal came while it waited */
			for (int i = 0; i < n; i++) {
				if (ev[i].udata != (void *)round)
					VIOLATION("I4",
					          "event of an old file: udata %p in round %lu",
					          ev[i].udata, (unsigned long)round);
				got = 1;
			}
		}
		if (!got)
			VIOLATION("I4", "EV_ADD on a reused number: no event in round %lu",
			          (unsigned long)round);
		victim = sv[0];
		/* the handler closes sv[0] somewhere in here */
		for (int i = 0; i < 200 && victim >= 0; i++) {
			struct kevent ch[2];
			EV_SET(&ch[0], (uintptr_t)sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0,
			       (void *)round);
			EV_SET(&ch[1], (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD | EV_DISPATCH, 0, 0,
			       (void *)round);
			struct timespec ts = {0, 0};
			(void)kevent(kq, ch, 2, ev, 8, &ts);
			EV_SET(&ch[0], (uintptr_t)sv[0], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
			(void)kevent(kq, ch, 1, ev, 8, &ts);
		}
		sigset_t set, old;
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		pthread_sigmask(SIG_BLOCK, &set, &old);
		if (victim >= 0) {
			victim = -1;
			SCHECK(close(sv[0]) == 0);
		}
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		SCHECK(close(sv[1]) == 0);
		/* drain what the old file left: nothing may carry its udata
		 * once the next round has registered the reused number */
		struct timespec ts = {0, 0};
		while (kevent(kq, NULL, 0, ev, 8, &ts) > 0) {
		}
	}
	return NULL;
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	SCHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	kq = kqueue();
	SCHECK(kq >= 0);
	stress_watchdog("close() in a signal handler", 30);
	pthread_t t;
	SCHECK(pthread_create(&t, NULL, worker, NULL) == 0);
	int want = stress_rounds(2000);
	double end = now_ms() + STRESS_PHASE_MS;
	while (atomic_load(&closed_in_handler) < want && now_ms() < end) {
		pthread_kill(t, SIGUSR1);
		stress_sleep_us(50);
	}
	atomic_store(&done, true);
	SCHECK(pthread_join(t, NULL) == 0);
	fprintf(stderr, "%d closes in the handler\n", atomic_load(&closed_in_handler));
	SCHECK(atomic_load(&closed_in_handler) > 0);
	SCHECK(close(kq) == 0);
	return 0;
}
