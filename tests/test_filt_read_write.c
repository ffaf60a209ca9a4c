/*
 * EVFILT_READ and EVFILT_WRITE on every kind of fd the contract names:
 * TCP and unix sockets, pipes, FIFOs, eventfd, a tty, another kqueue and
 * regular files; data values, EV_EOF with fflags, NOTE_LOWAT, listening
 * backlog (CONTRACT.md "Returned events").
 */
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>

static int tcp_connect(const struct sockaddr_in *addr)
{
	int c = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(c >= 0);
	CHECK(connect(c, (const struct sockaddr *)addr, sizeof *addr) == 0);
	return c;
}

static void tcp_pair(int *a, int *b)
{
	struct sockaddr_in addr;
	int l = tcp_listener(&addr);
	*a = tcp_connect(&addr);
	*b = accept(l, NULL, NULL);
	CHECK(*b >= 0);
	close(l);
}

/* Polls the kqueue until the (ident, filter) event reports data == want. */
static struct kevent wait_data(int kq, uintptr_t ident, short filter,
			       int64_t want, long ms)
{
	double end = now_ms() + ms;
	struct kevent e;
	memset(&e, 0, sizeof e);
	do {
		struct kevent ev[8];
		int n = kpoll(kq, ev, 8, 10);
		CHECK(n >= 0);
		int i = find_ev(ev, n, ident, filter);
		if (i >= 0) {
			e = ev[i];
			if (e.data == want)
				return e;
		}
	} while (now_ms() < end);
	fprintf(stderr, "wait_data: ident %lu filter %d: last data %lld, want %lld\n",
		(unsigned long)ident, filter, (long long)e.data, (long long)want);
	CHECK(0);
	return e;
}

static void tcp_read_data_is_bytes_readable(void)
{
	int kq = kq_new();
	int a, b;
	tcp_pair(&a, &b);
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_ADD, 0, 0, UD(1));
	EXPECT_NONE(kq, 20);
	write_n(a, 100);
	struct kevent e = wait_data(kq, (uintptr_t)b, EVFILT_READ, 100, 500);
	CHECK_EQ(e.flags & EV_EOF, 0);
	CHECK(e.udata == UD(1));
	read_n(b, 40);
	e = EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 0);
	CHECK_EQ(e.data, 60);
	read_n(b, 60);
	EXPECT_NONE(kq, 20);
	close(a);
	close(b);
	close(kq);
}

static void tcp_write_data_is_free_send_space(void)
{
	int kq = kq_new();
	int a, b;
	tcp_pair(&a, &b);
	int sndbuf;
	socklen_t sl = sizeof sndbuf;
	CHECK(getsockopt(a, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl) == 0);
	KOK(kq, (uintptr_t)a, EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)a, EVFILT_WRITE, 50);
	CHECK(e.data > 0);
	CHECK(e.data <= sndbuf);
	CHECK_EQ(e.flags & EV_EOF, 0);
	/* fill the send path until write blocks: no longer writable */
	set_nonblock(a);
	char buf[65536];
	memset(buf, 'y', sizeof buf);
	while (write(a, buf, sizeof buf) > 0)
		;
	CHECK(errno == EAGAIN);
	EXPECT_NONE(kq, 20);
	/* drain the receiver: writable again */
	set_nonblock(b);
	double end = now_ms() + 2000;
	int got = 0;
	while (!got && now_ms() < end) {
		while (read(b, buf, sizeof buf) > 0)
			;
		struct kevent ev;
		got = kpoll(kq, &ev, 1, 10) == 1;
	}
	CHECK(got);
	close(a);
	close(b);
	close(kq);
}

static void tcp_peer_shutdown_gives_eof_with_remaining_data(void)
{
	int kq = kq_new();
	int a, b;
	tcp_pair(&a, &b);
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_ADD, 0, 0, NULL);
	write_n(a, 7);
	CHECK(shutdown(a, SHUT_WR) == 0);
	double end = now_ms() + 500;
	struct kevent e;
	do {
		e = EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 100);
	} while (!(e.flags & EV_EOF) && now_ms() < end);
	CHECK(e.flags & EV_EOF);
	CHECK_EQ(e.data, 7);
	CHECK_EQ(e.fflags, 0);
	read_n(b, 7);
	e = EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 0);
	CHECK(e.flags & EV_EOF);
	CHECK_EQ(e.data, 0);
	close(a);
	close(b);
	close(kq);
}

static void tcp_reset_gives_eof_with_the_socket_error(void)
{
	int kq = kq_new();
	int a, b;
	tcp_pair(&a, &b);
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_ADD, 0, 0, NULL);
	struct linger lg = {1, 0};
	CHECK(setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
	close(a); /* sends RST */
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 500);
	CHECK(e.flags & EV_EOF);
	CHECK_EQ(e.fflags, ECONNRESET);
	close(b);
	close(kq);
}

