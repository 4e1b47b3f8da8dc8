/*
 * build.c - the layered read-only device of a build: its logical memfile or rootfs read
 * through the header (storage/logical.c). Bucket storage is wrapped in a chunk cache so
 * data objects are fetched in 4 MiB chunks on demand; local directories are read directly.
 *
 * It can also map a range to extents of files (for NBD replies spliced from the page cache):
 * for local storage the data object files themselves, opened by the same paths the local
 * backend uses after logical_open checked they exist and are long enough; for buckets the
 * chunk cache files of the objects the logical reader opened (through an open_object hook),
 * after making the chunks present.
 *
 * Threading: reads are as thread-safe as logical_read (lock-free once objects are open);
 * map opens each object once under fd_lock and is lock-free afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "../storage/internal.h"
#include "../storage/logical.h"
#include "block.h"

#define MAP_FDS 32

struct build_fd {
	uuid_t16 id;
	int fd;
	struct storage_object *obj; /* chunk-cached: the logical reader's object (borrowed) */
};

struct block_build {
	struct storage *cached; /* the chunk cache decorator, or NULL for local storage */
	struct logical *l;
	/* local storage only: data objects opened for block_build_map (spliced replies) */
	char *dir;
	enum build_kind kind;
	pthread_mutex_t fd_lock;  /* guards appending to fds */
	struct build_fd fds[MAP_FDS];
	int nfds;                 /* published with release stores */
};

/* The open data object of build id (local storage), or -1. Lock-free once opened. */
static int build_fd(struct block_build *b, const uuid_t16 *id)
{
	int n = __atomic_load_n(&b->nfds, __ATOMIC_ACQUIRE), fd = -1;
	char path[PATH_MAX], ids[UUID_STR_LEN + 1];
	for (int i = 0; i < n; i++)
		if (uuid_equal(&b->fds[i].id, id))
			return b->fds[i].fd;
	pthread_mutex_lock(&b->fd_lock);
	n = b->nfds;
	for (int i = 0; i < n; i++)
		if (uuid_equal(&b->fds[i].id, id)) {
			fd = b->fds[i].fd;
			goto out;
		}
	if (n == MAP_FDS)
		goto out;
	snprintf(path, sizeof(path), "%s/%s/%s", b->dir, uuid_format(id, ids), build_kind_data_object(b->kind));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		goto out;
	b->fds[n] = (struct build_fd){ .id = *id, .fd = fd };
	__atomic_store_n(&b->nfds, n + 1, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&b->fd_lock);
	return fd;
}

/* The chunk cache fd holding [soff, soff+len) of build id's data object, fetching what is
 * missing; -1 when the logical reader has not opened that object yet (the copying read path
 * opens it) or the fetch failed (the read path reports it). */
static int cached_fd(struct block_build *b, const uuid_t16 *id, uint64_t soff, uint64_t len)
{
	int n = __atomic_load_n(&b->nfds, __ATOMIC_ACQUIRE);
	for (int i = 0; i < n; i++)
		if (uuid_equal(&b->fds[i].id, id))
			return chunk_cache_object_fd(b->fds[i].obj, soff, len);
	return -1;
}

/* logical_options.open_object for chunk-cached builds: open through the cache and remember
 * the object so build_map can find its cache file. */
static struct storage_object *hook_open(void *opaque, const char *key)
{
	struct block_build *b = opaque;
	struct storage_object *o = storage_object_open(b->cached, key);
	char ids[UUID_STR_LEN + 1];
	uuid_t16 id;
	if (!o)
		return NULL;
	snprintf(ids, sizeof(ids), "%s", key);
	pthread_mutex_lock(&b->fd_lock);
	if (b->nfds < MAP_FDS && uuid_parse(ids, &id) == 0) {
		b->fds[b->nfds] = (struct build_fd){ .id = id, .fd = -1, .obj = o };
		__atomic_store_n(&b->nfds, b->nfds + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&b->fd_lock);
	err_clear();
	return o;
}

/* Extents of the logical range: the owners' data objects at their storage offsets (local
 * files, or chunk cache files for buckets), nil mappings as zeros. */
static int build_map(void *opaque, uint64_t off, uint64_t len, struct nbd_extent *ext, int max)
{
	struct block_build *b = opaque;
	const struct header *h = logical_header(b->l);
	int n = 0;
	if (!b->dir && !b->cached)
		return 0;
	while (len > 0) {
		uint64_t soff, rem, k;
		const struct mapping *m = header_lookup(h, off, &soff, &rem);
		int fd = -1;
		if (!m || n == max)
			return 0;
		k = MIN(rem, len);
		if (!uuid_is_nil(&m->build_id) &&
		    (fd = b->cached ? cached_fd(b, &m->build_id, soff, k) : build_fd(b, &m->build_id)) < 0)
			return 0;
		if (n > 0 && ext[n - 1].fd == fd && (fd < 0 || ext[n - 1].offset + ext[n - 1].length == soff))
			ext[n - 1].length += k; /* adjacent pieces of one object */
		else
			ext[n++] = (struct nbd_extent){ .fd = fd, .offset = soff, .length = k };
		off += k;
		len -= k;
	}
	return n;
}

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
	pthread_mutex_init(&b->fd_lock, NULL);
	b->kind = kind;
	if (b->cached) {
		struct header h;
		bool legacy;
		struct logical_options opts = { .open_object = hook_open, .opaque = b };
		if (logical_load_header(use, build_id, kind, &h, &legacy) == 0)
			b->l = logical_open_header(use, &h, kind, &opts);
	} else {
		b->l = logical_open(use, build_id, kind);
	}
	if (!b->l) {
		storage_free(b->cached);
		pthread_mutex_destroy(&b->fd_lock);
		free(b);
		return NULL;
	}
	if (!b->cached && storage_local_dir(st))
		b->dir = strdup(storage_local_dir(st)); /* NULL on ENOMEM: no map, reads still work */
	return b;
}

struct block_source block_build_source(struct block_build *b)
{
	const struct header *h = logical_header(b->l);
	return (struct block_source){ .read = build_read, .map = build_map, .opaque = b,
				      .size = h->size, .block_size = h->block_size };
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
	for (int i = 0; i < b->nfds; i++)
		if (b->fds[i].fd >= 0)
			close(b->fds[i].fd);
	pthread_mutex_destroy(&b->fd_lock);
	free(b->dir);
	free(b);
}
