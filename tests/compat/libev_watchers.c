/*
 * libev's watchers on one backend: `libev_watchers kqueue|epoll`.  Built by
 * tests/compat/libev.sh against a libev whose shared library was built with
 * libbaton, linked the usual way (-lev only): a close() of this program goes
 * to libc's, not libbaton's hook, so the fd reuse checks test a close that
 * libbaton does not see.  Every check must pass on both backends.
 * Prints one line per failed check and a summary; exits 1 on any failure.
 */
#include <ev.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int checks, failures;
static const char *current;

#define CHECK(cond)                                                                           \
	do {                                                                                  \
		checks++;                                                                     \
		if (!(cond)) {                                                                \
			failures++;                                                           \
			fprintf(stderr, "FAIL %s: %s (line %d)\n", current, #cond, __LINE__); \
		}                                                                             \
	} while (0)

/* Runs the loop until *flag reaches want or secs pass; returns *flag. */
static int run_until(struct ev_loop *loop, const int *flag, int want, double secs)
{
	ev_tstamp end = ev_time() + secs;
	while (*flag < want && ev_time() < end) {
		ev_run(loop, EVRUN_NOWAIT);
		if (*flag >= want)
			break;
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return *flag;
}

static int counter_of(void *w)
{
	return *(int *)((ev_watcher *)w)->data;
}

/* ---- io ---- */

struct io_state {
	int hits;
	char last;
};

static void io_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	struct io_state *s = w->data;
	char c;
	if ((revents & EV_READ) && read(w->fd, &c, 1) == 1) {
		s->last = c;
		s->hits++;
	}
}

static void io_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct io_state *s = w->data;
	if (revents & EV_WRITE)
		s->hits++;
	ev_io_stop(loop, w);
}

static void test_io(struct ev_loop *loop)
{
	current = "io";
	int p[2];
	CHECK(pipe(p) == 0);
	struct io_state rs = {0, 0}, ws = {0, 0};
	ev_io r, w;
	ev_io_init(&r, io_read_cb, p[0], EV_READ);
	r.data = &rs;
	ev_io_init(&w, io_write_cb, p[1], EV_WRITE);
	w.data = &ws;
	ev_io_start(loop, &r);
	ev_io_start(loop, &w);
	CHECK(run_until(loop, &ws.hits, 1, 1.0) == 1);
	ev_run(loop, EVRUN_NOWAIT);
	CHECK(rs.hits == 0); /* nothing written yet */
	CHECK(write(p[1], "a", 1) == 1);
	CHECK(run_until(loop, &rs.hits, 1, 1.0) == 1 && rs.last == 'a');
	CHECK(write(p[1], "b", 1) == 1);
	CHECK(run_until(loop, &rs.hits, 2, 1.0) == 2 && rs.last == 'b');
	ev_io_stop(loop, &r);
	close(p[0]);
	close(p[1]);
}

/*
 * A watched number is closed (libc's close: libbaton does not see it) and
 * reused by a new socket, which is watched.  Its data must come, and only
 * its data.  in_between: the loop runs between the close and the reuse.
 */
static void reuse_case(struct ev_loop *loop, const char *name, bool in_between, bool keep_old)
{
	current = name;
	int a[2], b[2], keep = -1;
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0);
	struct io_state s = {0, 0};
	ev_io r;
	ev_io_init(&r, io_read_cb, a[0], EV_READ);
	r.data = &s;
	ev_io_start(loop, &r);
	CHECK(write(a[1], "o", 1) == 1);
	CHECK(run_until(loop, &s.hits, 1, 1.0) == 1 && s.last == 'o');
	int fd = a[0];
	if (keep_old)
		keep = dup(a[0]); /* the old file lives on under another number */
	ev_io_stop(loop, &r);
	close(a[0]);
	if (in_between)
		ev_run(loop, EVRUN_NOWAIT);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0);
	CHECK(b[0] == fd);
	ev_io_set(&r, b[0], EV_READ);
	ev_io_start(loop, &r);
	ev_run(loop, EVRUN_NOWAIT);
	/* the old file's data is not the new one's */
	if (keep_old)
		CHECK(write(a[1], "x", 1) == 1);
	ev_run(loop, EVRUN_NOWAIT);
	usleep(20 * 1000);
	ev_run(loop, EVRUN_NOWAIT);
	CHECK(s.hits == 1);
	CHECK(write(b[1], "n", 1) == 1);
	CHECK(run_until(loop, &s.hits, 2, 1.0) == 2 && s.last == 'n');
	CHECK(write(b[1], "m", 1) == 1);
	CHECK(run_until(loop, &s.hits, 3, 1.0) == 3 && s.last == 'm');
	ev_io_stop(loop, &r);
	close(b[0]);
	close(b[1]);
	close(a[1]);
	if (keep >= 0)
		close(keep);
}

