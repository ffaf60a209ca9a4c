/*
 * libbaton internals: the kqueue object, knotes, the fd table and the
 * contract every filter implements.  Lock order and the knote state machine
 * are described in docs/design.md; each shared field names its lock.
 */
#ifndef BATON_KQ_PRIVATE_H
#define BATON_KQ_PRIVATE_H

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/event.h>

#define KQ_NSIG 65 /* signals 1..64 */

struct kq;
struct knote;
struct kq_fdent;

/*
 * Debug builds check that a function that requires a lock runs with it held
 * (by some thread: a try-lock cannot tell which, but catches a caller that
 * forgot it).  Release builds (NDEBUG) pay nothing.
 */
/*
 * The lock of the per-event paths (fe_lock, g_lock, kq_lock): one word, taken with a
 * compare-and-swap and released with an exchange, inline; a futex only when
 * contended (lock.c).  0: free, 1: held, 2: held and someone may sleep on
 * it.  glibc's mutex costs about 55 instructions a round trip (a call, its
 * kind and elision checks) where this costs 6, and a B2-serial round takes
 * four; kq_lock is taken two or three times by every kevent() that touches a
 * non-fd knote (B3: 116 instructions fewer a call).  Acquire/release on the
 * word, which ThreadSanitizer follows.
 */
struct kq_mutex {
	atomic_uint m;
};
void kq__mutex_wait(struct kq_mutex *l); /* lock.c: the contended case */
void kq__mutex_wake(struct kq_mutex *l);
static inline void kq__mutex_init(struct kq_mutex *l)
{
	atomic_init(&l->m, 0);
}
static inline void kq__mutex_lock(struct kq_mutex *l)
{
	unsigned free_ = 0;
	if (__builtin_expect(!atomic_compare_exchange_strong_explicit(
	                             &l->m, &free_, 1, memory_order_acquire, memory_order_relaxed),
	                     0))
		kq__mutex_wait(l);
}
static inline void kq__mutex_unlock(struct kq_mutex *l)
{
	if (__builtin_expect(atomic_exchange_explicit(&l->m, 0, memory_order_release) == 2, 0))
		kq__mutex_wake(l);
}
static inline bool kq__mutex_held(struct kq_mutex *l)
{
	return atomic_load_explicit(&l->m, memory_order_relaxed) != 0;
}

#ifndef NDEBUG
#define KQ_ASSERT_LOCKED(m)                                               \
	assert(_Generic((m), struct kq_mutex *                            \
	                : kq__mutex_held((struct kq_mutex *)(m)), default \
	                : pthread_mutex_trylock((pthread_mutex_t *)(m)) == EBUSY))
#else
#define KQ_ASSERT_LOCKED(m) ((void)0)
#endif

/* kn_status bits */
#define KN_ATTACHED 0x01 /* registered; cleared when removed */
#define KN_DISABLED 0x02 /* EV_DISABLE, or EV_DISPATCH after delivery */
#define KN_ACTIVE   0x04 /* on the ready queue (kq_head), or pending while disabled */
#define KN_FORCED   0x08 /* EV_FORCEONESHOT: deliver once more whatever the condition */
#define KN_PENDING  0x10 /* fd knote: an edge came while it was disabled */
#define KN_PERIODIC 0x20 /* timer: re-armed after each expiry (filt_timer.c) */

/* Flags a knote keeps; actions are not remembered (as FreeBSD). */
#define KN_KEPT_FLAGS (EV_ONESHOT | EV_CLEAR | EV_RECEIPT | EV_DISPATCH | EV_KEEPUDATA | EV_SERIAL)

struct kq_group;
struct kq_vwatch;

/* hashtab.c: an intrusive chained hash (see there); the user's lock held */
struct kq_htab {
	void **ht_tab;
	uint32_t ht_mask, ht_count;
};
static inline void *kq__ht_head(const struct kq_htab *h, uint32_t hash)
{
	return h->ht_tab ? h->ht_tab[hash & h->ht_mask] : NULL;
}
int kq__ht_insert(struct kq_htab *h, void *obj, size_t next_off, uint32_t (*hash_of)(const void *));
void kq__ht_remove(struct kq_htab *h, void *obj, size_t next_off, uint32_t hash);
void kq__ht_free(struct kq_htab *h);

/* slab.c: type-stable objects of one size (see there); the user's lock held */
struct kq_slab {
	void *sl_free;
	void *sl_chunks;             /* the newest chunk; each links to the one before */
	uint32_t sl_nchunks, sl_per; /* chunks made, objects per chunk */
	size_t sl_size, sl_next;     /* object size, offset of its free-list link */
	void (*sl_init)(void *);     /* once per object, when its chunk is made */
};
void *kq__slab_alloc(struct kq_slab *sl);
void kq__slab_free(struct kq_slab *sl, void *obj);
void kq__slab_foreach(struct kq_slab *sl, void (*fn)(void *));
void kq__slab_destroy(struct kq_slab *sl, void (*fini)(void *));

