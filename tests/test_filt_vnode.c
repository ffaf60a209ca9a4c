/*
 * EVFILT_VNODE on regular files, from FreeBSD's kqueue(2) and vfs_subr.c:
 * each NOTE_* for the operation that gives it there, data 0, fflags that
 * accumulate until delivered and that EV_CLEAR resets, nothing the knote did
 * not ask for, the watch following the file (not its name) through rename
 * and unlink, and the errors of a bad registration.
 */
#include "vnode_util.h"

#include <sys/socket.h>

static void note_write_and_extend(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	VN_ADD(kq, fd, NOTE_WRITE | NOTE_EXTEND);
	EXPECT_NONE(kq, 20);
	/* a write that grows the file: both (vop_write_post) */
	vn_write(fd, "hello");
	VN_EXPECT(kq, fd, NOTE_WRITE | NOTE_EXTEND);
	EXPECT_NONE(kq, 20); /* EV_CLEAR: once */
	/* a write inside the file: NOTE_WRITE alone */
	CHECK_EQ(pwrite(fd, "J", 1, 0), 1);
	VN_EXPECT(kq, fd, NOTE_WRITE);
	/* asked for NOTE_EXTEND only: a write that grows gives just that */
	VN_ADD(kq, fd, NOTE_EXTEND);
	vn_write(fd, "more");
	VN_EXPECT(kq, fd, NOTE_EXTEND);
	CHECK_EQ(pwrite(fd, "K", 1, 0), 1);
	EXPECT_NONE(kq, 20);
	close(fd);
	close(kq);
	vn_cleanup();
}

static void note_attrib(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	VN_ADD(kq, fd, NOTE_ATTRIB);
	CHECK_EQ(fchmod(fd, 0600), 0);
	VN_EXPECT(kq, fd, NOTE_ATTRIB);
	struct timespec times[2] = {{1, 0}, {2, 0}};
	CHECK_EQ(futimens(fd, times), 0);
	VN_EXPECT(kq, fd, NOTE_ATTRIB);
	/* a truncation is a setattr on FreeBSD: NOTE_ATTRIB */
	vn_write(fd, "0123456789");
	EXPECT_NONE(kq, 20);
	CHECK_EQ(ftruncate(fd, 2), 0);
	VN_EXPECT(kq, fd, NOTE_ATTRIB);
	close(fd);
	close(kq);
	vn_cleanup();
}

static void note_link_and_delete(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	VN_ADD(kq, fd, NOTE_LINK | NOTE_DELETE | NOTE_ATTRIB);
	/* link(): the link count grew (vop_link_post) */
	CHECK_EQ(link(vn_path("f"), vn_path("g")), 0);
	VN_EXPECT(kq, fd, NOTE_LINK);
	/* unlink() of a name: NOTE_DELETE (vop_remove_post), one of two too */
	CHECK_EQ(unlink(vn_path("g")), 0);
	VN_EXPECT(kq, fd, NOTE_DELETE);
	CHECK_EQ(unlink(vn_path("f")), 0);
	VN_EXPECT(kq, fd, NOTE_DELETE);
	close(fd);
	close(kq);
	vn_cleanup();
}

/* The watch is on the file behind the fd: unlinked, it still reports. */
static void unlinked_file_keeps_reporting(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	VN_ADD(kq, fd, NOTE_DELETE | NOTE_WRITE);
	CHECK_EQ(unlink(vn_path("f")), 0);
	VN_EXPECT(kq, fd, NOTE_DELETE);
	vn_write(fd, "x");
	VN_EXPECT(kq, fd, NOTE_WRITE);
	/* a new file at the old name is another file */
	int other = vn_create("f");
	vn_write(other, "y");
	EXPECT_NONE(kq, 20);
	close(other);
	close(fd);
	close(kq);
	vn_cleanup();
}

