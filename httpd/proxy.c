/*
 * Reverse proxy: requests under a --proxy PREFIX go to HOST:PORT.
 *
 * The upstream socket's READ and WRITE (EV_CLEAR: each turn moves bytes
 * until EAGAIN) join the client connection's serial group, so one thread at
 * a time owns both sockets and both buffers: no lock, no reference count.
 * Bodies stream through two fixed buffers (client->upstream, upstream->
 * client); neither direction is ever held whole.  The client's READ is on
 * only while a request body is wanted and fits, its WRITE only while bytes
 * for it wait.
 *
 * After a response the upstream connection stays with the client
 * connection, its knotes still in the group (up to KEPT_MAX of them in the
 * process): the client's next request to the same route goes out on it with
 * no knote change, no lock and no extra system call, as a keep-alive client
 * sends its requests one after another.  Otherwise upstream connections are
 * kept alive in a pool per route (the only lock here: a mutex per pool,
 * held for a push or a pop).  A pooled socket has no knotes; taking it adds
 * them to the taker's group.  A pooled socket the upstream closed meanwhile
 * is seen by a MSG_PEEK (a kept one only when a body goes out), or, if it
 * closes just as the request goes out, by an EOF before any response byte:
 * a request without a body is then sent once more on a new connection.
 *
 * Failures: no connection or a broken response head before anything reached
 * the client -> 502; no upstream progress for --upstream-timeout -> 504; once
 * response bytes went out, a failure can only close the client connection.
 * The request head is sent as HTTP/1.1 (HTTP/1.0 for a 1.0 client, so the
 * upstream never chunks to it), without hop-by-hop fields (the fixed ones
 * and those the Connection field names), with X-Forwarded-For; the response
 * head loses the same and gets the client connection's own Connection.
 *
 * Interim (1xx) responses are relayed to an HTTP/1.1 client ahead of the
 * final one (RFC 9110 §15.2; never to an HTTP/1.0 client).  Expect:
 * 100-continue goes upstream, so the client gets the upstream's own 100 or
 * its final answer; for a route whose upstream answered HTTP/1.0 (it knows
 * no 100) the proxy strips the expectation and answers 100 itself (§10.1.1).
 * Upgrade is hop-by-hop and never forwarded, as nginx without
 * proxy_set_header Upgrade: the upstream answers the request as a plain one,
 * and a 101 it sends anyway (switching unasked, §15.2.2) is a 502.
 */
#include "conn.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define PX_BUF      16384
#define POOL_MAX    256
#define PUMP_ROUNDS 64   /* a turn moves at most this many buffers: fairness */
#define KEPT_MAX    1024 /* upstream connections kept by idle client connections */

static atomic_int kept_upstreams; /* client connections with px->kept */

struct pool {
	pthread_mutex_t lock;
	int fd[POOL_MAX];   /* guarded by lock */
	int n;              /* guarded by lock */
	atomic_bool http10; /* its last response was HTTP/1.0: no 100 from it (atomic) */
};

enum body_framing { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE };

struct http_proxy_conn {
	int ufd; /* -1 between connections */
	enum body_framing framing;
	bool broken;      /* the response's framing is wrong: the client connection ends */
	int err;          /* errno of the last upstream failure, 0: EOF */
	bool sent_client; /* response bytes went to the client: too late for 502/504 */
	const struct http_proxy_route *rt;
	bool reused;      /* ufd came from the pool or was kept */
	bool kept;        /* ufd is idle, its knotes in the group, for the next request */
	bool up_write_on; /* ufd's WRITE is enabled: connecting, or bytes for it wait */
	bool retried;     /* already sent once more after a stale pooled socket */
	bool head_done;   /* the response head went to the client buffer */
	bool resp_done;   /* the upstream sent the whole response */
	bool resp_close;  /* the response ends with the upstream's EOF */
	bool reusable;    /* the upstream keeps the connection */
	bool head_req;    /* HEAD: no response body whatever the head says */
	bool client_keep; /* the client keeps its connection */
	bool req_chunked;
	bool expect;  /* the client waits for 100 Continue before its body */
	bool got_100; /* a 100 (the upstream's or ours) went to the client */
	int status, minor;
	int64_t req_left;  /* request body bytes still to take from the client */
	int64_t resp_left; /* response body bytes still to come (Content-Length) */
	int64_t last_up_ms;
	struct http_chunked req_ch, resp_ch;
	size_t resp_scanned;
	size_t up_off, up_len, down_off, down_len; /* [off, len) waits to be sent */
	/* Before the final head: down[down_off, hold) are interim heads for the
	 * client, down[hold, down_len) response bytes not parsed yet. */
	size_t hold;
	size_t head_len; /* the request head at up[0, head_len) */
	char up[PX_BUF], down[PX_BUF];
};