/*
 * What few knotes need, kept out of struct knote so that a timer stays small:
 * ext[] as last set (when not all zero) and serial-group membership.
 */
struct kn_aux {
	uint64_t ext[4];
	struct kq_group *group;      /* knote's lock; set/cleared with kq_glock too */
	uint32_t group_gen;          /* group->g_gen when it joined */
	struct knote *gnext, *gprev; /* g_lock: the group's member list */
	atomic_bool gpend;           /* g_lock to set; parked while the group was held */
};

/*
 * A serial group (EV_SERIAL): at most one kevent() call holds it (G1).
 * Type-stable like struct kq; g_gen tells a recycled group from the old one.
 */
struct kq_group {
	struct kq_mutex g_lock;
	uint64_t g_id;            /* constant while alive; 0 for a knote's own group */
	atomic_uint g_gen;        /* bumped when the group is created */
	atomic_ullong g_holder;   /* g_lock to change; call token of the holder, 0 free */
	uint32_t g_nmembers;      /* g_lock */
	struct knote *g_members;  /* g_lock */
	struct kq_group *g_hnext; /* kq_glock: hash chain, or the free list */
};

/*
 * A registered event.  Who guards what: for fd knotes (embedded in a
 * kq_fdent) every field but the queue links is guarded by fe_lock; for all
 * other knotes by kq_lock.  The queue links and kn_queued always by kq_lock.
 */
struct knote {
	uintptr_t kn_ident;
	void *kn_udata;
	int64_t kn_sdata;                /* data given by the last change (period, lowat...) */
	struct kn_aux *kn_aux;           /* ext[] and group membership, NULL while unused */
	struct knote *kn_next, *kn_prev; /* ready queue links (kq_lock) */
	struct knote *kn_hnext;          /* ident hash chain (kq_lock) */
	short kn_filter;
	unsigned short kn_flags; /* KN_KEPT_FLAGS subset */
	uint32_t kn_sfflags;     /* fflags given by the last change */
	uint16_t kn_status;
	bool kn_queued;        /* on the ready queue (kq_lock) */
	bool kn_isfd;          /* constant: embedded in a kq_fdent */
	uint32_t kn_heapidx;   /* timers: slot in kq_timers, UINT32_MAX if none */
	atomic_ullong kn_seen; /* knote's lock: token of the call that last delivered it */
	int64_t kn_data;       /* accumulated data: expirations, signal count */
	/*
	 * Last, so that a timer knote (its deadline is in the heap, its
	 * period in kn_sdata) is allocated without it: KN_SMALL bytes.
	 */
	union {
		struct {
			uint32_t triggered;
		} user;
		struct {
			int pidfd;      /* private; -1 once the exit was seen */
			uint32_t fired; /* NOTE_* that happened since the last delivery */
			int32_t ppid;   /* NOTE_CHILD: the parent's pid */
			uint32_t want;  /* fflags in force (kept when a re-add fails) */
		} proc;
		struct {
			uint64_t seen; /* kq__sig_count() when last looked at */
		} sig;
		struct {
			struct kq_fdent *fe; /* constant: the table entry it lives in */
			uint32_t revents;    /* fe_lock: the report f_event looks at */
			uint32_t mark; /* fe_lock: the filter's own (EMPTY: see filt_fdops.c) */
		} fd;
		struct {
			struct kq_vwatch *w; /* the inode's watch (filt_vnode.c) */
			uint32_t fflags;     /* NOTE_* seen since the last delivery */
			uint32_t closegen;   /* the fd entry's fe_closegen at attach */
		} vn;
	} kn_u;
};

/* The size of a timer knote (kq_tslab): everything before kn_u. */
#define KN_SMALL offsetof(struct knote, kn_u)

/*
 * The contract between kevent() and a filter.  Every hook runs with the
 * knote's lock held (see struct knote).  Errors are 0 / -errno.  An fd
 * filter (f_events != 0) has its knotes in the fd's table entry, under
 * fe_lock: f_attach checks the kind of file, f_event reads the report in
 * kn_u.fd.revents (fresh from epoll or poll()).
 */
