/*
 * A client connection on the kqueue: reading request heads, writing
 * responses, timeouts, teardown.
 *
 * Knotes: READ and WRITE (level, NOTE_NODATA) and an idle TIMER (ident =
 * the connection's id), all EV_SERIAL with group id = that id.  Exactly one
 * of READ and WRITE is enabled: READ while the connection waits for a
 * request, WRITE while a response is blocked (so unread pipelined requests
 * cannot make READ fire in a loop).  (While proxying, READ stays on until
 * it fires unwanted: see http_proxy_event().)  The enabled one's EV_ENABLE is the
 * release, the last change for this connection before the next wait.
 *
 * Level READ lets a turn read once and stop: if more is queued, READ fires
 * again, so there is no read() that only says EAGAIN on the usual path.
 *
 * The timer is armed for the connection's next deadline only when that
 * deadline comes earlier than the timer is armed for; activity that pushes
 * it later costs no timer change (the timer fires early once and is
 * re-armed; see deadline_ms()).  At a
 * graceful stop the stopping thread hands every connection its timer with
 * EV_FORCEONESHOT (ident from a registry indexed by fd): it arrives after
 * the owner's release, to whoever then owns the connection, which closes it
 * if idle or marks it draining.  A forced timer is gone after it fires; the
 * owner adds it back.
 */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF_INITIAL    2048
#define TURN_MAX_BYTES  (1 << 20) /* then let other connections have the thread */
#define LINGER_MS       2000
#define TRIM_AFTER_PEAK 256 /* connections open at once since the last trim */

atomic_bool http_stopping;
atomic_int http_live_conns;
static atomic_int live_peak; /* most connections open at once since the last trim */

/* fd -> id of its connection (0: none): how the stopping thread finds the
 * timers to force.  Written by the connection's owner, read by the stopper;
 * an id is never reused, so a stale one only gets ENOENT. */
static _Atomic uint64_t *registry;
static int registry_size;
static _Atomic uint64_t next_id = HTTP_CONN_ID0;

/*
 * How late connection timers are handled (ms, a moving average): under load
 * a timer's event waits behind every ready connection in the kqueue's queue
 * (~2 s at 10 000 busy connections), so a 4 s head timeout closed slowloris
 * clients at 6 s.  Timers are armed that much early, and at the timer the
 * deadline counts as reached that much early: the deadline decides, give or
 * take the queue's jitter, not the queue's length.  Racy updates only blur
 * an estimate.
 */
#define LAG_MAX_MS 1000
static _Atomic int64_t timer_lag_ms;

int64_t http_timer_slack_ms(void)
{
	int64_t lag = atomic_load_explicit(&timer_lag_ms, memory_order_relaxed);
	return lag < LAG_MAX_MS ? lag : LAG_MAX_MS;
}

static void timer_was_late(int64_t late_ms)
{
	int64_t old = atomic_load_explicit(&timer_lag_ms, memory_order_relaxed);
	if (late_ms < 0)
		late_ms = 0;
	atomic_store_explicit(&timer_lag_ms, (old * 7 + late_ms) / 8, memory_order_relaxed);
}

void http_conn_registry_init(int maxfd)
{
	registry_size = maxfd;
	registry = calloc((size_t)maxfd, sizeof(*registry));
}

/*
 * When the connection's next timeout falls due (ms, http_now_ms clock): the
 * lingering limit, the proxy's, a head's or the idle one, whichever applies
 * and is first.
 */
static int64_t deadline_ms(const struct http_conn *c)
{
	if (c->lingering)
		return c->linger_start_ms + LINGER_MS;
	if (c->proxying)
		return http_proxy_deadline(c);
	int64_t d = c->last_active_ms + http_cfg.idle_timeout_ms;
	if (c->head_start_ms && !c->out.nseg && c->head_start_ms + http_cfg.header_timeout_ms < d)
		d = c->head_start_ms + http_cfg.header_timeout_ms;
	return d;
}

