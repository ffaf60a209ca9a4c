/*
 * The life of an EVFILT_VNODE knote: close(fd) removes it as FreeBSD's
 * knote_fdclose does (SEMANTICS I4: an event of the closed fd is never
 * returned for the file that reuses the number), also when the close ran in
 * a signal handler on top of a kevent() call; two kqueues on one file each
 * get the event; a KQUEUE_CPONFORK child keeps watching; and when the
 * kernel's event queue overflows nothing is lost (CONTRACT.md: every knote
 * is told what may have happened), for VNODE and for READ on a file at EOF.
 */
#include "vnode_util.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/*
 * The inotify watches this process holds, from /proc/self/fdinfo; with
 * ino != 0, the mask of the watch of that inode instead (0: none).
 */
static unsigned long inotify_scan(unsigned long ino)
{
	DIR *d = opendir("/proc/self/fd");
	CHECK(d != NULL);
	unsigned long n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char path[300], link[64], line[256];
		snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
		ssize_t len = readlink(path, link, sizeof link - 1);
		if (len < 0)
			continue;
		link[len] = 0;
		if (strcmp(link, "anon_inode:inotify") != 0)
			continue;
		snprintf(path, sizeof path, "/proc/self/fdinfo/%s", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof line, f)) {
			unsigned long wino, mask;
			if (strncmp(line, "inotify wd:", 11) != 0)
				continue;
			n += ino == 0;
			const char *pi = strstr(line, " ino:"), *pm = strstr(line, " mask:");
			if (ino && pi && pm && sscanf(pi, " ino:%lx", &wino) == 1 &&
			    sscanf(pm, " mask:%lx", &mask) == 1 && wino == ino)
				n = mask;
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

static int inotify_watches(void)
{
	return (int)inotify_scan(0);
}

/* The kernel's watch lives as long as a knote needs it, no longer. */
static void watches_follow_the_knotes(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	int dup_of = open(vn_path("f"), O_RDONLY);
	CHECK(dup_of >= 0);
	int base = inotify_watches();
	VN_ADD(kq, fd, NOTE_WRITE);
	CHECK_EQ(inotify_watches(), base + 1);
	VN_ADD(kq, dup_of, NOTE_ATTRIB); /* the same inode: the same watch */
	CHECK_EQ(inotify_watches(), base + 1);
	/* only the events asked for, and less once a knote asks for less */
	struct stat st;
	CHECK_EQ(fstat(fd, &st), 0);
	unsigned long ino = st.st_ino;
	CHECK((inotify_scan(ino) & (IN_MODIFY | IN_ATTRIB)) == (IN_MODIFY | IN_ATTRIB));
	CHECK((inotify_scan(ino) & (IN_OPEN | IN_ACCESS | IN_CLOSE)) == 0);
	VN_ADD(kq, dup_of, NOTE_OPEN | NOTE_READ);
	CHECK((inotify_scan(ino) & (IN_OPEN | IN_ACCESS)) == (IN_OPEN | IN_ACCESS));
	KOK(kq, (uintptr_t)dup_of, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	CHECK_EQ(inotify_watches(), base + 1);
	CHECK((inotify_scan(ino) & (IN_OPEN | IN_ACCESS | IN_ATTRIB)) == 0);
	CHECK(inotify_scan(ino) & IN_MODIFY);
	/* close() removes the knote at once, and with it the watch */
	CHECK_EQ(close(fd), 0);
	CHECK_EQ(inotify_watches(), base);
	VN_ADD(kq, dup_of, NOTE_WRITE);
	CHECK_EQ(inotify_watches(), base + 1);
	KOK(kq, (uintptr_t)dup_of, EVFILT_VNODE, EV_DELETE, 0, 0, NULL);
	CHECK_EQ(inotify_watches(), base);
	close(dup_of);
	close(kq);
	vn_cleanup();
}

static void close_removes_the_knote(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("old");
	int old = open(vn_path("old"), O_WRONLY);
	CHECK(old >= 0);
	/* level (no EV_CLEAR): active and queued when the fd is closed */
	KOK(kq, (uintptr_t)fd, EVFILT_VNODE, EV_ADD, NOTE_WRITE, 0, UD(1));
	vn_write(old, "x");
	VN_EXPECT(kq, fd, NOTE_WRITE);
	vn_write(old, "y");
	CHECK_EQ(close(fd), 0);
	int nfd = vn_create("new");
	CHECK_EQ(nfd, fd);
	EXPECT_NONE(kq, 30);
	CHECK_EQ(kchange_err(kq, (uintptr_t)nfd, EVFILT_VNODE, EV_DELETE, 0, 0), ENOENT);
	/* the new file registers; the old one is not watched any more */
	VN_ADD(kq, nfd, NOTE_WRITE);
	vn_write(old, "z");
	EXPECT_NONE(kq, 20);
	vn_write(nfd, "n");
	struct kevent ev = VN_EXPECT(kq, nfd, NOTE_WRITE);
	CHECK(ev.udata == UD(nfd));
	close(nfd);
	close(old);
	close(kq);
	vn_cleanup();
}

/* A close the hooks never saw (a raw system call): EV_ADD on the number
 * watches the file that is there now. */
static void unseen_close_then_add_watches_the_new_file(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("old");
	int old = open(vn_path("old"), O_WRONLY);
	CHECK(old >= 0);
	VN_ADD(kq, fd, NOTE_WRITE);
	CHECK_EQ(syscall(SYS_close, fd), 0);
	int nfd = vn_create("new");
	CHECK_EQ(nfd, fd);
	KOK(kq, (uintptr_t)nfd, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE, 0, UD(2));
	vn_write(old, "x");
	EXPECT_NONE(kq, 20);
	vn_write(nfd, "n");
	struct kevent ev = VN_EXPECT(kq, nfd, NOTE_WRITE);
	CHECK(ev.udata == UD(2));
	close(nfd);
	close(old);
	close(kq);
	vn_cleanup();
}

static volatile sig_atomic_t victim = -1, reopened = -1;

static void on_usr1(int sig)
{
	(void)sig;
	int saved = errno;
	close(victim);
	/* the number is taken again at once, inside the handler */
	reopened = open(vn_path("new"), O_RDWR);
	errno = saved;
}

static void *kicker(void *arg)
{
	struct timespec ts = {0, 100 * 1000000L};
	nanosleep(&ts, NULL);
	pthread_kill(*(pthread_t *)arg, SIGUSR1);
	return NULL;
}

static void closed_in_a_handler_during_kevent(void)
{
	vn_scratch();
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	CHECK_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
	close(vn_create("new"));
	int kq = kq_new(), other = kq_new(), fd = vn_create("old");
	int old = open(vn_path("old"), O_WRONLY);
	CHECK(old >= 0);
	KOK(kq, (uintptr_t)fd, EVFILT_VNODE, EV_ADD, NOTE_WRITE | NOTE_ATTRIB, 0, UD(1));
	vn_write(old, "x");
	VN_EXPECT(kq, fd, NOTE_WRITE); /* and still queued: no EV_CLEAR */
	victim = fd;
	pthread_t self = pthread_self(), t;
	CHECK_EQ(pthread_create(&t, NULL, kicker, &self), 0);
	/* blocked in kevent() on another kqueue when the handler runs */
	struct kevent ev;
	struct timespec ts = ts_ms(2000);
	CHECK(kevent(other, NULL, 0, &ev, 1, &ts) == -1 && errno == EINTR);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(reopened, fd);
	/* the old file's events: neither the queued one nor new ones */
	CHECK_EQ(fchmod(old, 0600), 0);
	EXPECT_NONE(kq, 30);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_VNODE, EV_DELETE, 0, 0), ENOENT);
	VN_ADD(kq, fd, NOTE_WRITE | NOTE_ATTRIB);
	CHECK_EQ(fchmod(old, 0644), 0);
	EXPECT_NONE(kq, 20);
	vn_write(fd, "n");
	VN_EXPECT(kq, fd, NOTE_WRITE);
	close(fd);
	close(old);
	close(other);
	close(kq);
	vn_cleanup();
}

