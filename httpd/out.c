/*
 * Building a response: a head in out.buf and a list of segments (bytes of
 * out.buf or ranges of the open file) that conn.c writes with sendmsg() and
 * sendfile().  out.buf starts as the running thread's scratch buffer, so a
 * usual response costs no allocation and an idle connection carries no
 * buffer; it moves to the heap for long heads and listings, or when the
 * response blocks and must outlive the turn (http_out_detach).
 */
#include "conn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Each worker thread's buffer for the response being built: a connection
 * is handled by one thread per turn, and its response either goes out in
 * that turn or is moved to the heap before the turn ends. */
static _Thread_local char thread_buf[HTTP_OUT_THREAD_BUF];

void http_out_reset(struct http_out *o)
{
	if (o->buf != thread_buf)
		free(o->buf); /* NULL when idle */
	if (o->file >= 0)
		close(o->file);
	o->buf = NULL;
	o->cap = 0;
	o->len = 0;
	if (o->seg != o->seg_small)
		free(o->seg); /* NULL in a new connection */
	o->seg = o->seg_small;
	o->nseg = o->cur = 0;
	o->file = -1;
}

int http_out_detach(struct http_out *o)
{
	if (o->buf != thread_buf)
		return 0;
	if (o->cur >= o->nseg) { /* nothing left to send from it */
		o->buf = NULL;
		o->cap = o->len = 0;
		return 0;
	}
	char *p = malloc(o->len ? o->len : 1);
	if (!p)
		return -ENOMEM;
	memcpy(p, o->buf, o->len);
	o->buf = p;
	o->cap = o->len ? o->len : 1;
	return 0;
}

static int grow(struct http_out *o, size_t need)
{
	if (!o->buf && need <= sizeof(thread_buf)) {
		o->buf = thread_buf;
		o->cap = sizeof(thread_buf);
		return 0;
	}
	size_t cap = o->cap ? o->cap : sizeof(thread_buf);
	while (cap < o->len + need)
		cap *= 2;
	if (o->buf && cap == o->cap)
		return 0;
	char *p = malloc(cap);
	if (!p)
		return -ENOMEM;
	if (o->len)
		memcpy(p, o->buf, o->len);
	if (o->buf != thread_buf)
		free(o->buf);
	o->buf = p;
	o->cap = cap;
	return 0;
}

int http_out_append(struct http_out *o, const char *p, size_t n)
{
	int err = grow(o, n);
	if (err)
		return err;
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	return 0;
}

/* The strings, each with its length: the usual head costs no formatting. */
int http_out_strs(struct http_out *o, const char *const *strs, int n)
{
	size_t len[16], total = 0;
	if (n > 16)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		total += len[i] = strlen(strs[i]);
	int err = grow(o, total);
	if (err)
		return err;
	for (int i = 0; i < n; i++) {
		memcpy(o->buf + o->len, strs[i], len[i]);
		o->len += len[i];
	}
	return 0;
}

/* v in decimal into buf (at least 21 bytes); returns buf. */
const char *http_dec(char *buf, int64_t v)
{
	char tmp[21];
	int n = 0;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	do
		tmp[n++] = (char)('0' + u % 10);
	while (u /= 10);
	char *p = buf;
	if (v < 0)
		*p++ = '-';
	while (n)
		*p++ = tmp[--n];
	*p = '\0';
	return buf;
}

int http_out_printf(struct http_out *o, const char *fmt, ...)
{
	va_list ap;
	if (!o->buf) {
		int err = grow(o, 0); /* vsnprintf gets a real buffer */
		if (err)
			return err;
	}
	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -EINVAL;
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return 0;
		}
		int err = grow(o, (size_t)n + 1);
		if (err)
			return err;
	}
}

static int seg_cap(const struct http_out *o)
{
	return o->seg == o->seg_small ? (int)(sizeof(o->seg_small) / sizeof(o->seg_small[0]))
	                              : HTTP_MAX_SEGS;
}

/* Only multipart responses need more than the inline segments: an idle
 * connection does not carry room for 34. */
int http_out_reserve_segs(struct http_out *o, int n)
{
	if (n <= seg_cap(o))
		return 0;
	if (n > HTTP_MAX_SEGS)
		return -EINVAL;
	struct http_seg *p = malloc(HTTP_MAX_SEGS * sizeof(*p));
	if (!p)
		return -ENOMEM;
	memcpy(p, o->seg, (size_t)o->nseg * sizeof(*p));
	o->seg = p;
	return 0;
}

void http_out_mem_seg(struct http_out *o, size_t from)
{
	if (o->len > from && o->nseg < seg_cap(o))
		o->seg[o->nseg++] =
		        (struct http_seg){(int64_t)from, (int64_t)(o->len - from), false};
}

void http_out_file_seg(struct http_out *o, int64_t off, int64_t len)
{
	if (len > 0 && o->nseg < seg_cap(o))
		o->seg[o->nseg++] = (struct http_seg){off, len, true};
}

int http_out_head(struct http_worker *w, struct http_conn *c, const struct http_request *req,
                  int status)
{
	/* A 1.0 client keeps the connection only if it asked to; 4xx/5xx for a
	 * request we could not read leave the stream unusable. */
	bool keep = req && req->keep_alive && !c->close_after && !c->draining;
	if (!keep)
		c->close_after = true;
	const char *conn = keep ? (req->minor == 0 ? "Connection: keep-alive\r\n" : "")
	                        : "Connection: close\r\n";
	char code[24];
	const char *parts[] = {"HTTP/1.1 ",
	                       http_dec(code, status),
	                       " ",
	                       http_reason(status),
	                       "\r\nServer: baton-httpd\r\nDate: ",
	                       http_date_now(w),
	                       "\r\n",
	                       conn};
	return http_out_strs(&c->out, parts, 8);
}

int http_out_simple(struct http_worker *w, struct http_conn *c, const struct http_request *req,
                    int status, const char *extra_headers)
{
	char body[256];
	int blen = 0;
	if (status >= 300 && status != 304)
		blen = snprintf(body, sizeof(body),
		                "<!DOCTYPE html>\n<html><head><title>%d %s</title></head><body>"
		                "<h1>%d %s</h1></body></html>\n",
		                status, http_reason(status), status, http_reason(status));
	int err = http_out_head(w, c, req, status);
	if (!err && status != 304)
		err = http_out_printf(&c->out,
		                      "Content-Type: text/html; charset=utf-8\r\n"
		                      "Content-Length: %d\r\n",
		                      blen);
	if (!err)
		err = http_out_printf(&c->out, "%s\r\n", extra_headers ? extra_headers : "");
	if (!err && !(req && req->method == HTTP_HEAD))
		err = http_out_append(&c->out, body, (size_t)blen);
	if (err)
		return err;
	http_out_mem_seg(&c->out, 0);
	return 0;
}
