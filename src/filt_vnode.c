/*
 * EVFILT_VNODE over inotify: knotes in the kqueue's ident hash (ident = fd,
 * kq_lock guards them), watches on the kqueue's one inotify fd, which
 * filewatch.c owns and reads and shares with the READ-at-EOF watches; every
 * batch it reads comes here too.  Linux quirks worked around:
 * - inotify watches paths, kqueue watches files: the watch is made on
 *   /proc/self/fd/N, which resolves to the inode behind the fd, so it follows
 *   the file through rename and unlink.
 * - An inode watched twice in one inotify has one wd, and a plain add
 *   replaces its mask: every add here is IN_MASK_ADD, a watch (struct
 *   kq_vwatch) counts its knotes and is removed only when the last goes and
 *   filewatch does not use the wd; a mask shrinks only by an exact add
 *   through an fd checked to still name the inode.
 * - unlink() while we hold the fd open gives IN_ATTRIB (the link count), not
 *   IN_DELETE_SELF (that waits until the inode dies): NOTE_DELETE and
 *   NOTE_LINK come from st_nlink against the last value seen, NOTE_EXTEND
 *   from st_size likewise (one fstat per such event and watch).
 * - A watched directory sees its children's events too (IN_OPEN of a file
 *   in it...): only namespace changes count when the event names a child.
 * - A directory removed while open gets no event of its own until the inode
 *   dies: not reported (docs/CONTRACT.md).
 * - The queue can overflow (IN_Q_OVERFLOW): every knote is then told all
 *   that may have happened (below).
 * - A close() hook in a signal handler may take no lock: it bumps the fd
 *   entry's fe_closegen, and a knote whose fd moved on is dropped unseen at
 *   its next look (f_gone).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kq_private.h"

#define VN_NOTES                                                                          \
	(NOTE_DELETE | NOTE_WRITE | NOTE_EXTEND | NOTE_ATTRIB | NOTE_LINK | NOTE_RENAME | \
	 NOTE_REVOKE | NOTE_OPEN | NOTE_CLOSE | NOTE_CLOSE_WRITE | NOTE_READ)
/* Internal, beside the notes in kn_u.vn.fflags: the file system went away. */
#define VN_EOF 0x80000000u
/* Notes that only an event can tell (not a look at the file afterwards). */
#define VN_EVENT_NOTES                                                                        \
	(NOTE_WRITE | NOTE_ATTRIB | NOTE_RENAME | NOTE_OPEN | NOTE_CLOSE | NOTE_CLOSE_WRITE | \
	 NOTE_READ)
#define IN_NAMESPACE (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)

struct kq_vwatch {
	int w_wd;                   /* kq_lock; -1 once the kernel dropped the watch */
	uint32_t w_mask;            /* kq_lock: the events our knotes asked of the kernel */
	uint64_t w_dev, w_ino;      /* constant: the inode */
	uint64_t w_nlink;           /* kq_lock: link count last seen */
	int64_t w_size;             /* kq_lock: size last seen */
	bool w_nlink_ok, w_size_ok; /* kq_lock: kept up to date since (else: look again) */
	struct knote **w_kn;        /* kq_lock: the knotes on this inode */
	uint32_t w_nkn, w_cap;      /* kq_lock */
	struct kq_vwatch *w_next;   /* kq_lock: hash chain (kq_vwatch) */
};

/* The inotify events that tell the notes in ff. */
static uint32_t vn_mask(uint32_t ff)
{
	/* Always one event: a mask of nothing is EINVAL to the kernel. */
	uint32_t m = IN_DELETE_SELF;
	if (ff & (NOTE_DELETE | NOTE_LINK))
		m |= IN_ATTRIB;
	if (ff & (NOTE_WRITE | NOTE_LINK))
		m |= IN_NAMESPACE;
	if (ff & (NOTE_WRITE | NOTE_EXTEND))
		m |= IN_MODIFY;
	if (ff & NOTE_EXTEND)
		m |= IN_MOVED_FROM | IN_MOVED_TO;
	if (ff & NOTE_ATTRIB) /* IN_MODIFY: a truncation that shrinks the file */
		m |= IN_ATTRIB | IN_MODIFY;
	if (ff & NOTE_RENAME)
		m |= IN_MOVE_SELF;
	if (ff & NOTE_OPEN)
		m |= IN_OPEN;
	if (ff & NOTE_CLOSE)
		m |= IN_CLOSE_NOWRITE;
	if (ff & NOTE_CLOSE_WRITE)
		m |= IN_CLOSE_WRITE;
	if (ff & NOTE_READ)
		m |= IN_ACCESS;
	return m;
}