struct http_conn *http_conn_new(int fd, const struct sockaddr *sa)
{
	struct http_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->kind = HTTP_KIND_CONN;
	c->fd = fd;
	c->id = atomic_fetch_add(&next_id, 1);
	c->out.file = -1;
	http_out_reset(&c->out);
	/* As text only when a log line or a proxied request wants it: inet_ntop()
	 * was a tenth of the user time of a Connection: close request. */
	c->peer_v6 = sa->sa_family == AF_INET6;
	if (c->peer_v6)
		memcpy(c->peer_addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	else
		memcpy(c->peer_addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	c->last_active_ms = http_now_ms();
	/* The first head is due within the header timeout from the accept, as
	 * nginx's client_header_timeout: a client that trickles its first byte
	 * cannot buy itself time. */
	c->head_start_ms = c->last_active_ms;
	int live = atomic_fetch_add(&http_live_conns, 1) + 1;
	if (live > atomic_load_explicit(&live_peak, memory_order_relaxed))
		atomic_store_explicit(&live_peak, live, memory_order_relaxed); /* racy: a hint */
	return c;
}

const char *http_conn_peer(struct http_conn *c)
{
	if (!c->peer[0])
		inet_ntop(c->peer_v6 ? AF_INET6 : AF_INET, c->peer_addr, c->peer, sizeof(c->peer));
	return c->peer;
}

void http_conn_published(struct http_worker *w)
{
	for (int i = 0; i < w->npub; i++) {
		/* c may be gone already (not touched): a stale id written here
		 * only gets ENOENT from the stopper (ids are never reused), and the
		 * next connection on the number writes its own. */
		if (w->pub[i].fd < registry_size)
			atomic_store(&registry[w->pub[i].fd], w->pub[i].id);
	}
	w->npub = 0;
}

/* The owner ends the connection.  Deleting the knotes before close() orders
 * the close after Baton's last use of them (see README, ThreadSanitizer). */
static void teardown(struct http_worker *w, struct http_conn *c)
{
	struct kevent del[3];
	int n = 0;
	if (c->fd < registry_size) {
		uint64_t mine = c->id; /* only its own entry: a newer one stays */
		atomic_compare_exchange_strong(&registry[c->fd], &mine, 0);
	}
	if (c->px)
		http_proxy_free(w, c);
	struct kevent res[3];
	if (c->timer_on)
		http_member(&del[n++], c, c->id, EVFILT_TIMER, EV_DELETE | EV_RECEIPT, 0, 0);
	if (c->registered) {
		http_member(&del[n++], c, (uintptr_t)c->fd, EVFILT_READ, EV_DELETE | EV_RECEIPT, 0,
		            0);
		http_member(&del[n++], c, (uintptr_t)c->fd, EVFILT_WRITE, EV_DELETE | EV_RECEIPT, 0,
		            0);
	}
	/* EV_RECEIPT: every delete is applied and answers in res[], so one that
	 * fails (it should not) cannot leave the timer behind with c freed. */
	int got = n ? kevent(http_kq, del, n, res, n, &(struct timespec){0, 0}) : 0;
	for (int i = 0; i < got; i++)
		if (res[i].data)
			http_error_log("kevent (teardown, filter %d): %s", res[i].filter,
			               strerror((int)res[i].data));
	close(c->fd);
	if (c->log) /* the body bytes that went out before the end */
		http_access_done(c->log);
	http_out_reset(&c->out);
	free(c->rbuf);
	free(c);
	int left = atomic_fetch_sub(&http_live_conns, 1) - 1;
	/* A burst's memory goes back (threads' arenas hold it otherwise), but
	 * not after every few connections: with short connections the count
	 * falls to 0 all the time, and malloc_trim() was 18 % of the user time
	 * of a Connection: close request. */
	if (left == 0 && !atomic_load(&http_stopping) &&
	    atomic_exchange(&live_peak, 0) >= TRIM_AFTER_PEAK)
		malloc_trim(0);
	if (left == 0 && atomic_load(&http_stopping)) {
		struct kevent ev;
		EV_SET(&ev, HTTP_STOP_EVENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
		http_push(w, &ev);
	}
}

/* Writes what it can of the response: 1 all out, 0 blocked, -1 failed. */
static int flush_out(struct http_conn *c)
{
	struct http_out *o = &c->out;
	int64_t budget = TURN_MAX_BYTES;
	while (o->cur < o->nseg) {
		struct http_seg *s = &o->seg[o->cur];
		ssize_t n;
		if (budget <= 0)
			return 0;
		if (s->file) {
			off_t off = s->off;
			n = sendfile(c->fd, o->file, &off,
			             (size_t)(s->len < budget ? s->len : budget));
			if (n == 0)
				return -1; /* the file shrank under us */
		} else {
			struct iovec iov[8];
			int k = 0, i = o->cur;
			for (; i < o->nseg && !o->seg[i].file && k < 8; i++, k++)
				iov[k] = (struct iovec){o->buf + o->seg[i].off,
				                        (size_t)o->seg[i].len};
			struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)k};
			/* A file follows: MSG_MORE lets the head and its start share a packet. */
			n = sendmsg(c->fd, &m, MSG_NOSIGNAL | (i < o->nseg ? MSG_MORE : 0));
		}
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		if (c->log)
			http_access_sent(c->log, n);
		budget -= n;
		while (n > 0) { /* advance over what went out */
			s = &o->seg[o->cur];
			int64_t take = n < s->len ? n : s->len;
			s->off += take;
			s->len -= take;
			n -= take;
			if (s->len == 0)
				o->cur++;
		}
	}
	if (c->log) {
		http_access_done(c->log);
		c->log = NULL;
	}
	http_out_reset(o);
	return 1;
}

void http_log_response(struct http_conn *c, const struct http_request *req, int status)
{
	if (!http_access_log_on())
		return;
	/* the head is out.buf's start: what comes after its empty line is body */
	const char *end = memmem(c->out.buf, c->out.len, "\r\n\r\n", 4);
	int64_t head = end ? end + 4 - c->out.buf : (int64_t)c->out.len;
	if (c->log) { /* held by the proxy for this request: now our answer to it */
		c->log->a.status = status;
		c->log->head_bytes = head;
		c->log->sent = 0;
		return;
	}
	struct http_access a = {.peer = http_conn_peer(c), .status = status, .minor = 1};
	if (req) {
		a.method = req->method_name;
		a.target = req->target;
		a.referer = req->referer;
		a.user_agent = req->user_agent;
		a.minor = req->minor;
	}
	c->log = http_access_hold(&a, head);
	if (c->log && !c->out.nseg) { /* nothing to send: done now */
		http_access_done(c->log);
		c->log = NULL;
	}
}

/* A request we refuse before understanding it: the stream is unusable. */
static void refuse(struct http_worker *w, struct http_conn *c, int status)
{
	c->close_after = true;
	c->linger = true;
	http_out_reset(&c->out);
	if (http_out_simple(w, c, NULL, status, NULL) == 0)
		http_log_response(c, NULL, status);
	c->rlen = 0;
}

/* The head at rbuf[0, head_len) is complete: answer it. */
static void answer(struct http_worker *w, struct http_conn *c, struct http_request *req,
                   size_t head_len)
{
	const struct http_proxy_route *rt = http_cfg.nroutes ? http_proxy_route_for(w, req) : NULL;
	if (rt) {
		int status = http_proxy_start(w, c, req, rt, head_len);
		if (status > 0) { /* refused before reaching the upstream */
			c->close_after = c->linger = true;
			http_out_reset(&c->out);
			http_out_simple(w, c, req, status, NULL);
			http_log_response(c, req, status);
		}
		return;
	}
	int64_t bytes;
	int status = http_static_respond(w, c, req, &bytes);
	if (status < 0) {
		refuse(w, c, 500);
		return;
	}
	(void)bytes; /* the log counts what is sent */
	http_log_response(c, req, status);
	memmove(c->rbuf, c->rbuf + head_len, c->rlen - head_len);
	c->rlen -= head_len;
}

/* Parses what is buffered: true if a response (or a refusal) was made. */
static bool parse_next(struct http_worker *w, struct http_conn *c)
{
	struct http_limits lim = {http_cfg.max_header_bytes, http_cfg.max_headers};
	struct http_request req = {.headers = w->headers};
	if (c->rlen == 0)
		return false;
	int n = http_parse_request(c->rbuf, c->rlen, &c->scanned, &lim, &req);
	if (n == 0) {
		if (!c->head_start_ms)
			c->head_start_ms = http_now_ms();
		return false;
	}
	c->head_start_ms = 0;
	c->scanned = 0;
	if (n < 0)
		refuse(w, c, -n);
	else
		answer(w, c, &req, (size_t)n);
	return true;
}

/* One recv(): 1 got bytes (all it asked for: more may wait), 2 got fewer, 0 EAGAIN, -1 EOF/error. */
static int fill(struct http_conn *c)
{
	if (c->rlen == c->rcap) {
		size_t cap = c->rcap ? c->rcap * 2 : RBUF_INITIAL;
		if (cap > http_cfg.max_header_bytes)
			cap = http_cfg.max_header_bytes;
		char *p = cap > c->rcap ? realloc(c->rbuf, cap) : NULL;
		if (!p)
			return -1;
		c->rbuf = p;
		c->rcap = cap;
	}
	size_t want = c->rcap - c->rlen;
	ssize_t n = recv(c->fd, c->rbuf + c->rlen, want, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	if (n == 0)
		return -1;
	c->rlen += (size_t)n;
	c->last_active_ms = http_now_ms();
	return (size_t)n == want ? 1 : 2;
}

/*
 * After a refusal the client may still be sending (the rest of a head, a
 * body): close() with unread bytes makes the kernel send a reset, which can
 * destroy the response before the client reads it.  So shut our side down,
 * then read and drop until EOF (0), or say to wait for more (1).  The timer
 * ends a lingering that takes longer than LINGER_MS.
 */
static int linger(struct http_conn *c)
{
	char sink[4096];
	if (!c->lingering) {
		c->lingering = true;
		c->linger_start_ms = http_now_ms();
		c->rlen = 0;
		if (shutdown(c->fd, SHUT_WR) < 0)
			return 0;
	}
	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
		if (n <= 0)
			return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : 0;
	}
	return 1;
}

/* Waiting for the next request with nothing buffered: an idle connection
 * keeps no read buffer (10 000 idle connections: 20 MB less). */
static int idle(struct http_conn *c)
{
	if (c->rlen == 0 && !c->proxying) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rcap = 0;
	}
	return 1;
}

