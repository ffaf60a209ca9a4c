/*
 * Static files: GET and HEAD under the docroot.
 *
 * Files are opened with openat2() relative to the docroot's descriptor with
 * RESOLVE_BENEATH: no "..", absolute symbolic link or link climbing out can
 * leave it, whatever path.c let through (--follow-symlinks drops that for
 * links only; ".." is refused by path.c either way).  RESOLVE_NO_MAGICLINKS
 * keeps /proc-style links out.  Kernels before 5.6 have no openat2: then
 * plain openat with O_NOFOLLOW on the last component.
 */
#include "conn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int open_beneath(int dirfd, const char *rel)
{
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY};
	how.resolve = RESOLVE_NO_MAGICLINKS | (http_cfg.follow_symlinks ? 0 : RESOLVE_BENEATH);
	int fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS)
		fd = openat(dirfd, rel,
		            (int)how.flags | (http_cfg.follow_symlinks ? 0 : O_NOFOLLOW));
	return fd < 0 ? -errno : fd;
}

static int status_of_errno(int err)
{
	return err == -ENOENT || err == -ENOTDIR || err == -ENAMETOOLONG ? 404 : 403;
}

/* One entity-tag list (If-None-Match) against ours; weak comparison. */
static bool etag_listed(struct http_slice list, const char *etag)
{
	size_t elen = strlen(etag), i = 0;
	while (i < list.n) {
		while (i < list.n && (list.p[i] == ' ' || list.p[i] == '\t' || list.p[i] == ','))
			i++;
		if (i < list.n && list.p[i] == '*')
			return true;
		if (i + 2 <= list.n && !memcmp(list.p + i, "W/", 2))
			i += 2;
		size_t s = i;
		while (i < list.n && list.p[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (list.p[e - 1] == ' ' || list.p[e - 1] == '\t'))
			e--;
		if (e - s == elen && !memcmp(list.p + s, etag, elen))
			return true;
	}
	return false;
}

struct file_info {
	const char *type;
	char etag[48], lastmod[30];
	int64_t size;
	time_t mtime;
};

/* 304 if the client's copy is current (RFC 9110 13.2.2): INM first, else IMS. */
static bool not_modified(const struct http_request *req, const struct file_info *fi)
{
	if (req->if_none_match.n)
		return etag_listed(req->if_none_match, fi->etag);
	if (req->if_modified_since.n) {
		time_t ims = http_parse_date(req->if_modified_since);
		return ims >= 0 && fi->mtime <= ims;
	}
	return false;
}

/* If-Range: the range applies only to the representation the client has. */
static bool if_range_holds(const struct http_request *req, const struct file_info *fi)
{
	struct http_slice v = req->if_range;
	if (v.n == 0)
		return true;
	if (v.p[0] == '"')
		return v.n == strlen(fi->etag) && !memcmp(v.p, fi->etag, v.n);
	if (v.n > 2 && !memcmp(v.p, "W/", 2))
		return false;
	return http_parse_date(v) == fi->mtime;
}

static int file_head(struct http_worker *w, struct http_conn *c, const struct http_request *req,
                     int status, const struct file_info *fi)
{
	int err = http_out_head(w, c, req, status);
	if (!err)
		err = http_out_strs(&c->out,
		                    (const char *[]){"Last-Modified: ", fi->lastmod, "\r\nETag: ",
		                                     fi->etag, "\r\nAccept-Ranges: bytes\r\n"},
		                    5);
	return err;
}

/* 206 with multipart/byteranges: parts built first, the head after them. */
static int multipart(struct http_worker *w, struct http_conn *c, const struct http_request *req,
                     const struct file_info *fi, const struct http_range *r, int n, int64_t *bytes)
{
	struct http_out *o = &c->out;
	char boundary[40];
	snprintf(boundary, sizeof(boundary), "baton%016llx",
	         (unsigned long long)(c->id * 0x9E3779B97F4A7C15ULL));
	int64_t part[HTTP_MAX_RANGES][2], total = 0;
	int err = http_out_reserve_segs(o, 2 * n + 2);
	for (int i = 0; i < n && !err; i++) {
		part[i][0] = (int64_t)o->len;
		err = http_out_printf(o,
		                      "\r\n--%s\r\nContent-Type: %s\r\nContent-Range: bytes "
		                      "%lld-%lld/%lld\r\n\r\n",
		                      boundary, fi->type, (long long)r[i].start,
		                      (long long)r[i].end, (long long)fi->size);
		part[i][1] = (int64_t)o->len - part[i][0];
		total += part[i][1] + r[i].end - r[i].start + 1;
	}
	size_t tail = o->len;
	if (!err)
		err = http_out_printf(o, "\r\n--%s--\r\n", boundary);
	total += (int64_t)(o->len - tail);
	size_t head = o->len;
	if (!err)
		err = file_head(w, c, req, 206, fi);
	if (!err)
		err = http_out_printf(o,
		                      "Content-Type: multipart/byteranges; "
		                      "boundary=%s\r\nContent-Length: %lld\r\n\r\n",
		                      boundary, (long long)total);
	if (err)
		return err;
	http_out_mem_seg(o, head);
	*bytes = total;
	if (req->method == HTTP_HEAD)
		return 206;
	for (int i = 0; i < n; i++) {
		o->seg[o->nseg++] = (struct http_seg){part[i][0], part[i][1], false};
		http_out_file_seg(o, r[i].start, r[i].end - r[i].start + 1);
	}
	o->seg[o->nseg++] = (struct http_seg){(int64_t)tail, (int64_t)(head - tail), false};
	return 206;
}

/* The ETag and Last-Modified of a file depend only on its mtime and size:
 * each thread keeps the last ones it formatted (by inode), so serving the
 * same file again costs no snprintf() and no gmtime_r(). */
#define VALIDATOR_SLOTS 64
struct validator {
	struct timespec mtim;
	int64_t size;
	ino_t ino;
	dev_t dev;
	char etag[48], lastmod[30];
};
static _Thread_local struct validator validator_cache[VALIDATOR_SLOTS];

static void validators(const struct stat *st, struct file_info *fi)
{
	struct validator *v = &validator_cache[st->st_ino % VALIDATOR_SLOTS];
	if (v->lastmod[0] && v->ino == st->st_ino && v->dev == st->st_dev &&
	    v->size == st->st_size && v->mtim.tv_sec == st->st_mtim.tv_sec &&
	    v->mtim.tv_nsec == st->st_mtim.tv_nsec) {
		memcpy(fi->etag, v->etag, sizeof(fi->etag));
		memcpy(fi->lastmod, v->lastmod, sizeof(fi->lastmod));
		return;
	}
	snprintf(fi->etag, sizeof(fi->etag), "\"%llx-%llx\"",
	         (unsigned long long)st->st_mtim.tv_sec * 1000000000ULL +
	                 (unsigned long long)st->st_mtim.tv_nsec,
	         (unsigned long long)st->st_size);
	http_format_date(st->st_mtim.tv_sec, fi->lastmod);
	v->mtim = st->st_mtim;
	v->size = st->st_size;
	v->ino = st->st_ino;
	v->dev = st->st_dev;
	memcpy(v->etag, fi->etag, sizeof(v->etag));
	memcpy(v->lastmod, fi->lastmod, sizeof(v->lastmod));
}

static int send_file(struct http_worker *w, struct http_conn *c, const struct http_request *req,
                     int fd, const struct file_info *fi, int64_t *bytes)
{
	struct http_range r[HTTP_MAX_RANGES];
	int n = -1, err;
	c->out.file = fd;
	if (not_modified(req, fi)) {
		err = file_head(w, c, req, 304, fi);
		if (!err)
			err = http_out_append(&c->out, "\r\n", 2);
		http_out_mem_seg(&c->out, 0);
		*bytes = 0;
		return err ? 500 : 304;
	}
	if (req->range.n && if_range_holds(req, fi))
		n = http_parse_range(req->range, fi->size, r, HTTP_MAX_RANGES);
	if (n == 0) {
		err = http_out_head(w, c, req, 416);
		if (!err)
			err = http_out_printf(
			        &c->out, "Content-Range: bytes */%lld\r\nContent-Length: 0\r\n\r\n",
			        (long long)fi->size);
		http_out_mem_seg(&c->out, 0);
		*bytes = 0;
		return err ? 500 : 416;
	}
	if (n > 1)
		return (err = multipart(w, c, req, fi, r, n, bytes)) < 0 ? 500 : err;
	char num[24];
	int64_t start = n == 1 ? r[0].start : 0,
	        len = n == 1 ? r[0].end - r[0].start + 1 : fi->size;
	err = file_head(w, c, req, n == 1 ? 206 : 200, fi);
	if (!err && n == 1)
		err = http_out_printf(&c->out, "Content-Range: bytes %lld-%lld/%lld\r\n",
		                      (long long)start, (long long)r[0].end, (long long)fi->size);
	if (!err)
		err = http_out_strs(&c->out,
		                    (const char *[]){"Content-Type: ", fi->type,
		                                     "\r\nContent-Length: ", http_dec(num, len),
		                                     "\r\n\r\n"},
		                    5);
	if (err)
		return 500;
	http_out_mem_seg(&c->out, 0);
	if (req->method != HTTP_HEAD)
		http_out_file_seg(&c->out, start, len);
	*bytes = len;
	return n == 1 ? 206 : 200;
}

/* Appends s to the listing, HTML-escaped (href: also percent-encoded). */
static int put_escaped(struct http_out *o, const char *s, bool href)
{
	int err = 0;
	for (; *s && !err; s++) {
		unsigned char ch = (unsigned char)*s;
		if (href && (ch <= 0x20 || ch >= 0x7f || strchr("\"#%'<>?&\\", ch)))
			err = http_out_printf(o, "%%%02X", ch);
		else if (ch == '<')
			err = http_out_append(o, "&lt;", 4);
		else if (ch == '>')
			err = http_out_append(o, "&gt;", 4);
		else if (ch == '&')
			err = http_out_append(o, "&amp;", 5);
		else if (ch == '"')
			err = http_out_append(o, "&quot;", 6);
		else
			err = http_out_append(o, s, 1);
	}
	return err;
}

static int listing(struct http_worker *w, struct http_conn *c, const struct http_request *req,
                   int dirfd, int64_t *bytes)
{
	struct dirent **names;
	int n = scandirat(dirfd, ".", &names, NULL, alphasort);
	if (n < 0)
		return 403;
	struct http_out *o = &c->out;
	int err = http_out_printf(
	        o, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ");
	err = err ? err : put_escaped(o, w->path, false);
	err = err ? err : http_out_printf(o, "</title></head><body><h1>Index of ");
	err = err ? err : put_escaped(o, w->path, false);
	err = err ? err : http_out_printf(o, "</h1><ul>\n<li><a href=\"../\">../</a></li>\n");
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		bool dir = names[i]->d_type == DT_DIR;
		if (!err && strcmp(name, ".") && strcmp(name, "..")) {
			err = http_out_printf(o, "<li><a href=\"");
			err = err ? err : put_escaped(o, name, true);
			err = err ? err : http_out_printf(o, "%s\">", dir ? "/" : "");
			err = err ? err : put_escaped(o, name, false);
			err = err ? err : http_out_printf(o, "%s</a></li>\n", dir ? "/" : "");
		}
		free(names[i]);
	}
	free(names);
	err = err ? err : http_out_printf(o, "</ul></body></html>\n");
	size_t body = o->len;
	err = err ? err : http_out_head(w, c, req, 200);
	err = err ? err
	          : http_out_printf(
	                    o,
	                    "Content-Type: text/html; charset=utf-8\r\nContent-Length: %zu\r\n\r\n",
	                    body);
	if (err)
		return 500;
	http_out_mem_seg(o, body);
	if (req->method != HTTP_HEAD)
		o->seg[o->nseg++] = (struct http_seg){0, (int64_t)body, false};
	*bytes = (int64_t)body;
	return 200;
}

/* A directory: 301 to the slash form, its index.html, or a listing. */
static int directory(struct http_worker *w, struct http_conn *c, const struct http_request *req,
                     int dirfd, size_t plen, int64_t *bytes)
{
	if (req->path.p[req->path.n - 1] != '/') {
		c->out.len = 0;
		char *loc = malloc(req->path.n + req->query.n + 16);
		if (!loc)
			return 500;
		sprintf(loc, "Location: %.*s/%.*s\r\n", (int)req->path.n, req->path.p,
		        (int)req->query.n, req->query.p);
		int err = http_out_simple(w, c, req, 301, loc);
		free(loc);
		return err ? 500 : 301;
	}
	if (plen + 11 >= sizeof(w->path))
		return 404;
	memcpy(w->path + plen, "index.html", 11);
	int fd = open_beneath(dirfd, "index.html");
	w->path[plen] = '\0';
	if (fd >= 0) {
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
			memcpy(w->path + plen, "index.html", 11);
			return -fd - 1; /* the caller serves it */
		}
		close(fd);
	}
	return http_cfg.listing ? listing(w, c, req, dirfd, bytes) : 403;
}

