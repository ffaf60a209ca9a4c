/*
 * The worker threads: one kqueue, every thread waiting on it with a small
 * event list, changes passed with the next wait (one kevent() per batch).
 *
 * Listening sockets are EV_DISPATCH: the thread that gets one accepts a
 * bounded batch and re-enables it, so accepting spreads over the threads
 * and never runs in two at once on one socket.  Out of descriptors, accept()
 * fails while the client stays queued (readable forever): the listener then
 * stays disabled for ACCEPT_RETRY_MS, a oneshot timer, instead of spinning.
 *
 * Stop (SIGTERM/SIGINT, EVFILT_SIGNAL): stop listening, hand every
 * connection its forced timer (conn.c), and every SWEEP_MS force again the
 * ones that arrived meanwhile; the last connection to close, or the drain
 * deadline, triggers the EVFILT_USER stop event, which each thread passes on
 * before it exits.  SIGHUP reopens the logs.
 */
#include "conn.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NEVENTS 64
/* Clients taken per listener turn: the listen backlog (4096).  The turn comes
 * once per round of the ready queue, which at 10 000 busy connections lasts
 * about a second: 64 a turn left clients waiting in the backlog for seconds
 * (slowloris clients were never accepted within a 15 s load-test pass). */
#define ACCEPT_BATCH    4096
#define ACCEPT_RETRY_MS 100
#define SWEEP_MS        100

static struct http_listener *listeners;
static int nlisteners;
static int64_t drain_deadline_ms; /* written by the stopping thread, before the sweeps */

#ifdef HTTPD_TEST_HOOKS
/*
 * Test hook (test builds only): BATON_HTTPD_TEST_PAUSE_KNOTES_MS=N makes the
 * first new connection's knotes apply in two steps, its timer first, then N
 * ms later the rest (with the usual kevent()).  In that window a stopper
 * that could already force the timer tore the connection down under the
 * changes still to come (test_stop_between_first_knotes).
 */
static int pause_knotes_ms; /* set before the threads start */

/*
 * Test hook: BATON_HTTPD_TEST_SLOW_TURNS_MS=N makes every connection event's
 * turn take N ms more, as a thread busy with a long response would: the
 * other threads take what comes meanwhile (test_stop_closes_every_idle_connection).
 */
static int slow_turns_ms; /* set before the threads start */

static void pause_between_first_knotes(struct http_worker *w)
{
	static atomic_bool paused;
	int k = 0;
	while (k < w->nch && !(w->ch[k].filter == EVFILT_TIMER && (w->ch[k].flags & EV_ADD) &&
	                       w->ch[k].ident == w->pub[0].id))
		k++;
	if (k == w->nch || atomic_exchange(&paused, true))
		return;
	if (kevent(http_kq, w->ch, k + 1, NULL, 0, NULL) < 0)
		http_error_log("kevent (changes): %s", strerror(errno));
	http_error_log("test hook: %d ms between a new connection's timer and its other knotes",
	               pause_knotes_ms);
	nanosleep(&(struct timespec){pause_knotes_ms / 1000, pause_knotes_ms % 1000 * 1000000L},
	          NULL);
	memmove(w->ch, w->ch + k + 1, (size_t)(w->nch - k - 1) * sizeof(w->ch[0]));
	w->nch -= k + 1;
}
#endif

int64_t http_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *http_date_now(struct http_worker *w)
{
	time_t now = time(NULL);
	if (now != w->date_t) {
		http_format_date(now, w->date);
		w->date_t = now;
	}
	return w->date;
}

void http_flush(struct http_worker *w)
{
	if (w->nch && kevent(http_kq, w->ch, w->nch, NULL, 0, NULL) < 0)
		http_error_log("kevent (changes): %s", strerror(errno));
	w->nch = 0;
	http_conn_published(w);
}

