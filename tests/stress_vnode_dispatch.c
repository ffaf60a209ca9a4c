/*
 * Stress test for EVFILT_VNODE under many threads: SEMANTICS.md I1 "one at
 * a time" and I3 "no lost wakeups" for knotes fed by inotify.
 *
 * BREAKS: I1
 *
 * Two writer threads append one byte at a time to NFILES files, each
 * watched by an EV_CLEAR | EV_DISPATCH NOTE_WRITE knote on one kqueue;
 * 2, 8 and 32 threads wait on it.  A thread that gets a knote claims the
 * file (an atomic exchange: already claimed means two threads hold it at
 * once, I1) and disarms it (already disarmed means a second delivery
 * without an EV_ENABLE in between, I1), looks at the file's size, and hands
 * EV_ENABLE to its next kevent() call.  A write that ends after that look
 * makes an event that reaches a thread once the knote is enabled again, so
 * when the writers stop every file must be seen at its final size within a
 * bounded time; a file that is not was written without a wakeup (I3).
 */
#include "stress_util.h"

#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>

#define NFILES  4
#define NWRITER 2
#define MAXEV   3

struct file {
	int fd;            /* watched (read only) */
	int wfd[NWRITER];  /* each writer's O_APPEND descriptor */
	atomic_int holder; /* 0, or 1 + the thread that handles it */
	atomic_int armed;  /* 1 from an EV_ENABLE until a delivery */
	atomic_long seen;  /* size at the latest look */
	atomic_long final; /* size once the writers are done, -1 before */
	atomic_long deliveries;
};

struct ctx {
	int kq;
	struct file files[NFILES];
	long writes; /* per writer */
	atomic_int writers_left;
	atomic_int stop;
	double deadline;     /* of the writing */
	atomic_long done_at; /* ms when the writers stopped (bits of a double) */
	char dir[64];
};

struct warg {
	struct ctx *c;
	int id;
	uint32_t seed;
	long calls;
};

static void *writer(void *p)
{
	struct warg *t = p;
	struct ctx *c = t->c;
	for (long i = 0; i < c->writes && now_ms() < c->deadline; i++) {
		struct file *f = &c->files[stress_rand(&t->seed) % NFILES];
		SCHECK(write(f->wfd[t->id], "x", 1) == 1);
		if (stress_rand(&t->seed) % 16 == 0)
			sched_yield();
	}
	if (atomic_fetch_sub(&c->writers_left, 1) == 1) {
		for (int i = 0; i < NFILES; i++) {
			struct stat st;
			SCHECK(fstat(c->files[i].fd, &st) == 0);
			atomic_store(&c->files[i].final, (long)st.st_size);
		}
		double now = now_ms();
		long bits;
		memcpy(&bits, &now, sizeof bits);
		atomic_store(&c->done_at, bits);
	}
	return NULL;
}

/* Every file seen at its final size?  A violation after 3 s of trying. */
static int all_seen(struct ctx *c)
{
	long bits = atomic_load(&c->done_at);
	if (!bits)
		return 0;
	int ok = 1;
	for (int i = 0; i < NFILES; i++)
		ok &= atomic_load(&c->files[i].seen) == atomic_load(&c->files[i].final);
	double done;
	memcpy(&done, &bits, sizeof done);
	if (!ok && now_ms() > done + 3000) {
		for (int i = 0; i < NFILES; i++)
			if (atomic_load(&c->files[i].seen) != atomic_load(&c->files[i].final))
				VIOLATION("I3",
				          "file %d written up to %ld bytes, but its VNODE knote "
				          "was last returned at %ld (3 s ago)",
				          i, atomic_load(&c->files[i].final),
				          atomic_load(&c->files[i].seen));
	}
	return ok;
}

