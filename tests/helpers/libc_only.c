/*
 * Stands for libev, libevent or a plugin: a shared object linked against
 * libc alone, so its close() & co. refer to libc's symbol versions
 * (close@GLIBC_2.2.5 on x86-64), never to libbaton's.
 */
#include <unistd.h>

int helper_close(int fd)
{
	return close(fd);
}

int helper_dup2(int oldfd, int newfd)
{
	return dup2(oldfd, newfd);
}

int helper_dup3(int oldfd, int newfd, int flags)
{
	return dup3(oldfd, newfd, flags);
}

int helper_close_range(unsigned first, unsigned last, int flags)
{
	return close_range(first, last, flags);
}
