/*
 * READ/WRITE data is FreeBSD's whether Baton counts bytes one system call
 * at a time or in one io_uring round trip for a whole wait (uring.c): the
 * same program runs twice, once as it is and once with io_uring turned off
 * (BATON_NO_URING, a BATON_TEST_HOOKS switch), and every event's data must
 * be the value FreeBSD's kqueue(2) gives, computed here from what was
 * written.  Many fds of every kind sit in one kqueue so that one kevent()
 * returns them together, several times over (a fd joins the batch once it
 * was counted), mixing kinds the kernel batches (TCP, UDP) with kinds it
 * refuses (AF_UNIX: EOPNOTSUPP) and cannot (pipes, listeners).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

#define NPAIR 4

/* p[0]: the accepted end (watched), p[1]: the peer. */
static void tcp_pair(int l, const struct sockaddr_in *addr, int p[2])
{
	int one = 1;
	p[1] = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(p[1] >= 0);
	CHECK(connect(p[1], (const struct sockaddr *)addr, sizeof(*addr)) == 0);
	p[0] = accept(l, NULL, NULL);
	CHECK(p[0] >= 0);
	setsockopt(p[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	set_nonblock(p[0]);
}

static void udp_pair(int p[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct sockaddr_in b;
	socklen_t len = sizeof(a);
	p[0] = socket(AF_INET, SOCK_DGRAM, 0);
	p[1] = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(p[0] >= 0 && p[1] >= 0);
	CHECK(bind(p[0], (struct sockaddr *)&a, sizeof(a)) == 0);
	CHECK(getsockname(p[0], (struct sockaddr *)&a, &len) == 0);
	CHECK(connect(p[1], (struct sockaddr *)&a, sizeof(a)) == 0);
	len = sizeof(b);
	CHECK(getsockname(p[1], (struct sockaddr *)&b, &len) == 0);
	CHECK(connect(p[0], (struct sockaddr *)&b, sizeof(b)) == 0);
}

static int sndbuf_of(int fd)
{
	int v = 0;
	socklen_t len = sizeof(v);
	CHECK(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len) == 0);
	return v;
}

struct want {
	uintptr_t ident;
	short filter;
	int64_t data;
	bool eof;
	bool seen;
};

/* One kevent() must return exactly the events in w[0..n), with their data. */
static void expect_all(int kq, struct want *w, int n)
{
	struct kevent ev[64];
	CHECK(n <= 64);
	usleep(20000); /* loopback delivery */
	int got = kpoll(kq, ev, 64, 500);
	for (int i = 0; i < got; i++) {
		int j = 0;
		while (j < n && (w[j].ident != ev[i].ident || w[j].filter != ev[i].filter))
			j++;
		if (j == n || w[j].seen || ev[i].data != w[j].data ||
		    !(ev[i].flags & EV_EOF) != !w[j].eof) {
			fprintf(stderr,
			        "event fd %lu filter %d data %lld flags %#x: want %lld eof %d\n",
			        (unsigned long)ev[i].ident, ev[i].filter, (long long)ev[i].data,
			        ev[i].flags, j < n ? (long long)w[j].data : -1LL,
			        j < n && w[j].eof);
			CHECK(0);
		}
		w[j].seen = true;
	}
	CHECK_EQ(got, n);
	for (int j = 0; j < n; j++)
		w[j].seen = false;
}

static void readd(int kq, int fd, short filter)
{
	KOK(kq, (uintptr_t)fd, filter, EV_ADD, 0, 0, NULL);
}

/*
 * Every kind in one kqueue, level-triggered, three rounds of one kevent():
 * READ on TCP, UDP, AF_UNIX stream and datagram, pipes, a listener; WRITE on
 * TCP and UDP; then EOF: TCP shut down with bytes left, pipes hung up empty.
 */
static void every_kind_in_one_call(void)
{
	struct sockaddr_in addr;
	int l = tcp_listener(&addr), kq = kq_new();
	int tcp[NPAIR][2], udp[NPAIR][2], us[NPAIR][2], ud[NPAIR][2], pp[NPAIR][2];
	struct want w[64];
	int n = 0;
	for (int i = 0; i < NPAIR; i++) {
		tcp_pair(l, &addr, tcp[i]);
		udp_pair(udp[i]);
		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, us[i]) == 0);
		CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, ud[i]) == 0);
		CHECK(pipe(pp[i]) == 0);
		write_n(tcp[i][1], 100 * (i + 1));
		CHECK(send(udp[i][1], "0123456789", 3 + i, 0) == 3 + i);
		CHECK(send(udp[i][1], "0123456789", 10, 0) == 10); /* data: the first one's size */
		write_n(us[i][1], 10 * (i + 1));
		CHECK(send(ud[i][1], "0123456789", 5 + i, 0) == 5 + i);
		write_n(pp[i][1], 7 * (i + 1));
		readd(kq, tcp[i][0], EVFILT_READ);
		readd(kq, udp[i][0], EVFILT_READ);
		readd(kq, us[i][0], EVFILT_READ);
		readd(kq, ud[i][0], EVFILT_READ);
		readd(kq, pp[i][0], EVFILT_READ);
		w[n++] = (struct want){(uintptr_t)tcp[i][0], EVFILT_READ, 100 * (i + 1), false,
		                       false};
		w[n++] = (struct want){(uintptr_t)udp[i][0], EVFILT_READ, 3 + i, false, false};
		w[n++] =
		        (struct want){(uintptr_t)us[i][0], EVFILT_READ, 10 * (i + 1), false, false};
		w[n++] = (struct want){(uintptr_t)ud[i][0], EVFILT_READ, 5 + i, false, false};
		w[n++] = (struct want){(uintptr_t)pp[i][0], EVFILT_READ, 7 * (i + 1), false, false};
	}
	/* two connections waiting to be accepted: the backlog */
	int c1 = socket(AF_INET, SOCK_STREAM, 0), c2 = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(connect(c1, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	CHECK(connect(c2, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	readd(kq, l, EVFILT_READ);
	w[n++] = (struct want){(uintptr_t)l, EVFILT_READ, 2, false, false};
	for (int round = 0; round < 3; round++)
		expect_all(kq, w, n);

	/* WRITE: the room in the send buffer, nothing queued */
	int n_read = n;
	for (int i = 0; i < NPAIR; i++) {
		readd(kq, tcp[i][1], EVFILT_WRITE);
		readd(kq, udp[i][1], EVFILT_WRITE);
		w[n++] = (struct want){(uintptr_t)tcp[i][1], EVFILT_WRITE, sndbuf_of(tcp[i][1]),
		                       false, false};
		w[n++] = (struct want){(uintptr_t)udp[i][1], EVFILT_WRITE, sndbuf_of(udp[i][1]),
		                       false, false};
	}
	for (int round = 0; round < 3; round++)
		expect_all(kq, w, n);

	/* EOF: TCP keeps counting what is left; an emptied pipe with no writer is 0 */
	for (int i = 0; i < NPAIR; i++) {
		KOK(kq, (uintptr_t)tcp[i][1], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
		KOK(kq, (uintptr_t)udp[i][1], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
		CHECK(shutdown(tcp[i][1], SHUT_WR) == 0);
		w[5 * i].eof = true;
		read_n(pp[i][0], 7 * (i + 1));
		close(pp[i][1]);
		w[5 * i + 4].data = 0;
		w[5 * i + 4].eof = true;
	}
	for (int round = 0; round < 3; round++)
		expect_all(kq, w, n_read);

	close(kq);
	for (int i = 0; i < NPAIR; i++) {
		close(tcp[i][0]), close(tcp[i][1]), close(udp[i][0]), close(udp[i][1]);
		close(us[i][0]), close(us[i][1]), close(ud[i][0]), close(ud[i][1]), close(pp[i][0]);
	}
	close(c1), close(c2), close(l);
}

/*
 * A new connection's first report, alone in its wait, with READ and WRITE
 * (as a server adds an accepted socket): both counts exact, in every round
 * of fresh connections (batched from the first report on, three counts in
 * one round trip).
 */
static void first_report_of_each_new_connection(void)
{
	struct sockaddr_in addr;
	int l = tcp_listener(&addr), kq = kq_new();
	for (int round = 0; round < 8; round++) {
		int p[2];
		tcp_pair(l, &addr, p);
		write_n(p[1], 50 + round);
		struct kevent ch[2];
		EV_SET(&ch[0], p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
		EV_SET(&ch[1], p[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, NULL);
		CHECK_EQ(kevent(kq, ch, 2, NULL, 0, NULL), 0);
		struct want w[2] = {{(uintptr_t)p[0], EVFILT_READ, 50 + round, false, false},
		                    {(uintptr_t)p[0], EVFILT_WRITE, sndbuf_of(p[0]), false, false}};
		expect_all(kq, w, 2);
		close(p[0]);
		close(p[1]);
	}
	close(kq);
	close(l);
}

/* The number of io_uring files this process holds. */
static int ring_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	CHECK(d != NULL);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char path[300], link[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		ssize_t k = readlink(path, link, sizeof(link) - 1);
		if (k > 0) {
			link[k] = 0;
			if (strstr(link, "io_uring"))
				n++;
		}
	}
	closedir(d);
	return n;
}

/*
 * A kqueue's close must not interrupt another's wait (an io_uring ring's
 * close sends its users a task-work "signal": a sleeping epoll_wait()
 * returned EINTR).  And the rings are the library's own: the program's
 * close() refuses them, as the kqueue's other descriptors.
 */
static void closing_a_kqueue_does_not_interrupt_a_wait(void)
{
	for (int round = 0; round < 3; round++) {
		int kq = kq_new(), kq2 = kq_new(), udp[NPAIR][2];
		for (int i = 0; i < NPAIR; i++) {
			udp_pair(udp[i]);
			readd(kq, udp[i][1], EVFILT_WRITE);
		}
		struct kevent ev[NPAIR];
		for (int k = 0; k < 3; k++)
			CHECK_EQ(kpoll(kq, ev, NPAIR, 500), NPAIR);
		close(kq);
		for (int i = 0; i < NPAIR; i++)
			close(udp[i][0]), close(udp[i][1]);
		CHECK_EQ(kpoll(kq2, ev, 1, 50), 0);
		close(kq2);
	}
	const char *off = getenv("BATON_NO_URING");
	int rings = ring_fds();
	if (off)
		CHECK_EQ(rings, 0);
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char path[300], link[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		ssize_t k = readlink(path, link, sizeof(link) - 1);
		if (k > 0 && (link[k] = 0, strstr(link, "io_uring"))) {
			int fd = atoi(de->d_name);
			CHECK_EQ(close(fd), -1);
			CHECK_EQ(errno, EBADF);
			CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		}
	}
	closedir(d);
	fprintf(stderr, "   %d io_uring ring(s)%s\n", rings, off ? " (turned off)" : "");
}

int main(int argc, char **argv)
{
	RUN(every_kind_in_one_call);
	RUN(closing_a_kqueue_does_not_interrupt_a_wait);
	RUN(first_report_of_each_new_connection);
	if (argc > 1)
		return 0; /* the run without io_uring */
	/* The same again, counting one system call at a time. */
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		setenv("BATON_NO_URING", "1", 1);
		execl("/proc/self/exe", argv[0], "fallback", (char *)NULL);
		_exit(127);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	fprintf(stderr, "test_count_batch: ok\n");
	return 0;
}
