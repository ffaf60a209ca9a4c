/*
 * The HTTP/1.x request-head parser: no I/O, no allocation, strict.
 *
 * Strict because a proxy and the server behind it must agree on where a
 * request ends (request smuggling): whitespace before a colon, obs-fold,
 * Content-Length with Transfer-Encoding, two different Content-Lengths, a
 * bare CR, control bytes, a missing Host in HTTP/1.1 are all 400.  A line
 * may end in LF alone (RFC 9112 2.2 lets a recipient accept it).
 */
#include "http.h"

#include <string.h>

static bool is_tchar(unsigned char c)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr(extra, c));
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

bool http_slice_eq(struct http_slice s, const char *word)
{
	size_t n = strlen(word);
	if (s.n != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)s.p[i]) != lower((unsigned char)word[i]))
			return false;
	return true;
}

/* Finds the end of the head: the index just after the empty line, or 0. */
static size_t find_end(const char *buf, size_t len, size_t *scanned)
{
	size_t i = *scanned;
	for (; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
		if (i + 2 >= len)
			break; /* look at this LF again when more bytes come */
	}
	*scanned = i;
	return 0;
}

/* The next line of [*pos, end): sets *line (without CRLF/LF); -1 on a bare CR. */
static int next_line(const char *buf, size_t end, size_t *pos, struct http_slice *line)
{
	size_t i = *pos;
	const char *nl = memchr(buf + i, '\n', end - i);
	size_t stop = (size_t)(nl - buf);
	size_t n = stop - i;
	if (n && buf[stop - 1] == '\r')
		n--;
	if (memchr(buf + i, '\r', n))
		return -1;
	line->p = buf + i;
	line->n = n;
	*pos = stop + 1;
	return 0;
}

static const struct {
	const char *name;
	enum http_method m;
} methods[] = {
        {"GET", HTTP_GET},     {"HEAD", HTTP_HEAD},     {"POST", HTTP_POST},
        {"PUT", HTTP_PUT},     {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS},
        {"PATCH", HTTP_PATCH},
};

static int parse_request_line(struct http_slice l, struct http_request *req)
{
	size_t i = 0;
	while (i < l.n && is_tchar((unsigned char)l.p[i]))
		i++;
	if (i == 0 || i >= l.n || l.p[i] != ' ')
		return -400;
	req->method_name = (struct http_slice){l.p, i};
	req->method = HTTP_OTHER;
	for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++)
		if (strlen(methods[k].name) == i && !memcmp(methods[k].name, l.p, i))
			req->method = methods[k].m;
	size_t t = ++i;
	while (i < l.n && (unsigned char)l.p[i] > 0x20 && (unsigned char)l.p[i] < 0x7f)
		i++;
	if (i == t || i >= l.n || l.p[i] != ' ')
		return -400;
	req->target = (struct http_slice){l.p + t, i - t};
	struct http_slice v = {l.p + i + 1, l.n - i - 1};
	if (v.n != 8 || memcmp(v.p, "HTTP/", 5) || v.p[6] != '.' || v.p[5] < '0' || v.p[5] > '9' ||
	    v.p[7] < '0' || v.p[7] > '9')
		return -400;
	if (v.p[5] != '1')
		return -505;
	req->minor = v.p[7] - '0';
	return 0;
}

/* origin-form "/p?q", absolute-form "http://host/p?q", or "*". */
static int split_target(struct http_request *req)
{
	struct http_slice t = req->target;
	if (t.n > 7 && !memcmp(t.p, "http://", 7)) {
		const char *slash = memchr(t.p + 7, '/', t.n - 7);
		if (!slash)
			return -400;
		t.n -= (size_t)(slash - t.p);
		t.p = slash;
	} else if (t.n == 1 && t.p[0] == '*') {
		req->path = t;
		req->query = (struct http_slice){t.p + 1, 0};
		return req->method == HTTP_OPTIONS ? 0 : -400;
	} else if (t.p[0] != '/') {
		return -400;
	}
	const char *q = memchr(t.p, '?', t.n);
	size_t plen = q ? (size_t)(q - t.p) : t.n;
	req->path = (struct http_slice){t.p, plen};
	req->query = (struct http_slice){t.p + plen, t.n - plen};
	if (memchr(t.p, '#', t.n)) /* a fragment is never sent */
		return -400;
	return 0;
}