static void two_kqueues_each_get_the_event(void)
{
	vn_scratch();
	int a = kq_new(), b = kq_new(), fd = vn_create("f");
	VN_ADD(a, fd, NOTE_WRITE);
	VN_ADD(b, fd, NOTE_WRITE | NOTE_ATTRIB);
	vn_write(fd, "x");
	VN_EXPECT(a, fd, NOTE_WRITE);
	VN_EXPECT(b, fd, NOTE_WRITE);
	CHECK_EQ(fchmod(fd, 0600), 0);
	VN_EXPECT(b, fd, NOTE_ATTRIB);
	EXPECT_NONE(a, 20);
	/* one kqueue closed, the other goes on */
	close(a);
	vn_write(fd, "y");
	VN_EXPECT(b, fd, NOTE_WRITE);
	close(fd);
	close(b);
	vn_cleanup();
}

static void cponfork_child_keeps_watching(void)
{
	vn_scratch();
	int kq = kqueuex(KQUEUE_CPONFORK);
	CHECK(kq >= 0);
	int fd = vn_create("f");
	VN_ADD(kq, fd, NOTE_WRITE | NOTE_ATTRIB);
	CHECK_EQ(fchmod(fd, 0600), 0); /* pending across the fork */
	struct kevent ev;
	CHECK_EQ(kq_readable(kq, 1000), 1);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int code = 0;
		if (kpoll(kq, &ev, 1, 1000) != 1 || ev.fflags != NOTE_ATTRIB)
			code |= 1;
		vn_write(fd, "child");
		if (kpoll(kq, &ev, 1, 1000) != 1 || ev.fflags != NOTE_WRITE)
			code |= 2;
		if (kpoll(kq, &ev, 1, 20) != 0)
			code |= 4;
		_exit(code);
	}
	int st;
	CHECK(waitpid(pid, &st, 0) == pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
	/* the parent's own: the pending attrib, and the child's write */
	VN_EXPECT(kq, fd, NOTE_ATTRIB | NOTE_WRITE);
	close(fd);
	close(kq);
	vn_cleanup();
}

