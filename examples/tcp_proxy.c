/*
 * A multithreaded TCP proxy on one kqueue: every client connection gets its
 * own connection to the upstream host, and bytes flow both ways.
 *
 * Why serial groups: a proxied connection is five knotes (the client's READ
 * and WRITE, the upstream's READ and WRITE, an idle timer) sharing one struct
 * and two buffers.  With plain kqueue, two threads can get the client's READ
 * and the upstream's READ at the same time and both touch the buffers; worse,
 * the thread that gets the timer frees the struct while another is writing
 * into it.  EV_DISPATCH (see echo_server.c) serialises one knote, not five,
 * so such servers grow a mutex and a reference count per connection.
 *
 * Here all five knotes join one serial group (EV_SERIAL, group id in ext[1]:
 * the client fd).  When kevent() returns a member to a thread, that thread
 * holds the group: no member is returned to anyone else until it releases it
 * with an EV_ENABLE of a member, and whatever happens meanwhile is kept.
 * So the thread that gets an event owns the whole connection, buffers and
 * all, and may even close it -- no lock, no atomic, no reference count.  It
 * releases in its next kevent() call, the EV_ENABLE being the last change
 * before the wait.  Changes that must not release enable with EV_ADD.
 *
 * A connection starts as one knote, the upstream's WRITE (connect done);
 * its first owner adds the others while it holds the group, so nothing can
 * fire before the connection is complete.
 *
 * Out of descriptors, accept() or socket() fails with EMFILE while the client
 * stays in the backlog, so the listening socket stays readable and retrying
 * would spin.  The listener is EV_DISPATCH: the proxy leaves it disabled until
 * a connection closes or ACCEPT_RETRY_MS have passed (see echo_server.c).
 *
 *   tcp_proxy -u host:port [-l listen_port] [-t threads] [-i idle_ms]
 *   (defaults: listen 7008 (0: any), 4 threads, 10000 ms; SIGINT/SIGTERM stop)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#ifdef EV_SERIAL /* Baton: a connection has one owner at a time */
#define HAVE_SERIAL 1
#else /* e.g. FreeBSD: no serial groups, so only one thread may run */
#define HAVE_SERIAL 0
#define EV_SERIAL   0
#endif

#define STOP_EVENT      1
#define ACCEPT_RETRY_MS 100 /* an EVFILT_TIMER with ident lfd */
#define BUFSZ           32768

struct dir { /* the bytes of one direction */
	char buf[BUFSZ];
	size_t off, len; /* buf[off, len) is still to be written */
	bool eof, shut;  /* the source said EOF; we passed it on */
};

struct conn {
	int cfd, ufd;      /* client, upstream; cfd is the group id */
	bool joined;       /* connected: all five knotes registered */
	bool cw_on, uw_on; /* WRITE interest enabled on cfd, ufd */
	struct dir c2u, u2c;
};

static int kq, lfd, idle_ms = 10000;
static struct addrinfo *upstream;
/* Set when accepting stopped for want of descriptors; whoever clears it
 * re-enables the listener, so each pause ends once (a close or the timer). */
static atomic_bool accept_paused;

