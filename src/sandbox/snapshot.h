/*
 * snapshot.h - turning VM files into build objects and back:
 *  - pack a full image (the memfile of a freshly booted VM, a rootfs image) into a
 *    generation-0 build: non-zero blocks packed in order + a header mapping them (zero
 *    blocks are nil mappings);
 *  - publish a pause diff (the dirty pages vmm_pause_diff copied out) as a new generation on
 *    top of the running build's header;
 *  - materialise a build's memfile and snapfile once per host into
 *    SNAPSHOT_CACHE_DIR/<build>/ (temp + rename under the build's lock; CONTRACTS §6), where
 *    every sandbox of that build maps it read-only (MAP_PRIVATE).
 */
#ifndef ORCH_SANDBOX_SNAPSHOT_H
#define ORCH_SANDBOX_SNAPSHOT_H

#include <limits.h>
#include <stdint.h>

#include "storage/header.h"
#include "storage/storage.h"

struct pack_stats {
	uint64_t blocks;       /* blocks in the file */
	uint64_t data_blocks;  /* non-zero blocks stored */
	uint64_t data_bytes;
};

/* Pack path as <build_id>/<data object> + <header object> (generation 0, build and base
 * build = build_id). tmp_dir holds the packed file while it is uploaded. */
int snapshot_pack_full(const char *path, uint64_t block_size, struct storage *st, const char *build_id,
		       enum build_kind kind, const char *tmp_dir, struct pack_stats *stats);

/* Publish diff_path (packed pages, one per set bit of bitmap, in order) as <new_build>'s
 * data object and a header of generation base->generation + 1 on top of base. */
int snapshot_publish_diff(const char *diff_path, const uint64_t *bitmap, uint64_t nblocks,
			  const struct header *base, struct storage *st, const char *new_build,
			  enum build_kind kind);

struct snapshot_files {
	char memfile[PATH_MAX];
	char snapfile[PATH_MAX];
	int lock_fd; /* shared lock on the cache entry, held while the files are in use */
};
/* Materialise (once) and return the paths of build_id's memfile and snapfile in cache_dir.
 * Release with snapshot_files_release. */
int snapshot_cache_get(const char *cache_dir, struct storage *st, const char *build_id,
		       struct snapshot_files *out);
void snapshot_files_release(struct snapshot_files *f);

#endif