/*
 * Moves the connection as far as it goes now.  Returns 1 if it waits for
 * READ, 2 if for WRITE, 3 if the proxy has queued its changes, 0 if it was
 * torn down.
 */
static int drive(struct http_worker *w, struct http_conn *c)
{
	/* Only a turn the client's READ began (or the accept) reads at once:
	 * after a timer, a written response or an upstream's event a recv()
	 * would mostly say EAGAIN, and the level READ fires if bytes wait. */
	bool may_read = c->readable;
	for (;;) {
		if (c->proxying) {
			int r = http_proxy_event(w, c);
			if (r < 0)
				goto down;
			if (r > 0)
				return 3; /* the proxy queued the knote changes */
		}
		if (c->out.nseg) {
			int r = flush_out(c);
			if (r < 0)
				goto down;
			if (r == 0)
				return 2;
			c->last_active_ms = http_now_ms();
		}
		if (c->close_after) {
			if (!c->linger || linger(c) <= 0)
				goto down;
			return 1;
		}
		if (parse_next(w, c))
			continue;
		if (c->draining && c->rlen == 0)
			goto down;
		if (!may_read)
			return idle(c);
		int r = fill(c);
		if (r < 0)
			goto down;
		if (r == 0)
			return idle(c);
		may_read = r == 1;
	}
down:
	teardown(w, c);
	return 0;
}

