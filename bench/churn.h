/*
 * B6-churn: the cost of a short connection (nginx with "Connection: close"),
 * in one process on one core: a client connects over loopback and sends a
 * byte; the server, woken for the listener, accepts, registers the new
 * connection for reading and writing (edge-triggered, both in one call, as
 * nginx does), reads the byte when told, answers it, and closes; the client
 * reads the answer and closes.  Each implementation supplies the server's
 * event calls; system calls per connection come from strace -c -f around
 * the program (bench/README.md), time per connection from here.
 *
 *   b6_churn_* [-n connections] [-W warm-up]
 */
#ifndef BENCH_CHURN_H
#define BENCH_CHURN_H

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "common.h"

/* The implementation's side. */
static void churn_setup(int listener);
/* Waits for and takes the listener's readiness (accept follows). */
static void churn_wait_listener(void);
/* Registers conn for READ and WRITE, then waits until it is readable. */
static void churn_watch_and_wait(int conn);

static int churn_listener(struct sockaddr_in *sa)
{
	socklen_t len = sizeof(*sa);
	int one = 1, l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(l, (struct sockaddr *)sa, sizeof(*sa)) || listen(l, 128) ||
	    getsockname(l, (struct sockaddr *)sa, &len))
		die("listener");
	return l;
}

static void churn_one(int l, const struct sockaddr_in *sa)
{
	char c = 'x';
	int cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (cl < 0 || connect(cl, (const struct sockaddr *)sa, sizeof(*sa)) ||
	    write(cl, &c, 1) != 1)
		die("client");
	churn_wait_listener();
	int conn = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (conn < 0)
		die("accept4");
	churn_watch_and_wait(conn);
	if (read(conn, &c, 1) != 1 || write(conn, &c, 1) != 1)
		die("server read/write");
	close(conn);
	if (read(cl, &c, 1) != 1)
		die("client read");
	close(cl);
}

static int churn_main(int argc, char **argv, const char *impl)
{
	long n = 20000, warm = 1000;
	int opt;

	while ((opt = getopt(argc, argv, "n:W:")) != -1) {
		if (opt == 'n')
			n = atol(optarg);
		else if (opt == 'W')
			warm = atol(optarg);
		else
			die("usage: %s [-n connections] [-W warm-up]", argv[0]);
	}
	struct sockaddr_in sa;
	int l = churn_listener(&sa);
	churn_setup(l);
	for (long i = 0; i < warm; i++)
		churn_one(l, &sa);
	int64_t t0 = now_ns();
	for (long i = 0; i < n; i++)
		churn_one(l, &sa);
	int64_t t1 = now_ns();
	printf("RESULT cfg=b6-churn impl=%s conns=%ld ns_per_conn=%.1f\n", impl, n,
	       (double)(t1 - t0) / (double)n);
	return 0;
}

#endif
