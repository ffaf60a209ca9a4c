/*
 * The access log (common or combined format) and the error log.
 *
 * Each line is one write(2) to an O_APPEND descriptor, so lines from many
 * threads never interleave and no lock is needed.  SIGHUP reopens a log by
 * dup2()ing the new file onto the old number: a thread writing meanwhile
 * writes whole lines to one file or the other.
 *
 * An access-log line is written when its response is done (all sent, or
 * the connection ended early), with the body bytes actually sent, as
 * nginx's $body_bytes_sent: the request's fields are copied when the
 * response is made (the read buffer they point into moves on).
 */
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int access_fd = -1; /* set before the threads start; its number never changes */
static int error_fd = 2;

static int open_log(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	return fd < 0 ? -errno : fd;
}

int http_log_open(void)
{
	if (http_cfg.access_log && (access_fd = open_log(http_cfg.access_log)) < 0)
		return access_fd;
	if (http_cfg.error_log && (error_fd = open_log(http_cfg.error_log)) < 0)
		return error_fd;
	return 0;
}

/* Opens path again and puts it in place of *fd's file; 0 or -errno. */
static int reopen(const char *path, int fd)
{
	int nfd = open_log(path);
	if (nfd < 0)
		return nfd;
	int err = dup3(nfd, fd, O_CLOEXEC) < 0 ? -errno : 0;
	close(nfd);
	return err;
}

int http_log_reopen(void)
{
	int err = 0;
	if (http_cfg.access_log && (err = reopen(http_cfg.access_log, access_fd)) < 0)
		return err;
	if (http_cfg.error_log)
		err = reopen(http_cfg.error_log, error_fd);
	return err;
}

bool http_access_log_on(void)
{
	return access_fd >= 0;
}

void http_error_log(const char *fmt, ...)
{
	char line[1024], date[30];
	http_format_date(time(NULL), date);
	int n = snprintf(line, sizeof(line), "[%s] baton-httpd: ", date);
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(error_fd, line, (size_t)n) < 0) {
		/* nowhere left to say it */
	}
}

/* Copies a slice into a log line, escaping what could forge a line or field. */
static size_t put(char *out, size_t room, struct http_slice s)
{
	static const char hexd[] = "0123456789abcdef";
	size_t n = 0;
	if (s.n == 0 && room > 1) {
		out[n++] = '-';
		return n;
	}
	for (size_t i = 0; i < s.n && n + 4 < room; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = hexd[c >> 4];
			out[n++] = hexd[c & 15];
		} else {
			out[n++] = (char)c;
		}
	}
	return n;
}

void http_access_log(const struct http_access *a)
{
	char line[4096];
	struct tm tm;
	time_t now = time(NULL);
	localtime_r(&now, &tm);
	size_t n = (size_t)snprintf(line, sizeof(line), "%s - - ", a->peer);
	n += strftime(line + n, sizeof(line) - n, "[%d/%b/%Y:%H:%M:%S %z] \"", &tm);
	n += put(line + n, 1024, a->method);
	line[n++] = ' ';
	n += put(line + n, 2048, a->target);
	n += (size_t)snprintf(line + n, sizeof(line) - n, " HTTP/1.%d\" %d %lld", a->minor,
	                      a->status, (long long)a->bytes);
	if (http_cfg.combined) {
		line[n++] = ' ';
		line[n++] = '"';
		n += put(line + n, 400, a->referer);
		memcpy(line + n, "\" \"", 3);
		n += 3;
		n += put(line + n, 400, a->user_agent);
		line[n++] = '"';
	}
	line[n++] = '\n';
	if (write(access_fd, line, n) < 0)
		http_error_log("access log: %s", strerror(errno));
}

static struct http_slice keep(char **at, struct http_slice s)
{
	struct http_slice k = {*at, s.n};
	if (s.n)
		memcpy(*at, s.p, s.n);
	*at += s.n;
	return k;
}

struct http_access_held *http_access_hold(const struct http_access *a, int64_t head_bytes)
{
	/* the line keeps at most what http_access_log() prints of each field */
	struct http_slice m = a->method, t = a->target, r = a->referer, u = a->user_agent;
	m.n = m.n > 1024 ? 1024 : m.n;
	t.n = t.n > 2048 ? 2048 : t.n;
	r.n = r.n > 400 ? 400 : r.n;
	u.n = u.n > 400 ? 400 : u.n;
	size_t pl = strlen(a->peer) + 1;
	struct http_access_held *h = malloc(sizeof(*h) + pl + m.n + t.n + r.n + u.n);
	if (!h)
		return NULL;
	char *at = h->data;
	h->a = *a;
	memcpy(at, a->peer, pl);
	h->a.peer = at;
	at += pl;
	h->a.method = keep(&at, m);
	h->a.target = keep(&at, t);
	h->a.referer = keep(&at, r);
	h->a.user_agent = keep(&at, u);
	h->head_bytes = head_bytes;
	h->sent = 0;
	return h;
}

void http_access_sent(struct http_access_held *h, int64_t n)
{
	h->sent += n;
}

void http_access_done(struct http_access_held *h)
{
	int64_t body = h->sent - h->head_bytes;
	h->a.bytes = body > 0 ? body : 0;
	http_access_log(&h->a);
	free(h);
}