static void fd_path(char *buf, size_t len, int fd)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
}

/* ---- the watch table: wd -> watch (kq_lock) ---- */

static uint32_t wd_hash(int wd)
{
	return (uint32_t)wd * 0x9E3779B1u;
}

/* Dead watches (w_wd -1) all hash to bucket 0: they stay listed for memory's sake. */
static uint32_t vw_hash(const void *obj)
{
	const struct kq_vwatch *w = obj;
	return w->w_wd < 0 ? 0 : wd_hash(w->w_wd);
}

#define VW_NEXT offsetof(struct kq_vwatch, w_next)

static struct kq_vwatch *vn_find(struct kq *kq, int wd)
{
	if (wd < 0)
		return NULL;
	struct kq_vwatch *w = kq__ht_head(&kq->kq_vwatch, wd_hash(wd));
	while (w && w->w_wd != wd)
		w = w->w_next;
	return w;
}

static int vn_insert(struct kq *kq, struct kq_vwatch *w)
{
	return kq__ht_insert(&kq->kq_vwatch, w, VW_NEXT, vw_hash);
}

static void vn_unlink(struct kq *kq, struct kq_vwatch *w)
{
	kq__ht_remove(&kq->kq_vwatch, w, VW_NEXT, vw_hash(w));
}

/* The kernel dropped the watch (IN_IGNORED: the inode died, an unmount). */
static void vn_dead(struct kq *kq, struct kq_vwatch *w)
{
	vn_unlink(kq, w);
	w->w_wd = -1;
	(void)vn_insert(kq, w); /* one out, one in: the table does not grow */
}

bool kq__vnode_has_wd(struct kq *kq, int wd)
{
	return vn_find(kq, wd) != NULL;
}

/* ---- knotes ---- */

/* Has kn's fd been closed since it was attached (any lock held)? */
static bool vn_closed(struct kq *kq, const struct knote *kn)
{
	struct kq_fdent *fe = kq__fdt_lookup(kq, (int)kn->kn_ident);
	return !fe ||
	       atomic_load_explicit(&fe->fe_closegen, memory_order_acquire) != kn->kn_u.vn.closegen;
}

/* Does fd still name w's inode?  *st is filled either way. */
static bool vn_names(int fd, const struct kq_vwatch *w, struct stat *st)
{
	return fstat(fd, st) == 0 && (uint64_t)st->st_dev == w->w_dev &&
	       (uint64_t)st->st_ino == w->w_ino;
}

/* An fd of ours that names w's inode, or -1 (kq_lock held). */
static int vn_live_fd(struct kq *kq, struct kq_vwatch *w, struct stat *st)
{
	for (uint32_t i = 0; i < w->w_nkn; i++) {
		struct knote *kn = w->w_kn[i];
		if (!vn_closed(kq, kn) && vn_names((int)kn->kn_ident, w, st))
			return (int)kn->kn_ident;
	}
	return -1;
}

/*
 * Makes the kernel's mask for w exactly what its users ask, if it asks for
 * more (a knote went away or asked for less).  Only through an fd checked to
 * name the inode; should the fd be closed and reused between the check and
 * the add, the wd that comes back is not ours: its mask is put back.
 */
static void vn_shrink(struct kq *kq, struct kq_vwatch *w)
{
	uint32_t ours = IN_DELETE_SELF;
	for (uint32_t i = 0; i < w->w_nkn; i++)
		ours |= vn_mask(w->w_kn[i]->kn_sfflags);
	if (w->w_wd < 0 || !(w->w_mask & ~ours))
		return;
	struct stat st;
	int fd = vn_live_fd(kq, w, &st);
	if (fd < 0)
		return;
	char path[40];
	fd_path(path, sizeof(path), fd);
	int wd = inotify_add_watch(kq->kq_inofd, path, ours | kq__file_wd_mask(kq, w->w_wd));
	if (wd == w->w_wd) {
		w->w_mask = ours;
		return;
	}
	if (wd < 0)
		return;
	struct kq_vwatch *other = vn_find(kq, wd);
	uint32_t theirs = kq__file_wd_mask(kq, wd) | (other ? other->w_mask : 0);
	if (theirs)
		inotify_add_watch(kq->kq_inofd, path, theirs);
	else
		inotify_rm_watch(kq->kq_inofd, wd);
}