struct filterops {
	short f_filter; /* EVFILT_* */
	/* fd filters: the epoll events the knote waits for; 0: not an fd filter */
	uint32_t f_events;
	/* fd filters: the knote needs an edge registration whatever its flags */
	bool f_edge;
	/* Checks a change's fflags/data before anything is touched. */
	int (*f_validate)(const struct kevent *kev);
	/* A new knote: set up its source (timer, signal mask...). */
	int (*f_attach)(struct kq *kq, struct knote *kn);
	/* The knote goes away: undo f_attach. */
	void (*f_detach)(struct kq *kq, struct knote *kn);
	/*
	 * EV_ADD on an existing knote, after kn_sdata/kn_sfflags were updated
	 * from the change (NULL: nothing more to do).  Returns 0 / -errno.
	 */
	int (*f_touch)(struct kq *kq, struct knote *kn, const struct kevent *kev);
	/*
	 * Is the knote's condition true?  Fills out->data, out->fflags and
	 * EV_EOF in out->flags.  Called at delivery time.
	 */
	bool (*f_event)(struct kq *kq, struct knote *kn, struct kevent *out);
	/* After delivery: reset state for EV_CLEAR (NULL: nothing). */
	void (*f_clear)(struct kq *kq, struct knote *kn);
	/*
	 * Is the knote's source gone (its fd closed where no lock could be
	 * taken)?  Then it is dropped unseen, as if removed at the close.
	 * kev is the change about to apply to it, NULL at delivery.
	 * NULL: never.
	 */
	bool (*f_gone)(struct kq *kq, struct knote *kn, const struct kevent *kev);
};

extern const struct filterops kq__user_ops;
extern const struct filterops kq__timer_ops;
extern const struct filterops kq__signal_ops;
extern const struct filterops kq__proc_ops;
extern const struct filterops kq__read_ops;
extern const struct filterops kq__write_ops;
extern const struct filterops kq__empty_ops;
extern const struct filterops kq__vnode_ops;

/* An fd's knotes: one per fd filter, in this order (kq__fd_ops[]). */
enum { FE_READ = 0, FE_WRITE = 1, FE_EMPTY = 2, FE_NKN = 3 };
extern const struct filterops *const kq__fd_ops[FE_NKN];
/* The slot of an fd filter in an fd entry, -1 if filter is not one. */
static inline int kq__fd_slot(short filter)
{
	switch (filter) {
	case EVFILT_READ:
		return FE_READ;
	case EVFILT_WRITE:
		return FE_WRITE;
	case EVFILT_EMPTY:
		return FE_EMPTY;
	default:
		return -1;
	}
}

enum kq_ftype {
	FT_UNKNOWN = 0,
	FT_STREAM,  /* stream socket (fe_unsure: maybe listening, read_event learns) */
	FT_LISTEN,  /* listening socket */
	FT_DGRAM,   /* datagram / seqpacket socket */
	FT_PIPE,    /* pipe or FIFO */
	FT_TTY,     /* character device that answers FIONREAD */
	FT_REGULAR, /* regular file or directory: not pollable by epoll */
	FT_OTHER,   /* eventfd, epoll, kqueue...: trust epoll, data 0 */
	FT_BAD,     /* not an open fd (probe result only) */
	FT_NODEV,   /* a device FreeBSD has no kqueue filter for (probe result only) */
};

struct kq_fdent {
	struct kq_mutex fe_lock;
	int fe_fd;           /* constant: the index of this entry */
	uint32_t fe_gen;     /* fe_lock; bumped when close() removes the fd */
	uint32_t fe_regmask; /* fe_lock; events registered in epoll */
	/* fe_lock; moves with every epoll_ctl on the fd's registration, made
	 * or queued (uring_wait.c: a queued re-arm may run after a later one) */
	atomic_uint fe_regseq;
	/* re-arms of the fd queued or in flight (uring_wait.c): the close hook
	 * waits for them, so that the number is not reused under one */
	atomic_uint fe_rearms;
	atomic_bool
	        fe_inepoll; /* fe_lock to change; registered in epoll (the close hook reads it) */
	bool fe_armed;      /* fe_lock; false once an EPOLLONESHOT fired */
	uint8_t fe_type;    /* fe_lock; enum kq_ftype, found at first attach */
	bool fe_watched;    /* fe_lock; an inotify watch wakes it when the file changes */
	/*
	 * close() of the number, seen by the hook without a lock (it may run
	 * in a signal handler): bumped there, and the knotes are removed by
	 * the next holder of fe_lock, which finds fe_closeseen behind it.
	 */
	atomic_uint fe_closegen;
	uint32_t fe_closeseen; /* fe_lock: fe_closegen when last applied */
	/* fe_lock: the file's identity, when known (fe_ino 0: not looked up;
	 * a socket's registration in epoll is its identity, see filt_fd.c) */
	uint64_t fe_dev, fe_ino;
	uint8_t fe_first; /* fe_lock; the slot that goes first in the next report (it did not fit) */
	bool fe_tcp;      /* fe_lock; a TCP socket: its send queue drains without a wake-up */
	bool fe_unsure;   /* fe_lock; a socket whose listening and fe_tcp are not looked up */
	/* fe_lock; an EV_ADD left the check that the number still names the
	 * knotes' file to its registration's epoll_ctl (fe_sync, filt_fd.c) */
	bool fe_verify;
	bool fe_draining;       /* fe_lock; on kq_drains, waiting for its send queue to drain */
	uint8_t fe_drain_tries; /* fe_lock; looks at a queue that did not drain, for the backoff */
	atomic_uint fe_count;   /* any thread, CAS: which counts to batch for it (uring.c) */
	struct knote fe_kn[FE_NKN];
};

