/*
 * Serial groups (EV_SERIAL): knotes that are handed to one kevent() call at a
 * time, so a connection (READ + WRITE), or a proxy's client and upstream
 * sockets, with their timers and user events, is served by one thread at a
 * time without a lock of the program's own.
 *
 * Delivering a member takes the group for the calling kevent() call
 * (g_holder = its call token); a member that becomes ready while another call
 * holds the group is parked (gpend) instead of delivered.  EV_ENABLE of any
 * member releases the group: parked members are queued again and every
 * member's fd registration is re-armed.  Per delivery this costs one
 * uncontended lock of the group's own; nothing is shared between groups on
 * that path, and no system call is added: an fd member's registration is
 * EPOLLONESHOT, so a report during a hold disarms it by itself.
 *
 * Groups are type-stable (kept on a per-kqueue free list) and carry a
 * generation, so a release racing with the group's dissolution is harmless.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kq_private.h"

#define GSLAB 64

struct kn_aux *kq__aux(struct knote *kn)
{
	if (!kn->kn_aux)
		kn->kn_aux = calloc(1, sizeof(*kn->kn_aux));
	return kn->kn_aux;
}

static uint32_t ghash(uint64_t id)
{
	id *= 0x9E3779B97F4A7C15ULL;
	return (uint32_t)(id >> 32);
}

static uint32_t group_hash(const void *o)
{
	return ghash(((const struct kq_group *)o)->g_id);
}

/* kq_glock held */
static struct kq_group *gfind(struct kq *kq, uint64_t id)
{
	KQ_ASSERT_LOCKED(&kq->kq_glock);
	struct kq_group *g = kq__ht_head(&kq->kq_ghash, ghash(id));
	while (g && g->g_id != id)
		g = g->g_hnext;
	return g;
}

/* kq_glock held */
static int ghash_insert(struct kq *kq, struct kq_group *g)
{
	KQ_ASSERT_LOCKED(&kq->kq_glock);
	return kq__ht_insert(&kq->kq_ghash, g, offsetof(struct kq_group, g_hnext), group_hash);
}

/* kq_glock held */
static void ghash_remove(struct kq *kq, struct kq_group *g)
{
	KQ_ASSERT_LOCKED(&kq->kq_glock);
	kq__ht_remove(&kq->kq_ghash, g, offsetof(struct kq_group, g_hnext), ghash(g->g_id));
}

static void group_init(void *o)
{
	kq__mutex_init(&((struct kq_group *)o)->g_lock);
}

/* kq_glock held */
static void gfree(struct kq *kq, struct kq_group *g)
{
	KQ_ASSERT_LOCKED(&kq->kq_glock);
	kq__slab_free(&kq->kq_gslab, g);
}

/* kq_glock held */
static struct kq_group *galloc(struct kq *kq, uint64_t id)
{
	KQ_ASSERT_LOCKED(&kq->kq_glock);
	struct kq_slab *sl = &kq->kq_gslab;
	if (!sl->sl_size) { /* a new kqueue: kq_alloc() cleared it */
		sl->sl_size = sizeof(struct kq_group);
		sl->sl_per = GSLAB;
		sl->sl_next = offsetof(struct kq_group, g_hnext);
		sl->sl_init = group_init;
	}
	struct kq_group *g = kq__slab_alloc(sl);
	if (!g)
		return NULL;
	kq__mutex_lock(&g->g_lock);
	g->g_id = id;
	atomic_fetch_add(&g->g_gen, 1);
	atomic_store(&g->g_holder, 0);
	g->g_nmembers = 0;
	g->g_members = NULL;
	g->g_hnext = NULL;
	kq__mutex_unlock(&g->g_lock);
	return g;
}

