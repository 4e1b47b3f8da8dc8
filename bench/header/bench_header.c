/*
 * bench_header - header lookups per second and layered logical reads vs a flat file.
 *
 *   bench_header lookup [NMAPS]   NMAPS (default 100000) mappings of 1-64 blocks of 4 KiB,
 *                                 uniformly random offsets, one thread
 *   bench_header layered DIR [MiB [RUNMAX]]
 *                                 a MiB-sized (default 1024) rootfs made of 4 layers (a full
 *                                 base + 3 diffs dirtying ~10% each in runs of 1-RUNMAX
 *                                 (default 64) blocks, plus zeroed runs) in local storage DIR,
 *                                 and the same bytes
 *                                 as one flat file; reads both in 1 MiB requests (best of 3,
 *                                 page cache warm) and prints MB/s and the ratio.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "storage/header.h"
#include "storage/logical.h"
#include "storage/storage.h"

#define BS 4096ull
#define REQ (1u << 20)

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t cpu_ns(void);

static int bench_lookup(size_t n)
{
	struct header h = { .version = 3, .block_size = BS };
	uint64_t off = 0, acc = 0, t0, t1, c0, c1, iters = 30000000;
	h.maps = calloc(n, sizeof(*h.maps));
	if (!h.maps)
		return 1;
	for (size_t i = 0; i < n; i++) {
		uint64_t len = (1 + rnd() % 64) * BS;
		h.maps[i].offset = off;
		h.maps[i].length = len;
		h.maps[i].build_id.b[0] = (uint8_t)(1 + i % 7);
		h.maps[i].storage_offset = off;
		off += len;
	}
	h.nmaps = n;
	h.size = off;
	{ /* measure the header as the readers get it: serialized and parsed back */
		size_t len;
		void *buf = header_serialize(&h, &len);
		header_release(&h);
		if (!buf || header_parse(buf, len, &h) < 0) {
			fprintf(stderr, "bench_header: %s\n", err_msg());
			return 1;
		}
		free(buf);
	}
	t0 = now_ns();
	c0 = cpu_ns();
	for (uint64_t k = 0; k < iters; k++) {
		uint64_t so, rem;
		const struct mapping *m = header_lookup(&h, rnd() % h.size, &so, &rem);
		acc += so + (uint64_t)(uintptr_t)m;
	}
	c1 = cpu_ns();
	t1 = now_ns();
	printf("lookup: %zu mappings, %llu uniformly random lookups, one thread: %.1f M lookups/s per CPU second (target >= 20); wall %.1f M/s [check %llu]\n",
	       n, (unsigned long long)iters, (double)iters / ((double)(c1 - c0) / 1e9) / 1e6,
	       (double)iters / ((double)(t1 - t0) / 1e9) / 1e6, (unsigned long long)(acc & 0xff));
	header_release(&h);
	return 0;
}

static void pattern(uint8_t *p, int gen, uint64_t block)
{
	uint64_t v = (block + 1) * 0x9e3779b97f4a7c15ull + (uint64_t)gen * 0x1234567ull;
	for (uint64_t i = 0; i < BS; i += 8)
		memcpy(p + i, &(uint64_t){ v + i }, 8);
}

static int write_obj(const char *dir, const char *id, const char *name, int *fd)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", dir, id);
	if (mkdir_p(p, 0755) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/%s/%s", dir, id, name);
	*fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	return *fd < 0 ? err_set_errno(errno, "cannot create '%s'", p) : 0;
}

/* CPU time of this process: on a machine shared with other jobs, wall time measures the
 * scheduler; both are printed, the targets are judged on CPU time. */