struct kq_fdtable;

/* Per-kqueue state.  See docs/design.md for the lock order. */
struct kq {
	atomic_int kq_refs;            /* first: kq_alloc() clears from kq_fd on only */
	_Atomic(struct kq *) kq_lnext; /* kq_global to change: live list, walked lock-free */
	struct kq *kq_lprev;           /* kq_global */
	atomic_bool kq_listed;         /* kq_global to change: on the live list, fully built */
	/* kq_orphans link (kqueue.c) while it holds a reference there; kept
	 * out of kq_alloc()'s clearing, as a recycled struct may still be on it */
	struct kq *kq_orphan_next;
	/* Read by kq_adopt()'s lock-free walkers, which may stand on a struct
	 * being recycled: kept out of kq_alloc()'s clearing, changed atomically. */
	atomic_bool kq_dead;  /* close() was called */
	atomic_int kq_lookfd; /* kq_epfd as the walkers see it, -1: none */
	int kq_fd;            /* the user's number: the epoll fd */
	int kq_epfd;          /* private dup of kq_fd, used by every call */
	int kq_wakefd;        /* eventfd: userspace queue has work (EPOLLET) */
	int kq_timerfd;
	int kq_procfd; /* kq_lock to change: process connector socket, -1 unless needed */
	int kq_sigfd;  /* signalfd, -1 until a blocked signal may need it */
	int kq_inofd;  /* inotify, -1 until a regular file waits to grow */
	unsigned kq_flags;
	atomic_int kq_names; /* numbers the fd -> kq table maps to this kqueue */
	bool kq_released;    /* kq_global: its memory went back (kq_release) */

	struct kq_mutex kq_lock;
	struct knote *kq_head, *kq_tail; /* kq_lock: the ready queue, FIFO */
	atomic_int kq_nready;            /* length of the ready queue */
	atomic_bool kq_wake_pending;     /* an eventfd wake is in flight */
	/* the futex wait of a kqueue with only EVFILT_USER knotes (quiet.c) */
	atomic_bool kq_loud;    /* a change of another filter was made: waits go to epoll */
	atomic_uint kq_qseq;    /* futex word: moved by each wake of its sleepers */
	atomic_int kq_qwaiters; /* threads in kq__quiet_wait() */

	/* kq_lock: hash of knotes whose ident is not an fd */
	struct kq_htab kq_hash;

	/* kq_lock: timers (timerheap.c) */
	struct kq_tslot *kq_timers;
	uint32_t kq_ntimers, kq_timercap;
	int64_t kq_timer_armed; /* deadline the timerfd is set to, 0 = none */

	/* kq_lock: regular files at EOF watched with inotify (filewatch.c) */
	struct kq_watch *kq_watches;
	uint32_t kq_nwatches, kq_watchcap;
	atomic_uint kq_wpending; /* kq_lock to change: watches waiting to be made */

	/* kq_lock: fds whose EMPTY knote waits for a TCP send queue (drain.c) */
	int *kq_drains;
	uint32_t kq_ndrains, kq_draincap;
	int64_t kq_drain_at; /* when the timerfd looks at them, 0: not armed for them */

	/* signals (filt_signal.c, sighook.c) */
	_Atomic uint64_t kq_sigmask;  /* kq_lock to change: bit n-1 for a watched signal n */
	uint32_t kq_signals[KQ_NSIG]; /* kq_lock: registrations per signal */
	unsigned kq_sigfd_gen;        /* kq_lock: kq__sig_gen() the signalfd's mask follows */
	atomic_bool kq_sigdirty;      /* a watched signal was recorded: look at the counts */

	uint32_t kq_procusers; /* kq_lock: knotes that need kq_procfd */

	/* kq_lock: EVFILT_VNODE watches by inotify wd (filt_vnode.c) */
	struct kq_htab kq_vwatch;
	atomic_uint kq_nvnode; /* kq_lock to change: VNODE knotes (the close hook skips none) */

	/* kq_lock: knote slabs: timers (KN_SMALL bytes), all others */
	struct kq_slab kq_tslab, kq_kslab;

	struct kq_fdtable *kq_fdt; /* lock-free reads, see fdtable.c */

