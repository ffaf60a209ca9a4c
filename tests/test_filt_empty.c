/*
 * EVFILT_EMPTY, from FreeBSD's kqueue(2): "Takes a descriptor as the
 * identifier, and returns whenever there is no remaining data in the write
 * buffer" (filt_soempty: data is what the send buffer holds, so 0 when it
 * fires; a listening socket is always ready; not a socket: EINVAL).  Also
 * READ, WRITE and EMPTY on one fd with room for one event: each comes back
 * in turn.
 */
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/resource.h>

static void unix_pair(int sv[2])
{
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	set_nonblock(sv[0]);
	set_nonblock(sv[1]);
}

static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in addr;
	int l = tcp_listener(&addr);
	*a = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(*a >= 0);
	CHECK(connect(*a, (struct sockaddr *)&addr, sizeof addr) == 0);
	*b = accept(l, NULL, NULL);
	CHECK(*b >= 0);
	close(l);
	set_nonblock(*a);
	set_nonblock(*b);
}

/* An empty send buffer is ready at once (data 0, no EV_EOF); a level
 * knote stays ready while it is empty. */
static void empty_when_nothing_sent(void)
{
	int kq = kq_new(), sv[2];
	unix_pair(sv);
	KOK(kq, (uintptr_t)sv[0], EVFILT_EMPTY, EV_ADD, 0, 0, UD(7));
	for (int i = 0; i < 2; i++) {
		struct kevent e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_EMPTY, 100);
		CHECK_EQ(e.data, 0);
		CHECK_EQ(e.fflags, 0);
		CHECK(!(e.flags & EV_EOF));
		CHECK(e.udata == UD(7));
	}
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

/* AF_UNIX: what was sent stays in the sender's queue until the peer reads
 * it; EMPTY fires only once the peer has read everything. */
static void fires_after_the_peer_reads_everything(void)
{
	int kq = kq_new(), sv[2];
	unix_pair(sv);
	write_n(sv[0], 1000);
	KOK(kq, (uintptr_t)sv[0], EVFILT_EMPTY, EV_ADD, 0, 0, NULL);
	EXPECT_NONE(kq, 50);
	read_n(sv[1], 600);
	EXPECT_NONE(kq, 50);
	read_n(sv[1], 400);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_EMPTY, 500);
	CHECK_EQ(e.data, 0);
	/* more data: not empty again until read */
	write_n(sv[0], 10);
	EXPECT_NONE(kq, 50);
	read_n(sv[1], 10);
	EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_EMPTY, 500);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

/* EV_CLEAR: once per drain, not at every wait. */
static void clear_fires_once_per_drain(void)
{
	int kq = kq_new(), sv[2];
	unix_pair(sv);
	KOK(kq, (uintptr_t)sv[0], EVFILT_EMPTY, EV_ADD | EV_CLEAR, 0, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_EMPTY, 200);
	CHECK_EQ(e.data, 0);
	CHECK(e.flags & EV_CLEAR);
	EXPECT_NONE(kq, 50);
	for (int round = 0; round < 3; round++) {
		write_n(sv[0], 100);
		EXPECT_NONE(kq, 30);
		read_n(sv[1], 100);
		e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_EMPTY, 500);
		CHECK_EQ(e.data, 0);
		EXPECT_NONE(kq, 30);
	}
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

