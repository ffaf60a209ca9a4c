/*
 * Helpers of the EVFILT_VNODE tests: a scratch directory per test, files in
 * it, and waiting for one VNODE event with exactly the expected notes.
 */
#ifndef BATON_VNODE_UTIL_H
#define BATON_VNODE_UTIL_H

#include "util.h"

#include <limits.h>
#include <sys/stat.h>

static char vn_dir[64];

/* A fresh scratch directory; vn_path() names entries in it. */
static inline void vn_scratch(void)
{
	snprintf(vn_dir, sizeof vn_dir, "/tmp/baton-vnode-XXXXXX");
	CHECK(mkdtemp(vn_dir) != NULL);
}

static inline const char *vn_path(const char *name)
{
	static char buf[4][PATH_MAX];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s/%s", vn_dir, name);
	return buf[i];
}

/* Removes the scratch directory and what is left in it. */
static inline void vn_cleanup(void)
{
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", vn_dir);
	CHECK_EQ(system(cmd), 0);
}

static inline int vn_create(const char *name)
{
	int fd = open(vn_path(name), O_CREAT | O_RDWR | O_TRUNC, 0644);
	CHECK(fd >= 0);
	return fd;
}

static inline void vn_write(int fd, const char *s)
{
	CHECK_EQ(write(fd, s, strlen(s)), (long long)strlen(s));
}

/* Waits up to ms for one VNODE event of fd carrying exactly notes. */
static inline struct kevent vn_expect_at(const char *file, int line, int kq, int fd, unsigned notes,
                                         long ms)
{
	struct kevent ev[4];
	int n = kpoll(kq, ev, 4, ms);
	if (n != 1 || ev[0].ident != (uintptr_t)fd || ev[0].filter != EVFILT_VNODE ||
	    ev[0].fflags != notes || ev[0].data != 0 || (ev[0].flags & EV_ERROR)) {
		fprintf(stderr, "%s:%d: expected VNODE of fd %d with fflags %#x, got %d:", file,
		        line, fd, notes, n);
		for (int i = 0; i < n; i++)
			fprintf(stderr, " [%lu %d flags %#x fflags %#x data %lld]",
			        (unsigned long)ev[i].ident, ev[i].filter, ev[i].flags, ev[i].fflags,
			        (long long)ev[i].data);
		fprintf(stderr, "\n");
		exit(1);
	}
	return ev[0];
}
#define VN_EXPECT(kq, fd, notes) vn_expect_at(__FILE__, __LINE__, (kq), (fd), (notes), 1000)

/* Registers fd for notes, EV_CLEAR (how programs use VNODE). */
#define VN_ADD(kq, fd, notes) \
	KOK((kq), (uintptr_t)(fd), EVFILT_VNODE, EV_ADD | EV_CLEAR, (notes), 0, UD(fd))

#define VN_ALL                                                                            \
	(NOTE_DELETE | NOTE_WRITE | NOTE_EXTEND | NOTE_ATTRIB | NOTE_LINK | NOTE_RENAME | \
	 NOTE_REVOKE | NOTE_OPEN | NOTE_CLOSE | NOTE_CLOSE_WRITE | NOTE_READ)

#endif