	/* serial groups (group.c); lock order: fe_lock, kq_lock, kq_glock, g_lock */
	pthread_mutex_t kq_glock;
	struct kq_htab kq_ghash; /* kq_glock */
	struct kq_slab kq_gslab; /* kq_glock: groups, type-stable */
};

/* quiet.c: waits of a kqueue that only triggers can make ready */
int kq__quiet_wait(struct kq *kq, int ms); /* 0, or -EINTR */
bool kq__quiet_wake(struct kq *kq);        /* true: a sleeper was woken, no eventfd write */
void kq__quiet_end(struct kq *kq);         /* before the first change of another filter */
void kq__quiet_wake_all(struct kq *kq);    /* the kqueue was closed */

/*
 * Do kq's waits sleep on its futex?  Not once it is loud, nor while an
 * eventfd wake is in flight: epoll_wait() takes that one, or the kqueue's
 * fd would stay readable with nothing to read.
 */
static inline bool kq__quiet(struct kq *kq)
{
	return !atomic_load_explicit(&kq->kq_loud, memory_order_relaxed) &&
	       !atomic_load_explicit(&kq->kq_wake_pending, memory_order_relaxed);
}

/* group.c: serial groups */
struct kn_aux *kq__aux(struct knote *kn); /* allocates; NULL: ENOMEM */
int kq__group_set(struct kq *kq, struct knote *kn, const struct kevent *kev, bool isfd);
void kq__group_leave(struct kq *kq, struct knote *kn);
bool kq__group_take(struct knote *kn); /* false: parked, the group is held */
void kq__group_release(struct kq *kq, struct kq_group *g, uint32_t gen);
int kq__group_release_fd(struct kq_group *g, uint32_t gen, const struct kq_fdent *fe,
                         struct knote **m, bool *pend);

/* Is kn's group held by any call?  (Inline: fe_desired() asks per knote.) */
static inline bool kq__group_held(const struct knote *kn)
{
	const struct kq_group *g = kn->kn_aux ? kn->kn_aux->group : NULL;
	return g && atomic_load_explicit(&g->g_holder, memory_order_relaxed) != 0;
}

static inline struct kq_group *kq__group_of(const struct knote *kn, uint32_t *gen)
{
	struct kq_group *g = kn->kn_aux ? kn->kn_aux->group : NULL;
	if (g)
		*gen = kn->kn_aux->group_gen;
	return g;
}
void kq__group_destroy_all(struct kq *kq);
void kq__group_fork(struct kq *kq);
/* KQUEUE_CPONFORK: the child's copy gets kernel objects of its own */
void kq__fd_fork(struct kq *kq, struct kq_fdent *fe, void *arg);
void kq__timer_fork(struct kq *kq);
int kq__signal_fork(struct kq *kq);
int kq__proc_fork(struct kq *kq);
void kq__fd_group_released(struct kq *kq, struct kq_fdent *fe, struct kq_group *g, uint32_t gen,
                           struct knote *const *kn, const bool *pend, int n);
void kq__generic_group_released(struct kq *kq, struct knote *kn, struct kq_group *g, uint32_t gen,
                                bool pend);

/* kqueue.c */
struct kq *kq__get(int fd); /* takes a reference, NULL: EBADF */

/*
 * A reference to a kqueue found lock-free (fd table, live list), taken only
 * while another is held: at zero the struct is being released, or was and
 * may be recycled, and a hook's kq__put() would take the transient
 * reference for the last one and close descriptors that are not its own.
 */
static inline bool kq__ref_if_held(struct kq *kq)
{
	int r = atomic_load(&kq->kq_refs);
	while (r > 0 && !atomic_compare_exchange_weak(&kq->kq_refs, &r, r + 1))
		;
	return r > 0;
}
void kq__put(struct kq *kq);
bool kq__is_kqueue_fd(int fd);
void kq__wake(struct kq *kq); /* a waiter should look at the ready queue (noted) */
void kq__wake_flush(struct kq *kq, bool collecting); /* end of kevent(), no lock held */
/* Initial-exec, as kq__depth: read per event, and libbaton.so's default
 * (global-dynamic) model would make each read a __tls_get_addr() call. */
extern _Thread_local uint64_t kq__call_token /* this kevent() call: never 0, never reused */
        __attribute__((tls_model("initial-exec")));
extern _Thread_local struct kevent *kq__call_out /* this call's eventlist (scan) */
        __attribute__((tls_model("initial-exec")));
