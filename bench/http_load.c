/*
 * http_load: a one-process epoll HTTP/1.1 client for the load test
 * (tests/load/run.sh) and for B8 (bench/http-bench, idle connections).
 * It is deliberately not built on libbaton: it is the measuring side.
 *
 * Kinds of connection, all on one epoll set (edge-triggered, one
 * registration per socket, so a request costs the client no epoll_ctl):
 *   keep-alive (-c N): loop "GET -u PATH" and compare every body byte with
 *     the local copy -F FILE (status 200, Content-Length = size, content);
 *     a connection the server closes is counted and reopened;
 *   idle (-i): the same, but one request per connection, then hold it;
 *   slowloris (-s N): send a request header one byte per second, never
 *     finishing it; record whether and when the server closes it;
 *   resetters (-r N): GET -U BIGPATH, read a random part of the body, then
 *     close with SO_LINGER {1, 0} (RST mid-transfer), and start again.
 *
 * The run lasts -d seconds from the moment every keep-alive connection is
 * up (or from 20 s after the start, whatever the state), or until
 * SIGTERM/SIGINT; then one line
 *   RESULT cfg=.. impl=.. conns=.. ok=.. bad=.. ...
 * goes to stdout.  Exit status 0 even when errors were counted: the caller
 * decides what is a failure from the counters.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

enum kind { K_KA, K_SLOW, K_RESET };
enum state { S_CONNECTING, S_SENDING, S_HEADER, S_BODY, S_IDLE, S_CLOSED };

#define HBUF 4096

struct conn {
	int fd;
	uint8_t kind;
	uint8_t state;
	uint8_t served;  /* got at least one complete response */
	uint16_t hlen;   /* bytes in hbuf (response header so far) */
	uint32_t woff;   /* bytes of the request sent */
	long long clen;  /* Content-Length of the response */
	long long got;   /* body bytes received */
	long long stop;  /* resetter: RST after this many body bytes */
	int64_t t_start; /* connect (slowloris) or request sent (others) */
	char *hbuf;
};

static struct {
	const char *addr, *path, *file, *bigpath, *ready, *cfg, *impl;
	int port, nka, nslow, nreset, inflight, idle, duration;
} opt = {"127.0.0.1", "/", NULL, "/", NULL, "load", "server", 0, 0, 0, 0, 500, 0, 10};

static struct {
	long long ok, bad, bad_status, bad_len, bad_body, unexpected_close, connect_err;
	long long slow_closed, resets, reset_err, reconnects, idle_closed, st4xx, st5xx;
	int64_t lat_max_ns, slow_close_max_ns, slow_close_min_ns;
} st;

static char *expect;    /* the verified file's content */
static long long esize; /* its size */
static struct conn *conns;
static int nconns, ep, connecting, established_ka;
static volatile sig_atomic_t stop_flag;
static struct sockaddr_in sa;
static char req_ka[512], req_big[512], req_slow[512];
static size_t len_ka, len_big, len_slow;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void load_expected(void)
{
	int fd = open(opt.file, O_RDONLY);
	struct stat sb;
	long long off = 0;

	if (fd < 0 || fstat(fd, &sb) != 0)
		die("open %s", opt.file);
	esize = sb.st_size;
	expect = malloc((size_t)esize + 1);
	if (!expect)
		die("malloc");
	while (off < esize) {
		ssize_t n = read(fd, expect + off, (size_t)(esize - off));
		if (n <= 0)
			die("read %s", opt.file);
		off += n;
	}
	close(fd);
}

static void conn_open(struct conn *c)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP};
	int one = 1;

	if (fd < 0)
		die("socket");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	c->state = S_CONNECTING;
	c->hlen = 0;
	c->woff = 0;
	c->t_start = now_ns();
	ev.data.ptr = c;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)
		die("connect");
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
		die("epoll_ctl");
	connecting++;
}