static void test_fd_reuse(struct ev_loop *loop)
{
	reuse_case(loop, "fd reuse, same iteration", false, false);
	reuse_case(loop, "fd reuse, loop ran between", true, false);
	reuse_case(loop, "fd reuse, old file dup'd", false, true);
}

/* ---- timer, periodic ---- */

static void count_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	if (revents & EV_TIMER)
		(*(int *)w->data)++;
}

static void test_timer(struct ev_loop *loop)
{
	current = "timer";
	int once = 0, rep = 0;
	ev_timer t1, t2;
	ev_timer_init(&t1, count_timer_cb, 0.05, 0.);
	t1.data = &once;
	ev_timer_init(&t2, count_timer_cb, 0.02, 0.02);
	t2.data = &rep;
	ev_tstamp start = ev_time();
	ev_timer_start(loop, &t1);
	ev_timer_start(loop, &t2);
	CHECK(run_until(loop, &once, 1, 2.0) == 1);
	CHECK(ev_time() - start >= 0.049);
	CHECK(run_until(loop, &rep, 4, 2.0) >= 4);
	ev_timer_stop(loop, &t2);
	CHECK(!ev_is_active(&t1));
	CHECK(counter_of(&t1) == 1);
}

static void count_periodic_cb(struct ev_loop *loop, ev_periodic *w, int revents)
{
	(void)loop;
	if (revents & EV_PERIODIC)
		(*(int *)w->data)++;
}

static void test_periodic(struct ev_loop *loop)
{
	current = "periodic";
	int at = 0, every = 0;
	ev_periodic p1, p2;
	ev_now_update(loop);
	ev_tstamp start = ev_time();
	ev_periodic_init(&p1, count_periodic_cb, ev_now(loop) + 0.05, 0., 0);
	p1.data = &at;
	ev_periodic_init(&p2, count_periodic_cb, 0., 0.02, 0);
	p2.data = &every;
	ev_periodic_start(loop, &p1);
	ev_periodic_start(loop, &p2);
	CHECK(run_until(loop, &at, 1, 2.0) == 1);
	CHECK(ev_time() - start >= 0.045);
	CHECK(run_until(loop, &every, 3, 2.0) >= 3);
	ev_periodic_stop(loop, &p2);
	CHECK(at == 1);
}

/* ---- signal, child ---- */

static void count_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	if (revents & EV_SIGNAL)
		(*(int *)w->data)++;
}

static void test_signal(struct ev_loop *loop)
{
	current = "signal";
	int n = 0;
	ev_signal s;
	ev_signal_init(&s, count_signal_cb, SIGUSR1);
	s.data = &n;
	ev_signal_start(loop, &s);
	raise(SIGUSR1);
	CHECK(run_until(loop, &n, 1, 1.0) == 1);
	kill(getpid(), SIGUSR1);
	CHECK(run_until(loop, &n, 2, 1.0) == 2);
	ev_signal_stop(loop, &s);
}

struct child_state {
	int hits, status;
	pid_t pid;
};

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	(void)loop;
	struct child_state *c = w->data;
	if (revents & EV_CHILD) {
		c->hits++;
		c->status = w->rstatus;
		c->pid = w->rpid;
	}
}

static void test_child(struct ev_loop *loop)
{
	current = "child";
	struct child_state c = {0, 0, 0};
	pid_t pid = fork();
	if (pid == 0) {
		usleep(20 * 1000);
		_exit(7);
	}
	CHECK(pid > 0);
	ev_child w;
	ev_child_init(&w, child_cb, pid, 0);
	w.data = &c;
	ev_child_start(loop, &w);
	CHECK(run_until(loop, &c.hits, 1, 2.0) == 1);
	CHECK(c.pid == pid && WIFEXITED(c.status) && WEXITSTATUS(c.status) == 7);
	ev_child_stop(loop, &w);
}

/* ---- async ---- */

struct async_arg {
	struct ev_loop *loop;
	ev_async *w;
};

static void *async_thread(void *p)
{
	struct async_arg *a = p;
	usleep(20 * 1000);
	ev_async_send(a->loop, a->w);
	return NULL;
}

static void count_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	if (revents & EV_ASYNC)
		(*(int *)w->data)++;
}

