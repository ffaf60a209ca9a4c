/*
 * A multithreaded TCP echo server on one kqueue, written against FreeBSD's
 * kqueue API (it builds unchanged on FreeBSD).
 *
 * Every thread runs the same loop on the same kqueue.  Each connection's READ
 * knote is EV_DISPATCH: once delivered it is disabled until the thread that
 * got it re-enables it, so a connection is handled by one thread at a time
 * and needs no lock.  The re-enable travels in the next kevent() call's
 * changelist, together with the wait.  SIGINT/SIGTERM arrive as
 * EVFILT_SIGNAL events; an EVFILT_USER event tells the other threads to stop.
 *
 *   echo_server [-p port] [-t threads]      (default 7007, 4 threads)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/event.h>
#include <sys/socket.h>
#include <unistd.h>

#define STOP_EVENT 1

static int kq, lfd;

static void *serve(void *arg)
{
	(void)arg;
	struct kevent change, ev;
	int nchanges = 0;
	for (;;) {
		int n = kevent(kq, &change, nchanges, &ev, 1, NULL);
		nchanges = 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("kevent");
			return NULL;
		}
		if (n == 0)
			continue;
		if (ev.flags & EV_ERROR) {
			fprintf(stderr, "change for %lu failed: %s\n", (unsigned long)ev.ident,
				strerror((int)ev.data));
			continue;
		}
		if (ev.filter == EVFILT_SIGNAL || ev.filter == EVFILT_USER) {
			/* Stop: tell the next thread (the user event stays triggered). */
			EV_SET(&change, STOP_EVENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
			kevent(kq, &change, 1, NULL, 0, NULL);
			return NULL;
		}
		if ((int)ev.ident == lfd) {
			/* The backlog: accept what is there (data = pending). */
			for (int64_t i = 0; i < ev.data; i++) {
				int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (c < 0)
					break;
				EV_SET(&change, c, EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, NULL);
				kevent(kq, &change, 1, NULL, 0, NULL);
			}
			continue;
		}
		/* A connection: this thread alone has it until it re-enables. */
		int c = (int)ev.ident;
		char buf[16384];
		ssize_t r;
		while ((r = read(c, buf, sizeof(buf))) > 0)
			if (write(c, buf, (size_t)r) != r)
				break;
		if (r == 0 || (r < 0 && errno != EAGAIN)) {
			close(c); /* removes the knote */
			continue;
		}
		EV_SET(&change, c, EVFILT_READ, EV_ENABLE, 0, 0, NULL);
		nchanges = 1;
	}
}

int main(int argc, char **argv)
{
	int port = 7007, nthreads = 4, opt;
	while ((opt = getopt(argc, argv, "p:t:")) != -1) {
		if (opt == 'p')
			port = atoi(optarg);
		else if (opt == 't')
			nthreads = atoi(optarg);
		else {
			fprintf(stderr, "usage: %s [-p port] [-t threads]\n", argv[0]);
			return 2;
		}
	}
	if (nthreads < 1 || nthreads > 256)
		nthreads = 4;

	/* Signals go to the kqueue, not to a handler: block them first. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1024) < 0) {
		perror("bind/listen");
		return 1;
	}
	kq = kqueue();
	struct kevent ch[4];
	EV_SET(&ch[0], lfd, EVFILT_READ, EV_ADD, 0, 0, NULL);
	EV_SET(&ch[1], SIGINT, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	EV_SET(&ch[2], SIGTERM, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	EV_SET(&ch[3], STOP_EVENT, EVFILT_USER, EV_ADD, 0, 0, NULL);
	if (kq < 0 || kevent(kq, ch, 4, NULL, 0, NULL) < 0) {
		perror("kqueue");
		return 1;
	}
	printf("echo server on 127.0.0.1:%d with %d threads; Ctrl-C stops it\n", port, nthreads);
	fflush(stdout);
	pthread_t *t = calloc((size_t)nthreads, sizeof(*t));
	for (int i = 0; i < nthreads; i++)
		pthread_create(&t[i], NULL, serve, NULL);
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	free(t);
	close(kq);
	close(lfd);
	printf("stopped\n");
	return 0;
}
