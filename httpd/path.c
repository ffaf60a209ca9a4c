/*
 * Request paths to file names: percent-decoding and dot segments.
 *
 * The first of two walls around the docroot: ".." may not climb above "/"
 * (400, not a silent clamp, so a probe is seen for what it is), and %00 or a
 * malformed escape is 400.  The second wall is openat2(RESOLVE_BENEATH) in
 * static.c, which also catches symbolic links.
 */
#include "http.h"

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Drops the last segment of out[0, *n) (after "/a/b/": "/a/"); -1 at the root. */
static int pop_segment(char *out, size_t *n)
{
	if (*n <= 1)
		return -1;
	size_t i = *n - 1; /* out[i] == '/' */
	while (i > 0 && out[i - 1] != '/')
		i--;
	*n = i;
	return 0;
}

long http_normalize_path(struct http_slice path, char *out, size_t outsz)
{
	size_t n = 0;
	if (path.n == 0 || path.p[0] != '/' || outsz < 2)
		return -1;
	for (size_t i = 0; i < path.n; i++) {
		char c = path.p[i];
		if (c == '%') {
			int h, l;
			if (i + 2 >= path.n)
				return -1;
			if ((h = hex(path.p[i + 1])) < 0 || (l = hex(path.p[i + 2])) < 0)
				return -1;
			c = (char)(h * 16 + l);
			i += 2;
		}
		if (c == '\0') /* %00, or a raw NUL from a caller that did not refuse it */
			return -1;
		if (n + 1 >= outsz)
			return -1;
		out[n++] = c;
		/* A segment just ended (or the path does): look at it. */
		bool end = i + 1 == path.n;
		if (c != '/' && !end)
			continue;
		size_t seg_end = c == '/' ? n - 1 : n;
		size_t s = seg_end;
		while (s > 0 && out[s - 1] != '/')
			s--;
		size_t len = seg_end - s;
		if (len == 1 && out[s] == '.') {
			n = s; /* "/a/./" -> "/a/" */
		} else if (len == 2 && out[s] == '.' && out[s + 1] == '.') {
			n = s;
			if (pop_segment(out, &n) < 0)
				return -1;
		} else if (len == 0 && c == '/' && n > 1) {
			n--; /* "//" -> "/" */
		}
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = '\0';
	return (long)n;
}