/* Knote's own lock held (fe_lock or kq_lock). */
void kq__group_leave(struct kq *kq, struct knote *kn)
{
	struct kn_aux *a = kn->kn_aux;
	if (!a || !a->group)
		return;
	struct kq_group *g = a->group;
	pthread_mutex_lock(&kq->kq_glock);
	kq__mutex_lock(&g->g_lock);
	if (a->gprev)
		a->gprev->kn_aux->gnext = a->gnext;
	else
		g->g_members = a->gnext;
	if (a->gnext)
		a->gnext->kn_aux->gprev = a->gprev;
	a->gnext = a->gprev = NULL;
	atomic_store(&a->gpend, false);
	a->group = NULL;
	bool last = --g->g_nmembers == 0;
	if (last) {
		atomic_fetch_add(&g->g_gen, 1); /* a release in flight finds it gone */
		atomic_store(&g->g_holder, 0);
	}
	kq__mutex_unlock(&g->g_lock);
	if (last) {
		if (g->g_id)
			ghash_remove(kq, g);
		gfree(kq, g);
	}
	pthread_mutex_unlock(&kq->kq_glock);
}

/*
 * EV_ADD of kn with the change kev (knote's own lock held): join, move or
 * leave a group.  Joining a held group is fine (the holder may add a socket
 * to its connection's group); leaving a held one is not: EBUSY, since its
 * holder may be handling this very knote.
 */
int kq__group_set(struct kq *kq, struct knote *kn, const struct kevent *kev, bool isfd)
{
	struct kq_group *cur = kn->kn_aux ? kn->kn_aux->group : NULL;
	bool serial = kev->flags & EV_SERIAL;
	uint64_t id = kev->ext[1] ? kev->ext[1] : isfd ? kev->ident : 0;
	if (cur && serial && cur->g_id == id)
		return 0; /* same group (or still its own) */
	if (cur && atomic_load(&cur->g_holder))
		return -EBUSY;
	kq__group_leave(kq, kn);
	if (!serial)
		return 0;
	struct kn_aux *a = kq__aux(kn);
	if (!a)
		return -ENOMEM;
	int err = 0;
	pthread_mutex_lock(&kq->kq_glock);
	struct kq_group *g = id ? gfind(kq, id) : NULL;
	if (!g) {
		g = galloc(kq, id);
		if (!g || (id && ghash_insert(kq, g))) {
			if (g)
				gfree(kq, g);
			err = -ENOMEM;
			goto out;
		}
	}
	kq__mutex_lock(&g->g_lock);
	a->group = g;
	a->group_gen = atomic_load(&g->g_gen);
	a->gprev = NULL;
	a->gnext = g->g_members;
	if (g->g_members)
		g->g_members->kn_aux->gprev = kn;
	g->g_members = kn;
	g->g_nmembers++;
	kq__mutex_unlock(&g->g_lock);
out:
	pthread_mutex_unlock(&kq->kq_glock);
	return err;
}

/*
 * kn is ready and about to be delivered (its own lock held): take its group
 * for this call, or park kn if another call holds it.
 */
bool kq__group_take(struct knote *kn)
{
	struct kq_group *g = kn->kn_aux->group;
	uint64_t me = kq__call_token;
	kq__mutex_lock(&g->g_lock);
	uint64_t holder = atomic_load_explicit(&g->g_holder, memory_order_relaxed);
	bool ok = holder == 0 || holder == me || KQ_BROKEN(KQ_BREAK_G1) ||
	          (KQ_BROKEN(KQ_BREAK_G3) && (kn->kn_status & KN_FORCED));
	if (ok)
		atomic_store_explicit(&g->g_holder, me, memory_order_relaxed);
	else
		atomic_store(&kn->kn_aux->gpend, true);
	kq__mutex_unlock(&g->g_lock);
	return ok;
}

/*
 * EV_ENABLE of a member of the fd entry fe, with fe_lock held (lock order:
 * fe_lock, then g_lock): when every member is a knote of fe, as in a
 * socket's own group, the group is released here, by the change that holds
 * the only lock its members need, so the release costs no second round of
 * fe_lock and the registration is synced once, with the change.  Copies the
 * members into m[] (and whether each was parked into pend[]) and returns how
 * many; 0 if the group was dissolved meanwhile; -1 if a member lives
 * elsewhere (kq__group_release() then, after fe_lock).
 */
