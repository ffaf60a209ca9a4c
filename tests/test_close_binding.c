/*
 * close() and its family reach libbaton's hooks from every object of the
 * process (SEMANTICS I4): a program linked with -lbaton, a shared library
 * linked against libc alone (libev, libevent), a module loaded with
 * dlopen(), and a program that only gets libbaton by LD_PRELOAD.
 */
#include "util.h"

#include <dlfcn.h>
#include <linux/close_range.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

/* from helpers/libc_only.c, linked against libc alone */
int helper_close(int fd);
int helper_dup2(int oldfd, int newfd);
int helper_dup3(int oldfd, int newfd, int flags);
int helper_close_range(unsigned first, unsigned last, int flags);

struct closers {
	int (*close)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*close_range)(unsigned, unsigned, int);
};

enum { BY_CLOSE, BY_DUP2, BY_DUP3, BY_CLOSE_RANGE };

/*
 * A knote on a pipe; the number is closed (or replaced) by one of cl's
 * calls: the knote is gone, and EV_ADD on the file that takes the number
 * registers that file.
 */
static void number_goes(const struct closers *cl, int how)
{
	int kq = kq_new();
	int p[2], q[2];
	CHECK(pipe(p) == 0);
	CHECK(pipe(q) == 0);
	int fd = p[0];
	write_n(p[1], 1);
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, UD(1));
	EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 200);
	switch (how) {
	case BY_CLOSE:
		CHECK_EQ(cl->close(fd), 0);
		break;
	case BY_CLOSE_RANGE:
		CHECK_EQ(cl->close_range((unsigned)fd, (unsigned)fd, 0), 0);
		break;
	case BY_DUP2:
		CHECK_EQ(cl->dup2(q[0], fd), fd);
		break;
	case BY_DUP3:
		CHECK_EQ(cl->dup3(q[0], fd, 0), fd);
		break;
	}
	if (how == BY_CLOSE || how == BY_CLOSE_RANGE) {
		EXPECT_NONE(kq, 20);
		CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0), EBADF);
		CHECK_EQ(fcntl(q[0], F_DUPFD, fd), fd); /* the new file takes the number */
	}
	/* fd now names q's read end, which is empty */
	EXPECT_NONE(kq, 20);
	CHECK_EQ(kchange_err(kq, (uintptr_t)fd, EVFILT_READ, EV_DELETE, 0, 0), ENOENT);
	KOK(kq, (uintptr_t)fd, EVFILT_READ, EV_ADD, 0, 0, UD(2));
	EXPECT_NONE(kq, 20);
	write_n(q[1], 3);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)fd, EVFILT_READ, 200);
	CHECK(e.udata == UD(2));
	CHECK_EQ(e.data, 3);
	close(fd);
	close(p[1]);
	close(q[0]);
	close(q[1]);
	close(kq);
}

static void every_call_of(const struct closers *cl)
{
	number_goes(cl, BY_CLOSE);
	number_goes(cl, BY_DUP2);
	number_goes(cl, BY_DUP3);
	number_goes(cl, BY_CLOSE_RANGE);
}

static void close_from_the_program_linked_with_libbaton(void)
{
	struct closers cl = {close, dup2, dup3, close_range};
	every_call_of(&cl);
}

static void close_from_a_library_linked_against_libc_alone(void)
{
	struct closers cl = {helper_close, helper_dup2, helper_dup3, helper_close_range};
	every_call_of(&cl);
}

static void close_from_a_dlopened_module_linked_against_libc_alone(void)
{
	void *h = dlopen(BATON_TEST_MODULE, RTLD_NOW | RTLD_LOCAL);
	CHECK(h != NULL);
	struct closers cl;
	*(void **)&cl.close = dlsym(h, "helper_close");
	*(void **)&cl.dup2 = dlsym(h, "helper_dup2");
	*(void **)&cl.dup3 = dlsym(h, "helper_dup3");
	*(void **)&cl.close_range = dlsym(h, "helper_close_range");
	CHECK(cl.close && cl.dup2 && cl.dup3 && cl.close_range);
	every_call_of(&cl);
	dlclose(h);
}

static void close_from_a_program_that_gets_libbaton_by_ld_preload(void)
{
#ifdef BATON_SANITIZED
	/* the sanitizer runtime must come first; LD_PRELOAD would precede it */
	fprintf(stderr, "   (skipped in a sanitizer build)\n");
#else
	char pre[4096];
	snprintf(pre, sizeof pre, "LD_PRELOAD=%s", BATON_TEST_LIB);
	char *env[] = {pre, NULL};
	char *argv[] = {BATON_TEST_PROBE, NULL};
	pid_t pid;
	CHECK_EQ(posix_spawn(&pid, BATON_TEST_PROBE, NULL, NULL, argv, env), 0);
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
	/* and without libbaton the probe knows it has none: the test can fail */
	char *env0[] = {NULL};
	CHECK_EQ(posix_spawn(&pid, BATON_TEST_PROBE, NULL, NULL, argv, env0), 0);
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 2);
#endif
}

int main(void)
{
	RUN(close_from_the_program_linked_with_libbaton);
	RUN(close_from_a_library_linked_against_libc_alone);
	RUN(close_from_a_dlopened_module_linked_against_libc_alone);
	RUN(close_from_a_program_that_gets_libbaton_by_ld_preload);
	return 0;
}
