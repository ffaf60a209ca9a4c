/*
 * The multithreaded lines of shared/USERS.md, one behaviour each: a change
 * from one thread while others wait takes effect at once; closing a kqueue
 * releases its waiters with EBADF; a connection on a shared listening socket
 * wakes one thread, not all.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

#define NWAIT 8

struct waitctx {
	int kq;
	atomic_int returned, ebadf, events;
	struct timespec *ts;
};

static void *waiter(void *p)
{
	struct waitctx *c = p;
	struct kevent ev;
	int n = kevent(c->kq, NULL, 0, &ev, 1, c->ts);
	if (n < 0 && errno == EBADF)
		atomic_fetch_add(&c->ebadf, 1);
	if (n > 0)
		atomic_fetch_add(&c->events, 1);
	atomic_fetch_add(&c->returned, 1);
	return NULL;
}

static void start_waiters(struct waitctx *c, pthread_t *t)
{
	for (int i = 0; i < NWAIT; i++)
		CHECK(pthread_create(&t[i], NULL, waiter, c) == 0);
	usleep(100000); /* all blocked in kevent() */
}

/* libkqueue #162: changes must not wait for the waiters. */
static void changes_do_not_wait_while_threads_wait(void)
{
	struct waitctx c = {.kq = kq_new()};
	pthread_t t[NWAIT];
	start_waiters(&c, t);
	double t0 = now_ms();
	for (int i = 0; i < 100; i++)
		KOK(c.kq, 1000 + (uintptr_t)i, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	CHECK(now_ms() - t0 < 500);
	CHECK_EQ(atomic_load(&c.returned), 0);
	/* and a trigger wakes exactly the threads it has events for */
	for (int i = 0; i < NWAIT; i++)
		KOK(c.kq, 1000 + (uintptr_t)i, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	for (int i = 0; i < NWAIT; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(atomic_load(&c.events), NWAIT);
	close(c.kq);
}

/* libkqueue #162, openradar 30231213: close() of a kqueue with waiters. */
static void close_of_a_kqueue_releases_its_waiters_with_ebadf(void)
{
	struct waitctx c = {.kq = kq_new()};
	pthread_t t[NWAIT];
	start_waiters(&c, t);
	double t0 = now_ms();
	CHECK_EQ(close(c.kq), 0);
	for (int i = 0; i < NWAIT; i++)
		pthread_join(t[i], NULL);
	CHECK(now_ms() - t0 < 1000);
	CHECK_EQ(atomic_load(&c.ebadf), NWAIT);
}

/* Thundering herd: one connection on an EV_CLEAR listening socket. */
static void a_connection_wakes_one_thread_not_all(void)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	CHECK(bind(l, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(l, 16) == 0);
	CHECK(getsockname(l, (struct sockaddr *)&sa, &len) == 0);
	struct timespec ts = {0, 300000000};
	struct waitctx c = {.kq = kq_new(), .ts = &ts};
	KOK(c.kq, (uintptr_t)l, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
	pthread_t t[NWAIT];
	start_waiters(&c, t);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	for (int i = 0; i < NWAIT; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(atomic_load(&c.events), 1); /* the others timed out, unwoken */
	close(s);
	close(l);
	close(c.kq);
}

int main(void)
{
	RUN(changes_do_not_wait_while_threads_wait);
	RUN(close_of_a_kqueue_releases_its_waiters_with_ebadf);
	RUN(a_connection_wakes_one_thread_not_all);
	fprintf(stderr, "test_users_md_threads: ok\n");
	return 0;
}
