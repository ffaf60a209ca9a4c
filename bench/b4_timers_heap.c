/* B4 floor: a plain indexed binary min-heap of deadlines (no fds, no
 * kernel objects), fired by sleeping until the earliest deadline with
 * clock_nanosleep(TIMER_ABSTIME).  Cancel is O(log n) via a position index. */
#include "b4_timers.h"

struct slot {
	int64_t when;
	long id;
};

static struct slot *heap;
static long *pos; /* heap index of each id, -1 when not queued */
static long len;

static void put(long i, struct slot s)
{
	heap[i] = s;
	pos[s.id] = i;
}

static void sift_up(long i, struct slot s)
{
	while (i > 0 && heap[(i - 1) / 2].when > s.when) {
		put(i, heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	put(i, s);
}

static void sift_down(long i, struct slot s)
{
	long c;

	for (;;) {
		c = 2 * i + 1;
		if (c >= len)
			break;
		if (c + 1 < len && heap[c + 1].when < heap[c].when)
			c++;
		if (heap[c].when >= s.when)
			break;
		put(i, heap[c]);
		i = c;
	}
	put(i, s);
}

static void heap_remove(long i)
{
	struct slot last = heap[--len];

	pos[heap[i].id] = -1;
	if (i == len)
		return;
	if (i > 0 && heap[(i - 1) / 2].when > last.when)
		sift_up(i, last);
	else
		sift_down(i, last);
}

static void b4_init(void)
{
	heap = calloc((size_t)b4.k, sizeof *heap);
	pos = calloc((size_t)b4.k, sizeof *pos);
	if (!heap || !pos)
		die("calloc");
}

static long b4_add(long first, long n)
{
	long i;

	for (i = 0; i < n; i++) {
		struct slot s = { b4.deadline[first + i], first + i };

		sift_up(len++, s);
	}
	return n;
}

static void b4_cancel(long first, long n)
{
	long i;

	for (i = 0; i < n; i++)
		if (pos[first + i] >= 0)
			heap_remove(pos[first + i]);
}

static void b4_harvest(void)
{
	struct timespec ts;
	int64_t now;

	while (len > 0) {
		now = now_ns();
		if (heap[0].when > now) {
			ts = ns_to_ts(heap[0].when);
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
				;
			now = now_ns();
		}
		while (len > 0 && heap[0].when <= now) {
			long id = heap[0].id;

			heap_remove(0);
			b4_fired(id);
		}
	}
}

int main(int argc, char **argv)
{
	return b4_main(argc, argv, "heap");
}