void http_push(struct http_worker *w, const struct kevent *kev)
{
	if (w->nch == (int)(sizeof(w->ch) / sizeof(w->ch[0])) ||
	    w->npub == (int)(sizeof(w->pub) / sizeof(w->pub[0])))
		http_flush(w);
	w->ch[w->nch++] = *kev;
}

void http_member(struct kevent *kev, struct http_conn *c, uintptr_t ident, short filter,
                 unsigned short flags, int64_t data, unsigned fflags)
{
	EV_SET(kev, ident, filter, flags | EV_SERIAL, fflags, data, c);
	kev->ext[1] = c->id;
}

static void on_listener(struct http_worker *w, struct http_listener *l)
{
	struct kevent ch;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		int fd = accept4(l->fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINVAL)
				break; /* EINVAL: stopped listening (graceful stop) */
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				http_error_log("accept: %s; pausing %d ms", strerror(errno),
				               ACCEPT_RETRY_MS);
				EV_SET(&ch, HTTP_TIMER_ACCEPT + (uintptr_t)l->index, EVFILT_TIMER,
				       EV_ADD | EV_ONESHOT, 0, ACCEPT_RETRY_MS, l);
				http_push(w, &ch);
				return; /* the listener stays disabled until the timer */
			}
			continue; /* that one client failed (ECONNABORTED...) */
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		/* Over --max-conns the client still gets a connection, for a 503
		 * and a lingering close: a reset could hide the answer. */
		bool over = atomic_load(&http_live_conns) >= http_cfg.max_conns;
		struct http_conn *c = http_conn_new(fd, (struct sockaddr *)&sa);
		if (!c) {
			close(fd);
			continue;
		}
		c->over_limit = over;
		http_conn_start(w, c);
	}
	EV_SET(&ch, l->fd, EVFILT_READ, EV_ENABLE, 0, 0, l);
	http_push(w, &ch);
}

