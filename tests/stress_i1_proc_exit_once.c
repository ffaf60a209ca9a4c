/*
 * Stress test for SEMANTICS.md I1 "one at a time" with EVFILT_PROC: many
 * children watched by one kqueue that 2, 8 and 32 threads share, every
 * knote EV_DISPATCH.  Each exit is returned exactly once, to one thread,
 * with the child's status in data, and the child is still there to reap
 * (waitpid() by the receiving thread gives the same status).
 *
 * BREAKS: I1
 *
 * With the process connector the children also fork a few short-lived
 * grandchildren while registered for NOTE_FORK: a thread that receives a
 * NOTE_FORK holds the knote a little before re-enabling it, and a second
 * delivery while it holds it (or without an EV_ENABLE in between) is a
 * violation.  That is what a broken EV_DISPATCH shows: an exit alone is
 * oneshot and cannot be returned twice even then, so without the connector
 * the broken build cannot be told apart and the test says so and fails.
 */
#include "stress_util.h"

#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>

#define MAXEV     4
#define MAXALIVE  24
#define NFORKS    3
#define STATUS(i) (((i)&0x7f) << 8)

struct kid {
	atomic_int pid;
	atomic_int holder;  /* 0, or 1 + the thread handling it */
	atomic_int armed;   /* 1 from an EV_ENABLE until a delivery */
	atomic_int exited;  /* its NOTE_EXIT was returned */
	atomic_long events; /* deliveries */
};

struct ctx {
	int kq;
	bool forks; /* the connector reports NOTE_FORK */
	int nkids;
	struct kid *kids;
	atomic_int alive;
	atomic_int reaped;
	atomic_long forkev;
	atomic_int stop;
};

struct warg {
	struct ctx *c;
	int id;
	uint32_t seed;
};

/* A child: a few forks when they are watched, then an exit with its status. */
static void child(int i, int go, bool forks)
{
	char b;
	if (read(go, &b, 1) != 1)
		_exit(99);
	for (int f = 0; forks && f < NFORKS; f++) {
		pid_t g = fork();
		if (g == 0)
			_exit(0);
		if (g > 0)
			waitpid(g, NULL, 0);
		usleep(300);
	}
	usleep((unsigned)(i % 7) * 150);
	_exit(STATUS(i) >> 8);
}

static void check_exit(struct ctx *c, struct kid *k, int i, const struct kevent *ev, int tid)
{
	if (atomic_exchange(&k->exited, 1))
		VIOLATION("I1", "NOTE_EXIT of child %d (pid %d) returned twice (thread %d)", i,
		          atomic_load(&k->pid), tid);
	if (!(ev->flags & EV_EOF) || ev->data != STATUS(i))
		VIOLATION("I1", "child %d: exit event flags %#x data %#llx, want EV_EOF and %#x", i,
		          ev->flags, (long long)ev->data, STATUS(i));
	int st = -1;
	pid_t p = waitpid(atomic_load(&k->pid), &st, WNOHANG);
	SCHECK(p == atomic_load(&k->pid)); /* exited, and not reaped by anyone */
	SCHECK(st == ev->data);
	atomic_fetch_add(&c->reaped, 1);
	atomic_fetch_sub(&c->alive, 1);
}

static void *worker(void *p)
{
	struct warg *t = p;
	struct ctx *c = t->c;
	struct kevent ch[MAXEV], ev[MAXEV];
	int nch = 0;
	struct timespec to = ts_ms(100);
	while (!atomic_load(&c->stop)) {
		int nev = 1 + (int)(stress_rand(&t->seed) % MAXEV);
		int n = kevent(c->kq, ch, nch, ev, nev, &to);
		nch = 0;
		if (n < 0 && errno == EINTR)
			continue;
		SCHECK(n >= 0);
		stress_no_errors(ev, n);
		for (int j = 0; j < n; j++) {
			int i = (int)(intptr_t)ev[j].udata;
			SCHECK(i >= 0 && i < c->nkids && ev[j].filter == EVFILT_PROC);
			struct kid *k = &c->kids[i];
			SCHECK(ev[j].ident == (uintptr_t)atomic_load(&k->pid));
			int other = atomic_exchange(&k->holder, t->id + 1);
			if (other)
				VIOLATION("I1",
				          "child %d's knote returned to thread %d while thread %d "
				          "holds it",
				          i, t->id, other - 1);
			if (atomic_exchange(&k->armed, 0) != 1)
				VIOLATION("I1",
				          "child %d's knote returned again without EV_ENABLE "
				          "(fflags %#x)",
				          i, ev[j].fflags);
			atomic_fetch_add(&k->events, 1);
			if (ev[j].fflags & NOTE_FORK)
				atomic_fetch_add(&c->forkev, 1);
		}
		if (n > 0)
			stress_sleep_us(200); /* hold them: a broken dispatch shows here */
		for (int j = 0; j < n; j++) {
			int i = (int)(intptr_t)ev[j].udata;
			struct kid *k = &c->kids[i];
			if (ev[j].fflags & NOTE_EXIT)
				check_exit(c, k, i, &ev[j], t->id);
			else
				atomic_store(&k->armed, 1);
			SCHECK(atomic_exchange(&k->holder, 0) == t->id + 1);
			if (!(ev[j].fflags & NOTE_EXIT))
				EV_SET(&ch[nch++], ev[j].ident, EVFILT_PROC, EV_ENABLE, 0, 0,
				       ev[j].udata);
		}
	}
	return NULL;
}

