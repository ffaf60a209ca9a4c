/*
 * A client connection and the per-thread state of a worker.
 *
 * struct http_conn has no lock and no reference count: its knotes form one
 * EV_SERIAL group (group id = the connection's id), so only the thread that
 * holds the group touches it.  That thread may free it: nothing else can be
 * returned a member before the holder's next kevent() call.
 */
#ifndef HTTPD_CONN_H
#define HTTPD_CONN_H

#include "http.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/uio.h>

enum http_kind { HTTP_KIND_LISTENER = 1, HTTP_KIND_CONN };

/* Timer idents: below HTTP_CONN_ID0 the server's own, from it on a connection's id. */
#define HTTP_TIMER_SWEEP  1 /* graceful stop: force idle connections, count */
#define HTTP_TIMER_ACCEPT 2 /* + listener index: accepting resumes (EMFILE) */
#define HTTP_CONN_ID0     (1ULL << 32)
#define HTTP_STOP_EVENT   1 /* EVFILT_USER: every thread exits */

#define HTTP_MAX_RANGES 16
#define HTTP_MAX_SEGS   (2 * HTTP_MAX_RANGES + 2)

struct http_listener {
	enum http_kind kind;
	int fd, index;
};

/* One piece of a response: bytes of out.buf, or of the open file. */
struct http_seg {
	int64_t off, len;
	bool file;
};

struct http_out {
	char *buf; /* NULL, the thread's buffer (within a turn) or malloc'd */
	size_t len, cap;
	struct http_seg *seg;         /* seg_small, or HTTP_MAX_SEGS malloc'd (multipart) */
	struct http_seg seg_small[3]; /* a head, a file (or body), a tail: the usual case */
	int nseg, cur;
	int file; /* -1: none */
};

#define HTTP_OUT_THREAD_BUF 4096

struct http_proxy_conn; /* proxy.c */

struct http_conn {
	enum http_kind kind;
	int fd;
	uint64_t id;   /* the timer's ident and the serial group's id */
	char peer[48]; /* client address as text, made at first use: http_conn_peer() */
	unsigned char peer_addr[16];
	bool peer_v6;
	char *rbuf;                            /* received bytes; grows up to max_header_bytes */
	size_t rcap, rlen;                     /* rbuf[0, rlen) unread by the parser */
	size_t scanned;                        /* parser: how far the head's end was searched */
	int64_t last_active_ms, head_start_ms; /* head_start: 0 when no head is arriving */
	bool registered;                       /* READ and WRITE knotes exist */
	bool read_on;     /* READ enabled: waiting for a request (or a proxied body) */
	bool write_on;    /* WRITE enabled: a response is blocked */
	bool proxying;    /* a request is with the upstream (c->px) */
	bool timer_on;    /* the idle timer knote exists (a forced oneshot removes it) */
	bool close_after; /* close once the current response is out */
	bool draining;    /* the server is stopping: this is the last response */
	bool linger;      /* input may be left unread: shut down and drain before close */
	bool lingering;   /* doing that since linger_start_ms */
	bool over_limit;  /* accepted over --max-conns: gets a 503 */
	bool readable;    /* this turn: the client's READ fired (or it was just accepted) */
	int64_t linger_start_ms;
	int64_t timer_at_ms; /* when the timer fires next (0: it just fired) */
	struct http_out out;
	struct http_proxy_conn *px;   /* proxy mode: upstream side, or NULL */
	struct http_access_held *log; /* the response's access-log line until it is sent */
};

/* Per thread: the changes for the next kevent() call and scratch space. */
struct http_worker {
	struct kevent ch[256];
	int nch;
	/* New connections whose knotes are among ch[]: published to the
	 * stopper's registry only once ch[] was applied (http_conn_published). */
	struct {
		int fd;
		uint64_t id;
	} pub[256];
	int npub;
	struct http_header *headers; /* max_headers entries */
	char path[4096];             /* a normalized request path */
	char scratch[16384];         /* proxy: a response head being rewritten */
	char date[30];               /* the Date header, recomputed once a second */
	time_t date_t;
};

