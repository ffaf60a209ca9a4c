/*
 * A kqueue's fd table: fd -> kq_fdent, direct-indexed in two levels.  The top
 * level is sized by the process's fd ceiling (fs.nr_open) but only reserved
 * (calloc of untouched pages); chunks of entries appear as fds are used, so
 * memory follows the fds registered, never the fd limit.  Entries are never
 * freed while the kqueue lives: a thread may hold a pointer to one without a
 * lock and find out from fe_gen that it went stale.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "kq_private.h"

/* struct kq_fdtable and kq__fdt_lookup() are in kq_private.h (inline). */

static size_t fd_ceiling(void)
{
	long n = 1 << 20;
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");
	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = 1 << 20;
		fclose(f);
	}
	return (size_t)n;
}

int kq__fdt_init(struct kq *kq)
{
	size_t ntop = (fd_ceiling() + FDT_CHUNK - 1) / FDT_CHUNK;
	struct kq_fdtable *ft = calloc(1, sizeof(*ft) + ntop * sizeof(ft->ft_top[0]));
	if (!ft)
		return -ENOMEM;
	ft->ft_ntop = ntop;
	pthread_mutex_init(&ft->ft_grow, NULL);
	kq->kq_fdt = ft;
	return 0;
}

void kq__fdt_destroy(struct kq *kq)
{
	struct kq_fdtable *ft = kq->kq_fdt;
	if (!ft)
		return;
	for (size_t t = 0; t < ft->ft_ntop; t++) {
		struct kq_fdent *chunk = atomic_load(&ft->ft_top[t]);
		if (!chunk)
			continue;
		for (int i = 0; i < FDT_CHUNK; i++) {
			for (int k = 0; k < FE_NKN; k++)
				free(chunk[i].fe_kn[k].kn_aux);
		}
		free(chunk);
	}
	pthread_mutex_destroy(&ft->ft_grow);
	free(ft);
	kq->kq_fdt = NULL;
}

struct kq_fdent *kq__fdt_get(struct kq *kq, int fd)
{
	struct kq_fdent *fe = kq__fdt_lookup(kq, fd);
	if (fe || fd < 0)
		return fe;
	struct kq_fdtable *ft = kq->kq_fdt;
	if ((size_t)fd / FDT_CHUNK >= ft->ft_ntop)
		return NULL;
	pthread_mutex_lock(&ft->ft_grow);
	struct kq_fdent *chunk = atomic_load(&ft->ft_top[fd / FDT_CHUNK]);
	if (!chunk) {
		chunk = calloc(FDT_CHUNK, sizeof(*chunk));
		if (chunk) {
			for (int i = 0; i < FDT_CHUNK; i++) {
				kq__mutex_init(&chunk[i].fe_lock);
				chunk[i].fe_fd = (fd / FDT_CHUNK) * FDT_CHUNK + i;
				for (int k = 0; k < FE_NKN; k++) {
					chunk[i].fe_kn[k].kn_u.fd.fe = &chunk[i];
					chunk[i].fe_kn[k].kn_isfd = true;
					chunk[i].fe_kn[k].kn_filter = kq__fd_ops[k]->f_filter;
				}
			}
			atomic_store_explicit(&ft->ft_top[fd / FDT_CHUNK], chunk,
			                      memory_order_release);
		}
	}
	pthread_mutex_unlock(&ft->ft_grow);
	return chunk ? &chunk[fd % FDT_CHUNK] : NULL;
}

void kq__fdt_foreach(struct kq *kq, void (*fn)(struct kq *, struct kq_fdent *, void *), void *arg)
{
	struct kq_fdtable *ft = kq->kq_fdt;
	for (size_t t = 0; t < ft->ft_ntop; t++) {
		struct kq_fdent *chunk = atomic_load_explicit(&ft->ft_top[t], memory_order_acquire);
		for (int i = 0; chunk && i < FDT_CHUNK; i++)
			fn(kq, &chunk[i], arg);
	}
}
