/*
 * A program that knows nothing of libbaton (not linked with it): run with
 * LD_PRELOAD=libbaton.so by test_close_binding.  Its own close() and the
 * close() of the libc-only library it uses must reach libbaton's hooks.
 * Exit 0: both did; 1: a knote survived a close; 2: no libbaton.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <sys/event.h>
#include <unistd.h>

int helper_close(int fd);

static int (*p_kqueue)(void);
static int (*p_kevent)(int, const struct kevent *, int, struct kevent *, int,
                       const struct timespec *);

/* A knote on a pipe, the pipe closed by closer: is the knote gone? */
static int knote_goes(int kq, int (*closer)(int))
{
	int p[2];
	struct kevent ch;
	if (pipe(p) < 0)
		return 0;
	EV_SET(&ch, (uintptr_t)p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	if (p_kevent(kq, &ch, 1, NULL, 0, NULL) != 0)
		return 0;
	closer(p[0]);
	EV_SET(&ch, (uintptr_t)p[0], EVFILT_READ, EV_DELETE, 0, 0, NULL);
	int gone = p_kevent(kq, &ch, 1, NULL, 0, NULL) == -1 && errno == EBADF;
	close(p[1]);
	return gone;
}

int main(void)
{
	p_kqueue = (int (*)(void))dlsym(RTLD_DEFAULT, "kqueue");
	p_kevent = (int (*)(int, const struct kevent *, int, struct kevent *, int,
	                    const struct timespec *))dlsym(RTLD_DEFAULT, "kevent");
	if (!p_kqueue || !p_kevent)
		return 2;
	int kq = p_kqueue();
	if (kq < 0)
		return 2;
	if (!knote_goes(kq, close) || !knote_goes(kq, helper_close))
		return 1;
	return 0;
}
