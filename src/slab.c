/*
 * The one slab allocator of libbaton: objects of one size come in chunks of
 * sl_per, kept on a free list through a next pointer at a fixed offset, and
 * are never given back to malloc while the kqueue lives (type-stable: a
 * group's lock and generation stay valid for a late release; a million
 * timers cost no malloc header each).  sl_init runs once per object, when
 * its chunk is made.  The caller holds whatever lock guards the slab.
 */
#include <stdlib.h>

#include "kq_private.h"

#define NEXT(obj, off) (*(void **)((char *)(obj) + (off)))
/*
 * A chunk starts with a link to the chunk made before it (sl_chunks is the
 * newest), padded to 16 bytes, then sl_per objects: no array of chunks to
 * grow (its old copies were left in malloc's free lists, 18 bytes a timer at
 * a million), no header per object.
 */
#define CHUNK_HDR 16

static char *objects(void *chunk)
{
	return (char *)chunk + CHUNK_HDR;
}

void *kq__slab_alloc(struct kq_slab *sl)
{
	if (!sl->sl_free) {
		void **c = calloc(1, CHUNK_HDR + (size_t)sl->sl_per * sl->sl_size);
		if (!c)
			return NULL;
		*c = sl->sl_chunks;
		sl->sl_chunks = c;
		sl->sl_nchunks++;
		for (uint32_t i = 0; i < sl->sl_per; i++) {
			void *o = objects(c) + (size_t)i * sl->sl_size;
			if (sl->sl_init)
				sl->sl_init(o);
			NEXT(o, sl->sl_next) = sl->sl_free;
			sl->sl_free = o;
		}
	}
	void *o = sl->sl_free;
	sl->sl_free = NEXT(o, sl->sl_next);
	return o;
}

void kq__slab_free(struct kq_slab *sl, void *obj)
{
	NEXT(obj, sl->sl_next) = sl->sl_free;
	sl->sl_free = obj;
}

void kq__slab_foreach(struct kq_slab *sl, void (*fn)(void *))
{
	for (void **c = sl->sl_chunks; c; c = *c)
		for (uint32_t j = 0; j < sl->sl_per; j++)
			fn(objects(c) + (size_t)j * sl->sl_size);
}

void kq__slab_destroy(struct kq_slab *sl, void (*fini)(void *))
{
	if (fini)
		kq__slab_foreach(sl, fini);
	for (void **c = sl->sl_chunks, **prev; c; c = prev) {
		prev = *c;
		free(c);
	}
	sl->sl_chunks = NULL;
	sl->sl_nchunks = 0;
	sl->sl_free = NULL;
}