extern atomic_bool http_stopping;
extern atomic_int http_live_conns;

void http_push(struct http_worker *w, const struct kevent *kev); /* queue a change */
void http_flush(struct http_worker *w);                          /* apply the queued changes now */
void http_conn_published(struct http_worker *w);                 /* ch[] was applied: see pub[] */
void http_member(struct kevent *kev, struct http_conn *c, uintptr_t ident, short filter,
                 unsigned short flags, int64_t data, unsigned fflags);
int64_t http_now_ms(void);
/* How much earlier than its deadline a connection's timer acts (queue lag). */
int64_t http_timer_slack_ms(void);
const char *http_date_now(struct http_worker *w);

/* conn.c */
struct http_conn *http_conn_new(int fd, const struct sockaddr *sa);
void http_conn_start(struct http_worker *w, struct http_conn *c); /* after accept */
const char *http_conn_peer(struct http_conn *c);                  /* for the log, X-Forwarded-For */
void http_conn_event(struct http_worker *w, struct http_conn *c, bool timer, bool forced,
                     bool readable);
void http_conn_force_all(void); /* graceful stop: hand each connection its timer */
void http_conn_registry_init(int maxfd);

/* response building (out.c) */
void http_out_reset(struct http_out *o);
/* Before the turn ends: a response still to send leaves the thread's buffer. */
int http_out_detach(struct http_out *o);
int http_out_printf(struct http_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int http_out_append(struct http_out *o, const char *p, size_t n);
int http_out_strs(struct http_out *o, const char *const *strs, int n); /* n <= 16 */
const char *http_dec(char *buf, int64_t v);                            /* buf: 21+ bytes */
void http_out_mem_seg(struct http_out *o, size_t from); /* out.buf[from, len) is a segment */
int http_out_reserve_segs(struct http_out *o, int n);   /* room for n segments (<= MAX) */
void http_out_file_seg(struct http_out *o, int64_t off, int64_t len);
/* Starts a response head: status line, Server, Date, Connection. */
int http_out_head(struct http_worker *w, struct http_conn *c, const struct http_request *req,
                  int status);
/* A whole short response with an HTML body (errors, redirects). */
int http_out_simple(struct http_worker *w, struct http_conn *c, const struct http_request *req,
                    int status, const char *extra_headers);

/* static.c: fills c->out for req; returns the status, *bytes the body length */
int http_static_respond(struct http_worker *w, struct http_conn *c, struct http_request *req,
                        int64_t *bytes);

void http_conn_knotes(struct http_worker *w, struct http_conn *c, bool want_read, bool want_write);
/* The response now in c->out (head first) gets an access-log line, written
 * once it is sent or the connection ends (req NULL: an unreadable request). */
void http_log_response(struct http_conn *c, const struct http_request *req, int status);

/* proxy.c */
const struct http_proxy_route *http_proxy_route_for(struct http_worker *w,
                                                    const struct http_request *req);
/* 0: proxying (c->proxying); > 0: a status to answer with instead */
int http_proxy_start(struct http_worker *w, struct http_conn *c, struct http_request *req,
                     const struct http_proxy_route *rt, size_t head_len);
/* Pumps both ways: 1 still proxying (changes queued, release included), 0
 * the response is done (c->out may hold a 502/504), -1 tear down. */
int http_proxy_event(struct http_worker *w, struct http_conn *c);
/* The idle timer while proxying: -1 tear down, 0 carry on (maybe a 504 now in c->out). */
int http_proxy_timer(struct http_worker *w, struct http_conn *c);
void http_proxy_free(struct http_worker *w, struct http_conn *c);
/* When http_proxy_timer() would act (ms, http_now_ms clock). */
int64_t http_proxy_deadline(const struct http_conn *c);

#endif /* HTTPD_CONN_H */
