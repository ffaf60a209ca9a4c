/*
 * The one hash table of libbaton: intrusive chains through a next pointer
 * at a fixed offset in each object, a power-of-two bucket array that doubles
 * when it holds as many objects as buckets.  Users find by walking a bucket
 * themselves (kq__ht_head), with their own key compare inline; here are only
 * insert, remove and growth.  The caller holds whatever lock guards the table.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "kq_private.h"

#define NEXT(obj, off) (*(void **)((char *)(obj) + (off)))

/*
 * Bucket arrays of a page or more are mappings of their own: the ones a
 * growth leaves behind go back to the system, not into malloc's free lists
 * (at 10 000 timers those would hold 13 bytes a timer nothing reuses).
 */
#define HT_MAP_MIN (4096 / sizeof(void *))

static void **tab_alloc(uint32_t n)
{
	if (n < HT_MAP_MIN)
		return calloc(n, sizeof(void *));
	void *t = mmap(NULL, n * sizeof(void *), PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return t == MAP_FAILED ? NULL : t;
}

static void tab_free(void **t, uint32_t n)
{
	if (n < HT_MAP_MIN)
		free(t);
	else if (t)
		munmap(t, n * sizeof(void *));
}

static int ht_grow(struct kq_htab *h, size_t off, uint32_t (*hash_of)(const void *))
{
	uint32_t n = h->ht_tab ? (h->ht_mask + 1) * 2 : 64;
	void **t = tab_alloc(n);
	if (!t)
		return -ENOMEM;
	for (uint32_t i = 0; h->ht_tab && i <= h->ht_mask; i++) {
		for (void *o = h->ht_tab[i], *next; o; o = next) {
			next = NEXT(o, off);
			uint32_t b = hash_of(o) & (n - 1);
			NEXT(o, off) = t[b];
			t[b] = o;
		}
	}
	if (h->ht_tab)
		tab_free(h->ht_tab, h->ht_mask + 1);
	h->ht_tab = t;
	h->ht_mask = n - 1;
	return 0;
}

int kq__ht_insert(struct kq_htab *h, void *obj, size_t off, uint32_t (*hash_of)(const void *))
{
	if (!h->ht_tab || h->ht_count >= h->ht_mask + 1) {
		int err = ht_grow(h, off, hash_of);
		if (err)
			return err;
	}
	void **b = &h->ht_tab[hash_of(obj) & h->ht_mask];
	NEXT(obj, off) = *b;
	*b = obj;
	h->ht_count++;
	return 0;
}

void kq__ht_remove(struct kq_htab *h, void *obj, size_t off, uint32_t hash)
{
	if (!h->ht_tab)
		return;
	void **pp = &h->ht_tab[hash & h->ht_mask];
	while (*pp && *pp != obj)
		pp = &NEXT(*pp, off);
	if (*pp) {
		*pp = NEXT(obj, off);
		h->ht_count--;
	}
	NEXT(obj, off) = NULL;
}

void kq__ht_free(struct kq_htab *h)
{
	if (h->ht_tab)
		tab_free(h->ht_tab, h->ht_mask + 1);
	h->ht_tab = NULL;
	h->ht_mask = h->ht_count = 0;
}
