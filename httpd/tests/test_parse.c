/*
 * The request parser, path normalization, ranges and chunked framing against
 * tables of valid and invalid input (RFC 9110/9112), with no server and no I/O.
 */
#include "harness.h"
#include "http.h"

static struct http_header hdrs[8];
static const struct http_limits lim = {.max_header_bytes = 512, .max_headers = 8};

static int parse(const char *s, struct http_request *req)
{
	size_t scanned = 0;
	req->headers = hdrs;
	return http_parse_request(s, strlen(s), &scanned, &lim, req);
}

static const struct {
	const char *req;
	int want; /* > 0: complete (the head's length is checked to be the whole
	           * string); 0 incomplete; < 0 the refusal */
} table[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"GET / HTTP/1.0\r\n\r\n", 1},                /* 1.0: no Host needed */
        {"GET / HTTP/1.1\nHost: a\n\n", 1},           /* bare LF lines */
        {"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 1}, /* leading CRLF */
        {"GET /a?b=c HTTP/1.1\r\nHost: a\r\nX-A:  v  \r\n\r\n", 1},
        {"GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 1}, /* absolute-form */
        {"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nHost: a\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: a\r\n\r", 0},
        {"GET / HT", 0},
        {"GET / HTTP/1.1\r\n\r\n", -400},                       /* no Host */
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", -400}, /* two Hosts */
        {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", -400},           /* two spaces */
        {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", -400},
        {"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", -400}, /* control in target */
        {"GET a HTTP/1.1\r\nHost: a\r\n\r\n", -400},     /* not origin-form */
        {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", -400},
        {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", -400}, /* method not a token */
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", -505},
        {"GET / HTTP/1.x\r\nHost: a\r\n\r\n", -400},
        {"GET / FOO/1.1\r\nHost: a\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", -400},           /* space before colon */
        {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", -400}, /* obs-fold */
        {"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", -400},         /* bare CR */
        {"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", -400},
        {"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 1},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", -400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
         -400}, /* smuggling shape */
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", -501},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: "
         "8\r\n\r\n",
         -431}, /* 9 fields > 8 */
        {"GET /#f HTTP/1.1\r\nHost: a\r\n\r\n", -400},
};

static void table_of_requests(void)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		struct http_request req;
		int got = parse(table[i].req, &req);
		int want = table[i].want > 0 ? (int)strlen(table[i].req) : table[i].want;
		if (got != want) {
			fprintf(stderr, "request %zu: got %d, want %d\n", i, got, want);
			exit(1);
		}
	}
}

static void fields_are_found(void)
{
	struct http_request req;
	CHECK(parse("HEAD /a/b?x=1 HTTP/1.1\r\nhost: h\r\nRANGE: bytes=0-1\r\n"
	            "Connection: keep-alive, Close\r\nIf-None-Match: \"x\"\r\n\r\n",
	            &req) > 0);
	CHECK_EQ(req.method, HTTP_HEAD);
	CHECK(req.path.n == 4 && !memcmp(req.path.p, "/a/b", 4));
	CHECK(req.query.n == 4 && !memcmp(req.query.p, "?x=1", 4));
	CHECK(http_slice_eq(req.range, "bytes=0-1"));
	CHECK(http_slice_eq(req.if_none_match, "\"x\""));
	CHECK(!req.keep_alive); /* close wins */
	CHECK_EQ(req.nheaders, 4);
	CHECK(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &req) > 0);
	CHECK(req.keep_alive);
	CHECK(parse("GET / HTTP/1.0\r\n\r\n", &req) > 0);
	CHECK(!req.keep_alive);
	CHECK(parse("BREW / HTTP/1.1\r\nHost: h\r\n\r\n", &req) > 0);
	CHECK_EQ(req.method, HTTP_OTHER);
}

static void long_heads_are_refused(void)
{
	char buf[600];
	struct http_request req;
	/* A request line longer than the limit: 414; a long field: 431. */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "GET /", 5);
	buf[sizeof(buf) - 1] = '\0';
	CHECK_EQ(parse(buf, &req), -414);
	memcpy(buf, "GET / HTTP/1.1\r\nX: ", 19);
	CHECK_EQ(parse(buf, &req), -431);
	/* Bytes arriving one at a time: each call continues the search. */
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t scanned = 0;
	req.headers = hdrs;
	for (size_t n = 1; n < strlen(s); n++)
		CHECK_EQ(http_parse_request(s, n, &scanned, &lim, &req), 0);
	CHECK_EQ(http_parse_request(s, strlen(s), &scanned, &lim, &req), (int)strlen(s));
}

static void paths_stay_under_the_root(void)
{
	static const struct {
		const char *in, *out; /* out NULL: refused */
	} paths[] = {
	        {"/", "/"},
	        {"/a/b", "/a/b"},
	        {"/a/./b", "/a/b"},
	        {"/a/../b", "/b"},
	        {"/a//b", "/a/b"},
	        {"/a/b/", "/a/b/"},
	        {"/a/..", "/"},
	        {"/%41%2e", "/A."},
	        {"/..", NULL},
	        {"/../etc/passwd", NULL},
	        {"/a/../../etc", NULL},
	        {"/%2e%2e/etc/passwd", NULL},
	        {"/%2E%2E%2fetc", NULL},
	        {"/a%00b", NULL},
	        {"/a%", NULL},
	        {"/a%4", NULL},
	        {"/a%zz", NULL},
	        {"a", NULL},
	};
	char out[64];
	CHECK_EQ(http_normalize_path((struct http_slice){"/a\0b", 4}, out, sizeof(out)), -1);
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct http_slice s = {paths[i].in, strlen(paths[i].in)};
		long n = http_normalize_path(s, out, sizeof(out));
		if (paths[i].out ? n < 0 || strcmp(out, paths[i].out) : n >= 0) {
			fprintf(stderr, "path %s: got %ld %s\n", paths[i].in, n, n >= 0 ? out : "");
			exit(1);
		}
	}
}

