/*
 * baton-httpd: declarations shared by the server's files.
 *
 * The model (docs/httpd.md): one kqueue, T threads each waiting in kevent().
 * A connection's knotes (the socket's READ and WRITE, an idle timer, in
 * proxy mode the upstream socket's READ and WRITE) form one EV_SERIAL group,
 * so the thread that gets any of them owns the whole connection until it
 * releases the group with an EV_ENABLE in its next kevent() call.  That is
 * why struct http_conn has no lock: only its owner touches it.
 */
#ifndef HTTPD_HTTP_H
#define HTTPD_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/event.h>
#include <sys/types.h>
#include <time.h>

/* ---- configuration (set by main before the threads start, then read-only) ---- */

struct http_proxy_route {
	char *prefix; /* path prefix, e.g. "/api/" */
	size_t prefix_len;
	char *host, *port;     /* upstream, as given */
	struct addrinfo *addr; /* resolved once at start */
	char hostport[300];    /* "host:port", sent as Host when the client sent none */
};

struct http_config {
	const char *addr, *port, *docroot;
	int threads;
	const char *access_log, *error_log; /* NULL: off / stderr */
	bool combined, reuseport, listing, follow_symlinks;
	int max_conns, idle_timeout_ms, header_timeout_ms, upstream_timeout_ms;
	size_t max_header_bytes;
	int max_headers;
	struct http_proxy_route *routes;
	int nroutes;
	int drain_timeout_ms;
};

extern struct http_config http_cfg;
extern int http_kq;     /* the one kqueue */
extern int http_rootfd; /* O_PATH descriptor of the docroot */

/* ---- parser (parse.c): no I/O, strict, limits from the caller ---- */

struct http_slice {
	const char *p;
	size_t n;
};

enum http_method {
	HTTP_GET,
	HTTP_HEAD,
	HTTP_POST,
	HTTP_PUT,
	HTTP_DELETE,
	HTTP_OPTIONS,
	HTTP_PATCH,
	HTTP_OTHER, /* a valid token we do not know: 501 for files, passed on by the proxy */
};

struct http_header {
	struct http_slice name, value;
};

struct http_request {
	enum http_method method;
	struct http_slice method_name, target, path, query; /* path: target without the query */
	int minor;                                          /* HTTP/1.minor */
	bool keep_alive;        /* after Connection and the version's default */
	bool chunked;           /* Transfer-Encoding: chunked */
	int64_t content_length; /* -1: none */
	struct http_slice host, if_modified_since, if_none_match, range, if_range, user_agent,
	        referer;
	struct http_header *headers; /* caller's array of max_headers entries */
	int nheaders;
};

struct http_limits {
	size_t max_header_bytes;
	int max_headers;
};

/*
 * Parses the request head at buf[0, len).  Returns its length (> 0) once the
 * empty line has been seen, 0 if more bytes are needed, or -status for a
 * request to refuse (400, 414, 431, 501, 505).  *scanned keeps where the
 * search for the end stopped, so a head arriving byte by byte costs O(n).
 */
int http_parse_request(const char *buf, size_t len, size_t *scanned, const struct http_limits *lim,
                       struct http_request *req);
struct http_response {
	int status, minor;
	int64_t content_length; /* -1: none */
	bool chunked, keep_alive;
	struct http_header *headers; /* caller's array of max_headers entries */
	int nheaders;
};
/* An upstream's response head, as http_parse_request: > 0, 0, or -502. */
int http_parse_response(const char *buf, size_t len, size_t *scanned, const struct http_limits *lim,
                        struct http_response *res);
/* Case-insensitive comparison of a slice with a NUL-terminated word. */
bool http_slice_eq(struct http_slice s, const char *word);
/* RFC 9110 HTTP-date (IMF-fixdate, RFC 850, asctime) -> time_t, or -1. */
time_t http_parse_date(struct http_slice s);
/* IMF-fixdate of t into out[30] (29 chars + NUL). */
void http_format_date(time_t t, char *out);
/* Percent-decodes path into out (size outsz) and removes dot segments.  Returns
 * the length, or -1 for a path to refuse (%00, bad escape, above the root). */
long http_normalize_path(struct http_slice path, char *out, size_t outsz);

/* Range: "bytes=a-b,c-,-n" against a size.  Fills r[max] with [start, end]
 * inclusive; returns the count, 0 if none is satisfiable (416), or -1 if the
 * header is to be ignored (bad syntax, other unit, too many ranges: 200). */
struct http_range {
	int64_t start, end;
};
int http_parse_range(struct http_slice s, int64_t size, struct http_range *r, int max);

/* Chunked body framing (proxy): consumes bytes, says where the body ends. */
struct http_chunked {
	int state;
	uint64_t left; /* bytes of chunk data still to pass */
};
/* Scans buf[0,len): returns bytes that belong to the body (<= len; the
 * body ended if st->state == HTTP_CHUNKED_DONE), or -1 on bad framing. */
long http_chunked_scan(struct http_chunked *st, const char *buf, size_t len);
#define HTTP_CHUNKED_DONE 100

/* ---- response heads (status.c) ---- */
const char *http_reason(int status);

/* ---- MIME types (mime.c) ---- */
const char *http_mime_type(const char *path, size_t len);

/* ---- logs (log.c) ---- */
int http_log_open(void); /* 0 or -errno */
int http_log_reopen(void);
void http_error_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
struct http_access {
	const char *peer;
	struct http_slice method, target, referer, user_agent;
	int minor, status;
	int64_t bytes;
};
void http_access_log(const struct http_access *a);
bool http_access_log_on(void);
/* A line held until its response is done: bytes = body bytes actually sent
 * (sent - head_bytes, at least 0), as nginx's $body_bytes_sent.  hold()
 * copies a's fields (NULL: out of memory, no line); done() writes and frees. */
struct http_access_held {
	struct http_access a; /* a.status: set by the owner when known */
	int64_t head_bytes;   /* response heads (interim ones too): not body */
	int64_t sent;         /* bytes written to the client socket */
	char data[];          /* the copies: peer, method, target, referer, user agent */
};
struct http_access_held *http_access_hold(const struct http_access *a, int64_t head_bytes);
void http_access_sent(struct http_access_held *h, int64_t n); /* n bytes went to the socket */
void http_access_done(struct http_access_held *h);

#endif /* HTTPD_HTTP_H */