static int vn_validate(const struct kevent *kev)
{
	if (kev->ident > INT_MAX)
		return -EBADF;
	int fd = (int)kev->ident;
	/* As for any fd filter, any change names an open fd (FreeBSD's fget). */
	if (kq__sys_fcntl(fd, F_GETFD, 0) < 0 || kq__is_private_fd(fd))
		return -EBADF;
	if ((kev->flags & EV_ADD) && (kev->fflags & ~(unsigned)VN_NOTES))
		return -EINVAL;
	return 0;
}

/* A new watch for the inode of st (kq_lock held). */
static struct kq_vwatch *vn_new_watch(struct kq *kq, int wd, const struct stat *st)
{
	struct kq_vwatch *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->w_wd = wd;
	w->w_dev = st->st_dev;
	w->w_ino = st->st_ino;
	if (vn_insert(kq, w)) {
		free(w);
		return NULL;
	}
	return w;
}

/*
 * Link count and size that nobody kept up to date (no knote asked for the
 * notes they tell) start again from the file as it is now.
 */
static void vn_baseline(struct kq_vwatch *w, const struct stat *st)
{
	if (!w->w_size_ok)
		w->w_size = st->st_size;
	if (!w->w_nlink_ok)
		w->w_nlink = st->st_nlink;
	w->w_size_ok = w->w_nlink_ok = true;
}

/* Puts kn on the watch of the inode fd names (kq_lock held). */
static int vn_watch(struct kq *kq, struct knote *kn, int fd, const struct stat *st)
{
	uint32_t mask = vn_mask(kn->kn_sfflags);
	int ifd = kq__inotify_fd(kq);
	if (ifd < 0)
		return ifd;
	char path[40];
	fd_path(path, sizeof(path), fd);
	int wd = inotify_add_watch(ifd, path, mask | IN_MASK_ADD);
	if (wd < 0)
		return -errno; /* ENOSPC: fs.inotify.max_user_watches reached */
	struct kq_vwatch *w = vn_find(kq, wd);
	bool fresh = !w;
	if (fresh && !(w = vn_new_watch(kq, wd, st)))
		goto nomem;
	if (w->w_nkn == w->w_cap) {
		uint32_t cap = w->w_cap ? w->w_cap * 2 : 2;
		struct knote **a = realloc(w->w_kn, cap * sizeof(*a));
		if (!a)
			goto nomem;
		w->w_kn = a;
		w->w_cap = cap;
	}
	vn_baseline(w, st);
	w->w_mask |= mask;
	w->w_kn[w->w_nkn++] = kn;
	kn->kn_u.vn.w = w;
	atomic_fetch_add_explicit(&kq->kq_nvnode, 1, memory_order_relaxed);
	return 0;
nomem:
	if (fresh) {
		if (w) {
			vn_unlink(kq, w);
			free(w);
		}
		if (!kq__file_wd_mask(kq, wd))
			inotify_rm_watch(ifd, wd);
	}
	return -ENOMEM;
}

static int vn_attach(struct kq *kq, struct knote *kn)
{
	int fd = (int)kn->kn_ident;
	struct kq_fdent *fe = kq__fdt_get(kq, fd);
	if (!fe)
		return -ENOMEM;
	/* Before the look at the file: a close from here on is seen later. */
	kn->kn_u.vn.closegen = atomic_load_explicit(&fe->fe_closegen, memory_order_acquire);
	kn->kn_u.vn.fflags = 0;
	kn->kn_u.vn.w = NULL;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -EBADF;
	/* FreeBSD: vnodes only; a socket, pipe, FIFO or device says EINVAL. */
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
		return -EINVAL;
	return vn_watch(kq, kn, fd, &st);
}

static void vn_detach(struct kq *kq, struct knote *kn)
{
	struct kq_vwatch *w = kn->kn_u.vn.w;
	if (!w)
		return;
	kn->kn_u.vn.w = NULL;
	atomic_fetch_sub_explicit(&kq->kq_nvnode, 1, memory_order_relaxed);
	for (uint32_t i = 0; i < w->w_nkn; i++) {
		if (w->w_kn[i] == kn) {
			w->w_kn[i] = w->w_kn[--w->w_nkn];
			break;
		}
	}
	if (w->w_nkn > 0) {
		vn_shrink(kq, w);
		return;
	}
	vn_unlink(kq, w);
	if (w->w_wd >= 0 && !kq__file_wd_mask(kq, w->w_wd))
		inotify_rm_watch(kq->kq_inofd, w->w_wd);
	free(w->w_kn);
	free(w);
}