/* No fd left for the inotify instance: a clear error, nothing half-made. */
static void out_of_fds_is_a_clear_error(void)
{
	vn_scratch();
	int kq = kq_new(), fd = vn_create("f");
	struct rlimit old, low;
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = 64;
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
	int taken[64], ntaken = 0, t;
	while ((t = dup(0)) >= 0) /* every free number below the limit */
		taken[ntaken++] = t;
	CHECK_EQ(errno, EMFILE);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_VNODE, EV_ADD, NOTE_WRITE, 0), EMFILE);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_VNODE, EV_DELETE, 0, 0), ENOENT);
	while (ntaken > 0)
		close(taken[--ntaken]);
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
	VN_ADD(kq, fd, NOTE_WRITE);
	vn_write(fd, "x");
	VN_EXPECT(kq, fd, NOTE_WRITE);
	close(fd);
	close(kq);
	vn_cleanup();
}

static long max_queued_events(void)
{
	FILE *f = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
	long n = -1;
	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

/* The kernel drops events once its queue is full (IN_Q_OVERFLOW). */
static void queue_overflow_loses_nothing(void)
{
	long max = max_queued_events();
	if (max <= 0 || max > (1 << 20)) {
		fprintf(stderr, "   (max_queued_events %ld: skipped)\n", max);
		return;
	}
	vn_scratch();
	int kq = kq_new(), noisy = vn_create("noisy"), quiet = vn_create("quiet");
	int grow = vn_create("grow");
	int r = open(vn_path("grow"), O_RDONLY);
	CHECK(r >= 0);
	VN_ADD(kq, noisy, NOTE_OPEN | NOTE_CLOSE);
	VN_ADD(kq, quiet, NOTE_WRITE | NOTE_DELETE);
	KOK(kq, (uintptr_t)r, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UD(9));
	EXPECT_NONE(kq, 20); /* the READ knote at EOF now waits on inotify */
	/* IN_OPEN and IN_CLOSE_NOWRITE alternate: the kernel merges none */
	for (long i = 0; i < max / 2 + 64; i++)
		close(open(vn_path("noisy"), O_RDONLY));
	/* these come after the queue is full: the kernel drops them */
	vn_write(quiet, "lost?");
	vn_write(grow, "lost?");
	struct kevent ev[8];
	int n = kpoll(kq, ev, 8, 1000);
	CHECK_EQ(n, 3);
	int i = find_ev(ev, n, (uintptr_t)noisy, EVFILT_VNODE);
	CHECK(i >= 0);
	CHECK_EQ(ev[i].fflags, NOTE_OPEN | NOTE_CLOSE);
	i = find_ev(ev, n, (uintptr_t)quiet, EVFILT_VNODE);
	CHECK(i >= 0);
	CHECK_EQ(ev[i].fflags, NOTE_WRITE); /* not NOTE_DELETE: still linked */
	i = find_ev(ev, n, (uintptr_t)r, EVFILT_READ);
	CHECK(i >= 0);
	CHECK_EQ(ev[i].data, 5);
	/* and it goes on working */
	vn_write(quiet, "x");
	VN_EXPECT(kq, quiet, NOTE_WRITE);
	close(r);
	close(grow);
	close(quiet);
	close(noisy);
	close(kq);
	vn_cleanup();
}

int main(void)
{
	RUN(watches_follow_the_knotes);
	RUN(close_removes_the_knote);
	RUN(unseen_close_then_add_watches_the_new_file);
	RUN(closed_in_a_handler_during_kevent);
	RUN(two_kqueues_each_get_the_event);
	RUN(cponfork_child_keeps_watching);
	RUN(out_of_fds_is_a_clear_error);
	RUN(queue_overflow_loses_nothing);
	return 0;
}