/* EV_DISPATCH: one event, then nothing until EV_ENABLE, which looks again. */
static void dispatch_and_enable(void)
{
	int kq = kq_new(), sv[2];
	unix_pair(sv);
	KOK(kq, (uintptr_t)sv[0], EVFILT_EMPTY, EV_ADD | EV_DISPATCH, 0, 0, NULL);
	EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_EMPTY, 200);
	EXPECT_NONE(kq, 30);
	write_n(sv[0], 10);
	read_n(sv[1], 10); /* drained while disabled */
	KOK(kq, (uintptr_t)sv[0], EVFILT_EMPTY, EV_ENABLE, 0, 0, NULL);
	EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_EMPTY, 200);
	EXPECT_NONE(kq, 30);
	write_n(sv[0], 10); /* not empty at the enable */
	KOK(kq, (uintptr_t)sv[0], EVFILT_EMPTY, EV_ENABLE, 0, 0, NULL);
	EXPECT_NONE(kq, 30);
	read_n(sv[1], 10);
	EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_EMPTY, 500);
	KOK(kq, (uintptr_t)sv[0], EVFILT_EMPTY, EV_DELETE, 0, 0, NULL);
	CHECK_EQ(kchange_err(kq, (uintptr_t)sv[0], EVFILT_EMPTY, EV_DELETE, 0, 0), ENOENT);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

/*
 * TCP: the queue drains when the peer acknowledges, which wakes no poller
 * on Linux.  A peer that does not read closes its window: the data stays
 * queued, EMPTY must stay quiet and the waiting thread must not spin; once
 * the peer reads, the queue drains and EMPTY fires.
 */
static void tcp_drains_when_acknowledged(void)
{
	int kq = kq_new(), a, b;
	tcp_pair(&a, &b);
	KOK(kq, (uintptr_t)a, EVFILT_EMPTY, EV_ADD | EV_CLEAR, 0, 0, NULL);
	EXPECT_ONE(kq, (uintptr_t)a, EVFILT_EMPTY, 200);
	/* acknowledged at once on loopback, read or not */
	write_n(a, 100);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)a, EVFILT_EMPTY, 1000);
	CHECK_EQ(e.data, 0);
	/* fill the peer's window and our buffer: nothing drains */
	char buf[65536];
	memset(buf, 'y', sizeof buf);
	size_t sent = 0;
	ssize_t w;
	while ((w = write(a, buf, sizeof buf)) > 0)
		sent += (size_t)w;
	CHECK(errno == EAGAIN);
	struct rusage r0, r1;
	CHECK(getrusage(RUSAGE_SELF, &r0) == 0);
	double t0 = now_ms();
	EXPECT_NONE(kq, 1000);
	double waited = now_ms() - t0;
	CHECK(getrusage(RUSAGE_SELF, &r1) == 0);
	double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1e3 +
	             (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e3 +
	             (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e3 +
	             (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e3;
	fprintf(stderr, "   %zu bytes stuck: waited %.0f ms using %.1f ms of CPU\n", sent, waited,
	        cpu);
	CHECK(waited >= 900);
	CHECK(cpu < 100); /* looks with a backoff, it does not spin */
	/* the peer reads it all: the queue drains */
	size_t got = 0;
	double end = now_ms() + 5000;
	int n = 0;
	while (n == 0 && now_ms() < end) {
		ssize_t r;
		while ((r = read(b, buf, sizeof buf)) > 0)
			got += (size_t)r;
		n = kpoll(kq, &e, 1, 10);
	}
	CHECK_EQ(n, 1);
	CHECK(e.ident == (uintptr_t)a && e.filter == EVFILT_EMPTY);
	CHECK_EQ(e.data, 0);
	fprintf(stderr, "   drained after %zu of %zu bytes read\n", got, sent);
	close(a);
	close(b);
	close(kq);
}

/* Only sockets have a send buffer: anything else is EINVAL (FreeBSD's
 * fo_kqfilter refuses the filter); a listening socket is always ready;
 * EMPTY takes no fflags. */
static void only_sockets(void)
{
	int kq = kq_new(), p[2];
	CHECK(pipe(p) == 0);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[1], EVFILT_EMPTY, EV_ADD, 0, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_EMPTY, EV_ADD, 0, 0), EINVAL);
	int efd = eventfd(0, EFD_NONBLOCK);
	CHECK(efd >= 0);
	CHECK_EQ(kchange_err(kq, (uintptr_t)efd, EVFILT_EMPTY, EV_ADD, 0, 0), EINVAL);
	char path[] = "/tmp/baton-empty-XXXXXX";
	int f = mkstemp(path);
	CHECK(f >= 0);
	unlink(path);
	CHECK_EQ(kchange_err(kq, (uintptr_t)f, EVFILT_EMPTY, EV_ADD, 0, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, 100000, EVFILT_EMPTY, EV_ADD, 0, 0), EBADF);
	/* the refused add left nothing behind: READ on the pipe still works */
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	write_n(p[1], 3);
	EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 200);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_EMPTY, EV_ADD, 0, 0), EINVAL);
	EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 200);
	int sv[2];
	unix_pair(sv);
	CHECK_EQ(kchange_err(kq, (uintptr_t)sv[0], EVFILT_EMPTY, EV_ADD, NOTE_LOWAT, 1), EINVAL);
	struct sockaddr_in addr;
	int l = tcp_listener(&addr);
	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	KOK(kq, (uintptr_t)l, EVFILT_EMPTY, EV_ADD, 0, 0, NULL);
	EXPECT_ONE(kq, (uintptr_t)l, EVFILT_EMPTY, 200);
	close(l);
	close(sv[0]);
	close(sv[1]);
	close(f);
	close(efd);
	close(p[0]);
	close(p[1]);
	close(kq);
}