/* EV_ADD on an existing knote: its new notes may need more of the kernel. */
static int vn_touch(struct kq *kq, struct knote *kn, const struct kevent *kev)
{
	struct kq_vwatch *w = kn->kn_u.vn.w;
	if (!(kev->flags & EV_ADD) || w->w_wd < 0)
		return 0;
	struct stat st;
	if (!vn_names((int)kn->kn_ident, w, &st))
		return -EBADF; /* f_gone checked it: closed since */
	vn_baseline(w, &st);   /* it may ask for NOTE_EXTEND now */
	uint32_t mask = vn_mask(kn->kn_sfflags);
	if (!(mask & ~w->w_mask)) {
		vn_shrink(kq, w);
		return 0;
	}
	char path[40];
	fd_path(path, sizeof(path), (int)kn->kn_ident);
	int wd = inotify_add_watch(kq->kq_inofd, path, mask | IN_MASK_ADD);
	if (wd < 0)
		return -errno;
	w->w_mask |= mask;
	return 0;
}

/*
 * A change finds the knote of a closed fd (the close was seen in a signal
 * handler), or of a file that is no longer behind the number (closed
 * without our hooks: fclose(), a raw system call): it is dropped, and the
 * change applies as if it were not there.
 */
static bool vn_gone(struct kq *kq, struct knote *kn, const struct kevent *kev)
{
	if (vn_closed(kq, kn))
		return true;
	struct stat st;
	return kev && kn->kn_u.vn.w && !vn_names((int)kn->kn_ident, kn->kn_u.vn.w, &st);
}

static bool vn_event(struct kq *kq, struct knote *kn, struct kevent *out)
{
	(void)kq;
	/* Only what it asked for, even of what an older EV_ADD asked. */
	out->fflags = kn->kn_u.vn.fflags & kn->kn_sfflags;
	out->data = 0;
	if (kn->kn_u.vn.fflags & VN_EOF) /* FreeBSD: revoked, whatever was asked */
		out->flags |= EV_EOF;
	return out->fflags != 0 || (kn->kn_u.vn.fflags & VN_EOF);
}

static void vn_clear(struct kq *kq, struct knote *kn)
{
	(void)kq;
	kn->kn_u.vn.fflags = 0;
}

const struct filterops kq__vnode_ops = {
        .f_validate = vn_validate,
        .f_attach = vn_attach,
        .f_detach = vn_detach,
        .f_touch = vn_touch,
        .f_event = vn_event,
        .f_clear = vn_clear,
        .f_gone = vn_gone,
};

/* Removes a knote for good (kq_lock held), as kevent.c's drop does. */
static void vn_drop(struct kq *kq, struct knote *kn)
{
	kq__group_leave(kq, kn);
	kq__dequeue(kq, kn);
	vn_detach(kq, kn);
	kq__hash_remove(kq, kn);
	kq__knote_free(kq, kn);
}

/*
 * close(fd) outside a signal handler: its knote goes now (I4).  A kqueue
 * without VNODE knotes costs the close nothing more: one that is being
 * added meanwhile saw fe_closegen move and goes at its next look.
 */
void kq__vnode_close(struct kq *kq, int fd)
{
	if (!atomic_load_explicit(&kq->kq_nvnode, memory_order_relaxed))
		return;
	kq__mutex_lock(&kq->kq_lock);
	struct knote *kn = kq__hash_find(kq, EVFILT_VNODE, (uintptr_t)fd);
	if (kn)
		vn_drop(kq, kn);
	kq__mutex_unlock(&kq->kq_lock);
}

/* ---- inotify events -> notes ---- */

/*
 * Gives notes to every knote of w that asked for them (kq_lock held), and
 * drops the knotes whose fd was closed meanwhile.  w may be freed.
 */
static void vn_post(struct kq *kq, struct kq_vwatch *w, uint32_t notes)
{
	bool stale = false;
	for (uint32_t i = 0; i < w->w_nkn; i++) {
		struct knote *kn = w->w_kn[i];
		if (vn_closed(kq, kn)) {
			stale = true;
			continue;
		}
		uint32_t mine = notes & (kn->kn_sfflags | VN_EOF);
		if (!mine)
			continue;
		kn->kn_u.vn.fflags |= mine;
		kq__activate(kq, kn);
	}
	while (stale) {
		stale = false;
		for (uint32_t i = 0; i < w->w_nkn; i++) {
			if (vn_closed(kq, w->w_kn[i])) {
				bool last = w->w_nkn == 1;
				vn_drop(kq, w->w_kn[i]);
				stale = !last;
				break;
			}
		}
	}
}