static void note_rename_follows_the_file(void)
{
	vn_scratch();
	CHECK_EQ(mkdir(vn_path("sub"), 0755), 0);
	int kq = kq_new(), fd = vn_create("f");
	VN_ADD(kq, fd, NOTE_RENAME | NOTE_WRITE | NOTE_DELETE);
	CHECK_EQ(rename(vn_path("f"), vn_path("g")), 0);
	VN_EXPECT(kq, fd, NOTE_RENAME);
	CHECK_EQ(rename(vn_path("g"), vn_path("sub/h")), 0);
	VN_EXPECT(kq, fd, NOTE_RENAME);
	/* still the same file under its new name */
	int w = open(vn_path("sub/h"), O_WRONLY | O_APPEND);
	CHECK(w >= 0);
	vn_write(w, "x");
	VN_EXPECT(kq, fd, NOTE_WRITE);
	close(w);
	/* renamed over: the file that was replaced gets NOTE_DELETE */
	int t = vn_create("target");
	VN_ADD(kq, t, NOTE_DELETE | NOTE_RENAME);
	CHECK_EQ(rename(vn_path("sub/h"), vn_path("target")), 0);
	struct kevent ev[4];
	int n = kpoll(kq, ev, 4, 1000);
	CHECK_EQ(n, 2);
	int it = find_ev(ev, n, (uintptr_t)t, EVFILT_VNODE);
	int ifd = find_ev(ev, n, (uintptr_t)fd, EVFILT_VNODE);
	CHECK(it >= 0 && ifd >= 0);
	CHECK_EQ(ev[it].fflags, NOTE_DELETE);
	CHECK_EQ(ev[ifd].fflags, NOTE_RENAME);
	close(t);
	close(fd);
	close(kq);
	vn_cleanup();
}

static void note_open_read_close(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	vn_write(fd, "data");
	VN_ADD(kq, fd, NOTE_OPEN | NOTE_READ | NOTE_CLOSE | NOTE_CLOSE_WRITE);
	int r = open(vn_path("f"), O_RDONLY);
	CHECK(r >= 0);
	VN_EXPECT(kq, fd, NOTE_OPEN);
	char c;
	CHECK_EQ(read(r, &c, 1), 1);
	VN_EXPECT(kq, fd, NOTE_READ);
	close(r);
	VN_EXPECT(kq, fd, NOTE_CLOSE);
	int w = open(vn_path("f"), O_WRONLY);
	CHECK(w >= 0);
	close(w);
	VN_EXPECT(kq, fd, NOTE_OPEN | NOTE_CLOSE_WRITE);
	/* our own fd counts too */
	CHECK_EQ(pread(fd, &c, 1, 0), 1);
	VN_EXPECT(kq, fd, NOTE_READ);
	close(fd);
	close(kq);
	vn_cleanup();
}

/* Notes pile up until delivered; EV_CLEAR resets them. */
static void notes_accumulate_until_delivered(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	VN_ADD(kq, fd, VN_ALL);
	vn_write(fd, "x");
	CHECK_EQ(fchmod(fd, 0600), 0);
	CHECK_EQ(rename(vn_path("f"), vn_path("g")), 0);
	VN_EXPECT(kq, fd, NOTE_WRITE | NOTE_EXTEND | NOTE_ATTRIB | NOTE_RENAME);
	EXPECT_NONE(kq, 20);
	CHECK_EQ(fchmod(fd, 0644), 0);
	VN_EXPECT(kq, fd, NOTE_ATTRIB);
	close(fd);
	close(kq);
	vn_cleanup();
}