static struct pool *pools; /* one per route, made at the first use */
static pthread_once_t pools_once = PTHREAD_ONCE_INIT;

static void pools_init(void)
{
	pools = calloc((size_t)http_cfg.nroutes, sizeof(*pools));
	for (int i = 0; pools && i < http_cfg.nroutes; i++)
		pthread_mutex_init(&pools[i].lock, NULL);
}

static struct pool *pool_of(const struct http_proxy_route *rt)
{
	pthread_once(&pools_once, pools_init);
	return pools ? &pools[rt - http_cfg.routes] : NULL;
}

/* Routes match the normalized path ("/api/../x" is /x, not under /api/), as
 * the file server would see it; the target goes upstream as the client sent it. */
const struct http_proxy_route *http_proxy_route_for(struct http_worker *w,
                                                    const struct http_request *req)
{
	long n = http_normalize_path(req->path, w->path, sizeof(w->path));
	if (n < 0)
		return NULL; /* the file server answers 400 */
	for (int i = 0; i < http_cfg.nroutes; i++) {
		const struct http_proxy_route *r = &http_cfg.routes[i];
		if ((size_t)n >= r->prefix_len && !memcmp(w->path, r->prefix, r->prefix_len))
			return r;
	}
	return NULL;
}

/* A pooled connection still open (no EOF, no error queued), or -1. */
static int pool_take(const struct http_proxy_route *rt)
{
	struct pool *p = pool_of(rt);
	char b;
	for (;;) {
		int fd = -1;
		if (!p)
			return -1;
		pthread_mutex_lock(&p->lock);
		if (p->n)
			fd = p->fd[--p->n];
		pthread_mutex_unlock(&p->lock);
		if (fd < 0)
			return -1;
		ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return fd;
		close(fd); /* closed by the upstream, or it sent what nobody asked */
	}
}

static void pool_put(const struct http_proxy_route *rt, int fd)
{
	struct pool *p = pool_of(rt);
	if (p) {
		pthread_mutex_lock(&p->lock);
		if (p->n < POOL_MAX) {
			p->fd[p->n++] = fd;
			fd = -1;
		}
		pthread_mutex_unlock(&p->lock);
	}
	if (fd >= 0)
		close(fd);
}

/* Drops the upstream socket's knotes (synchronously: the fd may go to the
 * pool and another thread at once), then pools or closes it. */
static void upstream_done(struct http_conn *c, bool pool)
{
	struct http_proxy_conn *px = c->px;
	struct kevent del[2];
	if (px->ufd < 0)
		return;
	if (px->kept) {
		px->kept = false;
		atomic_fetch_sub(&kept_upstreams, 1);
	}
	struct kevent res[2];
	http_member(&del[0], c, (uintptr_t)px->ufd, EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0);
	http_member(&del[1], c, (uintptr_t)px->ufd, EVFILT_WRITE, EV_DELETE | EV_RECEIPT, 0, 0);
	/* EV_RECEIPT: both are applied whatever the first says */
	int got = kevent(http_kq, del, 2, res, 2, &(struct timespec){0, 0});
	for (int i = 0; i < got; i++)
		if (res[i].data)
			http_error_log("kevent (upstream, filter %d): %s", res[i].filter,
			               strerror((int)res[i].data));
	if (pool)
		pool_put(px->rt, px->ufd);
	else
		close(px->ufd);
	px->ufd = -1;
}

