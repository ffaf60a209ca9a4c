/*
 * EVFILT_SIGNAL's hold on signal dispositions.  FreeBSD records a signal on
 * the process's knotes when it is sent, before the disposition is looked
 * at: a handled, an ignored (but SIGCHLD) or a default-ignored signal is
 * recorded, and the program blocks nothing.  Linux tells nobody about a
 * signal that is delivered to a handler or discarded, so while a signal is
 * watched (an EVFILT_SIGNAL knote on it in any kqueue) libbaton installs
 * its own handler for it: the handler counts the delivery (sh_count, atomics
 * only), wakes the kqueues that watch the signal, and then does what the
 * program asked for (calls its handler, or nothing for SIG_IGN).
 *
 * The program must not be able to undo that by accident, and must see its
 * own dispositions: sigaction(), signal(), bsd_signal(), sysv_signal(),
 * siginterrupt(), sigignore() and sigset() are interposed (exported as
 * fdhook.c's are).  While a signal is watched they record the program's
 * action (sh_user) and return it as the old one; the kernel gets ours.
 * Unwatched signals go straight to libc.
 *
 * Left to the kernel: SIGKILL and SIGSTOP (no handler possible), SIGCHLD
 * set to SIG_IGN (that asks Linux to reap children, and FreeBSD does not
 * record it either), and SIG_DFL of a signal whose default stops or ends the
 * process (the process dies at once on FreeBSD too; a stop is not recorded
 * here).  A watched signal the program blocked everywhere is left pending
 * by the kernel: the kqueues' signalfds take it when the program's action is
 * SIG_DFL or SIG_IGN (nothing is lost to the program), and leave it to the
 * program's handler otherwise, which records it when it runs.
 *
 * Locking: sh_lock is a spinlock taken with every signal blocked, so that a
 * handler (ours, or a program's handler calling sigaction) never spins on
 * a holder it interrupted; it nests inside kq_lock and takes nothing.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kq_private.h"
#ifdef BATON_HAVE_LIBC_VERSIONS
#include "libc_versions.h"
#endif

#define KQ_EXPORT __attribute__((visibility("default")))

/* libc's own sigaction, exported under this name too: no dlsym, which is
 * not async-signal-safe, and a static program has it as well. */
extern int __sigaction(int sig, const struct sigaction *act, struct sigaction *oact);

typedef void (*sh_fn)(int);
typedef void (*sh_info_fn)(int, siginfo_t *, void *);

static atomic_uint_fast64_t sh_count[KQ_NSIG]; /* deliveries recorded, ever */
static atomic_flag sh_lock = ATOMIC_FLAG_INIT;
static uint32_t sh_watchers[KQ_NSIG];     /* sh_lock: knotes on the signal, every kqueue */
static struct sigaction sh_user[KQ_NSIG]; /* sh_lock: the program's action while watched */
/* The handler's copy of sh_user[sig]'s handler and flags: sh_lock to
 * write, read lock-free under sh_seq (odd while a write is in progress). */
static _Atomic(uintptr_t) sh_uhandler[KQ_NSIG];
static atomic_int sh_uflags[KQ_NSIG];
static atomic_uint sh_seq[KQ_NSIG];
static uint64_t sh_sigintr;       /* sh_lock: siginterrupt(sig, 1) was called (bit sig-1) */
static int sh_extra_flags;        /* sh_lock: flags libc adds to every action (SA_RESTORER) */
static void (*sh_restorer)(void); /* sh_lock: and the restorer it names */
static atomic_uint sh_gen = 1;    /* bumped when kq__sig_by_fd() of a watched signal changes */

/* ---- the lock ---- */

static void sh_take(sigset_t *old)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, old);
	while (atomic_flag_test_and_set_explicit(&sh_lock, memory_order_acquire))
		sched_yield();
}

static void sh_drop(const sigset_t *old)
{
	atomic_flag_clear_explicit(&sh_lock, memory_order_release);
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* ---- the program's action ---- */

static bool is_fn(uintptr_t h)
{
	return h != (uintptr_t)SIG_DFL && h != (uintptr_t)SIG_IGN;
}

/* Signals whose default action is to do nothing. */
static bool default_ignores(int sig)
{
	return sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT;
}

/* Lock-free: the handler and flags the program set for a watched signal. */
static void user_read(int sig, uintptr_t *h, int *flags)
{
	for (;;) {
		unsigned s = atomic_load_explicit(&sh_seq[sig], memory_order_acquire);
		if (s & 1) {
			sched_yield(); /* a writer on another thread, signals blocked */
			continue;
		}
		*h = atomic_load_explicit(&sh_uhandler[sig], memory_order_relaxed);
		*flags = atomic_load_explicit(&sh_uflags[sig], memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&sh_seq[sig], memory_order_relaxed) == s)
			return;
	}
}