/* Without EV_CLEAR the knote stays active (FreeBSD's filt_vfsvnode). */
static void without_clear_it_stays_active(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	KOK(kq, (uintptr_t)fd, EVFILT_VNODE, EV_ADD, NOTE_WRITE | NOTE_ATTRIB, 0, UD(1));
	EXPECT_NONE(kq, 20);
	vn_write(fd, "x");
	VN_EXPECT(kq, fd, NOTE_WRITE);
	VN_EXPECT(kq, fd, NOTE_WRITE);
	CHECK_EQ(fchmod(fd, 0600), 0);
	VN_EXPECT(kq, fd, NOTE_WRITE | NOTE_ATTRIB);
	KOK(kq, (uintptr_t)fd, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	close(fd);
	close(kq);
	vn_cleanup();
}

static void unasked_notes_never_reported(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	VN_ADD(kq, fd, NOTE_RENAME);
	vn_write(fd, "x");
	CHECK_EQ(fchmod(fd, 0600), 0);
	int r = open(vn_path("f"), O_RDONLY);
	close(r);
	EXPECT_NONE(kq, 30);
	/* a re-add that asks for less: what was pending and is no longer
	 * asked for is not reported either */
	KOK(kq, (uintptr_t)fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE | NOTE_RENAME, 0, UD(1));
	vn_write(fd, "x");
	KOK(kq, (uintptr_t)fd, EVFILT_VNODE, EV_ADD, NOTE_RENAME, 0, UD(1));
	EXPECT_NONE(kq, 30);
	close(fd);
	close(kq);
	vn_cleanup();
}

static void dispatch_and_oneshot(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	KOK(kq, (uintptr_t)fd, EVFILT_VNODE, EV_ADD | EV_CLEAR | EV_DISPATCH,
	    NOTE_WRITE | NOTE_ATTRIB, 0, UD(1));
	vn_write(fd, "x");
	VN_EXPECT(kq, fd, NOTE_WRITE);
	/* disabled: what happens now waits for EV_ENABLE, none lost */
	CHECK_EQ(fchmod(fd, 0600), 0);
	vn_write(fd, "y");
	EXPECT_NONE(kq, 20);
	KOK(kq, (uintptr_t)fd, EVFILT_VNODE, EV_ENABLE, 0, 0, UD(1));
	VN_EXPECT(kq, fd, NOTE_WRITE | NOTE_ATTRIB);
	KOK(kq, (uintptr_t)fd, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	/* EV_ONESHOT: returned once, then gone */
	KOK(kq, (uintptr_t)fd, EVFILT_VNODE, EV_ADD | EV_ONESHOT, NOTE_WRITE, 0, UD(2));
	vn_write(fd, "z");
	struct kevent ev = VN_EXPECT(kq, fd, NOTE_WRITE);
	CHECK(ev.flags & EV_ONESHOT);
	CHECK(ev.udata == UD(2));
	vn_write(fd, "z");
	EXPECT_NONE(kq, 20);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_VNODE, EV_DELETE, 0, 0), ENOENT);
	close(fd);
	close(kq);
	vn_cleanup();
}

static void bad_registrations(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	/* unknown notes: EINVAL (strict), nothing registered */
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_VNODE, EV_ADD, 0x100000, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_VNODE, EV_ADD, NOTE_WRITE | 0x0800, 0),
	         EINVAL);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_VNODE, EV_DELETE, 0, 0), ENOENT);
	/* not a vnode: a socket, a pipe (FreeBSD's soo/pipe_kqfilter) */
	int sv[2], p[2];
	CHECK_EQ(socketpair_stream(sv), 0);
	CHECK_EQ(pipe(p), 0);
	CHECK_EQ(kchange_err(kq, (uintptr_t)sv[0], EVFILT_VNODE, EV_ADD, NOTE_WRITE, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[0], EVFILT_VNODE, EV_ADD, NOTE_WRITE, 0), EINVAL);
	CHECK_EQ(kchange_err(kq, (uintptr_t)kq, EVFILT_VNODE, EV_ADD, NOTE_WRITE, 0), EINVAL);
	/* a closed fd, any change: EBADF */
	close(p[1]);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[1], EVFILT_VNODE, EV_ADD, NOTE_WRITE, 0), EBADF);
	CHECK_EQ(kchange_err(kq, (uintptr_t)p[1], EVFILT_VNODE, EV_DELETE, 0, 0), EBADF);
	CHECK_EQ(kchange_err(kq, (uintptr_t)-1, EVFILT_VNODE, EV_ADD, NOTE_WRITE, 0), EBADF);
	/* as EV_ERROR with room, the rest of the list still applied */
	struct kevent ch[2], out[2];
	EV_SET(&ch[0], (uintptr_t)sv[0], EVFILT_VNODE, EV_ADD, NOTE_WRITE, 0, NULL);
	EV_SET(&ch[1], (uintptr_t)fd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0, NULL);
	CHECK_EQ(kevent(kq, ch, 2, out, 2, &(struct timespec){0, 0}), 1);
	CHECK(out[0].flags & EV_ERROR);
	CHECK_EQ(out[0].data, EINVAL);
	vn_write(fd, "x");
	VN_EXPECT(kq, fd, NOTE_WRITE);
	close(sv[0]);
	close(sv[1]);
	close(p[0]);
	close(fd);
	close(kq);
	vn_cleanup();
}

/* An O_PATH descriptor names a vnode too (FreeBSD 14+). */
static void o_path_descriptor(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	int p = open(vn_path("f"), O_PATH);
	CHECK(p >= 0);
	VN_ADD(kq, p, NOTE_WRITE | NOTE_DELETE);
	vn_write(fd, "x");
	VN_EXPECT(kq, p, NOTE_WRITE);
	CHECK_EQ(unlink(vn_path("f")), 0);
	VN_EXPECT(kq, p, NOTE_DELETE);
	close(p);
	close(fd);
	close(kq);
	vn_cleanup();
}