/* A connection to the route's upstream, its knotes joining c's group. */
static int upstream_open(struct http_worker *w, struct http_conn *c)
{
	struct http_proxy_conn *px = c->px;
	struct kevent ch;
	px->reused = true;
	int fd = pool_take(px->rt);
	if (fd < 0) {
		const struct addrinfo *ai = px->rt->addr;
		px->reused = false;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			int err = -errno;
			close(fd);
			return err;
		}
	}
	px->ufd = fd;
	px->up_write_on = true; /* until connected and the request is out */
	px->last_up_ms = http_now_ms();
	http_member(&ch, c, (uintptr_t)fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0);
	http_push(w, &ch);
	http_member(&ch, c, (uintptr_t)fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0);
	http_push(w, &ch);
	/* Now, not with the next wait: upstream_done() deletes them synchronously
	 * and may close the fd (or pool it) before that wait. */
	http_flush(w);
	return 0;
}

/* Whether the Connection field(s) among hs[0, n) name the field name. */
static bool connection_lists(const struct http_header *hs, int n, struct http_slice name)
{
	for (int i = 0; i < n; i++) {
		if (!http_slice_eq(hs[i].name, "connection"))
			continue;
		const char *p = hs[i].value.p, *end = p + hs[i].value.n;
		while (p < end) { /* a comma-separated list of tokens */
			const char *comma = memchr(p, ',', (size_t)(end - p));
			const char *e = comma ? comma : end;
			struct http_slice t = {p, (size_t)(e - p)};
			while (t.n && (*t.p == ' ' || *t.p == '\t'))
				t.p++, t.n--;
			while (t.n && (t.p[t.n - 1] == ' ' || t.p[t.n - 1] == '\t'))
				t.n--;
			if (t.n == name.n && !strncasecmp(t.p, name.p, t.n))
				return true;
			p = e + 1;
		}
	}
	return false;
}

/* Fields for this hop only (RFC 9110 §7.6.1): never passed on. */
static bool hop_by_hop(const struct http_header *hs, int n, struct http_slice name)
{
	static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
	                                    "upgrade",    "te",         "trailer"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (http_slice_eq(name, names[i]))
			return true;
	return connection_lists(hs, n, name);
}

/* Whether the client waits for 100 Continue: an HTTP/1.1 request with a body
 * and Expect: 100-continue. */
static bool expects_100(const struct http_request *req)
{
	if (!req->minor || (!req->chunked && req->content_length <= 0))
		return false;
	for (int i = 0; i < req->nheaders; i++)
		if (http_slice_eq(req->headers[i].name, "expect") &&
		    http_slice_eq(req->headers[i].value, "100-continue"))
			return true;
	return false;
}

/* The proxy sends the 100 itself: its route's upstream last answered in
 * HTTP/1.0, which has no 100 (the client would wait for nothing). */
static bool own_100(struct http_conn *c, const struct http_request *req)
{
	struct pool *p = pool_of(c->px->rt);
	return expects_100(req) && p && atomic_load(&p->http10);
}