/* sh_lock held. */
static void user_write(int sig, const struct sigaction *sa)
{
	bool by_fd = !is_fn((uintptr_t)sh_user[sig].sa_handler);
	atomic_fetch_add(&sh_seq[sig], 1);
	sh_user[sig] = *sa;
	atomic_store_explicit(&sh_uhandler[sig], (uintptr_t)sa->sa_handler, memory_order_relaxed);
	atomic_store_explicit(&sh_uflags[sig], sa->sa_flags, memory_order_relaxed);
	atomic_fetch_add(&sh_seq[sig], 1);
	if (by_fd != !is_fn((uintptr_t)sa->sa_handler))
		atomic_fetch_add(&sh_gen, 1);
}

/* What the kernel would have kept of act, so that the old action the
 * program reads back is the one it would read without libbaton. */
static struct sigaction user_normal(const struct sigaction *act)
{
	struct sigaction u = *act;
	u.sa_flags |= sh_extra_flags;
	if (sh_extra_flags)
		u.sa_restorer = sh_restorer;
	sigdelset(&u.sa_mask, SIGKILL);
	sigdelset(&u.sa_mask, SIGSTOP);
	return u;
}

/* ---- the kernel's action ---- */

static void sh_handler(int sig, siginfo_t *si, void *uc);

static bool want_hook(int sig, const struct sigaction *u)
{
	if (sig == SIGKILL || sig == SIGSTOP)
		return false;
	if (u->sa_handler == SIG_IGN)
		return sig != SIGCHLD;
	if (u->sa_handler == SIG_DFL)
		return default_ignores(sig);
	return true;
}

/*
 * Gives the kernel the action sig needs now (sh_lock held): ours while it
 * is watched and the program's action lets us, else the program's own.
 * Ours carries the program's mask and flags, so its handler runs as it
 * would without us; SA_RESETHAND is done by hand (the kernel would drop our
 * handler with the program's).
 */
static int sh_apply(int sig)
{
	const struct sigaction *u = &sh_user[sig];
	if (!sh_watchers[sig] || !want_hook(sig, u))
		return __sigaction(sig, u, NULL) < 0 ? -errno : 0;
	struct sigaction k;
	memset(&k, 0, sizeof(k));
	k.sa_sigaction = sh_handler;
	k.sa_mask = u->sa_mask;
	k.sa_flags = SA_SIGINFO | (u->sa_flags & (SA_RESTART | SA_NODEFER | SA_ONSTACK |
	                                          SA_NOCLDSTOP | SA_NOCLDWAIT));
	if (!is_fn((uintptr_t)u->sa_handler))
		k.sa_flags |= SA_RESTART; /* interrupt as few calls as can be */
	if (__sigaction(sig, &k, NULL) < 0)
		return -errno;
	struct sigaction back;
	if (!sh_extra_flags && __sigaction(sig, NULL, &back) == 0) {
		sh_extra_flags = back.sa_flags & ~k.sa_flags;
		sh_restorer = back.sa_restorer;
	}
	return 0;
}

/* ---- the handler ---- */

/*
 * Drops the reference sh_notify() took.  The last one (the kqueue was
 * closed meanwhile) goes to kq__put(), which frees nothing in a hook.
 */
static void sh_unref(struct kq *kq)
{
	int r = atomic_load(&kq->kq_refs);
	while (r > 1 && !atomic_compare_exchange_weak(&kq->kq_refs, &r, r - 1))
		;
	if (r > 1)
		return;
	KQ_HOOK_ENTER();
	kq__put(kq);
	KQ_HOOK_LEAVE();
}

/*
 * The kqueues watching sig look at their knotes again (async-signal-safe).
 * The walk is kq__foreach()'s, written here so that the handler runs no
 * sanitizer-instrumented code (a signal may reach a thread a sanitizer has
 * not set up yet), and the write is a raw system call for the same reason.
 * The reference held keeps the kqueue's descriptors open meanwhile.
 */
