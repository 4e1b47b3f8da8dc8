/*
 * block.h - the block layer under a sandbox's disk (and mount-rootfs):
 *
 *   NBD / FUSE  ->  cow (per-sandbox writes, block bitmap)  ->  block_source (read-only)
 *                                                                 |
 *                      block_build: a build's logical file (logical.h, resolved through
 *                      its header) over storage; for buckets the storage is wrapped in a
 *                      chunk cache (4 MiB chunks fetched on demand into a sparse file).
 *
 * Host paths (CONTRACTS §6): everything this layer creates lives under
 * ORCHESTRATOR_BASE_PATH (default /tmp/orchestrator): chunk caches in
 * DEFAULT_CACHE_DIR (default $ORCHESTRATOR_BASE_PATH/build), COW files and mount-rootfs work
 * dirs in SANDBOX_CACHE_DIR (default $ORCHESTRATOR_BASE_PATH/sandbox). Each owner keeps its
 * files in a directory of its own holding a `lock` file it flock()s; block_dir_claim() makes
 * one and block_dir_reap() removes those whose owner is gone.
 *
 * Threading: block_source reads, cow_read/cow_write/... and chunk cache reads are safe from
 * many threads at once; open/close/export are not concurrent with I/O unless said so.
 * Errors: -1/NULL + err_set(), errno set for the NBD error mapping.
 */
#ifndef ORCH_BLOCK_H
#define ORCH_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"
#include "../nbd/nbd.h"
#include "../storage/header.h"
#include "../storage/storage.h"

#define BLOCK_CHUNK_SIZE (4u << 20)
#define BLOCK_COW_BLOCK 4096u

/* ---- host directories ---- */

/* $ORCHESTRATOR_BASE_PATH or /tmp/orchestrator; $DEFAULT_CACHE_DIR or BASE/build;
 * $SANDBOX_CACHE_DIR or BASE/sandbox. Returned strings are malloc'd (caller frees). */
char *block_base_dir(void);
char *block_cache_dir(void);
char *block_sandbox_dir(void);

/* A private directory parent/<prefix>-<random>/ with a held lock file. */
struct block_dir {
	char *path;
	int lock_fd;
};
/* Create parent (mkdir -p) and a new owned directory in it. */
int block_dir_claim(struct block_dir *d, const char *parent, const char *prefix);
/* Remove the directory and everything in it (not crossing mounts), release the lock. */
void block_dir_release(struct block_dir *d);
/* Remove every parent/<prefix>-* directory whose lock is free (its owner died), after
 * calling before_remove(dir, opaque) when given (to undo what the owner set up elsewhere).
 * Returns how many were removed, -1 on error. */
int block_dir_reap(const char *parent, const char *prefix,
		   void (*before_remove)(const char *dir, void *opaque), void *opaque);

/* ---- read-only sources ---- */

struct block_source {
	/* 0, or -1 + err/errno. Thread-safe. The range is within size. */
	int (*read)(void *opaque, void *buf, size_t len, uint64_t off);
	/* Optional (may be NULL): the range as file extents, see nbd_dev_ops.map. */
	int (*map)(void *opaque, uint64_t off, uint64_t len, struct nbd_extent *ext, int max);
	void *opaque;
	uint64_t size;
	uint64_t block_size;
};

/* A source of zeros (mount-rootfs -empty). */
struct block_source block_zero_source(uint64_t size, uint64_t block_size);

/* ---- chunk cache: a storage decorator ----
 * Objects opened through the returned storage are read in BLOCK_CHUNK_SIZE chunks from
 * `remote` into a sparse cache file with a presence map: one fetch per chunk even with many
 * readers waiting on it; a failed fetch is reported to the readers that waited for it and
 * retried by the next reader (never memoized). Every other storage op passes through.
 * The cache files live in an owned directory under cache_dir (block_dir_claim) and are
 * removed with it when the storage is freed. Takes ownership of remote. */
struct storage *chunk_cache_new(struct storage *remote, const char *cache_dir);
/* Chunks fetched from the remote so far (all objects). */
uint64_t chunk_cache_fetched(struct storage *cached);
/* True when st is a chunk cache made by chunk_cache_new. */
bool chunk_cache_is(struct storage *st);
/* For an object opened through a chunk cache: make [off, off+len) present (fetching what is
 * missing, single flight as for reads) and return the cache file's fd, which holds the
 * object's bytes at the same offsets and stays open until the object is closed. -1 + err. */
int chunk_cache_object_fd(struct storage_object *o, uint64_t off, uint64_t len);

/* ---- a build's logical file ---- */

struct block_build;
/* Open <build_id>'s memfile or rootfs through its header. For bucket storage (no local dir)
 * reads go through a chunk cache in block_cache_dir(); local directories are read directly.
 * st must outlive the build. */
struct block_build *block_build_open(struct storage *st, const char *build_id,
				     enum build_kind kind);
struct block_source block_build_source(struct block_build *b);
const struct header *block_build_header(struct block_build *b);
/* Remote chunks fetched (0 for local storage). */
uint64_t block_build_fetched(struct block_build *b);
void block_build_close(struct block_build *b);

/* ---- copy-on-write overlay ---- */

struct cow;
/* A COW layer of BLOCK_COW_BLOCK blocks over base, writes kept in a new sparse file at path
 * (must not exist; removed by cow_free). base must outlive the cow; base->size must be a
 * multiple of BLOCK_COW_BLOCK. */
struct cow *cow_new(const struct block_source *base, const char *path);
uint64_t cow_size(const struct cow *c);
/* Thread-safe I/O (any offset and length within the size; unaligned writes do
 * read-modify-write). Reads take no lock; writes, zero and trim serialize on one mutex. */
int cow_read(struct cow *c, void *buf, size_t len, uint64_t off);
/* The range as at most max file extents (COW file, base objects, zeros); 0 when the base
 * cannot map (e.g. chunk-cached remote data) or more extents would be needed. */
int cow_map(struct cow *c, uint64_t off, uint64_t len, struct nbd_extent *ext, int max);
int cow_write(struct cow *c, const void *buf, size_t len, uint64_t off);
/* Make the range read as zeros (whole blocks become holes in the COW file). */
int cow_zero(struct cow *c, uint64_t len, uint64_t off);
/* Discard hint: whole blocks inside the range read as zeros afterwards; partial blocks
 * are left as they are. */
int cow_trim(struct cow *c, uint64_t len, uint64_t off);
int cow_flush(struct cow *c);
/* Blocks written so far. */
uint64_t cow_written_blocks(struct cow *c);
/* nbd_dev_ops over a cow (opaque = the struct cow *). */
extern const struct nbd_dev_ops cow_nbd_ops;

struct cow_export_stats {
	uint64_t dirty_blocks; /* written and non-zero: stored in the diff */
	uint64_t empty_blocks; /* written as all zeros: nil mappings */
	uint64_t diff_bytes;
};
/* Export the written blocks as a new build on top of base_header: a packed diff
 * <new_build>/<data object> (non-zero written blocks, ascending) and its header
 * (generation + 1, spec §3.6) <new_build>/<header object>, both published atomically, data
 * first. Writes are held off while it runs. The cow is unchanged. */
int cow_export(struct cow *c, const struct header *base_header, struct storage *st,
	       const char *new_build, enum build_kind kind, struct cow_export_stats *stats);
/* Close and remove the COW file. NULL is fine. */
void cow_free(struct cow *c);

#endif