/* The upstream request head into px->up; -status if it does not fit. */
static int build_request(struct http_conn *c, const struct http_request *req)
{
	struct http_proxy_conn *px = c->px;
	size_t n = 0, room = sizeof(px->up);
	int k = snprintf(px->up, room, "%.*s %.*s%.*s HTTP/1.%d\r\n", (int)req->method_name.n,
	                 req->method_name.p, (int)req->path.n, req->path.p, (int)req->query.n,
	                 req->query.p, req->minor ? 1 : 0);
	n = (size_t)k;
	for (int i = 0; i < req->nheaders && n < room; i++) {
		const struct http_header *h = &req->headers[i];
		if (hop_by_hop(req->headers, req->nheaders, h->name))
			continue;
		/* an HTTP/1.0 client's expectation is ignored (RFC 9110 §10.1.1);
		 * toward an HTTP/1.0 upstream the proxy answers 100 itself */
		if (http_slice_eq(h->name, "expect") && (!req->minor || px->got_100))
			continue;
		n += (size_t)snprintf(px->up + n, room - n, "%.*s: %.*s\r\n", (int)h->name.n,
		                      h->name.p, (int)h->value.n, h->value.p);
	}
	if (n < room && !req->host.n)
		n += (size_t)snprintf(px->up + n, room - n, "Host: %s\r\n", px->rt->hostport);
	if (n < room)
		n += (size_t)snprintf(px->up + n, room - n,
		                      "X-Forwarded-For: %s\r\nConnection: keep-alive\r\n\r\n",
		                      http_conn_peer(c));
	if (n >= room)
		return -431;
	px->up_len = px->head_len = n;
	return 0;
}

int http_proxy_start(struct http_worker *w, struct http_conn *c, struct http_request *req,
                     const struct http_proxy_route *rt, size_t head_len)
{
	if (!c->px) {
		if (!(c->px = malloc(sizeof(*c->px))))
			return 503;
		c->px->ufd = -1;
		c->px->kept = false;
	}
	struct http_proxy_conn *px = c->px;
	if (px->kept && px->rt != rt)
		upstream_done(c, true); /* another route's: to its pool */
	bool kept = px->kept;
	int ufd = px->ufd;
	memset(px, 0, offsetof(struct http_proxy_conn, up));
	px->ufd = ufd;
	px->kept = kept;
	px->rt = rt;
	px->head_req = req->method == HTTP_HEAD;
	px->client_keep = req->keep_alive && !c->draining;
	px->minor = req->minor;
	px->req_chunked = req->chunked;
	px->req_left = req->chunked ? 1 : req->content_length > 0 ? req->content_length : 0;
	px->expect = expects_100(req);
	px->got_100 = own_100(c, req); /* ours, queued below */
	int err = build_request(c, req);
	if (err < 0)
		return -err;
	memmove(c->rbuf, c->rbuf + head_len, c->rlen - head_len);
	c->rlen -= head_len;
	if (px->kept) {
		px->kept = false;
		atomic_fetch_sub(&kept_upstreams, 1);
		char b;
		ssize_t n = px->req_left ? recv(px->ufd, &b, 1, MSG_PEEK | MSG_DONTWAIT) : -1;
		if (!px->req_left || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
			px->reused = true; /* a stale one is retried as a pooled one */
			px->last_up_ms = http_now_ms();
			c->proxying = true;
			return 0;
		}
		upstream_done(c, false); /* closed by the upstream: a new one */
	}
	if ((err = upstream_open(w, c)) < 0) {
		http_error_log("upstream %s: %s", rt->hostport, strerror(-err));
		return 502;
	}
	c->proxying = true;
	if (http_access_log_on()) { /* status and bytes come with the response */
		struct http_access a = {.peer = http_conn_peer(c),
		                        .method = req->method_name,
		                        .target = req->target,
		                        .referer = req->referer,
		                        .user_agent = req->user_agent,
		                        .minor = req->minor};
		c->log = http_access_hold(&a, 0);
	}
	if (px->got_100) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		memcpy(px->down, cont, sizeof(cont) - 1);
		px->hold = px->down_len = sizeof(cont) - 1;
		if (c->log)
			c->log->head_bytes += (int64_t)px->hold;
	}
	return 0;
}

