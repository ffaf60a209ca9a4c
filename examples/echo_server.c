/*
 * A multithreaded TCP echo server on one kqueue, written against FreeBSD's
 * kqueue API (it builds unchanged on FreeBSD).
 *
 * Every thread runs the same loop on the same kqueue.  A connection has two
 * knotes, READ and WRITE, both EV_DISPATCH, and at most one of them is
 * enabled at any time: READ while the connection waits for bytes, WRITE while
 * it waits for room to send bytes it has already read.  EV_DISPATCH disables
 * a knote when it is delivered, so the thread that gets either one owns the
 * connection, buffer included, without a lock, until it enables one of them
 * again.  The enable travels in the changelist of that thread's next kevent()
 * call, together with its wait.
 *
 * Backpressure: what was read and not yet written stays in the connection's
 * buffer, and the server reads nothing more from that client until it has
 * been written.  A client that sends faster than it reads fills its own
 * socket buffers and is slowed by TCP, instead of losing bytes or growing the
 * server's memory.
 *
 * Out of descriptors: accept() fails with EMFILE but the connection stays in
 * the backlog, so the listening socket stays readable and a server that
 * simply retries spins at 100 % CPU.  This one stops accepting (its listener
 * is EV_DISPATCH too, and is left disabled) until a connection closes or
 * ACCEPT_RETRY_MS have passed, whichever comes first.
 *
 * SIGINT/SIGTERM arrive as EVFILT_SIGNAL events; an EVFILT_USER event tells
 * the other threads to stop.
 *
 *   echo_server [-p port] [-t threads]      (default 7007, 4 threads)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/event.h>
#include <sys/socket.h>
#include <unistd.h>

#define STOP_EVENT      1 /* EVFILT_USER ident */
#define ACCEPT_TIMER    1 /* EVFILT_TIMER ident */
#define ACCEPT_RETRY_MS 100
#define BUFSZ           65536
#define TURN_BYTES      (1 << 20) /* then let other connections have the thread */

struct conn {
	int fd;
	size_t off, len; /* buf[off, len) was read and is not written back yet */
	char buf[BUFSZ];
};

/* What the owner of a connection waits for next. */
enum next { WAIT_READ, WAIT_WRITE, CLOSE };

static int kq, lfd;
/* Set when accepting stopped on EMFILE; whoever clears it re-enables the
 * listener, so each pause is ended exactly once (by a close or the timer). */
static atomic_bool accept_paused;

/*
 * Echoes what can move now.  Bytes are read only when everything read before
 * has been written: that is the backpressure.
 */
static enum next echo(struct conn *c)
{
	size_t moved = 0;
	while (moved < TURN_BYTES) {
		ssize_t n;
		if (c->off < c->len) {
			n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
			if (n < 0)
				return errno == EAGAIN || errno == EWOULDBLOCK ? WAIT_WRITE : CLOSE;
			c->off += (size_t)n;
			moved += (size_t)n;
			continue;
		}
		n = recv(c->fd, c->buf, sizeof(c->buf), 0);
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? WAIT_READ : CLOSE;
		if (n == 0) /* EOF, and everything is echoed */
			return CLOSE;
		c->off = 0;
		c->len = (size_t)n;
	}
	/* Turn used up: queue behind the others.  The knote is level-triggered,
	 * so it fires again at once if the socket is still ready. */
	return c->off < c->len ? WAIT_WRITE : WAIT_READ;
}

/*
 * Ends a pause in accepting, if there is one, with a change for the next
 * kevent() call; returns the number of changes (0 or 1).
 */
static int resume_accepting(struct kevent *ch)
{
	if (!atomic_exchange(&accept_paused, false))
		return 0;
	EV_SET(ch, lfd, EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	return 1;
}

/*
 * The owner closes the connection: its other knote is disabled, so nobody
 * else can be looking at it.  close() alone removes the knotes; deleting them
 * first orders the close() after any use Baton may still make of the fd in
 * the thread that handled the connection before us (ThreadSanitizer cannot see
 * that order otherwise).  A descriptor is free now: accepting may resume.
 */
static int close_conn(struct conn *c, struct kevent *ch)
{
	struct kevent del[2];
	EV_SET(&del[0], c->fd, EVFILT_READ, EV_DELETE, 0, 0, c);
	EV_SET(&del[1], c->fd, EVFILT_WRITE, EV_DELETE, 0, 0, c);
	kevent(kq, del, 2, NULL, 0, NULL);
	close(c->fd);
	free(c);
	return resume_accepting(ch);
}

/*
 * The owner's turn with connection c.  Fills ch with the changes for the next
 * kevent() call and returns their number.  udata goes with every change: on
 * FreeBSD an EV_ENABLE sets it too.
 */
static int handle(struct conn *c, struct kevent *ch)
{
	switch (echo(c)) {
	case WAIT_READ:
		EV_SET(ch, c->fd, EVFILT_READ, EV_ENABLE, 0, 0, c);
		return 1;
	case WAIT_WRITE:
		EV_SET(ch, c->fd, EVFILT_WRITE, EV_ENABLE, 0, 0, c);
		return 1;
	default:
		return close_conn(c, ch);
	}
}

/* A new connection: the WRITE knote (disabled) first, so that it exists
 * before anyone can get the READ event and want to enable it. */
static void start(int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	struct kevent ch[2];
	EV_SET(&ch[0], fd, EVFILT_WRITE, EV_ADD | EV_DISPATCH | EV_DISABLE, 0, 0, c);
	EV_SET(&ch[1], fd, EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, c);
	if (kevent(kq, ch, 2, NULL, 0, NULL) < 0) {
		perror("kevent");
		close(fd); /* removes what was added */
		free(c);
	}
}

/*
 * The listener's event, in one thread at a time (EV_DISPATCH): accepts the
 * backlog (data = its length), then re-enables the listener, or, out of
 * descriptors, leaves it disabled and arms the retry timer.
 */
static int accept_backlog(int64_t backlog, struct kevent *ch)
{
	for (int64_t i = 0; i < backlog; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			start(fd);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* The connection stays queued; retrying now would spin. */
			atomic_store(&accept_paused, true);
			EV_SET(ch, ACCEPT_TIMER, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0,
			       ACCEPT_RETRY_MS, NULL);
			return 1;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		/* Otherwise that one connection failed (ECONNABORTED...): next. */
	}
	EV_SET(ch, lfd, EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	return 1;
}

static void *serve(void *arg)
{
	(void)arg;
	struct kevent ch[1], ev;
	int nchanges = 0;
	for (;;) {
		int n = kevent(kq, ch, nchanges, &ev, 1, NULL);
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
			fprintf(stderr, "change for %lu (filter %d) failed: %s\n",
			        (unsigned long)ev.ident, ev.filter, strerror((int)ev.data));
		} else if (ev.filter == EVFILT_SIGNAL || ev.filter == EVFILT_USER) {
			/* Stop: tell the next thread (the user event stays triggered). */
			EV_SET(&ch[0], STOP_EVENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
			kevent(kq, ch, 1, NULL, 0, NULL);
			return NULL;
		} else if (ev.filter == EVFILT_TIMER) { /* accept retry */
			nchanges = resume_accepting(ch);
		} else if (ev.udata) { /* a connection: ours until we enable it */
			nchanges = handle(ev.udata, ch);
		} else { /* the listening socket */
			nchanges = accept_backlog(ev.data, ch);
		}
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
	EV_SET(&ch[0], lfd, EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0, NULL);
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