static void sh_notify(int sig)
{
	uint64_t bit = 1ULL << (sig - 1), one = 1;
	for (struct kq *kq = atomic_load_explicit(&kq__live, memory_order_acquire); kq;
	     kq = atomic_load_explicit(&kq->kq_lnext, memory_order_acquire)) {
		if (!(atomic_load_explicit(&kq->kq_sigmask, memory_order_relaxed) & bit) ||
		    !atomic_load(&kq->kq_listed) || atomic_load(&kq->kq_dead) ||
		    !kq__ref_if_held(kq))
			continue;
		if (atomic_load(&kq->kq_listed) && !atomic_load(&kq->kq_dead)) {
			atomic_store(&kq->kq_sigdirty, true);
			if (!KQ_BROKEN(KQ_BREAK_I3)) /* the stress tests' lost wakeup */
				syscall(SYS_write,
				        __atomic_load_n(&kq->kq_wakefd, __ATOMIC_ACQUIRE), &one,
				        sizeof(one));
		}
		sh_unref(kq);
	}
}

void kq__sig_record(int sig)
{
	atomic_fetch_add(&sh_count[sig], 1);
	sh_notify(sig);
}

/* The program's SIG_DFL reached our handler (it was just set): do it. */
static void sh_default(int sig)
{
	sigset_t old;
	sh_take(&old);
	if (sh_user[sig].sa_handler == SIG_DFL)
		sh_apply(sig);
	sh_drop(&old);
	/* Pending until this handler returns (the signal is blocked in it). */
	syscall(SYS_tgkill, getpid(), gettid(), sig);
}

/* SA_RESETHAND: the first delivery takes the handler (under sh_lock, so two
 * threads cannot both get it).  Returns the handler to call, or SIG_DFL. */
static uintptr_t sh_reset(int sig)
{
	sigset_t old;
	sh_take(&old);
	uintptr_t h = (uintptr_t)sh_user[sig].sa_handler;
	if (is_fn(h) && (sh_user[sig].sa_flags & SA_RESETHAND)) {
		struct sigaction u = sh_user[sig];
		u.sa_handler = SIG_DFL; /* flags stay, as the kernel leaves them */
		user_write(sig, &u);
		sh_apply(sig);
	}
	sh_drop(&old);
	return h;
}

_Thread_local unsigned kq__sig_quiet __attribute__((tls_model("initial-exec")));

static void sh_handler(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	kq__sig_record(sig);
	uintptr_t h;
	int flags;
	user_read(sig, &h, &flags);
	if (is_fn(h) && (flags & SA_RESETHAND))
		h = sh_reset(sig);
	if (h == (uintptr_t)SIG_DFL && !default_ignores(sig))
		sh_default(sig);
	errno = saved;
	if (!is_fn(h)) {
		kq__sig_quiet++; /* nothing of the program's ran: see kevent.c */
		return;
	}
	if (flags & SA_SIGINFO)
		((sh_info_fn)h)(sig, si, uc);
	else
		((sh_fn)h)(sig);
}

/* ---- what filt_signal.c uses ---- */

uint64_t kq__sig_count(int sig)
{
	return atomic_load(&sh_count[sig]);
}

unsigned kq__sig_gen(void)
{
	return atomic_load(&sh_gen);
}

/* May a kqueue's signalfd take a pending (blocked) watched signal? */
bool kq__sig_by_fd(int sig)
{
	uintptr_t h;
	int flags;
	user_read(sig, &h, &flags);
	return !is_fn(h);
}

/* A knote on sig was added (kq_lock held): the first takes the disposition. */
int kq__sig_watch(int sig)
{
	if (sig == SIGKILL || sig == SIGSTOP)
		return 0; /* nothing to take: never delivered to a handler */
	sigset_t old;
	sh_take(&old);
	int err = 0;
	if (sh_watchers[sig]++ == 0) {
		struct sigaction cur;
		if (__sigaction(sig, NULL, &cur) < 0) {
			err = -errno;
		} else {
			user_write(sig, &cur);
			atomic_fetch_add(&sh_gen, 1);
			err = sh_apply(sig);
		}
		if (err)
			sh_watchers[sig] = 0;
	}
	sh_drop(&old);
	return err;
}

/* A knote on sig went away (kq_lock held): the last gives the program's
 * disposition back exactly. */
void kq__sig_unwatch(int sig, uint32_t n)
{
	if (sig == SIGKILL || sig == SIGSTOP || !n)
		return;
	sigset_t old;
	sh_take(&old);
	sh_watchers[sig] = sh_watchers[sig] > n ? sh_watchers[sig] - n : 0;
	if (!sh_watchers[sig])
		sh_apply(sig);
	sh_drop(&old);
}