static void tcp_write_after_reset_gives_eof(void)
{
	int kq = kq_new();
	int a, b;
	tcp_pair(&a, &b);
	struct linger lg = {1, 0};
	CHECK(setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
	close(a);
	usleep(20000);
	KOK(kq, (uintptr_t)b, EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)b, EVFILT_WRITE, 200);
	CHECK(e.flags & EV_EOF);
	close(b);
	close(kq);
}

static void listening_socket_reports_the_backlog(void)
{
	int kq = kq_new();
	struct sockaddr_in addr;
	int l = tcp_listener(&addr);
	KOK(kq, (uintptr_t)l, EVFILT_READ, EV_ADD, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	int c1 = tcp_connect(&addr);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)l, EVFILT_READ, 200);
	CHECK(e.data >= 1);
	int c2 = tcp_connect(&addr);
	usleep(20000);
	e = EXPECT_ONE(kq, (uintptr_t)l, EVFILT_READ, 200);
	CHECK(e.data >= 1);
	int s1 = accept(l, NULL, NULL);
	CHECK(s1 >= 0);
	e = EXPECT_ONE(kq, (uintptr_t)l, EVFILT_READ, 200);
	CHECK(e.data >= 1);
	int s2 = accept(l, NULL, NULL);
	CHECK(s2 >= 0);
	EXPECT_NONE(kq, 20);
	close(c1);
	close(c2);
	close(s1);
	close(s2);
	close(l);
	close(kq);
}

static void unix_stream_read_write_and_eof(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	EXPECT_NONE(kq, 10);
	write_n(sv[1], 10);
	write_n(sv[1], 15);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 50);
	CHECK_EQ(e.data, 25);
	CHECK_EQ(e.flags, 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);

	KOK(kq, (uintptr_t)sv[1], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	e = EXPECT_ONE(kq, (uintptr_t)sv[1], EVFILT_WRITE, 50);
	CHECK(e.data > 0);
	CHECK_EQ(e.flags & EV_EOF, 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	close(sv[1]); /* also removes sv[1]'s WRITE knote */
	e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 50);
	CHECK(e.flags & EV_EOF);
	CHECK_EQ(e.data, 25);
	CHECK_EQ(e.fflags, 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	struct kevent ev[4];
	int n = kpoll(kq, ev, 4, 50);
	CHECK_EQ(n, 2);
	int w = find_ev(ev, n, (uintptr_t)sv[0], EVFILT_WRITE);
	CHECK(w >= 0);
	CHECK(ev[w].flags & EV_EOF);
	close(sv[0]);
	close(kq);
}

static void unix_datagram_data_is_the_next_datagram_size(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	char buf[64] = {0};
	CHECK(send(sv[1], buf, 10, 0) == 10);
	CHECK(send(sv[1], buf, 20, 0) == 20);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 50);
	CHECK_EQ(e.data, 10);
	CHECK(recv(sv[0], buf, sizeof buf, 0) == 10);
	e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 50);
	CHECK_EQ(e.data, 20);
	CHECK(recv(sv[0], buf, sizeof buf, 0) == 20);
	EXPECT_NONE(kq, 10);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

static void socket_lowat_holds_back_small_amounts(void)
{
	int kq = kq_new();
	int a, b;
	tcp_pair(&a, &b);
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_ADD, NOTE_LOWAT, 10, NULL);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, NOTE_LOWAT, 10, NULL);
	write_n(a, 5);
	write_n(sv[1], 5);
	EXPECT_NONE(kq, 50);
	write_n(a, 5);
	write_n(sv[1], 5);
	struct kevent ev[4];
	double end = now_ms() + 500;
	int n = 0;
	while (n < 2 && now_ms() < end)
		n = kpoll(kq, ev, 4, 20);
	CHECK_EQ(n, 2);
	int i = find_ev(ev, n, (uintptr_t)b, EVFILT_READ);
	int j = find_ev(ev, n, (uintptr_t)sv[0], EVFILT_READ);
	CHECK(i >= 0 && j >= 0);
	CHECK_EQ(ev[i].data, 10);
	CHECK_EQ(ev[j].data, 10);
	/* EOF overrides the low-water mark */
	read_n(sv[0], 5);
	EXPECT_ONE(kq, (uintptr_t)b, EVFILT_READ, 0);
	KOK(kq, (uintptr_t)b, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	EXPECT_NONE(kq, 10);
	close(sv[1]);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 50);
	CHECK(e.flags & EV_EOF);
	CHECK_EQ(e.data, 5);
	close(sv[0]);
	close(a);
	close(b);
	close(kq);
}