static bool connector_works(void)
{
	int kq = kqueue();
	SCHECK(kq >= 0);
	int err = stress_change(kq, (uintptr_t)getpid(), EVFILT_PROC, EV_ADD, NOTE_FORK, 0, NULL);
	close(kq);
	SCHECK(err == 0 || err == ENOTSUP);
	return err == 0;
}

static void spawn(struct ctx *c, int i)
{
	int go[2];
	SCHECK(pipe(go) == 0);
	pid_t pid = fork();
	SCHECK(pid >= 0);
	if (pid == 0) {
		close(go[1]);
		child(i, go[0], c->forks);
	}
	close(go[0]);
	atomic_store(&c->kids[i].pid, pid);
	atomic_fetch_add(&c->alive, 1);
	unsigned ff = NOTE_EXIT | (c->forks ? NOTE_FORK : 0);
	CHANGE_OK(c->kq, (uintptr_t)pid, EVFILT_PROC, EV_ADD | EV_DISPATCH, ff, 0,
	          (void *)(intptr_t)i);
	SCHECK(write(go[1], "x", 1) == 1);
	close(go[1]);
}

static void run(int nthreads)
{
	struct ctx *c = calloc(1, sizeof(*c));
	SCHECK(c);
	c->kq = kqueue();
	SCHECK(c->kq >= 0);
	c->forks = connector_works();
#ifdef BATON_SANITIZED
	c->nkids = stress_rounds(50); /* a sanitized fork copies a lot */
#else
	c->nkids = stress_rounds(300);
#endif
	if (c->nkids < 30)
		c->nkids = 30; /* fewer: a quick run against a broken build may see no violation */
	c->kids = calloc((size_t)c->nkids, sizeof(*c->kids));
	SCHECK(c->kids);
	for (int i = 0; i < c->nkids; i++)
		atomic_init(&c->kids[i].armed, 1);
	pthread_t tids[32];
	struct warg args[32];
	for (int i = 0; i < nthreads; i++)
		args[i] = (struct warg){c, i, 0x2545F491u * (uint32_t)(i + 1) + 3u};
	double t0 = now_ms();
	stress_start(tids, nthreads, worker, args, sizeof(args[0]));
	for (int i = 0; i < c->nkids; i++) {
		while (atomic_load(&c->alive) >= MAXALIVE)
			stress_sleep_us(200);
		spawn(c, i);
	}
	while (atomic_load(&c->reaped) < c->nkids && now_ms() - t0 < 50000)
		stress_sleep_us(1000);
	atomic_store(&c->stop, 1);
	stress_join(tids, nthreads);
	fprintf(stderr, "   %2d threads: %d exits, %ld NOTE_FORK events, %.0f ms\n", nthreads,
	        atomic_load(&c->reaped), atomic_load(&c->forkev), now_ms() - t0);
	for (int i = 0; i < c->nkids; i++)
		if (!atomic_load(&c->kids[i].exited))
			VIOLATION("I3", "child %d (pid %d): exit never returned", i,
			          atomic_load(&c->kids[i].pid));
	if (c->forks)
		SCHECK(atomic_load(&c->forkev) > 0);
	close(c->kq);
	free(c->kids);
	free(c);
}

int main(void)
{
	if (!connector_works()) {
		fprintf(stderr, "note: no process connector here: exits only\n");
		const char *b = getenv("BATON_BREAK");
		if (b && *b) {
			fprintf(stderr, "cannot show a broken %s without NOTE_FORK: failing\n", b);
			return 1;
		}
	}
	stress_phases("exits", run);
	alarm(0);
	fprintf(stderr, "stress_i1_proc_exit_once: no violation\n");
	return 0;
}
