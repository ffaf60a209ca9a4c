/*
 * Byte ranges (RFC 9110 14) and chunked framing (RFC 9112 7.1): the pieces of
 * HTTP that count bytes, kept apart from I/O so the fuzzer reaches them.
 */
#include "http.h"

#include <string.h>

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Digits at s[*i]: the number, or -1 if none or too long. */
static int64_t number(struct http_slice s, size_t *i)
{
	int64_t v = 0;
	size_t start = *i;
	while (*i < s.n && is_digit(s.p[*i])) {
		if (*i - start >= 18)
			return -1;
		v = v * 10 + (s.p[(*i)++] - '0');
	}
	return *i == start ? -1 : v;
}

/* One "a-b", "a-" or "-n": 1 if satisfiable (sets *r), 0 if not, -1 if bad. */
static int one_range(struct http_slice s, size_t *i, int64_t size, struct http_range *r)
{
	int64_t a = -1, b = -1;
	if (*i < s.n && s.p[*i] != '-' && (a = number(s, i)) < 0)
		return -1;
	if (*i >= s.n || s.p[(*i)++] != '-')
		return -1;
	if (*i < s.n && is_digit(s.p[*i]) && (b = number(s, i)) < 0)
		return -1;
	if (a < 0 && b < 0)
		return -1;
	if (a < 0) { /* suffix: the last b bytes */
		if (b == 0 || size == 0)
			return 0;
		r->start = b >= size ? 0 : size - b;
		r->end = size - 1;
		return 1;
	}
	if (b >= 0 && b < a)
		return -1;
	if (a >= size)
		return 0;
	r->start = a;
	r->end = b < 0 || b >= size ? size - 1 : b;
	return 1;
}

int http_parse_range(struct http_slice s, int64_t size, struct http_range *r, int max)
{
	size_t i = 6;
	int n = 0, specs = 0;
	if (s.n < 7 || memcmp(s.p, "bytes=", 6))
		return -1;
	for (;;) {
		while (i < s.n && (s.p[i] == ' ' || s.p[i] == '\t'))
			i++;
		if (++specs > max)
			return -1; /* many small ranges are a denial of service: send it all */
		int ok = one_range(s, &i, size, &r[n]);
		if (ok < 0)
			return -1;
		n += ok;
		while (i < s.n && (s.p[i] == ' ' || s.p[i] == '\t'))
			i++;
		if (i == s.n)
			return n;
		if (s.p[i++] != ',')
			return -1;
	}
}

enum {
	CH_SIZE,      /* the first hex digit of the chunk size */
	CH_SIZE_MORE, /* further digits, or the end of the size */
	CH_EXT,       /* ";ext" up to the CRLF */
	CH_SIZE_LF,   /* CR seen after the size line */
	CH_DATA,
	CH_DATA_CR, /* the CRLF after the data */
	CH_DATA_LF,
	CH_TRAILER,      /* at the start of a trailer line (or the final CRLF) */
	CH_TRAILER_LINE, /* inside a trailer line */
	CH_TRAILER_LF,
	CH_END_LF,
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One byte of framing outside chunk data: 0 or -1. */
static int framing_byte(struct http_chunked *st, char c)
{
	int h;
	switch (st->state) {
	case CH_SIZE:
	case CH_SIZE_MORE:
		if ((h = hexval(c)) >= 0) {
			if (st->left >> 56)
				return -1;
			st->left = st->left * 16 + (uint64_t)h;
			st->state = CH_SIZE_MORE;
			return 0;
		}
		if (st->state == CH_SIZE)
			return -1;
		if (c == ';' || c == ' ' || c == '\t')
			st->state = CH_EXT;
		else if (c == '\r')
			st->state = CH_SIZE_LF;
		else
			return -1;
		return 0;
	case CH_EXT:
		if (c == '\r')
			st->state = CH_SIZE_LF;
		return 0;
	case CH_SIZE_LF:
		if (c != '\n')
			return -1;
		st->state = st->left ? CH_DATA : CH_TRAILER;
		return 0;
	case CH_DATA_CR:
		st->state = CH_DATA_LF;
		return c == '\r' ? 0 : -1;
	case CH_DATA_LF:
		st->state = CH_SIZE;
		return c == '\n' ? 0 : -1;
	case CH_TRAILER:
		st->state = c == '\r' ? CH_END_LF : CH_TRAILER_LINE;
		return 0;
	case CH_TRAILER_LINE:
		if (c == '\r')
			st->state = CH_TRAILER_LF;
		return 0;
	case CH_TRAILER_LF:
		st->state = CH_TRAILER;
		return c == '\n' ? 0 : -1;
	case CH_END_LF:
		st->state = HTTP_CHUNKED_DONE;
		return c == '\n' ? 0 : -1;
	}
	return -1;
}

long http_chunked_scan(struct http_chunked *st, const char *buf, size_t len)
{
	size_t i = 0;
	while (i < len && st->state != HTTP_CHUNKED_DONE) {
		if (st->state == CH_DATA) {
			size_t take = st->left < len - i ? (size_t)st->left : len - i;
			i += take;
			st->left -= take;
			if (st->left == 0)
				st->state = CH_DATA_CR;
			continue;
		}
		char c = buf[i++];
		if (framing_byte(st, c) < 0)
			return -1;
	}
	return (long)i;
}