/* Close c; reset: with SO_LINGER {1, 0}, so the peer gets an RST. */
static void conn_close(struct conn *c, int reset)
{
	if (c->state == S_CONNECTING)
		connecting--;
	if (reset) {
		struct linger lg = {1, 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
	close(c->fd);
	c->fd = -1;
	c->state = S_CLOSED;
}

static int send_request(struct conn *c)
{
	const char *r = c->kind == K_KA ? req_ka : c->kind == K_RESET ? req_big : req_slow;
	size_t len = c->kind == K_KA ? len_ka : c->kind == K_RESET ? len_big : len_slow;

	if (c->state != S_SENDING) {
		c->state = S_SENDING;
		c->woff = 0;
		c->t_start = now_ns();
	}
	while (c->woff < len) {
		ssize_t n = send(c->fd, r + c->woff, len - c->woff, MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN ? 0 : -1;
		c->woff += (uint32_t)n;
	}
	if (c->kind != K_SLOW) {
		c->state = S_HEADER;
		c->hlen = 0;
	}
	return 0;
}

/* Parse the response header in c->hbuf[0..end): status 200 and a
 * Content-Length; 0 on success. */
static int parse_header(struct conn *c, size_t end)
{
	char *h = c->hbuf, *p;
	int status;

	h[end] = 0;
	if (sscanf(h, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
		st.bad_status++;
		st.st4xx += status >= 400 && status < 500;
		st.st5xx += status >= 500 && status < 600;
		return -1;
	}
	p = strcasestr(h, "\r\nContent-Length:");
	if (!p) {
		st.bad_len++;
		return -1;
	}
	c->clen = atoll(p + 17);
	c->got = 0;
	if (c->kind == K_KA && c->clen != esize) {
		st.bad_len++;
		return -1;
	}
	return 0;
}

static void response_done(struct conn *c)
{
	int64_t lat = now_ns() - c->t_start;

	st.ok++;
	c->served = 1;
	if (lat > st.lat_max_ns)
		st.lat_max_ns = lat;
	if (opt.idle)
		c->state = S_IDLE;
	else if (send_request(c) != 0)
		c->state = S_CLOSED; /* counted by the caller as an unexpected close */
}

/* Feed body bytes; returns the number consumed, or -1 on a mismatch. */
static long long body_bytes(struct conn *c, const char *b, long long n)
{
	long long take = c->clen - c->got;

	if (take > n)
		take = n;
	if (c->kind == K_KA && memcmp(b, expect + c->got, (size_t)take) != 0) {
		st.bad_body++;
		return -1;
	}
	c->got += take;
	if (c->kind == K_RESET && c->got >= c->stop)
		return take; /* caller resets */
	if (c->got == c->clen)
		response_done(c);
	return take;
}

/* Handle n bytes just read; -1 means "bad response, drop the connection". */
static int got_bytes(struct conn *c, const char *b, long long n)
{
	while (n > 0) {
		if (c->state == S_HEADER) {
			size_t room = HBUF - 1 - c->hlen, k = (size_t)n < room ? (size_t)n : room;
			char *e;
			memcpy(c->hbuf + c->hlen, b, k);
			c->hbuf[c->hlen + k] = 0;
			e = strstr(c->hbuf, "\r\n\r\n");
			if (!e) {
				if (k == room)
					return -1;
				c->hlen += (uint16_t)k;
				return 0;
			}
			size_t used = (size_t)(e + 4 - c->hbuf) - c->hlen;
			if (parse_header(c, (size_t)(e + 4 - c->hbuf)) != 0)
				return -1;
			b += used;
			n -= (long long)used;
			c->state = S_BODY;
			if (c->clen == 0)
				response_done(c);
		} else if (c->state == S_BODY) {
			long long k = body_bytes(c, b, n);
			if (k < 0)
				return -1;
			if (c->kind == K_RESET && c->got >= c->stop)
				return 1;
			b += k;
			n -= k;
		} else if (c->state == S_IDLE || c->state == S_SENDING) {
			return -1; /* bytes nobody asked for */
		} else {
			return 0;
		}
	}
	return 0;
}

static void reopen(struct conn *c)
{
	if (!stop_flag)
		conn_open(c);
}

static void on_established(struct conn *c)
{
	int err = 0;
	socklen_t l = sizeof err;

	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
	if (err) {
		st.connect_err++;
		conn_close(c, 0);
		reopen(c);
		return;
	}
	connecting--;
	if (c->kind == K_KA)
		established_ka++;
	if (c->kind == K_RESET)
		c->stop = 16384 + random() % (900 * 1024);
	if (c->kind == K_SLOW) {
		c->state = S_SENDING;
		c->woff = 0;
		c->t_start = now_ns();
		return; /* bytes go out on the one-second tick */
	}
	if (send_request(c) != 0) {
		st.unexpected_close++;
		conn_close(c, 0);
		reopen(c);
	}
}

/* The server closed c (EOF or error). */
static void on_server_close(struct conn *c)
{
	if (c->kind == K_SLOW) {
		int64_t t = now_ns() - c->t_start;
		st.slow_closed++;
		if (t > st.slow_close_max_ns)
			st.slow_close_max_ns = t;
		if (st.slow_close_min_ns == 0 || t < st.slow_close_min_ns)
			st.slow_close_min_ns = t;
		conn_close(c, 0);
		return; /* not reopened: each slowloris client counts once */
	}
	if (c->kind == K_RESET)
		st.reset_err++;
	else if (c->state == S_IDLE)
		st.idle_closed++;
	else
		st.unexpected_close++;
	if (c->kind == K_KA && c->state != S_CONNECTING)
		established_ka--;
	conn_close(c, 0);
	if (!opt.idle)
		reopen(c);
}

static void on_readable(struct conn *c, char *buf, size_t cap)
{
	for (;;) {
		ssize_t n = recv(c->fd, buf, cap, 0);
		int r;
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			on_server_close(c);
			return;
		}
		if (n < 0)
			return;
		if (c->kind == K_SLOW)
			continue; /* an error page: wait for the close */
		r = got_bytes(c, buf, n);
		if (r < 0) {
			st.bad++;
			if (c->kind == K_KA)
				established_ka--;
			conn_close(c, 0);
			if (!opt.idle)
				reopen(c);
			return;
		}
		if (r > 0) { /* resetter: enough of the body, RST now */
			st.resets++;
			conn_close(c, 1);
			reopen(c);
			return;
		}
		if (c->state == S_CLOSED) {
			on_server_close(c);
			return;
		}
	}
}

static void on_event(struct conn *c, uint32_t ev, char *buf, size_t cap)
{
	if (c->fd < 0)
		return;
	if (c->state == S_CONNECTING) {
		if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		on_established(c);
		if (c->fd < 0)
			return;
	}
	if ((ev & EPOLLOUT) && c->state == S_SENDING && c->kind != K_SLOW && send_request(c) != 0) {
		on_server_close(c);
		return;
	}
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		on_readable(c, buf, cap);
}

/* Once a second: one more header byte from every slowloris client. */
static void slow_tick(void)
{
	for (int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];
		if (c->kind != K_SLOW || c->fd < 0 || c->state != S_SENDING)
			continue;
		const char *b = c->woff < len_slow ? req_slow + c->woff : "a";
		if (send(c->fd, b, 1, MSG_NOSIGNAL) == 1)
			c->woff++;
		else if (errno != EAGAIN)
			on_server_close(c);
	}
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: http_load -p PORT [-a ADDR] [-c N -u PATH -F FILE] [-i [-w READYFILE]]\n"
	        "       [-s N] [-r N -U BIGPATH] [-d SEC] [-C INFLIGHT] [-x CFG] [-l IMPL]\n");
	exit(2);
}

static void parse_opts(int argc, char **argv)
{
	int ch;

	while ((ch = getopt(argc, argv, "a:p:c:u:F:iw:s:r:U:d:C:x:l:")) != -1) {
		switch (ch) {
		case 'a':
			opt.addr = optarg;
			break;
		case 'p':
			opt.port = atoi(optarg);
			break;
		case 'c':
			opt.nka = atoi(optarg);
			break;
		case 'u':
			opt.path = optarg;
			break;
		case 'F':
			opt.file = optarg;
			break;
		case 'i':
			opt.idle = 1;
			break;
		case 'w':
			opt.ready = optarg;
			break;
		case 's':
			opt.nslow = atoi(optarg);
			break;
		case 'r':
			opt.nreset = atoi(optarg);
			break;
		case 'U':
			opt.bigpath = optarg;
			break;
		case 'd':
			opt.duration = atoi(optarg);
			break;
		case 'C':
			opt.inflight = atoi(optarg);
			break;
		case 'x':
			opt.cfg = optarg;
			break;
		case 'l':
			opt.impl = optarg;
			break;
		default:
			usage();
		}
	}
	if (opt.port <= 0 || opt.inflight <= 0 || opt.nka < 0 || opt.nslow < 0 || opt.nreset < 0 ||
	    (opt.nka > 0 && !opt.file))
		usage();
}

static void setup(void)
{
	nconns = opt.nka + opt.nslow + opt.nreset;
	if (raise_fd_limit() < nconns + 16)
		die("fd limit too low for %d connections", nconns);
	if (opt.nka)
		load_expected();
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.addr, &sa.sin_addr) != 1)
		usage();
	len_ka = (size_t)snprintf(req_ka, sizeof req_ka, "GET %s HTTP/1.1\r\nHost: load\r\n\r\n",
	                          opt.path);
	len_big = (size_t)snprintf(req_big, sizeof req_big, "GET %s HTTP/1.1\r\nHost: load\r\n\r\n",
	                           opt.bigpath);
	len_slow = (size_t)snprintf(req_slow, sizeof req_slow,
	                            "GET %s HTTP/1.1\r\nHost: load\r\nX-Slow: ", opt.path);
	conns = calloc((size_t)nconns + 1, sizeof *conns);
	if (!conns)
		die("calloc");
	for (int i = 0; i < nconns; i++) {
		conns[i].fd = -1;
		conns[i].state = S_CLOSED;
		conns[i].kind = i < opt.nka ? K_KA : i < opt.nka + opt.nslow ? K_SLOW : K_RESET;
		if (conns[i].kind != K_SLOW && !(conns[i].hbuf = malloc(HBUF)))
			die("malloc");
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
}

