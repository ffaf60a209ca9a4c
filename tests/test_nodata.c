/*
 * NOTE_NODATA (Baton extension): READ/WRITE knotes that skip the byte count
 * report data 1 while ready, EV_EOF as usual, and refuse NOTE_LOWAT.
 */
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

static void nodata_read_reports_one_while_readable(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	KOK(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, NOTE_NODATA, 0, UD(1));
	EXPECT_NONE(kq, 10);
	write_n(sv[1], 100);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 100);
	CHECK_EQ(e.data, 1);
	CHECK(e.udata == UD(1));
	CHECK_EQ(e.flags & EV_EOF, 0);
	read_n(sv[0], 100);
	EXPECT_NONE(kq, 10);
	close(sv[1]);
	e = EXPECT_ONE(kq, (uintptr_t)sv[0], EVFILT_READ, 100);
	CHECK(e.flags & EV_EOF);
	CHECK_EQ(e.data, 1); /* EOF reads as readable (read() returns 0) */
	close(sv[0]);
	close(kq);
}

static void nodata_write_reports_one_while_writable(void)
{
	int kq = kq_new();
	int p[2];
	CHECK(pipe(p) == 0);
	set_nonblock(p[1]);
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ADD | EV_DISPATCH, NOTE_NODATA, 0, NULL);
	struct kevent e = EXPECT_ONE(kq, (uintptr_t)p[1], EVFILT_WRITE, 100);
	CHECK_EQ(e.data, 1);
	/* fill the pipe: no longer writable after re-enable */
	char buf[4096] = {0};
	while (write(p[1], buf, sizeof(buf)) > 0)
		;
	KOK(kq, (uintptr_t)p[1], EVFILT_WRITE, EV_ENABLE, 0, 0, NULL);
	EXPECT_NONE(kq, 20);
	close(p[0]);
	e = EXPECT_ONE(kq, (uintptr_t)p[1], EVFILT_WRITE, 100);
	CHECK(e.flags & EV_EOF);
	close(p[1]);
	close(kq);
}

static void nodata_with_lowat_is_einval(void)
{
	int kq = kq_new();
	int sv[2];
	CHECK(socketpair_stream(sv) == 0);
	CHECK_EQ(kchange_err(kq, (uintptr_t)sv[0], EVFILT_READ, EV_ADD, NOTE_NODATA | NOTE_LOWAT, 4),
		 EINVAL);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

int main(void)
{
	RUN(nodata_read_reports_one_while_readable);
	RUN(nodata_write_reports_one_while_writable);
	RUN(nodata_with_lowat_is_einval);
	fprintf(stderr, "test_nodata: ok\n");
	return 0;
}
