/*
 * A regular file's READ knote at EOF wakes when the file grows, also when it
 * was registered while the process had no fd free for the inotify watch:
 * FreeBSD needs no descriptor to watch a vnode, so the growth must be
 * reported once fds are free again (CONTRACT.md "Returned events").
 */
#include "util.h"

#include <stdlib.h>
#include <sys/resource.h>

static void growth_is_seen_after_fds_were_exhausted(void)
{
	struct rlimit old, low;
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = 64;
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);

	int kq = kq_new();
	char path[] = "/tmp/baton_emfile_XXXXXX";
	int wfd = mkstemp(path);
	CHECK(wfd >= 0);
	unlink(path);
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", wfd);
	int rfd = open(proc, O_RDONLY);
	CHECK(rfd >= 0);

	/* take every free number */
	int fill[64], nfill = 0;
	while (nfill < 64 && (fill[nfill] = dup(0)) >= 0)
		nfill++;
	CHECK_EQ(errno, EMFILE);

	KOK(kq, (uintptr_t)rfd, EVFILT_READ, EV_ADD, 0, 0, UD(7));
	EXPECT_NONE(kq, 50); /* at EOF: the library tries to watch it now */

	while (nfill > 0)
		CHECK_EQ(close(fill[--nfill]), 0);
	EXPECT_NONE(kq, 50);
	CHECK_EQ(write(wfd, "hello", 5), 5);
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)rfd, EVFILT_READ, 3000);
	CHECK_EQ(ev.data, 5);
	CHECK(ev.udata == UD(7));

	/* the watch works from now on: read to EOF, grow again */
	char b[8];
	CHECK_EQ(read(rfd, b, sizeof(b)), 5);
	EXPECT_NONE(kq, 50);
	CHECK_EQ(write(wfd, "ab", 2), 2);
	ev = EXPECT_ONE(kq, (uintptr_t)rfd, EVFILT_READ, 3000);
	CHECK_EQ(ev.data, 2);

	CHECK_EQ(close(rfd), 0);
	CHECK_EQ(close(wfd), 0);
	CHECK_EQ(close(kq), 0);
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
}

int main(void)
{
	RUN(growth_is_seen_after_fds_were_exhausted);
	return 0;
}
