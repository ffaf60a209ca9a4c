/*
 * The socket error reported in fflags with EV_EOF is not consumed: after the
 * event, getsockopt(SO_ERROR) and the next read still see it, as on FreeBSD
 * (filt_soread reports so_error and leaves it) and with plain epoll
 * (CONTRACT.md "Returned events").
 */
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>

static int sock_error(int fd)
{
	int err = -1;
	socklen_t len = sizeof(err);
	CHECK_EQ(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), 0);
	return err;
}

/* A loopback port nobody listens on. */
static struct sockaddr_in closed_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int s = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(s >= 0);
	socklen_t len = sizeof(a);
	CHECK_EQ(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_EQ(getsockname(s, (struct sockaddr *)&a, &len), 0);
	CHECK_EQ(close(s), 0);
	return a;
}

static void refused_connect_keeps_its_error(void)
{
	int kq = kq_new();
	struct sockaddr_in a = closed_port();
	int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	CHECK(c >= 0);
	int r = connect(c, (struct sockaddr *)&a, sizeof(a));
	CHECK(r == 0 || errno == EINPROGRESS || errno == ECONNREFUSED);
	KOK(kq, (uintptr_t)c, EVFILT_READ, EV_ADD, 0, 0, NULL);
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)c, EVFILT_READ, 2000);
	CHECK(ev.flags & EV_EOF);
	CHECK_EQ(ev.fflags, ECONNREFUSED);
	/* WRITE too, as FreeBSD's filt_sowrite (the usual connect() check) */
	KOK(kq, (uintptr_t)c, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	KOK(kq, (uintptr_t)c, EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	ev = EXPECT_ONE(kq, (uintptr_t)c, EVFILT_WRITE, 2000);
	CHECK(ev.flags & EV_EOF);
	CHECK_EQ(ev.fflags, ECONNREFUSED);
	/* the program's own check, as after any failed non-blocking connect */
	CHECK_EQ(sock_error(c), ECONNREFUSED);
	CHECK_EQ(sock_error(c), 0);
	CHECK_EQ(close(c), 0);
	CHECK_EQ(close(kq), 0);
}

static void reset_connection_error_reaches_the_next_read(void)
{
	int kq = kq_new();
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(l >= 0);
	CHECK_EQ(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	CHECK_EQ(getsockname(l, (struct sockaddr *)&a, &len), 0);
	CHECK_EQ(listen(l, 4), 0);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(c >= 0);
	CHECK_EQ(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	int s = accept(l, NULL, NULL);
	CHECK(s >= 0);
	KOK(kq, (uintptr_t)c, EVFILT_READ, EV_ADD, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	struct linger lg = {1, 0}; /* close() sends a RST */
	CHECK_EQ(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	CHECK_EQ(close(s), 0);
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)c, EVFILT_READ, 2000);
	CHECK(ev.flags & EV_EOF);
	CHECK_EQ(ev.fflags, ECONNRESET);
	char b;
	errno = 0;
	CHECK_EQ(read(c, &b, 1), -1);
	CHECK_EQ(errno, ECONNRESET);
	CHECK_EQ(close(c), 0);
	CHECK_EQ(close(l), 0);
	CHECK_EQ(close(kq), 0);
}

/* EV_EOF without an error (an orderly shutdown) has fflags 0. */
static void orderly_eof_has_no_error(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK_EQ(socketpair_stream(sv), 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	CHECK_EQ(close(sv[1]), 0);
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 2000);
	CHECK(ev.flags & EV_EOF);
	CHECK_EQ(ev.fflags, 0);
	CHECK_EQ(close(sv[0]), 0);
	CHECK_EQ(close(kq), 0);
}

int main(void)
{
	RUN(refused_connect_keeps_its_error);
	RUN(reset_connection_error_reaches_the_next_read);
	RUN(orderly_eof_has_no_error);
	return 0;
}