/* Ends a pause in accepting, if any: 0 or 1 change for the next kevent(). */
static int resume_accepting(struct kevent *ch)
{
	if (!atomic_exchange(&accept_paused, false))
		return 0;
	EV_SET(ch, lfd, EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	return 1;
}

/* A change for a member of c's group: each carries the group id. */
static void member(struct kevent *kev, struct conn *c, int ident, short filter,
                   unsigned short flags, int64_t data)
{
	EV_SET(kev, ident, filter, flags | EV_SERIAL, 0, data, c);
	kev->ext[1] = (uint64_t)c->cfd;
}

/* Moves what can move from src to dst now: bytes moved, or -1 on error. */
static ssize_t pump(struct dir *d, int src, int dst)
{
	ssize_t moved = 0, n;
	for (;;) {
		if (d->off < d->len) {
			n = send(dst, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
			if (n < 0)
				return errno == EAGAIN || errno == EWOULDBLOCK ? moved : -1;
			d->off += (size_t)n;
			moved += n;
			continue;
		}
		d->off = d->len = 0;
		if (d->eof) { /* all written: pass the EOF on, once */
			if (!d->shut && shutdown(dst, SHUT_WR) < 0)
				return -1;
			d->shut = true;
			return moved;
		}
		n = recv(src, d->buf, sizeof(d->buf), 0);
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? moved : -1;
		d->eof = n == 0;
		d->len = (size_t)n;
		moved += n;
	}
}

/*
 * The owner closes the connection: nobody else can be looking at it.  close()
 * alone would remove the knotes, but deleting them first orders our close()
 * after any epoll call Baton may still make on them in the thread that just
 * released the group (ThreadSanitizer cannot see that order otherwise).
 */
static void teardown(struct conn *c)
{
	struct kevent del[5];
	int n = 0;
	member(&del[n++], c, c->ufd, EVFILT_WRITE, EV_DELETE, 0);
	if (c->joined) {
		member(&del[n++], c, c->ufd, EVFILT_READ, EV_DELETE, 0);
		member(&del[n++], c, c->cfd, EVFILT_READ, EV_DELETE, 0);
		member(&del[n++], c, c->cfd, EVFILT_WRITE, EV_DELETE, 0);
		member(&del[n++], c, c->cfd, EVFILT_TIMER, EV_DELETE, 0);
	}
	if (kevent(kq, del, n, NULL, 0, NULL) < 0) /* the last one dissolves the group */
		perror("kevent");
	close(c->ufd);
	close(c->cfd);
	free(c);
}

/* WRITE interest only while bytes wait; EV_ADD enables without releasing. */
static int want_write(struct kevent *ch, struct conn *c, int fd, bool want, bool *on, bool fresh)
{
	if (!fresh && want == *on)
		return 0;
	*on = want;
	member(ch, c, fd, EVFILT_WRITE, EV_ADD | (want ? 0 : EV_DISABLE), 0);
	return 1;
}

/*
 * The owner's turn with connection c, after event ev.  Fills ch with the
 * changes for the next kevent() call, the last one releasing the group, and
 * returns their number.  If the connection is gone, descriptors are free:
 * the only change may be one that resumes accepting.
 */
static int handle(struct conn *c, const struct kevent *ev, struct kevent *ch)
{
	bool fresh = !c->joined;
	if (ev->filter == EVFILT_TIMER) /* idle for idle_ms */
		goto down;
	/* The upstream's WRITE: connect() has finished; EV_EOF (fflags = errno)
	 * if it failed.  (Baton has read SO_ERROR already: getsockopt says 0.) */
	if (fresh && (ev->flags & EV_EOF))
		goto down;
	ssize_t a = pump(&c->c2u, c->cfd, c->ufd);
	ssize_t b = pump(&c->u2c, c->ufd, c->cfd);
	if (a < 0 || b < 0 || (c->c2u.shut && c->u2c.shut))
		goto down;
	int n = 0;
	if (fresh) { /* join the rest of the group: they wait for our release */
		c->joined = true;
		member(&ch[n++], c, c->cfd, EVFILT_READ, EV_ADD | EV_CLEAR, 0);
		member(&ch[n++], c, c->ufd, EVFILT_READ, EV_ADD | EV_CLEAR, 0);
	}
	if (fresh || a + b > 0) /* (re)start the idle clock */
		member(&ch[n++], c, c->cfd, EVFILT_TIMER, EV_ADD, idle_ms);
	n += want_write(&ch[n], c, c->cfd, c->u2c.off < c->u2c.len, &c->cw_on, fresh);
	n += want_write(&ch[n], c, c->ufd, c->c2u.off < c->c2u.len, &c->uw_on, false);
	member(&ch[n++], c, c->cfd, EVFILT_TIMER, EV_ENABLE, 0); /* release */
	return n;
down:
	teardown(c);
	return resume_accepting(ch);
}

/* A new client: connect its upstream and register that one knote. */
static void start(int cfd, int ufd)
{
	int one = 1;
	struct conn *c = calloc(1, sizeof(*c));
	if (!c ||
	    (connect(ufd, upstream->ai_addr, upstream->ai_addrlen) < 0 && errno != EINPROGRESS))
		goto fail;
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->cfd = cfd;
	c->ufd = ufd;
	c->uw_on = true;
	struct kevent ch;
	member(&ch, c, ufd, EVFILT_WRITE, EV_ADD, 0);
	if (kevent(kq, &ch, 1, NULL, 0, NULL) == 0)
		return; /* c now belongs to whoever gets its first event */
	perror("kevent");
fail:
	close(ufd);
	close(cfd);
	free(c);
}

/*
 * The listener's event, in one thread at a time (EV_DISPATCH): accepts the
 * backlog (data = its length) and re-enables the listener, or, out of
 * descriptors, leaves it disabled and arms the retry timer.  The upstream
 * socket is made before accept(), so a client is never accepted only to be
 * dropped for want of its second descriptor.
 */
static int accept_backlog(int64_t backlog, struct kevent *ch)
{
	for (int64_t i = 0; i < backlog; i++) {
		int ufd, cfd = -1;
		ufd = socket(upstream->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (ufd >= 0)
			cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd >= 0) {
			start(cfd, ufd);
			continue;
		}
		int err = errno;
		if (ufd >= 0)
			close(ufd);
		if (ufd < 0 || err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
			/* The client stays queued; retrying now would spin. */
			atomic_store(&accept_paused, true);
			EV_SET(ch, lfd, EVFILT_TIMER, EV_ADD | EV_ONESHOT, 0, ACCEPT_RETRY_MS,
			       NULL);
			return 1;
		}
		if (err == EAGAIN || err == EWOULDBLOCK)
			break;
		/* Otherwise that one client failed (ECONNABORTED...): next. */
	}
	EV_SET(ch, lfd, EVFILT_READ, EV_ENABLE, 0, 0, NULL);
	return 1;
}

static void *serve(void *arg)
{
	(void)arg;
	struct kevent ch[8], ev;
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
		} else if (ev.udata) { /* a connection's event: it is ours now */
			nchanges = handle(ev.udata, &ev, ch);
		} else if (ev.filter == EVFILT_SIGNAL || ev.filter == EVFILT_USER) {
			/* Stop: tell the next thread (the user event stays triggered). */
			EV_SET(&ch[0], STOP_EVENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
			kevent(kq, ch, 1, NULL, 0, NULL);
			return NULL;
		} else if (ev.filter == EVFILT_TIMER) { /* accept retry */
			nchanges = resume_accepting(ch);
		} else { /* the listening socket: data = backlog */
			nchanges = accept_backlog(ev.data, ch);
		}
	}
}

int main(int argc, char **argv)
{
	int port = 7008, nthreads = 4, opt;
	char *host = NULL, *uport = NULL;
	while ((opt = getopt(argc, argv, "l:u:t:i:")) != -1) {
		if (opt == 'l')
			port = atoi(optarg);
		else if (opt == 'u' && (uport = strrchr(optarg, ':')))
			host = optarg, *uport++ = '\0';
		else if (opt == 't')
			nthreads = atoi(optarg);
		else if (opt == 'i')
			idle_ms = atoi(optarg);
		else
			host = NULL, optind = argc;
	}
	if (!host) {
		fprintf(stderr, "usage: %s -u host:port [-l port] [-t threads] [-i idle_ms]\n",
		        argv[0]);
		return 2;
	}
	if (nthreads < 1 || nthreads > 256)
		nthreads = 4;
	if (!HAVE_SERIAL)
		nthreads = 1;
	if (idle_ms < 1)
		idle_ms = 10000;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	int err = getaddrinfo(host, uport, &hints, &upstream);
	if (err) {
		fprintf(stderr, "%s:%s: %s\n", host, uport, gai_strerror(err));
		return 1;
	}

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
	socklen_t salen = sizeof(sa);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1024) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0) {
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
	printf("tcp proxy on 127.0.0.1:%d -> %s:%s with %d threads, idle timeout %d ms\n",
	       ntohs(sa.sin_port), host, uport, nthreads, idle_ms);
	fflush(stdout);
	pthread_t *t = calloc((size_t)nthreads, sizeof(*t));
	for (int i = 0; i < nthreads; i++)
		pthread_create(&t[i], NULL, serve, NULL);
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	free(t);
	close(kq);
	close(lfd);
	freeaddrinfo(upstream);
	printf("stopped\n");
	return 0;
}