int kq__close_kqueue(int fd); /* 1 if fd was a kqueue (now closing: KT_CLOSING) */
void kq__close_kqueue_done(unsigned first, unsigned last); /* the real close returned */
bool kq__is_closing_name(int fd); /* a kqueue's name between the hook and the real close */
void kq__dup_kqueue(int oldfd, int newfd, bool cloexec); /* newfd made from oldfd */
int kq__name_getfd(int fd);                              /* a name's FD_CLOEXEC, -1: not one */
bool kq__name_setfd(int fd, int fdflags);
bool kq__is_private_fd(int fd);            /* one of a kqueue's own descriptors */
int kq__private_fd(struct kq *kq, int fd); /* moves a new own descriptor out of the way */
void kq__private_close(struct kq *kq, int fd);
void kq__private_evict(int fd); /* dup2() onto an own descriptor: move it first */
long kq__next_private(unsigned from, unsigned last);
int kq__close_kqueue_range(unsigned first, unsigned last); /* how many were marked closing */
void kq__name_cloexec_range(unsigned first, unsigned last);
void kq__foreach(void (*fn)(struct kq *, void *), void *arg);
extern _Atomic(struct kq *) kq__live; /* the live kqueues (kq_global to change) */

/* knote.c: the ready queue and non-fd knotes (all with kq_lock held) */
void kq__enqueue(struct kq *kq, struct knote *kn);
void kq__dequeue(struct kq *kq, struct knote *kn);
struct knote *kq__hash_find(struct kq *kq, short filter, uintptr_t ident);
int kq__hash_insert(struct kq *kq, struct knote *kn);
void kq__hash_remove(struct kq *kq, struct knote *kn);
void kq__hash_prefetch(struct kq *kq, const struct knote *kn); /* its removal is near */
struct knote *kq__knote_alloc(struct kq *kq, short filter);
void kq__knote_free(struct kq *kq, struct knote *kn);
void kq__knote_set(struct knote *kn, const struct kevent *kev, bool is_new);
/* The user-visible part; the filter fills data, fflags and EV_EOF (inline:
 * once per event). */
static inline void kq__knote_copyout(const struct knote *kn, struct kevent *out)
{
	out->ident = kn->kn_ident;
	out->filter = kn->kn_filter;
	out->flags = kn->kn_flags;
	out->fflags = 0;
	out->data = 0;
	out->udata = kn->kn_udata;
	if (kn->kn_aux) {
		memcpy(out->ext, kn->kn_aux->ext, sizeof(out->ext));
		if (kn->kn_aux->group) /* a serial knote's group id */
			out->ext[1] = kn->kn_aux->group->g_id;
	} else {
		memset(out->ext, 0, sizeof(out->ext));
	}
}
bool kq__knote_in(const struct knote *kn, const struct kevent *from, const struct kevent *upto);

/*
 * Did this kevent() call already return kn (in kq__call_out up to upto)?
 * The knote's lock held.  Tokens come in blocks of 65 536 per thread, so a
 * stamp from this thread's block that is not this call's says no at once;
 * only a stamp another thread wrote since may hide one of this call's, and
 * only then is the call's own eventlist looked through.
 */
static inline bool kq__delivered_here(const struct knote *kn, const struct kevent *upto)
{
	uint64_t seen = atomic_load_explicit(&kn->kn_seen, memory_order_relaxed);
	if (seen == kq__call_token)
		return true;
	if (seen >> 16 == kq__call_token >> 16)
		return false;
	return kq__knote_in(kn, kq__call_out, upto);
}
void kq__activate(struct kq *kq, struct knote *kn);
void kq__knote_free_all(struct kq *kq);

/* fdtable.c */
int kq__fdt_init(struct kq *kq);
void kq__fdt_destroy(struct kq *kq);
/* fd -> entry: inline, as every epoll report and every fd change asks. */
#define FDT_CHUNK 256
struct kq_fdtable {
	size_t ft_ntop;
	pthread_mutex_t ft_grow; /* serialises chunk creation */
	_Atomic(struct kq_fdent *) ft_top[];
};
static inline struct kq_fdent *kq__fdt_lookup(struct kq *kq, int fd) /* NULL if never used */
{
	struct kq_fdtable *ft = kq->kq_fdt;
	if (fd < 0 || (size_t)fd / FDT_CHUNK >= ft->ft_ntop)
		return NULL;
	struct kq_fdent *chunk =
	        atomic_load_explicit(&ft->ft_top[fd / FDT_CHUNK], memory_order_acquire);
	return chunk ? &chunk[fd % FDT_CHUNK] : NULL;
}
struct kq_fdent *kq__fdt_get(struct kq *kq, int fd); /* creates */
void kq__fdt_foreach(struct kq *kq, void (*fn)(struct kq *, struct kq_fdent *, void *), void *arg);

/* filt_fd.c: the fd filters (READ, WRITE, EMPTY) */
int kq__fd_change(struct kq *kq, const struct kevent *kev, int slot); /* kq__fd_slot() */
int kq__fd_change_pair(struct kq *kq, const struct kevent *kev, const int *slot);
int kq__fd_epoll_event(struct kq *kq, int fd, uint32_t gen, uint32_t revents, struct kevent *out,
                       int room);
