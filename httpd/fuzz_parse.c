/*
 * libFuzzer target for everything in baton-httpd that reads bytes from the
 * network without I/O: request and response heads, paths, ranges, dates,
 * chunked framing.  Besides crashes (ASan/UBSan), it checks the parser's
 * promises: a complete head's length is within the input and the limit, a
 * head fed in two pieces parses the same as whole, a normalized path starts
 * with '/' and holds no "..", no NUL and no "//".
 *   cmake -DBATON_FUZZ=ON -DCMAKE_C_COMPILER=clang ...; httpd/tests/fuzz.sh
 */
#include "http.h"

#include <stdlib.h>
#include <string.h>

static void must(int cond)
{
	if (!cond)
		abort();
}

static void path_checks(struct http_slice p)
{
	char out[512];
	long n = http_normalize_path(p, out, sizeof(out));
	if (n < 0)
		return;
	must(n > 0 && (size_t)n < sizeof(out) && out[0] == '/' && strlen(out) == (size_t)n);
	must(!strstr(out, "/../") && !strstr(out, "//") && !strstr(out, "/./"));
	must(!(n >= 3 && !strcmp(out + n - 3, "/..")));
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static struct http_header hdrs[32];
	const char *buf = (const char *)data;
	struct http_limits lim = {.max_header_bytes = 4096, .max_headers = 32};
	struct http_request req = {.headers = hdrs};
	size_t scanned = 0;
	int n = http_parse_request(buf, size, &scanned, &lim, &req);
	must(n <= (int)size && n <= (int)lim.max_header_bytes);
	if (n > 0) {
		/* Split anywhere: the incremental search must agree. */
		size_t cut = size / 2, s2 = 0;
		struct http_request again = {.headers = hdrs};
		if (http_parse_request(buf, cut, &s2, &lim, &again) == 0)
			must(http_parse_request(buf, size, &s2, &lim, &again) == n);
		path_checks(req.path);
		struct http_range r[8];
		if (req.range.n)
			must(http_parse_range(req.range, 1000, r, 8) <= 8);
		if (req.if_modified_since.n)
			http_parse_date(req.if_modified_since);
	}
	path_checks((struct http_slice){buf, size});
	struct http_response res = {.headers = hdrs};
	scanned = 0;
	must(http_parse_response(buf, size, &scanned, &lim, &res) <= (int)size);
	struct http_chunked ch = {0};
	long used = http_chunked_scan(&ch, buf, size);
	must(used <= (long)size);
	return 0;
}
