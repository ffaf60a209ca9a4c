/*
 * <sys/event.h> for Linux: the FreeBSD kqueue/kevent API, provided by libbaton.
 *
 * Numeric values are FreeBSD's, so a program written for FreeBSD builds
 * unchanged.  Baton adds one flag, EV_SERIAL (serial groups), which a
 * portable program detects with #ifdef EV_SERIAL.
 */
#ifndef BATON_SYS_EVENT_H
#define BATON_SYS_EVENT_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EVFILT_READ     (-1)
#define EVFILT_WRITE    (-2)
#define EVFILT_AIO      (-3) /* not supported on Linux: EINVAL */
#define EVFILT_VNODE    (-4)
#define EVFILT_PROC     (-5)
#define EVFILT_SIGNAL   (-6)
#define EVFILT_TIMER    (-7)
#define EVFILT_PROCDESC (-8)  /* not supported on Linux: EINVAL */
#define EVFILT_FS       (-9)  /* not supported on Linux: EINVAL */
#define EVFILT_LIO      (-10) /* not supported on Linux: EINVAL */
#define EVFILT_USER     (-11)
#define EVFILT_SENDFILE (-12) /* not supported on Linux: EINVAL */
#define EVFILT_EMPTY    (-13)
#define EVFILT_SYSCOUNT 13

struct kevent {
	uintptr_t ident; /* identifier for this event */
	short filter;    /* filter for event */
	unsigned short flags;
	unsigned int fflags;
	int64_t data;
	void *udata;     /* opaque user data identifier */
	uint64_t ext[4]; /* extensions; ext[1] is the EV_SERIAL group id */
};

/* Evaluates each argument once; zeroes ext[] as FreeBSD 12+ does. */
#define EV_SET(kevp, a, b, c, d, e, f)               \
	do {                                         \
		struct kevent *baton_kevp_ = (kevp); \
		baton_kevp_->ident = (a);            \
		baton_kevp_->filter = (b);           \
		baton_kevp_->flags = (c);            \
		baton_kevp_->fflags = (d);           \
		baton_kevp_->data = (e);             \
		baton_kevp_->udata = (f);            \
		baton_kevp_->ext[0] = 0;             \
		baton_kevp_->ext[1] = 0;             \
		baton_kevp_->ext[2] = 0;             \
		baton_kevp_->ext[3] = 0;             \
	} while (0)

/* actions */
#define EV_ADD          0x0001 /* add event to kq (implies enable) */
#define EV_DELETE       0x0002 /* delete event from kq */
#define EV_ENABLE       0x0004 /* enable event */
#define EV_DISABLE      0x0008 /* disable event (not reported) */
#define EV_FORCEONESHOT 0x0100 /* make oneshot and activate */
#define EV_KEEPUDATA    0x0200 /* do not update the udata field */

/* flags */
#define EV_ONESHOT  0x0010 /* only report one occurrence */
#define EV_CLEAR    0x0020 /* clear event state after reporting */
#define EV_RECEIPT  0x0040 /* force EV_ERROR on success, data=0 */
#define EV_DISPATCH 0x0080 /* disable event after reporting */

/*
 * Baton extension: serial groups.  Not defined by FreeBSD, whose kernel
 * would ignore the bit; test for it with #ifdef.
 */
#define EV_SERIAL 0x0400

#define EV_SYSFLAGS 0xF000 /* reserved by system */
#define EV_DROP     0x1000 /* note should be dropped */
#define EV_FLAG1    0x2000 /* filter-specific flag */
#define EV_FLAG2    0x4000 /* filter-specific flag */

/* returned values */
#define EV_EOF   0x8000 /* EOF detected */
#define EV_ERROR 0x4000 /* error, data contains errno */

/* data/hint flags/masks for EVFILT_USER */
#define NOTE_FFNOP      0x00000000
#define NOTE_FFAND      0x40000000
#define NOTE_FFOR       0x80000000
#define NOTE_FFCOPY     0xc0000000
#define NOTE_FFCTRLMASK 0xc0000000
#define NOTE_FFLAGSMASK 0x00ffffff
#define NOTE_TRIGGER    0x01000000

/* data/hint flags for EVFILT_{READ|WRITE} */
#define NOTE_LOWAT     0x0001 /* low water mark */
#define NOTE_FILE_POLL 0x0002 /* behave like poll() on regular files */
/*
 * Baton extension: do not count bytes for data (which is then 1 while
 * readable/writable, else 0), saving Linux's FIONREAD/SIOCOUTQ system calls
 * on every event.  Test with #ifdef; FreeBSD would ignore the bit.
 */
#define NOTE_NODATA 0x00010000

/* data/hint flags for EVFILT_VNODE */
#define NOTE_DELETE      0x0001
#define NOTE_WRITE       0x0002
#define NOTE_EXTEND      0x0004
#define NOTE_ATTRIB      0x0008
#define NOTE_LINK        0x0010
#define NOTE_RENAME      0x0020
#define NOTE_REVOKE      0x0040
#define NOTE_OPEN        0x0080
#define NOTE_CLOSE       0x0100
#define NOTE_CLOSE_WRITE 0x0200
#define NOTE_READ        0x0400

/* data/hint flags for EVFILT_PROC */
#define NOTE_EXIT      0x80000000
#define NOTE_FORK      0x40000000
#define NOTE_EXEC      0x20000000
#define NOTE_PCTRLMASK 0xf0000000
#define NOTE_PDATAMASK 0x000fffff
#define NOTE_TRACK     0x00000001
#define NOTE_TRACKERR  0x00000002
#define NOTE_CHILD     0x00000004

/* data/hint flags for EVFILT_TIMER */
#define NOTE_SECONDS  0x00000001
#define NOTE_MSECONDS 0x00000002
#define NOTE_USECONDS 0x00000004
#define NOTE_NSECONDS 0x00000008
#define NOTE_ABSTIME  0x00000010

/* flags for kqueuex() */
#define KQUEUE_CLOEXEC  0x00000001
#define KQUEUE_CPONFORK 0x00000002

int kqueue(void);
int kqueuex(unsigned int flags);
int kqueue1(int flags);
int kevent(int kq, const struct kevent *changelist, int nchanges, struct kevent *eventlist,
           int nevents, const struct timespec *timeout);

#ifdef __cplusplus
}
#endif

#endif /* BATON_SYS_EVENT_H */