int kq__group_release_fd(struct kq_group *g, uint32_t gen, const struct kq_fdent *fe,
                         struct knote **m, bool *pend)
{
	int n = 0;
	kq__mutex_lock(&g->g_lock);
	if (atomic_load(&g->g_gen) != gen)
		goto out; /* dissolved meanwhile */
	if (g->g_nmembers > FE_NKN) {
		n = -1;
		goto out;
	}
	for (struct knote *kn = g->g_members; kn; kn = kn->kn_aux->gnext) {
		if (!kn->kn_isfd || kn->kn_u.fd.fe != fe) {
			n = -1;
			goto out;
		}
		m[n++] = kn;
	}
	atomic_store(&g->g_holder, 0);
	for (int i = 0; i < n; i++) {
		/* set under g_lock only: a plain look first spares a locked
		 * exchange in the common case, nothing parked */
		atomic_bool *gp = &m[i]->kn_aux->gpend;
		pend[i] = atomic_load_explicit(gp, memory_order_relaxed) &&
		          atomic_exchange(gp, false) && !KQ_BROKEN(KQ_BREAK_G2);
	}
out:
	kq__mutex_unlock(&g->g_lock);
	return n;
}

/*
 * EV_ENABLE of a member (no lock held): the group is free again.  Parked
 * members are queued again and every member's registration re-armed, each
 * under its own lock, which is why the members are first copied out.
 */
void kq__group_release(struct kq *kq, struct kq_group *g, uint32_t gen)
{
	struct knote *stackbuf[16], **m = stackbuf;
	bool pendbuf[16], *pend = pendbuf;
	/* kn_isfd read under g_lock: once it is dropped a USER/TIMER member
	 * may be freed and its slab slot reused (kq__generic_group_released
	 * then checks it again under kq_lock) */
	bool fdbuf[16], *isfd = fdbuf;
	uint32_t n = 0;
	kq__mutex_lock(&g->g_lock);
	if (atomic_load(&g->g_gen) != gen) {
		kq__mutex_unlock(&g->g_lock);
		return; /* dissolved meanwhile */
	}
	atomic_store(&g->g_holder, 0);
	if (g->g_nmembers > 16) {
		m = malloc(g->g_nmembers * sizeof(*m));
		pend = malloc(g->g_nmembers * sizeof(*pend));
		isfd = malloc(g->g_nmembers * sizeof(*isfd));
		if (!m || !pend || !isfd) { /* cannot replay: keep what we can, lose nothing */
			free(m);
			free(pend);
			free(isfd);
			m = stackbuf;
			pend = pendbuf;
			isfd = fdbuf;
		}
	}
	uint32_t cap = m == stackbuf ? 16 : g->g_nmembers;
	for (struct knote *kn = g->g_members; kn && n < cap; kn = kn->kn_aux->gnext) {
		m[n] = kn;
		isfd[n] = kn->kn_isfd;
		pend[n++] = atomic_exchange(&kn->kn_aux->gpend, false) && !KQ_BROKEN(KQ_BREAK_G2);
	}
	kq__mutex_unlock(&g->g_lock);
	for (uint32_t i = 0; i < n; i++) {
		if (!isfd[i]) {
			kq__generic_group_released(kq, m[i], g, gen, pend[i]);
			continue;
		}
		/* An fd's knotes that joined together: one lock, one sync. */
		uint32_t run = 1;
		while (i + run < n && run < FE_NKN && isfd[i + run] &&
		       m[i + run]->kn_u.fd.fe == m[i]->kn_u.fd.fe)
			run++;
		kq__fd_group_released(kq, m[i]->kn_u.fd.fe, g, gen, &m[i], &pend[i], (int)run);
		i += run - 1;
	}
	if (m != stackbuf) {
		free(m);
		free(pend);
		free(isfd);
	}
}

/* A fork copy: group locks may have been held by threads not in the child. */
void kq__group_fork(struct kq *kq)
{
	kq__slab_foreach(&kq->kq_gslab, group_init);
}

void kq__group_destroy_all(struct kq *kq)
{
	kq__slab_destroy(&kq->kq_gslab, NULL); /* g_lock needs no teardown */
	kq__ht_free(&kq->kq_ghash);
}