/* Request body bytes from rbuf into up: chunked framing is passed as is. */
static void take_body(struct http_conn *c)
{
	struct http_proxy_conn *px = c->px;
	if (!px->req_left || !c->rlen)
		return; /* (a request without a body keeps its head in up[] for a retry) */
	if (px->up_off == px->up_len)
		px->up_off = px->up_len = 0;
	size_t room = sizeof(px->up) - px->up_len, n = c->rlen < room ? c->rlen : room;
	if (!n)
		return;
	if (px->req_chunked) {
		long used = http_chunked_scan(&px->req_ch, c->rbuf, n);
		if (used < 0) {
			px->req_left = -1; /* bad framing: the client connection ends */
			return;
		}
		n = (size_t)used;
		if (px->req_ch.state == HTTP_CHUNKED_DONE)
			px->req_left = 0;
	} else {
		if ((int64_t)n > px->req_left)
			n = (size_t)px->req_left;
		px->req_left -= (int64_t)n;
	}
	memcpy(px->up + px->up_len, c->rbuf, n);
	px->up_len += n;
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	c->rlen -= n;
}

/*
 * A response head (interim or final) at down[hold, hold + head_len):
 * rewritten in place (hop-by-hop fields out; a final head gets the client
 * connection's own Connection), the bytes after it moved along.  Returns
 * the new head's length, or -1 if it does not fit.
 */
static int place_head(struct http_worker *w, struct http_conn *c, size_t head_len,
                      const struct http_response *res, bool final)
{
	struct http_proxy_conn *px = c->px;
	char *o = w->scratch, *head = px->down + px->hold;
	size_t room = sizeof(w->scratch), n;
	const char *eol = memchr(head, '\n', head_len);
	size_t line = (size_t)(eol - head);
	if (line && head[line - 1] == '\r')
		line--;
	/* "HTTP/1.x NNN reason": ours is 1.1 whatever the upstream's */
	n = (size_t)snprintf(o, room, "HTTP/1.1%.*s\r\n", (int)(line - 8), head + 8);
	for (int i = 0; i < res->nheaders && n < room; i++) {
		const struct http_header *h = &res->headers[i];
		if (!hop_by_hop(res->headers, res->nheaders, h->name))
			n += (size_t)snprintf(o + n, room - n, "%.*s: %.*s\r\n", (int)h->name.n,
			                      h->name.p, (int)h->value.n, h->value.p);
	}
	bool keep = px->client_keep && !px->resp_close;
	if (n < room)
		n += (size_t)snprintf(o + n, room - n, "%s\r\n",
		                      !final           ? ""
		                      : !keep          ? "Connection: close\r\n"
		                      : px->minor == 0 ? "Connection: keep-alive\r\n"
		                                       : "");
	size_t rest = px->down_len - px->hold - head_len;
	if (n >= room || px->hold + n + rest > sizeof(px->down))
		return -1;
	memmove(head + n, head + head_len, rest);
	memcpy(head, o, n);
	px->down_len = px->hold + n + rest;
	if (c->log)
		c->log->head_bytes += (int64_t)n;
	return (int)n;
}

/* An interim (1xx) head at down[hold, hold + head_len): queued for an
 * HTTP/1.1 client, dropped for an HTTP/1.0 one (RFC 9110 §15.2). */
static int interim(struct http_worker *w, struct http_conn *c, size_t head_len,
                   const struct http_response *res)
{
	struct http_proxy_conn *px = c->px;
	if (px->minor == 0) {
		memmove(px->down + px->hold, px->down + px->hold + head_len,
		        px->down_len - px->hold - head_len);
		px->down_len -= head_len;
		return 0;
	}
	int n = place_head(w, c, head_len, res, false);
	if (n < 0)
		return -1;
	px->hold += (size_t)n;
	px->got_100 |= res->status == 100;
	return 0;
}