/* Two fds of one file in one kqueue share the kernel's watch. */
static void two_fds_of_one_file(void)
{
	vn_scratch();
	int kq = kq_new(), a = vn_create("f");
	int b = open(vn_path("f"), O_RDONLY);
	CHECK(b >= 0);
	VN_ADD(kq, a, NOTE_WRITE);
	VN_ADD(kq, b, NOTE_ATTRIB | NOTE_OPEN);
	vn_write(a, "x");
	VN_EXPECT(kq, a, NOTE_WRITE);
	CHECK_EQ(fchmod(a, 0600), 0);
	VN_EXPECT(kq, b, NOTE_ATTRIB);
	/* removing one leaves the other's interest whole */
	KOK(kq, (uintptr_t)b, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	vn_write(a, "y");
	VN_EXPECT(kq, a, NOTE_WRITE);
	KOK(kq, (uintptr_t)b, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_ATTRIB, 0, NULL);
	KOK(kq, (uintptr_t)a, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	CHECK_EQ(fchmod(a, 0644), 0);
	VN_EXPECT(kq, b, NOTE_ATTRIB);
	vn_write(a, "z");
	EXPECT_NONE(kq, 20);
	close(a);
	close(b);
	close(kq);
	vn_cleanup();
}

/* A READ knote at EOF and a VNODE knote share the kqueue's inotify fd. */
static void read_at_eof_and_vnode_together(void)
{
	vn_scratch();
	int kq = kq_new(), w = vn_create("f");
	int r = open(vn_path("f"), O_RDONLY);
	CHECK(r >= 0);
	KOK(kq, (uintptr_t)r, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	EXPECT_NONE(kq, 20); /* at EOF: watched */
	VN_ADD(kq, r, NOTE_OPEN);
	vn_write(w, "abc");
	struct kevent ev = EXPECT_ONE(kq, (uintptr_t)r, EVFILT_READ, 1000);
	CHECK_EQ(ev.data, 3);
	read_n(r, 3);
	int o = open(vn_path("f"), O_RDONLY);
	close(o);
	VN_EXPECT(kq, r, NOTE_OPEN);
	/* the VNODE knote goes: the READ watch still wakes it */
	KOK(kq, (uintptr_t)r, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	vn_write(w, "de");
	ev = EXPECT_ONE(kq, (uintptr_t)r, EVFILT_READ, 1000);
	CHECK_EQ(ev.data, 2);
	/* and the other way round: a READ watch made after the VNODE one */
	close(r);
	r = open(vn_path("f"), O_RDONLY);
	CHECK(r >= 0);
	VN_ADD(kq, r, NOTE_OPEN);
	KOK(kq, (uintptr_t)r, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(1));
	ev = EXPECT_ONE(kq, (uintptr_t)r, EVFILT_READ, 1000);
	read_n(r, 5);
	EXPECT_NONE(kq, 20); /* at EOF: watched now */
	o = open(vn_path("f"), O_RDONLY);
	close(o);
	VN_EXPECT(kq, r, NOTE_OPEN);
	KOK(kq, (uintptr_t)r, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	VN_ADD(kq, r, NOTE_WRITE);
	KOK(kq, (uintptr_t)r, EVFILT_READ, EV_DELETE, 0, 0, NULL);
	vn_write(w, "f");
	VN_EXPECT(kq, r, NOTE_WRITE);
	close(r);
	close(w);
	close(kq);
	vn_cleanup();
}

int main(void)
{
	RUN(note_write_and_extend);
	RUN(note_attrib);
	RUN(note_link_and_delete);
	RUN(unlinked_file_keeps_reporting);
	RUN(note_rename_follows_the_file);
	RUN(note_open_read_close);
	RUN(notes_accumulate_until_delivered);
	RUN(without_clear_it_stays_active);
	RUN(unasked_notes_never_reported);
	RUN(dispatch_and_oneshot);
	RUN(bad_registrations);
	RUN(o_path_descriptor);
	RUN(two_fds_of_one_file);
	RUN(read_at_eof_and_vnode_together);
	return 0;
}