/*
 * Queues the changes that give the client socket's READ and WRITE the wanted
 * states, then the release.  Every EV_ENABLE releases the group, and a
 * release in the middle of the list would let another thread hold the group
 * while the rest still applies: so the release is the list's last change.
 * A new connection's knotes are made with EV_ADD (which releases nothing);
 * a registered one's are turned off with EV_DISABLE and on with EV_ENABLE
 * when that is the last change (EV_ADD on an fd with knotes costs libbaton
 * a look at whether the number still names their file), else EV_ADD.
 */
static void push_fd_knote(struct http_worker *w, struct http_conn *c, short filter,
                          unsigned short flags)
{
	struct kevent ch;
	unsigned nodata = 0;
#ifdef NOTE_NODATA
	if (flags & EV_ADD)
		nodata = NOTE_NODATA;
#endif
	http_member(&ch, c, (uintptr_t)c->fd, filter, flags, 0, nodata);
	http_push(w, &ch);
}

void http_conn_knotes(struct http_worker *w, struct http_conn *c, bool want_read, bool want_write)
{
	struct kevent ch;
	if (http_out_detach(&c->out) < 0) {
		/* Out of memory for the blocked response: it cannot be kept, so
		 * the connection ends (the shut-down socket fires at once). */
		http_out_reset(&c->out);
		shutdown(c->fd, SHUT_RDWR);
		c->close_after = true;
	}
	/* The timer is moved only when the deadline comes earlier than it is
	 * armed for (a head starts, lingering starts): activity that pushes the
	 * deadline later costs nothing, the timer fires early and is re-armed. */
	int64_t due = deadline_ms(c);
	if (!c->timer_on || !c->timer_at_ms || due < c->timer_at_ms) {
		int64_t now = http_now_ms(), at = due - http_timer_slack_ms();
		int64_t ms = at > now ? at - now : 1;
		http_member(&ch, c, c->id, EVFILT_TIMER, EV_ADD, ms, 0);
		http_push(w, &ch);
		c->timer_on = true;
		c->timer_at_ms = now + ms;
	}
	if (!c->registered) {
		/* Nobody holds a new connection's group: the first member that can
		 * fire hands it to another thread at once, even while the rest of
		 * this list is still being applied (that thread could tear the
		 * connection down in between).  So the inert changes go first, the
		 * one that can fire last.  (Only the turn of a registered
		 * connection wants both.) */
		push_fd_knote(w, c, want_read ? EVFILT_WRITE : EVFILT_READ, EV_ADD | EV_DISABLE);
		push_fd_knote(w, c, want_read ? EVFILT_READ : EVFILT_WRITE,
		              EV_ADD | (want_read || want_write ? 0 : EV_DISABLE));
		c->read_on = want_read;
		c->write_on = !want_read && want_write;
		c->registered = true;
		/* The stopper may force the timer only once all of these are
		 * applied: forced earlier, another thread could tear c down
		 * between them and this list would register a closed fd. */
		w->pub[w->npub].fd = c->fd;
		w->pub[w->npub].id = c->id;
		w->npub++;
		return;
	}
	/* off first; of what goes on, the last one is the release */
	bool read_up = want_read && !c->read_on, write_up = want_write && !c->write_on;
	if (!want_read && c->read_on)
		push_fd_knote(w, c, EVFILT_READ, EV_DISABLE);
	if (!want_write && c->write_on)
		push_fd_knote(w, c, EVFILT_WRITE, EV_DISABLE);
	if (read_up)
		push_fd_knote(w, c, EVFILT_READ, write_up ? EV_ADD : EV_ENABLE);
	if (write_up)
		push_fd_knote(w, c, EVFILT_WRITE, EV_ENABLE);
	c->read_on = want_read;
	c->write_on = want_write;
	if (!read_up && !write_up) {
		http_member(&ch, c, c->id, EVFILT_TIMER, EV_ENABLE, 0, 0); /* the release */
		http_push(w, &ch);
	}
}