/*
 * fork(): the child keeps only its KQUEUE_CPONFORK copies.  Their
 * registrations are counted again (kq__signal_fork), and a signal nobody
 * watches any more gets the program's action back: a child that goes on to
 * exec keeps SIG_IGN where the program set it.
 */
static bool sh_was_watched[KQ_NSIG]; /* the forking thread alone */

void kq__sig_fork_begin(void)
{
	atomic_flag_clear(&sh_lock); /* its holder, if any, is not in the child */
	for (int s = 1; s < KQ_NSIG; s++) {
		sh_was_watched[s] = sh_watchers[s] > 0;
		sh_watchers[s] = 0;
		if (atomic_load(&sh_seq[s]) & 1)
			atomic_fetch_add(&sh_seq[s], 1);
	}
}

void kq__sig_fork_add(int sig, uint32_t n)
{
	if (sig != SIGKILL && sig != SIGSTOP)
		sh_watchers[sig] += n;
}

void kq__sig_fork_end(void)
{
	for (int s = 1; s < KQ_NSIG; s++)
		if (sh_was_watched[s] && !sh_watchers[s])
			sh_apply(s);
}

/* ---- the interposed calls ---- */

static int do_sigaction(int sig, const struct sigaction *act, struct sigaction *oact)
{
	if (sig < 1 || sig >= KQ_NSIG)
		return __sigaction(sig, act, oact); /* EINVAL, as libc says it */
	sigset_t old;
	sh_take(&old);
	int r = 0;
	if (!sh_watchers[sig]) {
		r = __sigaction(sig, act, oact);
	} else {
		struct sigaction prev = sh_user[sig];
		if (act) {
			struct sigaction u = user_normal(act);
			user_write(sig, &u);
			int err = sh_apply(sig);
			if (err) {
				user_write(sig, &prev);
				sh_apply(sig);
				errno = -err;
				r = -1;
			}
		}
		if (!r && oact)
			*oact = prev;
	}
	bool changed = r == 0 && act && sh_watchers[sig];
	sh_drop(&old);
	if (changed)
		sh_notify(sig); /* their signalfds may take it, or leave it, now */
	return r;
}

/* signal() and its kin, over do_sigaction as libc builds them. */
static sighandler_t do_signal(int sig, sighandler_t h, int flags, bool mask_self)
{
	if (h == SIG_ERR || sig < 1 || sig >= KQ_NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	struct sigaction a, old;
	memset(&a, 0, sizeof(a));
	a.sa_handler = h;
	sigemptyset(&a.sa_mask);
	if (mask_self)
		sigaddset(&a.sa_mask, sig);
	a.sa_flags = flags;
	if (do_sigaction(sig, &a, &old) < 0)
		return SIG_ERR;
	return old.sa_handler;
}

static bool sigintr_has(int sig)
{
	sigset_t old;
	sh_take(&old);
	bool r = sig >= 1 && sig < KQ_NSIG && (sh_sigintr >> (sig - 1) & 1);
	sh_drop(&old);
	return r;
}

static sighandler_t do_bsd_signal(int sig, sighandler_t h)
{
	return do_signal(sig, h, sigintr_has(sig) ? 0 : SA_RESTART, true);
}

static sighandler_t do_sysv_signal(int sig, sighandler_t h)
{
	return do_signal(sig, h, SA_RESETHAND | SA_NODEFER, false);
}

static int do_siginterrupt(int sig, int flag)
{
	struct sigaction a;
	if (sig < 1 || sig >= KQ_NSIG) {
		errno = EINVAL;
		return -1;
	}
	if (do_sigaction(sig, NULL, &a) < 0)
		return -1;
	sigset_t old;
	sh_take(&old);
	if (flag)
		sh_sigintr |= 1ULL << (sig - 1);
	else
		sh_sigintr &= ~(1ULL << (sig - 1));
	sh_drop(&old);
	if (flag)
		a.sa_flags &= ~SA_RESTART;
	else
		a.sa_flags |= SA_RESTART;
	return do_sigaction(sig, &a, NULL);
}

static int do_sigignore(int sig)
{
	return do_signal(sig, SIG_IGN, 0, false) == SIG_ERR ? -1 : 0;
}

static sighandler_t do_sigset(int sig, sighandler_t disp)
{
	struct sigaction a;
	if (sig < 1 || sig >= KQ_NSIG) {
		errno = EINVAL;
		return SIG_ERR;
	}
	sigset_t set, was;
	sigemptyset(&set);
	sigaddset(&set, sig);
	if (disp == SIG_HOLD) {
		if (sigprocmask(SIG_BLOCK, &set, &was) < 0)
			return SIG_ERR;
		if (sigismember(&was, sig))
			return SIG_HOLD;
		return do_sigaction(sig, NULL, &a) < 0 ? SIG_ERR : a.sa_handler;
	}
	sighandler_t prev = do_signal(sig, disp, 0, false);
	if (prev == SIG_ERR || sigprocmask(SIG_UNBLOCK, &set, &was) < 0)
		return SIG_ERR;
	return sigismember(&was, sig) ? SIG_HOLD : prev;
}

KQ_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *oact)
{
	return do_sigaction(sig, act, oact);
}