/* Response body bytes at p[0, n): how many belong to the response. */
static size_t account(struct http_proxy_conn *px, const char *p, size_t n)
{
	size_t keep = n;
	if (px->framing == BODY_NONE) {
		keep = 0;
	} else if (px->framing == BODY_LENGTH) {
		keep = (int64_t)n < px->resp_left ? n : (size_t)px->resp_left;
		px->resp_left -= (int64_t)keep;
		px->resp_done = px->resp_left == 0;
	} else if (px->framing == BODY_CHUNKED) {
		long used = http_chunked_scan(&px->resp_ch, p, n);
		if (used < 0) {
			px->broken = true;
			return 0;
		}
		keep = (size_t)used;
		px->resp_done = px->resp_ch.state == HTTP_CHUNKED_DONE;
	}
	if (keep < n) /* the upstream sent more than its response: do not reuse it */
		px->reusable = false;
	return keep;
}

/* A complete response head at down[0, head_len): framing, then rewrite. */
static int take_head(struct http_worker *w, struct http_conn *c, size_t head_len,
                     const struct http_response *res)
{
	struct http_proxy_conn *px = c->px;
	px->status = res->status;
	px->reusable = res->keep_alive;
	if (px->head_req || res->status == 204 || res->status == 304 || res->status < 200)
		px->framing = BODY_NONE;
	else if (res->chunked)
		px->framing = BODY_CHUNKED;
	else if (res->content_length >= 0)
		px->framing = BODY_LENGTH;
	else
		px->framing = BODY_CLOSE;
	px->resp_left = res->content_length;
	px->resp_close = px->framing == BODY_CLOSE;
	px->resp_done = px->framing == BODY_NONE || (px->framing == BODY_LENGTH && !px->resp_left);
	if (px->resp_close)
		px->reusable = false;
	struct pool *p = pool_of(px->rt);
	if (p)
		atomic_store(&p->http10, res->minor == 0);
	if (c->log)
		c->log->a.status = res->status;
	int n = place_head(w, c, head_len, res, true);
	if (n < 0)
		return -1;
	size_t at = px->hold + (size_t)n;
	px->down_len = at + account(px, px->down + at, px->down_len - at);
	px->head_done = true;
	return 0;
}

/* Bytes from the upstream into down[]: 1 moved, 0 no room (or done), 2
 * nothing there (EAGAIN), -1 it failed or closed early (px->broken: a broken
 * response). */