static int serve_path(struct http_worker *w, struct http_conn *c, struct http_request *req,
                      int64_t *bytes)
{
	long plen = http_normalize_path(req->path, w->path, sizeof(w->path) - 16);
	if (plen < 0)
		return 400;
	int fd = open_beneath(http_rootfd, plen == 1 ? "." : w->path + 1);
	if (fd < 0)
		return status_of_errno(fd);
	struct stat st;
	if (fstat(fd, &st) < 0)
		goto forbidden;
	if (S_ISDIR(st.st_mode)) {
		int r = directory(w, c, req, fd, (size_t)plen, bytes);
		close(fd);
		if (r >= 0)
			return r;
		fd = -r - 1;
		if (fstat(fd, &st) < 0)
			goto forbidden;
	}
	if (!S_ISREG(st.st_mode))
		goto forbidden;
	struct file_info fi = {.size = st.st_size, .mtime = st.st_mtim.tv_sec};
	fi.type = http_mime_type(w->path, strlen(w->path));
	validators(&st, &fi);
	return send_file(w, c, req, fd, &fi, bytes);
forbidden:
	close(fd);
	return 403;
}

int http_static_respond(struct http_worker *w, struct http_conn *c, struct http_request *req,
                        int64_t *bytes)
{
	int status;
	*bytes = 0;
	if (req->content_length > 0 || req->chunked) /* a body we do not read: the stream ends */
		c->close_after = c->linger = true;
	if (req->method == HTTP_OTHER)
		status = 501;
	else if (req->method != HTTP_GET && req->method != HTTP_HEAD)
		status = 405;
	else
		status = serve_path(w, c, req, bytes);
	if (status < 400 || status == 416)
		return status;
	if (status == 400) /* a path that tried to climb out: do not wait for more */
		c->close_after = c->linger = true;
	/* An error: whatever was built goes, a short page instead. */
	http_out_reset(&c->out);
	if (http_out_simple(w, c, req, status, status == 405 ? "Allow: GET, HEAD\r\n" : NULL) < 0)
		return -ENOMEM;
	*bytes = req->method == HTTP_HEAD ? 0 : (int64_t)(c->out.len);
	return status;
}
