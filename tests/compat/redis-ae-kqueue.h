/*
 * Forced onto Redis's ae.o alone by redis.sh (-include): Redis picks its event
 * backend in config.h, epoll on Linux.  Redis's config.h is read here first;
 * its include guard makes ae.c's own #include "config.h" a no-op, so the
 * switch below is what ae.c sees, and it compiles ae_kqueue.c against
 * libbaton's <sys/event.h>.  Redis's sources stay as Debian ships them.
 */
#include "config.h"
#undef HAVE_EPOLL
#define HAVE_KQUEUE 1
#include <sys/event.h>