static int from_upstream(struct http_worker *w, struct http_conn *c)
{
	struct http_proxy_conn *px = c->px;
	if (px->down_off == px->down_len)
		px->down_off = px->down_len = px->hold = 0;
	size_t room = sizeof(px->down) - px->down_len;
	if (!room || px->resp_done)
		return 0;
	ssize_t n = recv(px->ufd, px->down + px->down_len, room, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 2 : (px->err = errno, -1);
	px->last_up_ms = http_now_ms();
	if (n == 0) { /* EOF: the end of a close-delimited body, else too early */
		px->reusable = false;
		if (px->head_done && px->framing == BODY_CLOSE) {
			px->resp_done = true;
			return 1;
		}
		return -1;
	}
	if (px->head_done) {
		px->down_len += account(px, px->down + px->down_len, (size_t)n);
		return px->broken ? -1 : 1;
	}
	px->down_len += (size_t)n;
	for (;;) { /* the final head, after any interim (1xx) heads */
		struct http_limits lim = {sizeof(px->down) - px->hold, http_cfg.max_headers};
		struct http_response res = {.headers = w->headers};
		int h = http_parse_response(px->down + px->hold, px->down_len - px->hold,
		                            &px->resp_scanned, &lim, &res);
		if (h == 0)
			return 1;
		px->resp_scanned = 0;
		/* 101: we never forward Upgrade, so it switched unasked */
		if (h < 0 || res.status == 101 || res.status < 100) {
			px->broken = true;
			return -1;
		}
		if (res.status >= 200)
			return take_head(w, c, (size_t)h, &res) < 0 ? (px->broken = true, -1) : 1;
		if (interim(w, c, (size_t)h, &res) < 0) {
			px->broken = true;
			return -1;
		}
	}
}

/* up[] to the upstream: 1 moved, 0 nothing now, -1 failed. */
static int to_upstream(struct http_conn *c)
{
	struct http_proxy_conn *px = c->px;
	if (px->up_off == px->up_len)
		return 0;
	ssize_t n = send(px->ufd, px->up + px->up_off, px->up_len - px->up_off, MSG_NOSIGNAL);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN
		               ? 0
		               : (px->err = errno, -1);
	px->up_off += (size_t)n;
	px->last_up_ms = http_now_ms();
	return 1;
}

/* Where the bytes ready for the client end: before the final head only the
 * interim heads are. */
static size_t ready_end(const struct http_proxy_conn *px)
{
	return px->head_done ? px->down_len : px->hold;
}

/* down[] to the client: 1 moved, 0 nothing now, -1 the client is gone. */
static int to_client(struct http_conn *c)
{
	struct http_proxy_conn *px = c->px;
	size_t end = ready_end(px);
	if (px->down_off >= end)
		return 0;
	ssize_t n = send(c->fd, px->down + px->down_off, end - px->down_off, MSG_NOSIGNAL);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	px->down_off += (size_t)n;
	px->sent_client |= px->head_done;
	if (c->log)
		http_access_sent(c->log, n);
	c->last_active_ms = http_now_ms();
	return 1;
}

/* Request body bytes from the client into rbuf: 1 moved, 0 nothing, -1 gone. */
static int from_client(struct http_conn *c)
{
	if (!c->px->req_left || c->rlen == c->rcap)
		return 0;
	ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	if (n == 0)
		return -1;
	c->rlen += (size_t)n;
	c->last_active_ms = http_now_ms();
	return 1;
}

/* The upstream failed before the client saw anything: once more on a fresh
 * connection if that is safe, else a 502/504 of our own.  0, or -1 if the
 * client connection must end. */
static int fail(struct http_worker *w, struct http_conn *c, int status)
{
	struct http_proxy_conn *px = c->px;
	bool again = status == 502 && px->reused && !px->retried && !px->head_done &&
	             px->head_len == px->up_len && !px->req_left && !px->broken && !px->hold;
	upstream_done(c, false);
	/* the final head went out, or an interim one half: the stream is spoilt */
	if (px->sent_client || (px->down_off && px->down_off < px->hold))
		return -1;
	if (again && upstream_open(w, c) == 0) {
		px->retried = true;
		px->up_off = 0;
		px->down_off = px->down_len = px->resp_scanned = px->hold = 0;
		return 1;
	}
	http_error_log("upstream %s: %s", px->rt->hostport,
	               status == 504 ? "timed out"
	               : px->broken  ? "bad response"
	                             : "failed");
	c->proxying = false;
	if (px->req_left) /* the rest of the body is not a request */
		c->close_after = c->linger = true;
	struct http_request req = {.keep_alive = px->client_keep, .minor = px->minor};
	http_out_reset(&c->out);
	if (http_out_simple(w, c, &req, status, NULL) < 0)
		return -1;
	http_log_response(c, NULL, status); /* the held line (this request's) */
	return 0;
}

static int finish(struct http_conn *c)
{
	struct http_proxy_conn *px = c->px;
	bool reusable = px->reusable && !px->req_left;
	if (reusable && px->client_keep && !px->resp_close &&
	    atomic_fetch_add(&kept_upstreams, 1) < KEPT_MAX) {
		px->kept = true; /* stays for the client's next request */
	} else {
		if (reusable && px->client_keep && !px->resp_close)
			atomic_fetch_sub(&kept_upstreams, 1);
		upstream_done(c, reusable);
	}
	c->proxying = false;
	if (c->log) {
		http_access_done(c->log);
		c->log = NULL;
	}
	if (!px->client_keep || px->resp_close)
		c->close_after = true;
	if (px->req_left) /* refused before its body (Expect): the rest is not a request */
		c->close_after = c->linger = true;
	return 0;
}

int http_proxy_event(struct http_worker *w, struct http_conn *c)
{
	struct http_proxy_conn *px = c->px;
	int round = 0;
	for (; round < PUMP_ROUNDS; round++) {
		int moved = 0, client_in, r;
		bool up_dry;
		if ((client_in = from_client(c)) < 0)
			return -1;
		moved |= client_in;
		take_body(c);
		if (px->req_left < 0)
			return -1;
		if ((r = to_upstream(c)) < 0 || (r = from_upstream(w, c)) < 0) {
			if (px->head_done && px->sent_client)
				return -1;
			if ((r = fail(w, c, 502)) <= 0)
				return r;
			continue;
		}
		up_dry = r == 2;
		moved |= (r == 1) | (to_upstream(c) > 0);
		if ((r = to_client(c)) < 0)
			return -1;
		moved |= r;
		/* done; a client still waiting for 100 Continue got its final answer */
		if (px->resp_done && px->down_off == px->down_len &&
		    (!px->req_left || (px->expect && !px->got_100)))
			return finish(c);
		/* Nothing came in from either side: another round would only
		 * hear EAGAIN again (the knotes say when there is more). */
		if (!moved || (up_dry && !client_in))
			break;
	}
	bool want_read = px->req_left > 0 && c->rlen < c->rcap;
	/* The client's READ is turned off only once it fires unwanted (a
	 * pipelined request, an EOF): a keep-alive client sends nothing while
	 * its response comes, and each toggle is a change in Baton's epoll. */
	if (!want_read && c->read_on && !c->readable)
		want_read = true;
	/* Out of rounds while bytes still move: the upstream's EV_CLEAR knotes
	 * will not fire again for bytes already there, so ask for another turn
	 * through the client's level WRITE (writable, it fires at once). */
	bool again = round == PUMP_ROUNDS;
	/* The upstream's WRITE (EV_CLEAR) fires each time acknowledgements make
	 * room, a turn for nothing per request: on only while bytes wait. */
	bool up_write = px->up_off < px->up_len && px->ufd >= 0;
	if (up_write != px->up_write_on && px->ufd >= 0) {
		struct kevent ch;
		http_member(&ch, c, (uintptr_t)px->ufd, EVFILT_WRITE,
		            EV_ADD | EV_CLEAR | (up_write ? 0 : EV_DISABLE), 0, 0);
		http_push(w, &ch); /* before the release that http_conn_knotes() queues */
		px->up_write_on = up_write;
	}
	http_conn_knotes(w, c, want_read, again || px->down_off < ready_end(px));
	return 1;
}

int64_t http_proxy_deadline(const struct http_conn *c)
{
	const struct http_proxy_conn *px = c->px;
	if (px->down_off < ready_end(px))
		return c->last_active_ms + http_cfg.idle_timeout_ms;
	return px->last_up_ms + http_cfg.upstream_timeout_ms;
}

int http_proxy_timer(struct http_worker *w, struct http_conn *c)
{
	struct http_proxy_conn *px = c->px;
	int64_t now = http_now_ms() + http_timer_slack_ms(); /* see conn.c */
	if (px->down_off < ready_end(px))
		return now - c->last_active_ms >= http_cfg.idle_timeout_ms ? -1 : 0;
	if (now - px->last_up_ms < http_cfg.upstream_timeout_ms)
		return 0;
	px->reused = false; /* no second try after a timeout */
	return fail(w, c, 504);
}

void http_proxy_free(struct http_worker *w, struct http_conn *c)
{
	(void)w;
	if (c->log && c->proxying && !c->log->a.status)
		c->log->a.status = 499; /* as nginx: the client left before the head */
	if (c->px->ufd >= 0)            /* a kept one is idle and whole: it can serve others */
		upstream_done(c, c->px->kept);
	free(c->px);
	c->px = NULL;
}