KQ_EXPORT sighandler_t signal(int sig, sighandler_t h)
{
	return do_bsd_signal(sig, h);
}

KQ_EXPORT sighandler_t bsd_signal(int sig, sighandler_t h)
{
	return do_bsd_signal(sig, h);
}

KQ_EXPORT sighandler_t sysv_signal(int sig, sighandler_t h)
{
	return do_sysv_signal(sig, h);
}

KQ_EXPORT int siginterrupt(int sig, int flag)
{
	return do_siginterrupt(sig, flag);
}

KQ_EXPORT int sigignore(int sig)
{
	return do_sigignore(sig);
}

KQ_EXPORT sighandler_t sigset(int sig, sighandler_t disp)
{
	return do_sigset(sig, disp);
}

/* ---- the same entry points under libc's versions (see fdhook.c) ---- */

#define KQ_LIBC_ALIAS(name, ver) __asm__(".symver kq__libc_" #name ", " #name "@" ver)

#ifdef KQ_LIBC_VER_sigaction
KQ_LIBC_ALIAS(sigaction, KQ_LIBC_VER_sigaction);
KQ_EXPORT int kq__libc_sigaction(int sig, const struct sigaction *act, struct sigaction *oact);
int kq__libc_sigaction(int sig, const struct sigaction *act, struct sigaction *oact)
{
	return do_sigaction(sig, act, oact);
}
#endif
#ifdef KQ_LIBC_VER_signal
KQ_LIBC_ALIAS(signal, KQ_LIBC_VER_signal);
KQ_EXPORT sighandler_t kq__libc_signal(int sig, sighandler_t h);
sighandler_t kq__libc_signal(int sig, sighandler_t h)
{
	return do_bsd_signal(sig, h);
}
#endif
#ifdef KQ_LIBC_VER_bsd_signal
KQ_LIBC_ALIAS(bsd_signal, KQ_LIBC_VER_bsd_signal);
KQ_EXPORT sighandler_t kq__libc_bsd_signal(int sig, sighandler_t h);
sighandler_t kq__libc_bsd_signal(int sig, sighandler_t h)
{
	return do_bsd_signal(sig, h);
}
#endif
#ifdef KQ_LIBC_VER_sysv_signal
KQ_LIBC_ALIAS(sysv_signal, KQ_LIBC_VER_sysv_signal);
KQ_EXPORT sighandler_t kq__libc_sysv_signal(int sig, sighandler_t h);
sighandler_t kq__libc_sysv_signal(int sig, sighandler_t h)
{
	return do_sysv_signal(sig, h);
}
#endif
#ifdef KQ_LIBC_VER_siginterrupt
KQ_LIBC_ALIAS(siginterrupt, KQ_LIBC_VER_siginterrupt);
KQ_EXPORT int kq__libc_siginterrupt(int sig, int flag);
int kq__libc_siginterrupt(int sig, int flag)
{
	return do_siginterrupt(sig, flag);
}
#endif
#ifdef KQ_LIBC_VER_sigignore
KQ_LIBC_ALIAS(sigignore, KQ_LIBC_VER_sigignore);
KQ_EXPORT int kq__libc_sigignore(int sig);
int kq__libc_sigignore(int sig)
{
	return do_sigignore(sig);
}
#endif
#ifdef KQ_LIBC_VER_sigset
KQ_LIBC_ALIAS(sigset, KQ_LIBC_VER_sigset);
KQ_EXPORT sighandler_t kq__libc_sigset(int sig, sighandler_t disp);
sighandler_t kq__libc_sigset(int sig, sighandler_t disp)
{
	return do_sigset(sig, disp);
}
#endif