/* nlink and size against what was last seen, for the notes they tell. */
static uint32_t vn_compare(struct kq *kq, struct kq_vwatch *w, bool links, bool size)
{
	struct stat st;
	uint32_t n = 0;
	if (vn_live_fd(kq, w, &st) < 0)
		return 0; /* nobody left to tell */
	if (links) {
		/* FreeBSD: unlink() gives NOTE_DELETE, link() NOTE_LINK. */
		if ((uint64_t)st.st_nlink < w->w_nlink)
			n |= NOTE_DELETE;
		else if ((uint64_t)st.st_nlink > w->w_nlink)
			n |= NOTE_LINK;
		w->w_nlink = st.st_nlink;
		w->w_nlink_ok = true;
	}
	if (size) {
		if (st.st_size > w->w_size)
			n |= NOTE_EXTEND;
		else if (st.st_size < w->w_size)
			n |= NOTE_ATTRIB; /* a truncation: FreeBSD's setattr */
		w->w_size = st.st_size;
		w->w_size_ok = true;
	}
	return n;
}

/* Is the move ev one half of a rename inside one directory (same batch)? */
static bool vn_paired(const char *buf, size_t len, const struct inotify_event *ev)
{
	uint32_t other = (ev->mask & IN_MOVED_FROM) ? IN_MOVED_TO : IN_MOVED_FROM;
	for (const char *p = buf; p < buf + len;) {
		const struct inotify_event *e = (const struct inotify_event *)p;
		if (e->wd == ev->wd && e->cookie == ev->cookie && (e->mask & other))
			return true;
		p += sizeof(*e) + e->len;
	}
	return false;
}

/*
 * A directory's namespace change (FreeBSD's vop_*_post): NOTE_WRITE; a
 * subdirectory made or removed changes its link count (NOTE_LINK); a rename
 * that moves an entry in or out also NOTE_EXTEND, and NOTE_LINK for a
 * subdirectory, while a rename inside the directory is only NOTE_WRITE.
 */
static uint32_t vn_dir_notes(const char *buf, size_t len, const struct inotify_event *ev)
{
	uint32_t n = NOTE_WRITE;
	bool dir = ev->mask & IN_ISDIR;
	if (ev->mask & (IN_CREATE | IN_DELETE))
		return n | (dir ? NOTE_LINK : 0);
	if (!vn_paired(buf, len, ev))
		n |= NOTE_EXTEND | (dir ? NOTE_LINK : 0);
	return n;
}

/* The notes one event gives w (the mapping table is in docs/CONTRACT.md). */
static uint32_t vn_notes(struct kq *kq, struct kq_vwatch *w, const char *buf, size_t len,
                         const struct inotify_event *ev)
{
	uint32_t m = ev->mask, n = 0;
	if (ev->len > 0) /* about an entry of the watched directory */
		return (m & IN_NAMESPACE) ? vn_dir_notes(buf, len, ev) : 0;
	if (m & (IN_MODIFY | IN_ATTRIB)) {
		/* An fstat only when some knote needs what it tells. */
		uint32_t want = 0;
		for (uint32_t i = 0; i < w->w_nkn; i++)
			want |= w->w_kn[i]->kn_sfflags;
		bool links = (m & IN_ATTRIB) && (want & (NOTE_DELETE | NOTE_LINK | NOTE_ATTRIB));
		bool size = (m & IN_MODIFY) && (want & (NOTE_EXTEND | NOTE_ATTRIB));
		w->w_nlink_ok &= links || !(m & IN_ATTRIB);
		w->w_size_ok &= size || !(m & IN_MODIFY);
		if (links || size)
			n |= vn_compare(kq, w, links, size);
	}
	if (m & IN_MODIFY)
		n |= NOTE_WRITE;
	if ((m & IN_ATTRIB) && !(n & (NOTE_DELETE | NOTE_LINK)))
		n |= NOTE_ATTRIB; /* not the link count: mode, owner, times, xattrs */
	if (m & IN_DELETE_SELF)
		n |= NOTE_DELETE;
	if (m & IN_MOVE_SELF)
		n |= NOTE_RENAME;
	if (m & IN_OPEN)
		n |= NOTE_OPEN;
	if (m & IN_CLOSE_NOWRITE)
		n |= NOTE_CLOSE;
	if (m & IN_CLOSE_WRITE)
		n |= NOTE_CLOSE_WRITE;
	if (m & IN_ACCESS)
		n |= NOTE_READ;
	if (m & IN_UNMOUNT)
		n |= NOTE_REVOKE | VN_EOF;
	return n;
}