static int parse_length(struct http_slice v, int64_t *out)
{
	int64_t n = 0;
	if (v.n == 0 || v.n > 18)
		return -400;
	for (size_t i = 0; i < v.n; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return -400;
		n = n * 10 + (v.p[i] - '0');
	}
	if (*out >= 0 && *out != n)
		return -400;
	*out = n;
	return 0;
}

/* Comma-separated tokens of a Connection header. */
static void parse_connection(struct http_slice v, bool *close, bool *keep)
{
	size_t i = 0;
	while (i < v.n) {
		while (i < v.n && (v.p[i] == ',' || v.p[i] == ' ' || v.p[i] == '\t'))
			i++;
		size_t s = i;
		while (i < v.n && v.p[i] != ',' && v.p[i] != ' ' && v.p[i] != '\t')
			i++;
		struct http_slice tok = {v.p + s, i - s};
		if (http_slice_eq(tok, "close"))
			*close = true;
		else if (http_slice_eq(tok, "keep-alive"))
			*keep = true;
	}
}

/* Sets the fields the server looks at; 0 or -status. */
static int known_header(struct http_request *req, struct http_slice n, struct http_slice v,
                        bool *close, bool *keep, int *hosts, bool *te)
{
	struct {
		const char *name;
		struct http_slice *field;
	} simple[] = {
	        {"if-modified-since", &req->if_modified_since},
	        {"if-none-match", &req->if_none_match},
	        {"range", &req->range},
	        {"if-range", &req->if_range},
	        {"user-agent", &req->user_agent},
	        {"referer", &req->referer},
	};
	for (size_t k = 0; k < sizeof(simple) / sizeof(simple[0]); k++)
		if (http_slice_eq(n, simple[k].name)) {
			*simple[k].field = v;
			return 0;
		}
	if (http_slice_eq(n, "host")) {
		req->host = v;
		(*hosts)++;
	} else if (http_slice_eq(n, "content-length")) {
		return parse_length(v, &req->content_length);
	} else if (http_slice_eq(n, "transfer-encoding")) {
		if (*te || !http_slice_eq(v, "chunked")) /* gzip, chunked; twice: no */
			return -501;
		*te = req->chunked = true;
	} else if (http_slice_eq(n, "connection")) {
		parse_connection(v, close, keep);
	}
	return 0;
}

static int parse_header(struct http_slice l, struct http_slice *name, struct http_slice *value)
{
	size_t i = 0;
	while (i < l.n && is_tchar((unsigned char)l.p[i]))
		i++;
	if (i == 0 || i >= l.n || l.p[i] != ':') /* "Name :" and obs-fold land here */
		return -400;
	*name = (struct http_slice){l.p, i};
	i++;
	while (i < l.n && (l.p[i] == ' ' || l.p[i] == '\t'))
		i++;
	size_t e = l.n;
	while (e > i && (l.p[e - 1] == ' ' || l.p[e - 1] == '\t'))
		e--;
	for (size_t k = i; k < e; k++) {
		unsigned char c = (unsigned char)l.p[k];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -400;
	}
	*value = (struct http_slice){l.p + i, e - i};
	return 0;
}