static void pipe_read_write_data_and_eof(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	int psz = fcntl(p[1], F_GETPIPE_SZ);
	CHECK(psz > 0);
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[1], EVFILT_WRITE, 50);
	CHECK_EQ(e.data, psz);
	write_n(p[1], 1000);
	e = EXPECT_ONE(kq, (uintptr_t)p[1], EVFILT_WRITE, 50);
	CHECK_EQ(e.data, psz - 1000);
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);

	KOK(kq, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 50);
	CHECK_EQ(e.data, 1000);
	CHECK_EQ(e.flags, 0);
	close(p[1]);
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 50);
	CHECK(e.flags & EV_EOF);
	CHECK_EQ(e.data, 1000);
	CHECK_EQ(e.fflags, 0);
	read_n(p[0], 1000);
	e = EXPECT_ONE(kq, (uintptr_t)p[0], EVFILT_READ, 50);
	CHECK(e.flags & EV_EOF);
	CHECK_EQ(e.data, 0);
	close(p[0]);

	/* the reader goes away: the writer sees EV_EOF */
	CHECK(pipe(p) == 0);
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	e = EXPECT_ONE(kq, (uintptr_t)p[1], EVFILT_WRITE, 50);
	CHECK_EQ(e.flags & EV_EOF, 0);
	close(p[0]);
	e = EXPECT_ONE(kq, (uintptr_t)p[1], EVFILT_WRITE, 50);
	CHECK(e.flags & EV_EOF);
	close(p[1]);
	close(kq);
}

static void full_pipe_is_not_writable(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	set_nonblock(p[1]);
	char buf[4096];
	memset(buf, 'z', sizeof buf);
	size_t total = 0;
	ssize_t w;
	while ((w = write(p[1], buf, sizeof buf)) > 0)
		total += (size_t)w;
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	read_n(p[0], total);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[1], EVFILT_WRITE, 50);
	CHECK_EQ(e.data, fcntl(p[1], F_GETPIPE_SZ));
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void fifo_read_data_and_eof(void)
{
	char dir[] = "/tmp/baton_fifoXXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[64];
	snprintf(path, sizeof path, "%s/f", dir);
	CHECK(mkfifo(path, 0600) == 0);
	int r = open(path, O_RDONLY | O_NONBLOCK);
	CHECK(r >= 0);
	int w = open(path, O_WRONLY);
	CHECK(w >= 0);
	int kq = kq_new();
	KOK(kq, (uintptr_t)r, EVFILT_READ, EV_ADD, 0, 0, NULL);
	KOK(kq, (uintptr_t)w, EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)w, EVFILT_WRITE, 50);
	CHECK(e.data > 0);
	KOK(kq, (uintptr_t)w, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	write_n(w, 33);
	e = EXPECT_ONE(kq, (uintptr_t)r, EVFILT_READ, 50);
	CHECK_EQ(e.data, 33);
	CHECK_EQ(e.flags & EV_EOF, 0);
	close(w);
	e = EXPECT_ONE(kq, (uintptr_t)r, EVFILT_READ, 50);
	CHECK(e.flags & EV_EOF);
	CHECK_EQ(e.data, 33);
	close(r);
	unlink(path);
	rmdir(dir);
	close(kq);
}

static void eventfd_is_readable_after_a_write(void)
{
	int kq = kq_new();
	int efd = eventfd(0, EFD_NONBLOCK);
	CHECK(efd >= 0);
	KOK(kq, (uintptr_t)efd, EVFILT_READ, EV_ADD, 0, 0, NULL);
	EXPECT_NONE(kq, 10);
	uint64_t one = 1;
	CHECK(write(efd, &one, 8) == 8);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)efd, EVFILT_READ, 50);
	CHECK_EQ(e.data, 0); /* Linux cannot tell */
	uint64_t v;
	CHECK(read(efd, &v, 8) == 8);
	EXPECT_NONE(kq, 10);
	KOK(kq, (uintptr_t)efd, EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	e = EXPECT_ONE(kq, (uintptr_t)efd, EVFILT_WRITE, 50);
	close(efd);
	close(kq);
}

