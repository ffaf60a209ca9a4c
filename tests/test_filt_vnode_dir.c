/*
 * EVFILT_VNODE on directories, from FreeBSD's kqueue(2) and vfs_subr.c's
 * vop_*_post: an entry created or removed is NOTE_WRITE, a subdirectory
 * made or removed also NOTE_LINK (the directory's link count), a rename
 * that moves an entry in or out also NOTE_EXTEND (and NOTE_LINK for a
 * subdirectory), a rename inside the directory NOTE_WRITE only; readdir is
 * NOTE_READ; what happens to the files inside (their open, write) is not
 * the directory's.
 */
#include "vnode_util.h"

#include <dirent.h>

static int open_dir(const char *name)
{
	int d = open(vn_path(name), O_RDONLY | O_DIRECTORY);
	CHECK(d >= 0);
	return d;
}

static void entries_created_and_removed(void)
{
	vn_scratch();
	CHECK_EQ(mkdir(vn_path("d"), 0755), 0);
	int kq = kq_new(), d = open_dir("d");
	VN_ADD(kq, d, NOTE_WRITE | NOTE_LINK | NOTE_EXTEND);
	int f = vn_create("d/file");
	VN_EXPECT(kq, d, NOTE_WRITE);
	/* the file's own life is not the directory's */
	vn_write(f, "x");
	close(f);
	EXPECT_NONE(kq, 20);
	CHECK_EQ(symlink("file", vn_path("d/link")), 0);
	VN_EXPECT(kq, d, NOTE_WRITE);
	CHECK_EQ(unlink(vn_path("d/link")), 0);
	VN_EXPECT(kq, d, NOTE_WRITE);
	CHECK_EQ(mkdir(vn_path("d/sub"), 0755), 0);
	VN_EXPECT(kq, d, NOTE_WRITE | NOTE_LINK);
	CHECK_EQ(rmdir(vn_path("d/sub")), 0);
	VN_EXPECT(kq, d, NOTE_WRITE | NOTE_LINK);
	CHECK_EQ(unlink(vn_path("d/file")), 0);
	VN_EXPECT(kq, d, NOTE_WRITE);
	close(d);
	close(kq);
	vn_cleanup();
}

static void renames(void)
{
	vn_scratch();
	CHECK_EQ(mkdir(vn_path("d"), 0755), 0);
	CHECK_EQ(mkdir(vn_path("e"), 0755), 0);
	int kq = kq_new(), d = open_dir("d"), e = open_dir("e");
	close(vn_create("d/a"));
	CHECK_EQ(mkdir(vn_path("d/sub"), 0755), 0);
	VN_ADD(kq, d, NOTE_WRITE | NOTE_LINK | NOTE_EXTEND);
	VN_ADD(kq, e, NOTE_WRITE | NOTE_LINK | NOTE_EXTEND);
	/* inside one directory: NOTE_WRITE only */
	CHECK_EQ(rename(vn_path("d/a"), vn_path("d/b")), 0);
	VN_EXPECT(kq, d, NOTE_WRITE);
	/* from one to another: both see an entry go or come */
	CHECK_EQ(rename(vn_path("d/b"), vn_path("e/b")), 0);
	struct kevent ev[4];
	int n = kpoll(kq, ev, 4, 1000);
	CHECK_EQ(n, 2);
	CHECK_EQ(ev[find_ev(ev, n, (uintptr_t)d, EVFILT_VNODE)].fflags, NOTE_WRITE | NOTE_EXTEND);
	CHECK_EQ(ev[find_ev(ev, n, (uintptr_t)e, EVFILT_VNODE)].fflags, NOTE_WRITE | NOTE_EXTEND);
	/* a subdirectory moving takes a link along */
	CHECK_EQ(rename(vn_path("d/sub"), vn_path("e/sub")), 0);
	n = kpoll(kq, ev, 4, 1000);
	CHECK_EQ(n, 2);
	CHECK_EQ(ev[find_ev(ev, n, (uintptr_t)d, EVFILT_VNODE)].fflags,
	         NOTE_WRITE | NOTE_EXTEND | NOTE_LINK);
	CHECK_EQ(ev[find_ev(ev, n, (uintptr_t)e, EVFILT_VNODE)].fflags,
	         NOTE_WRITE | NOTE_EXTEND | NOTE_LINK);
	/* the watched directory itself renamed */
	KOK(kq, (uintptr_t)d, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_RENAME, 0, NULL);
	CHECK_EQ(rename(vn_path("d"), vn_path("d2")), 0);
	VN_EXPECT(kq, d, NOTE_RENAME);
	close(d);
	close(e);
	close(kq);
	vn_cleanup();
}

static void readdir_open_close_of_the_directory(void)
{
	vn_scratch();
	CHECK_EQ(mkdir(vn_path("d"), 0755), 0);
	close(vn_create("d/f"));
	int kq = kq_new(), d = open_dir("d");
	VN_ADD(kq, d, NOTE_READ | NOTE_OPEN | NOTE_CLOSE | NOTE_ATTRIB);
	/* a file inside opened, read, closed: not the directory's */
	int f = open(vn_path("d/f"), O_RDONLY);
	char c;
	CHECK(read(f, &c, 1) >= 0);
	close(f);
	EXPECT_NONE(kq, 20);
	DIR *dir = opendir(vn_path("d"));
	CHECK(dir != NULL);
	while (readdir(dir)) {
	}
	closedir(dir);
	VN_EXPECT(kq, d, NOTE_OPEN | NOTE_READ | NOTE_CLOSE);
	CHECK_EQ(chmod(vn_path("d"), 0700), 0);
	VN_EXPECT(kq, d, NOTE_ATTRIB);
	close(d);
	close(kq);
	vn_cleanup();
}

int main(void)
{
	RUN(entries_created_and_removed);
	RUN(renames);
	RUN(readdir_open_close_of_the_directory);
	return 0;
}