/* close() removes the EMPTY knote with the fd's others. */
static void close_removes_it(void)
{
	int kq = kq_new(), sv[2];
	unix_pair(sv);
	KOK(kq, (uintptr_t)sv[0], EVFILT_EMPTY, EV_ADD, 0, 0, NULL);
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	close(sv[0]);
	EXPECT_NONE(kq, 30);
	int s2[2];
	unix_pair(s2); /* likely reuses the number */
	CHECK_EQ(kchange_err(kq, (uintptr_t)s2[0], EVFILT_EMPTY, EV_DELETE, 0, 0), ENOENT);
	close(s2[0]);
	close(s2[1]);
	close(sv[1]);
	close(kq);
}

/*
 * An fd with READ, WRITE and EMPTY all ready and room for one event per
 * call: every knote comes back in turn, none starves.
 */
static void three_knotes_take_turns(void)
{
	int kq = kq_new(), sv[2];
	unix_pair(sv);
	write_n(sv[1], 10); /* sv[0] readable; its own queue is empty */
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	KOK(kq, (uintptr_t)sv[0], EVFILT_EMPTY, EV_ADD, 0, 0, UD(3));
	int count[3] = {0, 0, 0}, last = -1;
	for (int i = 0; i < 30; i++) {
		struct kevent e;
		CHECK_EQ(kpoll(kq, &e, 1, 200), 1);
		CHECK(e.ident == (uintptr_t)sv[0]);
		int k = e.filter == EVFILT_READ ? 0 : e.filter == EVFILT_WRITE ? 1 : 2;
		CHECK(e.filter == EVFILT_READ || e.filter == EVFILT_WRITE ||
		      e.filter == EVFILT_EMPTY);
		CHECK(e.udata == UD(k + 1));
		CHECK(k != last); /* never the same one twice in a row */
		last = k;
		count[k]++;
	}
	fprintf(stderr, "   READ %d WRITE %d EMPTY %d\n", count[0], count[1], count[2]);
	for (int k = 0; k < 3; k++)
		CHECK(count[k] >= 8);
	/* all three fit in one call */
	struct kevent ev[4];
	CHECK_EQ(kpoll(kq, ev, 4, 200), 3);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

int main(void)
{
	RUN(empty_when_nothing_sent);
	RUN(fires_after_the_peer_reads_everything);
	RUN(clear_fires_once_per_drain);
	RUN(dispatch_and_enable);
	RUN(tcp_drains_when_acknowledged);
	RUN(only_sockets);
	RUN(close_removes_it);
	RUN(three_knotes_take_turns);
	return 0;
}