static void test_async(struct ev_loop *loop)
{
	current = "async";
	int n = 0;
	ev_async w;
	ev_async_init(&w, count_async_cb);
	w.data = &n;
	ev_async_start(loop, &w);
	struct async_arg a = {loop, &w};
	pthread_t t;
	CHECK(pthread_create(&t, NULL, async_thread, &a) == 0);
	/* a blocking run: only the async send can wake it (or the guard) */
	ev_timer guard;
	int fired = 0;
	ev_timer_init(&guard, count_timer_cb, 2.0, 0.);
	guard.data = &fired;
	ev_timer_start(loop, &guard);
	while (!n && !fired)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &guard);
	pthread_join(t, NULL);
	CHECK(n == 1 && !fired);
	ev_async_stop(loop, &w);
}

/* ---- stat ---- */

static void count_stat_cb(struct ev_loop *loop, ev_stat *w, int revents)
{
	(void)loop;
	if (revents & EV_STAT)
		(*(int *)w->data)++;
}

static void test_stat(struct ev_loop *loop)
{
	current = "stat";
	char path[] = "/tmp/libev_watchers.XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	int n = 0;
	ev_stat w;
	ev_stat_init(&w, count_stat_cb, path, 0.01);
	w.data = &n;
	ev_stat_start(loop, &w);
	ev_run(loop, EVRUN_NOWAIT);
	usleep(20 * 1000); /* libev compares whole seconds without inotify */
	CHECK(write(fd, "grow", 4) == 4);
	CHECK(run_until(loop, &n, 1, 3.0) >= 1);
	CHECK(w.attr.st_size == 4);
	ev_stat_stop(loop, &w);
	close(fd);
	unlink(path);
}

/* ---- fork ---- */

static void count_fork_cb(struct ev_loop *loop, ev_fork *w, int revents)
{
	(void)loop;
	if (revents & EV_FORK)
		(*(int *)w->data)++;
}

/* The child's loop after ev_loop_fork: its fork watcher runs, io works. */
static int fork_child(struct ev_loop *loop, int *forks)
{
	ev_loop_fork(loop);
	ev_run(loop, EVRUN_NOWAIT);
	if (*forks != 1)
		return 10;
	int p[2];
	if (pipe(p) != 0)
		return 11;
	struct io_state s = {0, 0};
	ev_io r;
	ev_io_init(&r, io_read_cb, p[0], EV_READ);
	r.data = &s;
	ev_io_start(loop, &r);
	if (write(p[1], "c", 1) != 1)
		return 12;
	if (run_until(loop, &s.hits, 1, 2.0) != 1 || s.last != 'c')
		return 13;
	ev_io_stop(loop, &r);
	return 0;
}

static void test_fork(struct ev_loop *loop)
{
	current = "fork";
	int forks = 0;
	ev_fork f;
	ev_fork_init(&f, count_fork_cb);
	f.data = &forks;
	ev_fork_start(loop, &f);
	/* a watched fd the child inherits */
	int p[2];
	CHECK(pipe(p) == 0);
	struct io_state s = {0, 0};
	ev_io r;
	ev_io_init(&r, io_read_cb, p[0], EV_READ);
	r.data = &s;
	ev_io_start(loop, &r);
	ev_run(loop, EVRUN_NOWAIT);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(fork_child(loop, &forks));
	CHECK(pid > 0);
	int st = -1;
	CHECK(waitpid(pid, &st, 0) == pid);
	if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
		fprintf(stderr, "fork child: status %#x\n", st);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* the parent's loop is undisturbed */
	CHECK(write(p[1], "p", 1) == 1);
	CHECK(run_until(loop, &s.hits, 1, 1.0) == 1 && s.last == 'p');
	CHECK(forks == 0);
	ev_io_stop(loop, &r);
	ev_fork_stop(loop, &f);
	close(p[0]);
	close(p[1]);
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : "kqueue";
	unsigned backend = strcmp(name, "epoll") == 0 ? EVBACKEND_EPOLL : EVBACKEND_KQUEUE;
	alarm(120); /* a hang is a failure */
	signal(SIGPIPE, SIG_IGN);
	struct ev_loop *loop = ev_default_loop(backend | EVFLAG_NOENV);
	if (!loop || ev_backend(loop) != backend) {
		printf("libev_watchers %s: backend not available (supported %#x)\n", name,
		       ev_supported_backends());
		return 1;
	}
	test_io(loop);
	test_fd_reuse(loop);
	test_timer(loop);
	test_periodic(loop);
	test_signal(loop);
	test_child(loop);
	test_async(loop);
	test_stat(loop);
	test_fork(loop);
	printf("libev_watchers %s: %d/%d checks passed\n", name, checks - failures, checks);
	return failures ? 1 : 0;
}
