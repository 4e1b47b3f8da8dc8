/*
 * build.c - the layered read-only device of a build: its logical memfile or rootfs read
 * through the header (storage/logical.c). Bucket storage is wrapped in a chunk cache so
 * data objects are fetched in 4 MiB chunks on demand; local directories are read directly.
 *
 * Threading: reads are as thread-safe as logical_read (lock-free once objects are open).
 */
#include <errno.h>
#include <string.h>

#include "../storage/internal.h"
#include "../storage/logical.h"
#include "block.h"

struct block_build {
	struct storage *cached; /* the chunk cache decorator, or NULL for local storage */
	struct logical *l;
};

static int build_read(void *opaque, void *buf, size_t len, uint64_t off)
{
	struct block_build *b = opaque;
	if (logical_read(b->l, buf, len, off) < 0) {
		if (!errno)
			errno = EIO;
		return -1;
	}
	return 0;
}

/* A view of st that does not own it, so the decorator can take "ownership". */
static void borrowed_free(struct storage *st)
{
	free(st);
}

struct block_build *block_build_open(struct storage *st, const char *build_id,
				     enum build_kind kind)
{
	struct block_build *b = calloc(1, sizeof(*b));
	struct storage *use = st;
	if (!b) {
		err_set_errno(ENOMEM, "cannot open build %s", build_id);
		return NULL;
	}
	if (!storage_local_dir(st)) {
		_cleanup_free_ char *dir = block_cache_dir();
		struct storage_ops *ops;
		struct storage *view = calloc(1, sizeof(*view) + sizeof(*ops));
		if (!dir || !view) {
			free(view);
			free(b);
			err_set_errno(ENOMEM, "cannot open build %s", build_id);
			return NULL;
		}
		/* the view shares st's backend but frees only itself */
		ops = (struct storage_ops *)(view + 1);
		*ops = *st->ops;
		ops->free = borrowed_free;
		*view = *st;
		view->ops = ops;
		if (!(b->cached = chunk_cache_new(view, dir))) {
			free(b);
			return NULL;
		}
		use = b->cached;
	}
	b->l = logical_open(use, build_id, kind);
	if (!b->l) {
		storage_free(b->cached);
		free(b);
		return NULL;
	}
	return b;
}

struct block_source block_build_source(struct block_build *b)
{
	const struct header *h = logical_header(b->l);
	return (struct block_source){ .read = build_read, .opaque = b, .size = h->size,
				      .block_size = h->block_size };
}

const struct header *block_build_header(struct block_build *b)
{
	return logical_header(b->l);
}

uint64_t block_build_fetched(struct block_build *b)
{
	return b->cached ? chunk_cache_fetched(b->cached) : 0;
}

void block_build_close(struct block_build *b)
{
	if (!b)
		return;
	logical_close(b->l);
	storage_free(b->cached);
	free(b);
}