static void report(double secs, long long run_ok)
{
	long long stalled = 0, unserved = 0, slow_open = 0;
	int64_t now = now_ns();

	for (int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];
		if (c->kind == K_SLOW && c->fd >= 0)
			slow_open++;
		if (c->kind != K_KA)
			continue;
		if (opt.idle && !c->served)
			unserved++;
		if (!opt.idle && c->fd >= 0 && c->state != S_CONNECTING &&
		    now - c->t_start > 5000000000LL)
			stalled++;
	}
	printf("RESULT cfg=%s impl=%s conns=%d ok=%lld ok_run=%lld req_per_s=%.0f bad=%lld "
	       "bad_status=%lld "
	       "status_4xx=%lld status_5xx=%lld bad_len=%lld bad_body=%lld unexpected_close=%lld "
	       "idle_closed=%lld "
	       "connect_err=%lld stalled=%lld unserved=%lld lat_max_ms=%.1f slow=%d "
	       "slow_closed=%lld slow_open=%lld slow_close_min_s=%.1f slow_close_max_s=%.1f "
	       "resets=%lld reset_err=%lld\n",
	       opt.cfg, opt.impl, opt.nka, st.ok, run_ok, secs > 0 ? (double)run_ok / secs : 0,
	       st.bad, st.bad_status, st.st4xx, st.st5xx, st.bad_len, st.bad_body,
	       st.unexpected_close, st.idle_closed, st.connect_err, stalled, unserved,
	       (double)st.lat_max_ns / 1e6, opt.nslow, st.slow_closed, slow_open,
	       (double)st.slow_close_min_ns / 1e9, (double)st.slow_close_max_ns / 1e9, st.resets,
	       st.reset_err);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static struct epoll_event evs[1024];
	static char buf[256 * 1024];
	int64_t t0, t_run = 0, t_tick;
	int next_open = 0, ready_done = 0;
	long long ok_at_run = 0;

	parse_opts(argc, argv);
	setup();
	t0 = t_tick = now_ns();
	while (!stop_flag) {
		int64_t now;
		while (next_open < nconns && connecting < opt.inflight)
			conn_open(&conns[next_open++]);
		int n = epoll_wait(ep, evs, 1024, 100);
		for (int i = 0; i < n; i++)
			on_event(evs[i].data.ptr, evs[i].events, buf, sizeof buf);
		now = now_ns();
		if (now - t_tick >= 1000000000LL) {
			t_tick = now;
			slow_tick();
		}
		/* the timed run starts when every keep-alive connection is up, or
		 * after 20 s whatever the state (a server that stops accepting
		 * must not hang the client) */
		if (!t_run && ((next_open == nconns && established_ka == opt.nka) ||
		               now - t0 > 20000000000LL)) {
			t_run = now;
			ok_at_run = st.ok;
		}
		if (opt.idle && opt.ready && !ready_done && st.ok == opt.nka) {
			int fd = open(opt.ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
			if (fd >= 0)
				close(fd);
			ready_done = 1;
		}
		if (t_run && now - t_run >= (int64_t)opt.duration * 1000000000LL)
			break;
	}
	/* in idle mode every response counts; otherwise those of the timed run */
	double secs = t_run ? (double)(now_ns() - t_run) / 1e9 : 0;
	report(secs, opt.idle ? st.ok : st.ok - ok_at_run);
	return 0;
}