static void release(struct http_worker *w, struct http_conn *c, int r)
{
	if (r == 1 || r == 2)
		http_conn_knotes(w, c, r == 1, r == 2);
}

void http_conn_start(struct http_worker *w, struct http_conn *c)
{
	c->readable = true; /* the request has often arrived with the accept */
	if (atomic_load(&http_stopping))
		c->draining = true;
	if (c->over_limit) {
		refuse(w, c, 503);
	} else if (http_cfg.nroutes) {
		/* A proxied request adds the upstream's knotes during the turn; they
		 * must join a held group, or another thread could get one of them
		 * while this one still works on c.  A new connection's group is not
		 * held (it has no member yet), so its first turn comes from kevent(). */
		release(w, c, 1);
		return;
	}
	release(w, c, drive(w, c));
}

/* Timer: 408 for a head arriving too slowly, close when idle too long. */
static bool timed_out(struct http_worker *w, struct http_conn *c)
{
	int64_t now = http_now_ms() + http_timer_slack_ms();
	if (c->lingering)
		return now - c->linger_start_ms >= LINGER_MS;
	if (c->head_start_ms && now - c->head_start_ms >= http_cfg.header_timeout_ms &&
	    !c->out.nseg) {
		if (c->rlen == 0)
			return true; /* not a byte of a head: nothing to answer */
		refuse(w, c, 408);
		flush_out(c); /* one try: the client is slow anyway */
		return true;
	}
	return now - c->last_active_ms >= http_cfg.idle_timeout_ms;
}

void http_conn_event(struct http_worker *w, struct http_conn *c, bool timer, bool forced,
                     bool readable)
{
	c->readable = readable;
	if (forced)
		c->timer_on = false; /* a forced oneshot is gone once returned */
	else if (timer && c->timer_at_ms) {
		timer_was_late(http_now_ms() - c->timer_at_ms);
		c->timer_at_ms = 0; /* it fired: re-arm it for the deadline now due */
	}
	if (atomic_load(&http_stopping))
		c->draining = true;
	if (timer && !forced && c->proxying && http_proxy_timer(w, c) < 0) {
		teardown(w, c);
		return;
	}
	if (timer && !forced && !c->proxying && timed_out(w, c)) {
		teardown(w, c);
		return;
	}
	release(w, c, drive(w, c));
}

void http_conn_force_all(void)
{
	struct kevent ch[64], ev[64];
	int n = 0;
	for (int fd = 0; fd <= registry_size; fd++) {
		uint64_t id = fd < registry_size ? atomic_load(&registry[fd]) : 0;
		if (id) {
			EV_SET(&ch[n], id, EVFILT_TIMER,
			       EV_FORCEONESHOT | EV_KEEPUDATA | EV_RECEIPT, 0, 0, NULL);
			n++;
		}
		if (n == 64 || (fd == registry_size && n)) {
			/* EV_RECEIPT: each change answers in ev[], a gone timer (ENOENT) too */
			kevent(http_kq, ch, n, ev, n, &(struct timespec){0, 0});
			n = 0;
		}
	}
}