/* The first stop signal: no new connections, drain the others. */
static void begin_stop(struct http_worker *w)
{
	struct kevent ch;
	if (atomic_exchange(&http_stopping, true))
		return;
	http_error_log("stopping: draining %d connection(s)", atomic_load(&http_live_conns));
	drain_deadline_ms = http_now_ms() + http_cfg.drain_timeout_ms;
	for (int i = 0; i < nlisteners; i++) {
		EV_SET(&ch, listeners[i].fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
		kevent(http_kq, &ch, 1, NULL, 0, NULL); /* ENOENT while paused: fine */
		/* On Linux this stops listening (queued clients are reset) but keeps
		 * the number, so a late EV_ENABLE cannot hit someone else's knote. */
		shutdown(listeners[i].fd, SHUT_RDWR);
	}
	http_conn_force_all();
	EV_SET(&ch, HTTP_TIMER_SWEEP, EVFILT_TIMER, EV_ADD, 0, SWEEP_MS, NULL);
	http_push(w, &ch);
	if (atomic_load(&http_live_conns) == 0) {
		EV_SET(&ch, HTTP_STOP_EVENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
		http_push(w, &ch);
	}
}

static void on_sweep(struct http_worker *w)
{
	struct kevent ch;
	if (atomic_load(&http_live_conns) > 0 && http_now_ms() < drain_deadline_ms) {
		http_conn_force_all(); /* the ones accepted while the stop began */
		return;
	}
	if (atomic_load(&http_live_conns) > 0)
		http_error_log("drain timeout: %d connection(s) cut",
		               atomic_load(&http_live_conns));
	EV_SET(&ch, HTTP_STOP_EVENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	http_push(w, &ch);
}

/* Signals, timers and the stop event: false when this thread is to exit. */
static bool on_server_event(struct http_worker *w, const struct kevent *ev)
{
	if (ev->filter == EVFILT_USER) {
		struct kevent ch; /* pass it on: the event stays triggered for the next */
		EV_SET(&ch, HTTP_STOP_EVENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
		http_push(w, &ch);
		http_flush(w);
		return false;
	}
	if (ev->filter == EVFILT_SIGNAL && ev->ident == SIGHUP) {
		int err = http_log_reopen();
		http_error_log("SIGHUP: logs reopened%s%s", err ? ": " : "",
		               err ? strerror(-err) : "");
	} else if (ev->filter == EVFILT_SIGNAL) {
		begin_stop(w);
	} else if (ev->filter == EVFILT_TIMER && ev->ident == HTTP_TIMER_SWEEP) {
		on_sweep(w);
	} else if (ev->filter == EVFILT_TIMER) { /* accepting resumes after EMFILE */
		struct http_listener *l = ev->udata;
		struct kevent ch;
		if (!atomic_load(&http_stopping)) {
			EV_SET(&ch, l->fd, EVFILT_READ, EV_ENABLE, 0, 0, l);
			http_push(w, &ch);
		}
	}
	return true;
}

/* A batch may hold several members of one group: handle each connection once. */
static void handle_conn(struct http_worker *w, struct kevent *evs, bool *done, int n, int i)
{
	struct http_conn *c = evs[i].udata;
	bool timer = false, forced = false, readable = false;
	for (int k = i; k < n; k++) {
		if (evs[k].udata != c || (evs[k].flags & EV_ERROR) || done[k])
			continue;
		if (evs[k].filter == EVFILT_TIMER) {
			timer = true;
			forced |= (evs[k].flags & EV_ONESHOT) != 0;
		}
		readable |= evs[k].filter == EVFILT_READ && evs[k].ident == (uintptr_t)c->fd;
		done[k] = true;
	}
#ifdef HTTPD_TEST_HOOKS
	if (slow_turns_ms > 0)
		nanosleep(&(struct timespec){slow_turns_ms / 1000, slow_turns_ms % 1000 * 1000000L},
		          NULL);
#endif
	http_conn_event(w, c, timer, forced, readable);
}

static void *worker(void *arg)
{
	(void)arg;
	struct http_worker *w = calloc(1, sizeof(*w));
	struct kevent evs[NEVENTS];
	if (!w || !(w->headers = calloc((size_t)http_cfg.max_headers, sizeof(*w->headers)))) {
		http_error_log("out of memory");
		exit(1);
	}
	for (;;) {
#ifdef HTTPD_TEST_HOOKS
		if (pause_knotes_ms > 0 && w->npub)
			pause_between_first_knotes(w);
#endif
		/* New connections are made known to the stopper once their
		 * knotes are applied: at once, not after a wait that may last
		 * (epoll wakes the thread that waited last, so this one could
		 * sleep through a whole graceful stop, its connections open). */
		static const struct timespec now = {0, 0};
		int n = kevent(http_kq, w->ch, w->nch, evs, NEVENTS, w->npub ? &now : NULL);
		w->nch = 0;
		http_conn_published(w);
		if (n < 0) {
			/* A failed change with no room for its EV_ERROR lands here: the
			 * thread carries on (leaving would starve the server). */
			if (errno != EINTR)
				http_error_log("kevent: %s", strerror(errno));
			continue;
		}
		bool done[NEVENTS] = {false};
		for (int i = 0; i < n; i++) {
			const struct kevent *ev = &evs[i];
			if (done[i])
				continue; /* a connection's event already handled in this batch */
			enum http_kind *kind = ev->udata;
			if (ev->flags & EV_ERROR) {
				if (ev->data != ENOENT)
					http_error_log("change for %lu (filter %d): %s",
					               (unsigned long)ev->ident, ev->filter,
					               strerror((int)ev->data));
			} else if (kind && *kind == HTTP_KIND_CONN) {
				handle_conn(w, evs, done, n, i);
			} else if (kind && *kind == HTTP_KIND_LISTENER &&
			           ev->filter == EVFILT_READ) {
				on_listener(w, ev->udata);
			} else if (!on_server_event(w, ev)) {
				goto out;
			}
		}
	}
out:
	free(w->headers);
	free(w);
	return NULL;
}

static int listen_on(const struct addrinfo *ai, int port_override)
{
	int one = 1, fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (http_cfg.reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	struct sockaddr_storage sa;
	memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
	if (port_override >= 0) /* the port the first socket got (port 0: any) */
		((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)port_override);
	if (bind(fd, (struct sockaddr *)&sa, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int local_port(int fd)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	if (sa.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
	return ntohs(((struct sockaddr_in *)&sa)->sin_port);
}

/* Listening sockets: one, or with --reuseport one per thread (the kernel
 * spreads the connections, each socket still shared by all threads). */
static int open_listeners(const struct addrinfo *ai, int *port)
{
	int n = http_cfg.reuseport ? http_cfg.threads : 1;
	listeners = calloc((size_t)n, sizeof(*listeners));
	if (!listeners)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		int fd = listen_on(ai, i ? *port : -1);
		if (fd < 0)
			return fd;
		if (i == 0)
			*port = local_port(fd);
		listeners[i] = (struct http_listener){HTTP_KIND_LISTENER, fd, i};
		nlisteners++;
	}
	return 0;
}

int http_serve(const struct addrinfo *ai, const char *shown_addr)
{
	int port = 0, err = open_listeners(ai, &port);
	if (err) {
		fprintf(stderr, "baton-httpd: cannot listen on %s:%s: %s\n", shown_addr,
		        http_cfg.port, strerror(-err));
		return 1;
	}
	/* Signals go to the kqueue: blocked in every thread (inherited). */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	http_kq = kqueue();
	if (http_kq < 0) {
		perror("baton-httpd: kqueue");
		return 1;
	}
	struct kevent ch[4];
	EV_SET(&ch[0], SIGINT, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	EV_SET(&ch[1], SIGTERM, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	EV_SET(&ch[2], SIGHUP, EVFILT_SIGNAL, EV_ADD, 0, 0, NULL);
	EV_SET(&ch[3], HTTP_STOP_EVENT, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
	if (kevent(http_kq, ch, 4, NULL, 0, NULL) < 0) {
		perror("baton-httpd: kevent");
		return 1;
	}
	for (int i = 0; i < nlisteners; i++) {
		EV_SET(&ch[0], listeners[i].fd, EVFILT_READ, EV_ADD | EV_DISPATCH, 0, 0,
		       &listeners[i]);
		if (kevent(http_kq, ch, 1, NULL, 0, NULL) < 0) {
			perror("baton-httpd: kevent");
			return 1;
		}
	}
	const char *fmt = strchr(shown_addr, ':') ? "baton-httpd: serving %s at http://[%s]:%d/\n"
	                                          : "baton-httpd: serving %s at http://%s:%d/\n";
	printf(fmt, http_cfg.docroot, shown_addr, port);
	fflush(stdout);
#ifdef HTTPD_TEST_HOOKS
	const char *hook = getenv("BATON_HTTPD_TEST_PAUSE_KNOTES_MS");
	pause_knotes_ms = hook ? atoi(hook) : 0;
	hook = getenv("BATON_HTTPD_TEST_SLOW_TURNS_MS");
	slow_turns_ms = hook ? atoi(hook) : 0;
	if (slow_turns_ms > 0)
		http_error_log("test hook: every connection turn takes %d ms more", slow_turns_ms);
#endif
	pthread_t *t = calloc((size_t)http_cfg.threads, sizeof(*t));
	for (int i = 0; i < http_cfg.threads; i++)
		if (pthread_create(&t[i], NULL, worker, NULL)) {
			fprintf(stderr, "baton-httpd: cannot start thread %d\n", i);
			return 1;
		}
	for (int i = 0; i < http_cfg.threads; i++)
		pthread_join(t[i], NULL);
	free(t);
	http_error_log("stopped");
	return 0;
}
