/* Content-Type by file extension (a short table: the types a website serves). */
#include "http.h"

#include <string.h>

static const struct {
	const char *ext, *type;
} types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"md", "text/markdown; charset=utf-8"},
        {"xml", "application/xml"},
        {"csv", "text/csv; charset=utf-8"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"avif", "image/avif"},
        {"svg", "image/svg+xml"},
        {"ico", "image/vnd.microsoft.icon"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
        {"ttf", "font/ttf"},
        {"otf", "font/otf"},
        {"wasm", "application/wasm"},
        {"pdf", "application/pdf"},
        {"zip", "application/zip"},
        {"gz", "application/gzip"},
        {"tar", "application/x-tar"},
        {"mp3", "audio/mpeg"},
        {"ogg", "audio/ogg"},
        {"wav", "audio/wav"},
        {"mp4", "video/mp4"},
        {"webm", "video/webm"},
};

const char *http_mime_type(const char *path, size_t len)
{
	size_t i = len;
	while (i > 0 && path[i - 1] != '.' && path[i - 1] != '/')
		i--;
	if (i > 0 && path[i - 1] == '.' && len - i < 8) {
		char ext[8]; /* lower case, NUL-terminated: one strcmp per entry */
		size_t n = len - i;
		for (size_t k = 0; k < n; k++) /* ASCII only: not the locale's idea */
			ext[k] = (char)(path[i + k] >= 'A' && path[i + k] <= 'Z' ? path[i + k] + 32
			                                                         : path[i + k]);
		ext[n] = '\0';
		for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
			if (types[k].ext[0] == ext[0] && !strcmp(types[k].ext, ext))
				return types[k].type;
	}
	return "application/octet-stream";
}
