/*
 * Stress test: kqueues made and closed in many threads at once, each with a
 * socket and a user event, while the other threads' close() of their
 * sockets walks every kqueue (the close hook).  A walker that found a
 * kqueue just before its last reference went took a reference of its own
 * after the struct was released, believed that reference the last one,
 * and closed the kqueue's descriptors a second time: by then the numbers
 * could be another kqueue's (that one then lost its epoll or eventfd), and
 * ThreadSanitizer saw the two threads at the same descriptor fields.  A
 * reference found lock-free is now only taken while another is held.
 *
 * Every kqueue must work to the end of its life: its user event and its
 * socket's READ come back, with the right data, within 5 s; and the
 * thread's own long-lived pipe must still be open (a stray close of a
 * reused number would take it).  Under ThreadSanitizer any report fails
 * the test (its exit code).
 */
#include "stress_util.h"

#include <sys/stat.h>

struct carg {
	long iters;
	int id;
};

static void same_file(int fd, const struct stat *want)
{
	struct stat st;
	SCHECK(fstat(fd, &st) == 0);
	if (st.st_dev != want->st_dev || st.st_ino != want->st_ino)
		VIOLATION("churn", "fd %d no longer names the thread's pipe", fd);
}

static void *churn(void *p)
{
	struct carg *a = p;
	int keep[2];
	SCHECK(pipe(keep) == 0);
	struct stat kst[2];
	SCHECK(fstat(keep[0], &kst[0]) == 0 && fstat(keep[1], &kst[1]) == 0);
	for (long i = 0; i < a->iters; i++) {
		int kq = kqueue();
		SCHECK(kq >= 0);
		int sv[2];
		stress_socketpair(sv);
		struct kevent ch[2], ev[2];
		EV_SET(&ch[0], (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
		EV_SET(&ch[1], 7, EVFILT_USER, EV_ADD | EV_CLEAR, NOTE_TRIGGER, 0, NULL);
		SCHECK(kevent(kq, ch, 2, NULL, 0, NULL) == 0);
		SCHECK(write(sv[1], "abc", 3) == 3);
		int got = 0;
		struct timespec five = {5, 0};
		while (got != 3) {
			int n = kevent(kq, NULL, 0, ev, 2, &five);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				VIOLATION("churn", "thread %d, kqueue %ld: kevent gave %d (%s) with "
					  "READ and a user event ready", a->id, i, n,
					  n < 0 ? strerror(errno) : "timeout");
			stress_no_errors(ev, n);
			for (int k = 0; k < n; k++) {
				if (ev[k].filter == EVFILT_READ) {
					SCHECK(ev[k].ident == (uintptr_t)sv[0] && ev[k].data == 3);
					got |= 1;
				} else {
					SCHECK(ev[k].filter == EVFILT_USER && ev[k].ident == 7);
					got |= 2;
				}
			}
		}
		close(sv[0]);
		close(sv[1]);
		SCHECK(close(kq) == 0);
		same_file(keep[0], &kst[0]);
		same_file(keep[1], &kst[1]);
	}
	close(keep[0]);
	close(keep[1]);
	return NULL;
}

static void run(int nthreads)
{
	pthread_t tids[32];
	struct carg args[32];
	long iters = stress_rounds(6000) / nthreads;
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct carg){iters < 20 ? 20 : iters, i};
	double t0 = now_ms();
	stress_start(tids, nthreads, churn, args, sizeof args[0]);
	stress_join(tids, nthreads);
	fprintf(stderr, "   churn: %2d threads, %ld kqueues each, %.0f ms\n", nthreads,
		args[0].iters, now_ms() - t0);
}

int main(void)
{
	stress_phases("churn", run);
	alarm(0);
	fprintf(stderr, "stress_kqueue_churn: no violation\n");
	return 0;
}