static void tty_read_data_is_bytes_readable(void)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	CHECK(m >= 0);
	CHECK(grantpt(m) == 0);
	CHECK(unlockpt(m) == 0);
	int s = open(ptsname(m), O_RDWR | O_NOCTTY);
	CHECK(s >= 0);
	struct termios t;
	CHECK(tcgetattr(s, &t) == 0);
	cfmakeraw(&t);
	CHECK(tcsetattr(s, TCSANOW, &t) == 0);
	int kq = kq_new();
	KOK(kq, (uintptr_t)s, EVFILT_READ, EV_ADD, 0, 0, NULL);
	EXPECT_NONE(kq, 10);
	CHECK(write(m, "hello", 5) == 5);
	wait_data(kq, (uintptr_t)s, EVFILT_READ, 5, 1000);
	read_n(s, 5);
	EXPECT_NONE(kq, 20);
	/* the master side: the slave writes, the master reads */
	KOK(kq, (uintptr_t)m, EVFILT_READ, EV_ADD, 0, 0, NULL);
	CHECK(write(s, "abc", 3) == 3);
	wait_data(kq, (uintptr_t)m, EVFILT_READ, 3, 1000);
	KOK(kq, (uintptr_t)s, EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	struct kevent ev[4];
	int n = kpoll(kq, ev, 4, 50);
	CHECK(find_ev(ev, n, (uintptr_t)s, EVFILT_WRITE) >= 0);
	close(s);
	close(m);
	close(kq);
}

static void another_kqueue_is_readable_while_it_has_events(void)
{
	int kq = kq_new();
	int inner = kq_new();
	KOK(inner, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	KOK(kq, (uintptr_t)inner, EVFILT_READ, EV_ADD, 0, 0, UD(3));
	EXPECT_NONE(kq, 20);
	KOK(inner, 1, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)inner, EVFILT_READ, 100);
	CHECK(e.udata == UD(3));
	CHECK_EQ(e.flags & EV_EOF, 0);
	EXPECT_ONE(inner, 1, EVFILT_USER, 0);
	EXPECT_NONE(kq, 20);
	close(inner);
	close(kq);
}

static void regular_file_data_is_bytes_to_eof(void)
{
	char path[] = "/tmp/baton_fileXXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	unlink(path);
	write_n(fd, 100);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	int kq = kq_new();
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 0);
	CHECK_EQ(e.data, 100);
	CHECK(lseek(fd, 40, SEEK_SET) == 40);
	e = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 0);
	CHECK_EQ(e.data, 60);
	CHECK(lseek(fd, 0, SEEK_END) == 100);
	EXPECT_NONE(kq, 10);
	/* NOTE_FILE_POLL: always ready */
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, NOTE_FILE_POLL, 0, NULL);
	e = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 0);
	CHECK_EQ(e.data, 0);
	/* WRITE: always ready */
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	KOK(kq, (uintptr_t)fd, EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_WRITE, 0);
	EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_WRITE, 0);
	close(fd);
	close(kq);
}

static void regular_file_at_eof_becomes_ready_when_it_grows(void)
{
	char path[] = "/tmp/baton_fileXXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	write_n(fd, 5); /* offset at EOF */
	int fd2 = open(path, O_WRONLY | O_APPEND);
	CHECK(fd2 >= 0);
	unlink(path);
	int kq = kq_new();
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, NULL);
	EXPECT_NONE(kq, 10);
	write_n(fd2, 10);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 100);
	CHECK_EQ(e.data, 10);
	close(fd2);
	close(fd);
	close(kq);
}

static void read_and_write_of_one_socket_are_separate_knotes(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	write_n(sv[1], 3);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, UD(1));
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	struct kevent ev[4];
	CHECK_EQ(kpoll(kq, ev, 4, 50), 2);
	int r = find_ev(ev, 2, (uintptr_t)sv[0], EVFILT_READ);
	int w = find_ev(ev, 2, (uintptr_t)sv[0], EVFILT_WRITE);
	CHECK(r >= 0 && w >= 0);
	CHECK(ev[r].udata == UD(1));
	CHECK(ev[w].udata == UD(2));
	CHECK_EQ(ev[r].data, 3);
	/* deleting one leaves the other */
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_WRITE, EV_ADD, 0, 0, UD(2));
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_DISABLE, 0, 0, UD(1));
	EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_WRITE, 0);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

int main(void)
{
	RUN(tcp_read_data_is_bytes_readable);
	RUN(tcp_write_data_is_free_send_space);
	RUN(tcp_peer_shutdown_gives_eof_with_remaining_data);
	RUN(tcp_reset_gives_eof_with_the_socket_error);
	RUN(tcp_write_after_reset_gives_eof);
	RUN(listening_socket_reports_the_backlog);
	RUN(unix_stream_read_write_and_eof);
	RUN(unix_datagram_data_is_the_next_datagram_size);
	RUN(socket_lowat_holds_back_small_amounts);
	RUN(pipe_read_write_data_and_eof);
	RUN(full_pipe_is_not_writable);
	RUN(fifo_read_data_and_eof);
	RUN(eventfd_is_readable_after_a_write);
	RUN(tty_read_data_is_bytes_readable);
	RUN(another_kqueue_is_readable_while_it_has_events);
	RUN(regular_file_data_is_bytes_to_eof);
	RUN(read_and_write_of_one_socket_are_separate_knotes);
	RUN(regular_file_at_eof_becomes_ready_when_it_grows);
	return 0;
}