int kq__fd_deliver_queued(struct kq *kq, struct knote *kn, struct kevent *out);
struct epoll_event;
void kq__fd_rearm_done(struct kq *kq, struct kq_fdent *fe, uint32_t seq, int res,
                       const struct epoll_event *ev);
void kq__fd_close(struct kq *kq, int fd, bool locked_ok);

/* kevent.c: shared by the non-fd filters */
int kq__generic_change(struct kq *kq, const struct kevent *kev, const struct filterops *fop);
int kq__deliver_locked(struct kq *kq, struct knote *kn, struct kevent *out);

/* filt_timer.c / filt_signal.c / filewatch.c: backend events */
void kq__timer_expire(struct kq *kq);
void kq__signal_read(struct kq *kq);
void kq__signal_scan(struct kq *kq);
void kq__signal_release(struct kq *kq);

/* sighook.c: the signal dispositions while a signal is watched */
int kq__sig_watch(int sig); /* a knote on sig was added: 0 / -errno */
void kq__sig_unwatch(int sig, uint32_t n);
uint64_t kq__sig_count(int sig); /* deliveries recorded, ever */
void kq__sig_record(int sig);    /* one more (async-signal-safe): wakes the watchers */
bool kq__sig_by_fd(int sig);     /* a blocked instance may be taken by a signalfd */
unsigned kq__sig_gen(void);      /* changes when kq__sig_by_fd() of a watched signal does */
void kq__sig_fork_begin(void);   /* fork child: count the surviving knotes again */
void kq__sig_fork_add(int sig, uint32_t n);
void kq__sig_fork_end(void);
/* Deliveries on this thread that ran no handler of the program's: a wait
 * they interrupted goes on (FreeBSD's sleep never sees an ignored signal). */
extern _Thread_local unsigned kq__sig_quiet __attribute__((tls_model("initial-exec")));
void kq__file_changed(struct kq *kq);
void kq__proc_event(struct kq *kq, uint32_t pid);          /* pid 0: the connector */
int kq__file_watch(struct kq *kq, struct kq_fdent *fe);    /* fe_lock held */
void kq__file_unwatch(struct kq *kq, struct kq_fdent *fe); /* fe_lock held */
void kq__file_retry(struct kq *kq);                        /* the timerfd fired */
void kq__fd_file_changed(struct kq *kq, int fd);
void kq__timerfd_soon(struct kq *kq, int64_t deadline); /* kq_lock held */

/* drain.c: EVFILT_EMPTY on TCP sockets, looked at again from the timerfd */
void kq__drain_wait(struct kq *kq, struct kq_fdent *fe); /* fe_lock held */
void kq__drain_retry(struct kq *kq);                     /* the timerfd fired */
void kq__drain_free(struct kq *kq);
void kq__fd_drain_check(struct kq *kq, int fd);

/* filt_proc.c / proc_cn.c: EVFILT_PROC (kq_lock held but where said) */
void kq__proc_close_fds(struct kq *kq); /* no lock: the last reference (async-signal-safe) */
int kq__proc_track(struct kq *kq, struct knote *parent, int child);
void kq__proc_check(struct kq *kq, struct knote *kn); /* exited? then report or drop it */
int kq__proc_cn_get(struct kq *kq);                   /* one more knote needs fork/exec reports */
void kq__proc_cn_put(struct kq *kq);
int kq__proc_cn_fork(struct kq *kq);   /* a fork copy: a socket of its own */
void kq__proc_cn_read(struct kq *kq);  /* no lock held */
void kq__proc_cn_drain(struct kq *kq); /* what the connector holds now */

int kq__inotify_fd(struct kq *kq);                /* made when first needed (kq_lock held) */
uint32_t kq__file_wd_mask(struct kq *kq, int wd); /* what filewatch asks of wd (kq_lock) */

/* filt_vnode.c: EVFILT_VNODE over the kqueue's inotify fd */
void kq__vnode_inotify(struct kq *kq, const char *buf, size_t len); /* kq_lock held */
bool kq__vnode_has_wd(struct kq *kq, int wd);                       /* kq_lock held */
void kq__vnode_close(struct kq *kq, int fd);      /* close() outside a signal handler */
void kq__vnode_prefork(struct kq *kq, void *arg); /* fork(), in the parent, first */
void kq__vnode_fork(struct kq *kq);               /* KQUEUE_CPONFORK child: new inotify */
void kq__vnode_free(struct kq *kq);               /* kq_release: no lock */