static void ranges(void)
{
	struct http_range r[4];
#define RANGE(s) http_parse_range((struct http_slice){s, strlen(s)}, 100, r, 4)
	CHECK_EQ(RANGE("bytes=0-9"), 1);
	CHECK(r[0].start == 0 && r[0].end == 9);
	CHECK_EQ(RANGE("bytes=90-"), 1);
	CHECK(r[0].start == 90 && r[0].end == 99);
	CHECK_EQ(RANGE("bytes=-10"), 1);
	CHECK(r[0].start == 90 && r[0].end == 99);
	CHECK_EQ(RANGE("bytes=-1000"), 1);
	CHECK(r[0].start == 0);
	CHECK_EQ(RANGE("bytes=50-1000"), 1);
	CHECK(r[0].end == 99);
	CHECK_EQ(RANGE("bytes=0-0, 5-6"), 2);
	CHECK_EQ(RANGE("bytes=100-"), 0); /* 416 */
	CHECK_EQ(RANGE("bytes=200-300"), 0);
	CHECK_EQ(RANGE("bytes=0-0,200-"), 1); /* the satisfiable ones */
	CHECK_EQ(RANGE("bytes=9-1"), -1);     /* ignored: 200 */
	CHECK_EQ(RANGE("bytes=x"), -1);
	CHECK_EQ(RANGE("items=0-1"), -1);
	CHECK_EQ(RANGE("bytes=-"), -1);
	CHECK_EQ(RANGE("bytes=1-2,3-4,5-6,7-8,9-10"), -1); /* more than max */
}

static void chunked_framing(void)
{
	const char *body =
	        "5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: x\r\n\r\nNEXT";
	for (size_t step = 1; step <= strlen(body); step++) {
		struct http_chunked st = {0};
		size_t off = 0, len = strlen(body);
		while (off < len && st.state != HTTP_CHUNKED_DONE) {
			size_t n = len - off < step ? len - off : step;
			long used = http_chunked_scan(&st, body + off, n);
			CHECK(used >= 0);
			off += (size_t)used;
		}
		CHECK_EQ(st.state, HTTP_CHUNKED_DONE);
		CHECK_EQ(off, len - 4); /* "NEXT" is the next request */
	}
	const char *bad[] = {"x\r\n", "5\r\nhelloXX", "5\nhello\r\n", "\r\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_chunked st = {0};
		CHECK_EQ(http_chunked_scan(&st, bad[i], strlen(bad[i])), -1);
	}
}

static void dates(void)
{
	const char *forms[] = {"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
	                       "Sun Nov  6 08:49:37 1994"};
	for (int i = 0; i < 3; i++)
		CHECK_EQ(http_parse_date((struct http_slice){forms[i], strlen(forms[i])}),
		         784111777);
	char out[30];
	http_format_date(784111777, out);
	CHECK(!strcmp(out, forms[0]));
	CHECK_EQ(http_parse_date((struct http_slice){"yesterday", 9}), -1);
	CHECK_EQ(http_parse_date((struct http_slice){"Sun, 06 Nov 1994 08:49:37 GMTX", 30}), -1);
}

int main(void)
{
	RUN(table_of_requests);
	RUN(fields_are_found);
	RUN(long_heads_are_refused);
	RUN(paths_stay_under_the_root);
	RUN(ranges);
	RUN(chunked_framing);
	RUN(dates);
	return 0;
}