static int parse_headers(const char *buf, size_t end, size_t pos, const struct http_limits *lim,
                         struct http_request *req)
{
	bool close = false, keep = false, te = false;
	int hosts = 0, err;
	struct http_slice l, name, value;
	for (;;) {
		if (next_line(buf, end, &pos, &l) < 0)
			return -400;
		if (l.n == 0)
			break;
		if ((err = parse_header(l, &name, &value)) < 0)
			return err;
		if (req->nheaders >= lim->max_headers)
			return -431;
		req->headers[req->nheaders++] = (struct http_header){name, value};
		if ((err = known_header(req, name, value, &close, &keep, &hosts, &te)) < 0)
			return err;
	}
	if (te && req->content_length >= 0)
		return -400;
	if (hosts > 1 || (req->minor >= 1 && hosts == 0))
		return -400;
	req->keep_alive = req->minor >= 1 ? !close : keep && !close;
	return 0;
}

int http_parse_request(const char *buf, size_t len, size_t *scanned, const struct http_limits *lim,
                       struct http_request *req)
{
	struct http_header *headers = req->headers;
	memset(req, 0, sizeof(*req));
	req->headers = headers;
	req->content_length = -1;
	/* RFC 9112 2.2: empty lines before the request line are ignored. */
	size_t skip = 0;
	while (skip < len && (buf[skip] == '\r' || buf[skip] == '\n'))
		skip++;
	if (skip == len)
		return 0;
	if (*scanned < skip)
		*scanned = skip;
	size_t end = find_end(buf, len, scanned);
	if (end == 0) {
		if (len < lim->max_header_bytes)
			return 0;
		return memchr(buf + skip, '\n', len - skip) ? -431 : -414;
	}
	if (end > lim->max_header_bytes)
		return memchr(buf + skip, '\n', lim->max_header_bytes - skip) ? -431 : -414;
	size_t pos = skip;
	struct http_slice l;
	int err;
	if (next_line(buf, end, &pos, &l) < 0)
		return -400;
	if ((err = parse_request_line(l, req)) < 0 || (err = split_target(req)) < 0 ||
	    (err = parse_headers(buf, end, pos, lim, req)) < 0)
		return err;
	return (int)end;
}

int http_parse_response(const char *buf, size_t len, size_t *scanned, const struct http_limits *lim,
                        struct http_response *res)
{
	struct http_header *headers = res->headers;
	memset(res, 0, sizeof(*res));
	res->headers = headers;
	res->content_length = -1;
	size_t end = find_end(buf, len, scanned);
	if (end == 0)
		return len < lim->max_header_bytes ? 0 : -502;
	size_t pos = 0;
	struct http_slice l, name, value;
	if (next_line(buf, end, &pos, &l) < 0 || l.n < 12 || memcmp(l.p, "HTTP/1.", 7) ||
	    (l.p[7] != '0' && l.p[7] != '1') || l.p[8] != ' ' || (l.n > 12 && l.p[12] != ' '))
		return -502;
	res->minor = l.p[7] - '0';
	for (int i = 9; i < 12; i++) {
		if (l.p[i] < '0' || l.p[i] > '9')
			return -502;
		res->status = res->status * 10 + (l.p[i] - '0');
	}
	bool close = false, keep = false, te = false;
	for (;;) {
		if (next_line(buf, end, &pos, &l) < 0 ||
		    (l.n && parse_header(l, &name, &value) < 0))
			return -502;
		if (l.n == 0)
			break;
		if (res->nheaders >= lim->max_headers)
			return -502;
		res->headers[res->nheaders++] = (struct http_header){name, value};
		if (http_slice_eq(name, "content-length") &&
		    parse_length(value, &res->content_length) < 0)
			return -502;
		if (http_slice_eq(name, "transfer-encoding")) {
			if (te || !http_slice_eq(value, "chunked"))
				return -502;
			te = res->chunked = true;
		}
		if (http_slice_eq(name, "connection"))
			parse_connection(value, &close, &keep);
	}
	if (te && res->content_length >= 0)
		return -502;
	res->keep_alive = res->minor >= 1 ? !close : keep && !close;
	return (int)end;
}