/* timerheap.c (kq_lock held) */
struct kq_tslot {
	int64_t deadline; /* CLOCK_MONOTONIC ns */
	struct knote *kn;
};
int kq__theap_insert(struct kq *kq, struct knote *kn, int64_t deadline);
void kq__theap_remove(struct kq *kq, struct knote *kn);
struct knote *kq__theap_min(struct kq *kq, int64_t *deadline); /* NULL: none */
void kq__theap_pop(struct kq *kq);                             /* the min goes */
void kq__theap_retime_min(struct kq *kq, int64_t deadline);    /* the min, due later */
void kq__theap_free(struct kq *kq);
int64_t kq__now_ns(void);

/* os_epoll.c: the only file that talks to epoll */
#define KQ_TAG_SHIFT   61
#define KQ_TAG_FD      0ULL
#define KQ_TAG_WAKE    1ULL
#define KQ_TAG_TIMER   2ULL
#define KQ_TAG_SIGNAL  3ULL
#define KQ_TAG_INOTIFY 4ULL
#define KQ_TAG_PROC    5ULL        /* low 32 bits: the pid whose pidfd fired, 0: the connector */
#define KQ_GEN_MASK    0x1fffffffu /* the 29 bits of fe_gen in the epoll data (32..60) */
int kq__ep_create(void);
int kq__ep_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
int kq__ep_wait(int epfd, void *evbuf, int max, int timeout_ms);

/*
 * uring_wait.c: with BATON_URING_WAIT=1, the oneshot re-arms a kevent()
 * call's changes make (fe_sync) go to the kernel with its wait, in one
 * io_uring_enter.  kq__defer_begin() opens the call's queue (changes that
 * will wait), kq__defer_rearm() queues one (fe_lock held; false: make it
 * now; kq__defer_drop() forgets it for one made now), kq__defer_close() ends the changes, kq__ep_wait_kq() sends what is
 * queued with the wait, kq__defer_flush() sends what is left at the end.
 */
extern _Thread_local struct kq *kq__defer_kq __attribute__((tls_model("initial-exec")));
void kq__defer_begin(struct kq *kq);
bool kq__defer_rearm(struct kq *kq, struct kq_fdent *fe, uint32_t events, uint64_t data);
void kq__defer_drop(struct kq *kq, struct kq_fdent *fe); /* a change made now overrides it */
void kq__defer_close(void);
int kq__ep_wait_kq(struct kq *kq, void *evbuf, int max, int timeout_ms);
void kq__defer_flush(struct kq *kq);
void kq__ring_wait_fork(void); /* fork child: the rings are made anew */
/* fd in the low 32 bits, generation above, tag in the top three. */
static inline uint64_t kq__ep_data_fd(int fd, uint32_t gen)
{
	return (KQ_TAG_FD << KQ_TAG_SHIFT) | ((uint64_t)(gen & KQ_GEN_MASK) << 32) | (uint32_t)fd;
}

/* fdhook.c */
int kq__sys_close(int fd);
/* fcntl without the interposer (no dlsym, no name table): for our own use */
int kq__sys_fcntl(int fd, int cmd, long arg);
/*
 * libbaton calls in progress on this thread (kevent(), the close hooks): a
 * close() hook found running on top of one is in a signal handler that may
 * have interrupted a holder of any of our locks, and takes none.
 */
extern _Thread_local unsigned kq__depth __attribute__((tls_model("initial-exec")));
#define KQ_ENTER() (kq__depth++)
#define KQ_LEAVE() (kq__depth--)
/*
 * The hooks (close, dup...) in progress on this thread.  POSIX makes close()
 * and dup() async-signal-safe, and a hook cannot tell a signal handler that
 * interrupted the program's malloc() from a plain call: kq__put() there
 * frees nothing and takes no lock (see kqueue.c).
 */
extern _Thread_local unsigned kq__hooking __attribute__((tls_model("initial-exec")));
#define KQ_HOOK_ENTER() (kq__depth++, kq__hooking++)
#define KQ_HOOK_LEAVE() (kq__depth--, kq__hooking--)

#ifdef __SANITIZE_THREAD__
/* kqueue.c closes its own descriptors through ThreadSanitizer's close() */
extern _Thread_local bool kq__raw_close;
#endif

/* Fault switches for the stress tests (BATON_TEST_HOOKS builds only). */
#ifdef BATON_TEST_HOOKS
extern int kq__break_mask;
#define KQ_BROKEN(n) (kq__break_mask & (1 << (n)))
#else
#define KQ_BROKEN(n) 0
#endif
#define KQ_BREAK_I1 1
#define KQ_BREAK_I2 2
#define KQ_BREAK_I3 3
#define KQ_BREAK_I4 4
#define KQ_BREAK_I5 5
#define KQ_BREAK_G1 6
#define KQ_BREAK_G2 7
#define KQ_BREAK_G3 8

#endif