static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int bench_layered(const char *dir, uint64_t mib, uint64_t runmax)
{
	const uint64_t nblocks = mib * (1ull << 20) / BS, words = (nblocks + 63) / 64;
	uint8_t *owner = calloc(nblocks, 1), *blk = malloc(BS), *a = malloc(REQ), *b = malloc(REQ);
	struct mapping nilmap = { 0, nblocks * BS, { { 0 } }, 0 };
	struct header h = { 3, BS, nblocks * BS, 0, { { 0 } }, { { 0 } }, &nilmap, 1 }, next;
	char ids[4][UUID_STR_LEN + 1], flat[4096];
	uint64_t *dirty = calloc(words, 8), *empty = calloc(words, 8);
	struct storage *st;
	struct logical *l;
	double best_flat = 1e9, best_layered = 1e9, wall_flat = 1e9, wall_layered = 1e9;
	size_t nmaps;
	int fd;

	if (!owner || !blk || !a || !b || !dirty || !empty)
		return 1;
	for (int g = 0; g < 4; g++) {
		uuid_t16 id;
		uint64_t packed = 0;
		size_t hlen;
		void *hb;
		int hfd;
		uuid_generate(&id);
		uuid_format(&id, ids[g]);
		memset(dirty, 0, words * 8);
		memset(empty, 0, words * 8);
		if (write_obj(dir, ids[g], BUILD_ROOTFS, &fd) < 0)
			goto err;
		for (uint64_t x = 0; x < nblocks;) {
			uint64_t run = 1 + rnd() % runmax, r = rnd() % 100;
			bool d = g == 0 || r < 10, e = g > 0 && r >= 10 && r < 12;
			for (uint64_t k = 0; k < run && x < nblocks; k++, x++) {
				if (d) {
					dirty[x / 64] |= 1ull << (x % 64);
					owner[x] = (uint8_t)(g + 1);
					pattern(blk, g, x);
					if (full_pwrite(fd, blk, BS, packed) < 0)
						goto err;
					packed += BS;
				} else if (e) {
					empty[x / 64] |= 1ull << (x % 64);
					owner[x] = 0;
				}
			}
		}
		close(fd);
		if (header_diff(&h, &id, dirty, empty, &next) < 0)
			goto err;
		if (g > 0)
			header_release(&h);
		h = next;
		hb = header_serialize(&h, &hlen);
		if (!hb || write_obj(dir, ids[g], BUILD_ROOTFS_HEADER, &hfd) < 0 ||
		    full_pwrite(hfd, hb, hlen, 0) < 0)
			goto err;
		close(hfd);
		free(hb);
	}
	nmaps = h.nmaps;
	header_release(&h);
	snprintf(flat, sizeof(flat), "%s/flat.img", dir);
	fd = open(flat, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		goto err;
	for (uint64_t x = 0; x < nblocks; x++) {
		if (owner[x])
			pattern(blk, owner[x] - 1, x);
		else
			memset(blk, 0, BS);
		if (full_pwrite(fd, blk, BS, x * BS) < 0)
			goto err;
	}
	if (!(st = storage_open(dir, false)) || !(l = logical_open(st, ids[3], BUILD_KIND_ROOTFS)))
		goto err;
	/* verify once, then time */
	for (uint64_t off = 0; off < nblocks * BS; off += REQ) {
		if (logical_read(l, a, REQ, off) < 0 || full_pread(fd, b, REQ, off) < 0)
			goto err;
		if (memcmp(a, b, REQ)) {
			fprintf(stderr, "bench_header: layered and flat differ at %llu\n", (unsigned long long)off);
			return 1;
		}
	}
	for (int round = 0; round < 3; round++) {
		uint64_t t0 = now_ns(), c0 = cpu_ns();
		for (uint64_t off = 0; off < nblocks * BS; off += REQ)
			if (full_pread(fd, b, REQ, off) < 0)
				goto err;
		best_flat = MIN(best_flat, (double)(cpu_ns() - c0) / 1e9);
		wall_flat = MIN(wall_flat, (double)(now_ns() - t0) / 1e9);
		t0 = now_ns();
		c0 = cpu_ns();
		for (uint64_t off = 0; off < nblocks * BS; off += REQ)
			if (logical_read(l, a, REQ, off) < 0)
				goto err;
		best_layered = MIN(best_layered, (double)(cpu_ns() - c0) / 1e9);
		wall_layered = MIN(wall_layered, (double)(now_ns() - t0) / 1e9);
	}
	printf("layered: %llu MiB logical file, 4 layers (runs of 1-%llu blocks of 4 KiB), %zu mappings, 1 MiB reads (best of 3)\n",
	       (unsigned long long)mib, (unsigned long long)runmax, nmaps);
	printf("  flat file:    %8.0f MB/s per CPU second (wall %6.0f MB/s)\n",
	       (double)mib * 1.048576 / best_flat, (double)mib * 1.048576 / wall_flat);
	printf("  layered read: %8.0f MB/s per CPU second (wall %6.0f MB/s)\n",
	       (double)mib * 1.048576 / best_layered, (double)mib * 1.048576 / wall_layered);
	printf("  ratio layered/flat: %.2f (target >= 0.50; wall %.2f)\n", best_flat / best_layered,
	       wall_flat / wall_layered);
	logical_close(l);
	storage_free(st);
	close(fd);
	return 0;
err:
	fprintf(stderr, "bench_header: %s\n", err_msg());
	return 1;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "lookup"))
		return bench_lookup(argc > 2 ? (size_t)strtoull(argv[2], NULL, 0) : 100000);
	if (argc >= 3 && !strcmp(argv[1], "layered"))
		return bench_layered(argv[2], argc > 3 ? strtoull(argv[3], NULL, 0) : 1024,
				     argc > 4 && strtoull(argv[4], NULL, 0) ? strtoull(argv[4], NULL, 0) : 64);
	fprintf(stderr, "usage: bench_header lookup [NMAPS] | layered DIR [MiB [RUNMAX]]\n");
	return 2;
}