static void *waiter(void *p)
{
	struct warg *t = p;
	struct ctx *c = t->c;
	struct kevent ch[MAXEV], ev[MAXEV];
	int nch = 0;
	struct timespec to = ts_ms(50);
	while (!atomic_load(&c->stop)) {
		int nev = 1 + (int)(stress_rand(&t->seed) % MAXEV);
		int n = kevent(c->kq, ch, nch, ev, nev, &to);
		t->calls++;
		nch = 0;
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n >= 0 && n <= nev);
		stress_no_errors(ev, n);
		for (int i = 0; i < n; i++) {
			struct file *f = ev[i].udata;
			SCHECK(f >= c->files && f < c->files + NFILES);
			if (ev[i].ident != (uintptr_t)f->fd || ev[i].filter != EVFILT_VNODE)
				VIOLATION("I1", "event {%lu, %d} carries the udata of fd %d",
				          (unsigned long)ev[i].ident, ev[i].filter, f->fd);
			if (ev[i].fflags != NOTE_WRITE)
				VIOLATION("I1", "fflags %#x, only NOTE_WRITE was asked for",
				          ev[i].fflags);
			int other = atomic_exchange(&f->holder, t->id + 1);
			if (other != 0)
				VIOLATION("I1",
				          "EV_DISPATCH VNODE knote of fd %d returned to thread %d "
				          "while thread %d still handles it",
				          f->fd, t->id, other - 1);
			if (atomic_exchange(&f->armed, 0) != 1)
				VIOLATION("I1",
				          "EV_DISPATCH VNODE knote of fd %d returned to thread %d "
				          "a second time without an EV_ENABLE in between",
				          f->fd, t->id);
			atomic_fetch_add(&f->deliveries, 1);
		}
		for (int i = 0; i < n; i++) {
			struct file *f = ev[i].udata;
			struct stat st;
			SCHECK(fstat(f->fd, &st) == 0);
			atomic_store(&f->seen, (long)st.st_size);
		}
		if (stress_rand(&t->seed) % 4 == 0)
			sched_yield();
		for (int i = 0; i < n; i++) {
			struct file *f = ev[i].udata;
			int h = atomic_exchange(&f->holder, 0);
			if (h != t->id + 1)
				VIOLATION("I1",
				          "VNODE knote of fd %d taken by thread %d while "
				          "thread %d handled it",
				          f->fd, h - 1, t->id);
			atomic_store(&f->armed, 1);
			EV_SET(&ch[nch], (uintptr_t)f->fd, EVFILT_VNODE, EV_ENABLE, 0, 0, f);
			nch++;
		}
		if (all_seen(c))
			atomic_store(&c->stop, 1);
	}
	if (nch > 0) /* hand back what this thread still holds */
		SCHECK(kevent(c->kq, ch, nch, NULL, 0, NULL) == 0);
	return NULL;
}

static void run(int nthreads)
{
	struct ctx *c = calloc(1, sizeof *c);
	SCHECK(c);
	snprintf(c->dir, sizeof c->dir, "/tmp/baton-stress-vnode-XXXXXX");
	SCHECK(mkdtemp(c->dir) != NULL);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	c->writes = stress_rounds(20000);
	atomic_init(&c->writers_left, NWRITER);
	for (int i = 0; i < NFILES; i++) {
		struct file *f = &c->files[i];
		char path[128];
		snprintf(path, sizeof path, "%s/f%d", c->dir, i);
		f->fd = open(path, O_CREAT | O_RDONLY, 0644);
		SCHECK(f->fd >= 0);
		for (int w = 0; w < NWRITER; w++) {
			f->wfd[w] = open(path, O_WRONLY | O_APPEND);
			SCHECK(f->wfd[w] >= 0);
		}
		atomic_init(&f->armed, 1);
		atomic_init(&f->final, -1);
		CHANGE_OK(c->kq, (uintptr_t)f->fd, EVFILT_VNODE, EV_ADD | EV_CLEAR | EV_DISPATCH,
		          NOTE_WRITE, 0, f);
	}
	pthread_t wt[NWRITER], tids[32];
	struct warg wargs[NWRITER], args[32];
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct warg){c, i, 0x2545F491u * (uint32_t)(i + 1), 0};
	for (int i = 0; i < NWRITER; i++)
		wargs[i] = (struct warg){c, i, 0x9E3779B9u * (uint32_t)(i + 5), 0};
	double t0 = now_ms();
	c->deadline = t0 + STRESS_PHASE_MS;
	stress_start(tids, nthreads, waiter, args, sizeof args[0]);
	stress_start(wt, NWRITER, writer, wargs, sizeof wargs[0]);
	stress_join(wt, NWRITER);
	stress_join(tids, nthreads);
	long calls = 0, deliveries = 0, bytes = 0;
	for (int i = 0; i < nthreads; i++)
		calls += args[i].calls;
	for (int i = 0; i < NFILES; i++) {
		deliveries += atomic_load(&c->files[i].deliveries);
		bytes += atomic_load(&c->files[i].final);
		SCHECK(atomic_load(&c->files[i].deliveries) > 0);
	}
	fprintf(stderr, "   %2d threads: %ld bytes written, %ld deliveries in %ld calls, %.0f ms\n",
	        nthreads, bytes, deliveries, calls, now_ms() - t0);
	for (int i = 0; i < NFILES; i++) {
		close(c->files[i].fd);
		for (int w = 0; w < NWRITER; w++)
			close(c->files[i].wfd[w]);
	}
	close(c->kq);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
	SCHECK(system(cmd) == 0);
	free(c);
}

int main(void)
{
	stress_phases("vnode dispatch", run);
	alarm(0);
	fprintf(stderr, "stress_vnode_dispatch: no violation\n");
	return 0;
}
