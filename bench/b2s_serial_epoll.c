/* B2-serial on raw epoll, the idiomatic way: T threads on one epoll fd;
 * every socket is registered once, EPOLLONESHOT with EPOLLIN (| EPOLLOUT
 * while output is pending); the handler takes the connection's mutex
 * (what a server needs as soon as anything else may touch the connection;
 * uncontended here), handles what epoll reported (pending output first),
 * and re-arms with EPOLL_CTL_MOD (epoll cannot fold it into the next wait). */
#include <sys/epoll.h>

#include "b2s_serial.h"

static int ep;

static void b2s_setup_queue(void)
{
	struct epoll_event ev;
	int i;

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	for (i = 0; i < 2 * b2s.pairs; i++) {
		ev.events = EPOLLIN | EPOLLONESHOT |
			    (b2s.socks[i].out_on ? EPOLLOUT : 0);
		ev.data.ptr = &b2s.socks[i];
		if (epoll_ctl(ep, EPOLL_CTL_ADD, b2s.socks[i].fd, &ev))
			die("epoll_ctl(ADD)");
	}
}

static void *b2s_worker(void *arg)
{
	struct b2s_thread *t = arg;
	struct epoll_event evs[1024], ev;
	struct b2s_sock *s;
	uint32_t e;
	int i, n;

	while (!b2s_stopped()) {
		n = epoll_wait(ep, evs, b2s.batch, 10);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (i = 0; i < n; i++) {
			s = evs[i].data.ptr;
			e = evs[i].events;
			b2s_acquire(t, s);
			pthread_mutex_lock(&s->mu);
			if (e & EPOLLOUT)
				b2s_on_write(t, s);
			if (e & (EPOLLIN | EPOLLHUP | EPOLLERR))
				b2s_on_read(t, s);
			s->out_on = s->pending != 0;
			ev.events = EPOLLIN | EPOLLONESHOT | (s->out_on ? EPOLLOUT : 0);
			ev.data.ptr = s;
			pthread_mutex_unlock(&s->mu);
			b2s_release(s);
			if (epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev)) {
				t->errors++;
				perror("epoll_ctl(MOD)");
			}
		}
		if (n > 0)
			b2s_count(t, n);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	return b2s_main(argc, argv, "epoll");
}