/*
 * Events were lost: every watch is told what a look at the file can tell
 * (link count, size) and every note only an event could have told.  A
 * program sees too much, never too little.
 */
static void vn_overflow(struct kq *kq)
{
	struct kq_htab *h = &kq->kq_vwatch;
	for (uint32_t b = 0; h->ht_tab && b <= h->ht_mask; b++) {
		struct kq_vwatch *w = h->ht_tab[b], *next;
		for (; w; w = next) {
			next = w->w_next;
			if (w->w_wd < 0)
				continue;
			uint32_t n = vn_compare(kq, w, true, true) | VN_EVENT_NOTES;
			if (w->w_nkn > 0)
				vn_post(kq, w, n); /* may free w, never next */
		}
	}
}

void kq__vnode_inotify(struct kq *kq, const char *buf, size_t len)
{
	if (!kq->kq_vwatch.ht_count)
		return;
	for (const char *p = buf; p < buf + len;) {
		const struct inotify_event *ev = (const struct inotify_event *)p;
		p += sizeof(*ev) + ev->len;
		if (ev->mask & IN_Q_OVERFLOW) {
			vn_overflow(kq);
			continue;
		}
		struct kq_vwatch *w = vn_find(kq, ev->wd);
		if (!w)
			continue;
		uint32_t n = vn_notes(kq, w, buf, len, ev);
		if (ev->mask & IN_IGNORED)
			vn_dead(kq, w);
		if (n)
			vn_post(kq, w, n);
	}
}

/* ---- fork and free ---- */

/*
 * fork() is coming: a KQUEUE_CPONFORK kqueue takes the events the kernel
 * holds for it now, so that the child's copy has them as pending knotes (its
 * inotify fd will be a new one; reading the inherited one in the child would
 * take them from the parent).
 */
void kq__vnode_prefork(struct kq *kq, void *arg)
{
	(void)arg;
	if (!(kq->kq_flags & KQUEUE_CPONFORK))
		return;
	kq__mutex_lock(&kq->kq_lock);
	bool watching = kq->kq_vwatch.ht_count > 0;
	kq__mutex_unlock(&kq->kq_lock);
	if (watching)
		kq__file_changed(kq);
}

/*
 * KQUEUE_CPONFORK child: the inherited inotify fd is the parent's; each
 * watch is made again on the child's, through a knote's fd (inherited).
 * A watch that cannot be made again is left dead: its knotes stay, silent.
 */
void kq__vnode_fork(struct kq *kq)
{
	kq__mutex_lock(&kq->kq_lock);
	struct kq_vwatch *all = NULL;
	struct kq_htab *h = &kq->kq_vwatch;
	for (uint32_t b = 0; h->ht_tab && b <= h->ht_mask; b++) {
		for (struct kq_vwatch *w = h->ht_tab[b], *next; w; w = next) {
			next = w->w_next;
			w->w_next = all;
			all = w;
		}
		h->ht_tab[b] = NULL;
	}
	h->ht_count = 0; /* all come back below: the table does not grow */
	int ifd = all ? kq__inotify_fd(kq) : -1;
	for (struct kq_vwatch *w = all, *next; w; w = next) {
		next = w->w_next;
		struct stat st;
		int fd = w->w_wd >= 0 ? vn_live_fd(kq, w, &st) : -1;
		char path[40];
		fd_path(path, sizeof(path), fd);
		w->w_wd = fd >= 0 && ifd >= 0
		                  ? inotify_add_watch(ifd, path, w->w_mask | IN_MASK_ADD)
		                  : -1;
		if (w->w_wd < 0)
			w->w_wd = -1;
		(void)vn_insert(kq, w);
	}
	kq__mutex_unlock(&kq->kq_lock);
}

void kq__vnode_free(struct kq *kq)
{
	struct kq_htab *h = &kq->kq_vwatch;
	for (uint32_t b = 0; h->ht_tab && b <= h->ht_mask; b++) {
		for (struct kq_vwatch *w = h->ht_tab[b], *next; w; w = next) {
			next = w->w_next;
			free(w->w_kn);
			free(w);
		}
	}
	kq__ht_free(h);
}
