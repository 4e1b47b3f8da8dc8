/*
 * chunkcache.c - a storage decorator that caches remote objects in BLOCK_CHUNK_SIZE chunks.
 *
 * Each object opened through it gets a sparse cache file of the object's size in the
 * decorator's owned directory (block_dir_claim) and a per-chunk state: ABSENT, FETCHING or
 * PRESENT. A reader that needs an ABSENT chunk marks it FETCHING, reads it from the remote
 * object outside any lock, writes it into the cache file and marks it PRESENT; readers that
 * find it FETCHING wait on the object's condition variable (single flight). If the fetch
 * fails the chunk goes back to ABSENT and its failure count is bumped: the readers that waited
 * for that fetch see the count change and report the error, the next reader fetches again.
 * Failures are never memoized (unlike the reference, spec §4.3).
 *
 * Invariants: a chunk is PRESENT only after all its bytes are in the cache file; PRESENT
 * never goes back. Reads of PRESENT chunks take no lock (acquire load of the state byte).
 * Threading: obj->lock guards state transitions and fails[]; the fetched counter is atomic.
 * Ownership: the decorator owns the remote storage and its cache directory; cache files are
 * removed when their object is closed, the directory when the storage is freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "../storage/internal.h"
#include "block.h"

enum { CHUNK_ABSENT, CHUNK_FETCHING, CHUNK_PRESENT };

struct cc {
	struct storage *remote;
	struct block_dir dir;
	uint64_t fetched; /* atomic */
	uint64_t seq;     /* atomic: cache file names */
};

struct cc_obj {
	struct cc *cc;
	struct storage_object *remote;
	int fd;
	char *path;
	uint64_t nchunks;
	uint8_t *state;  /* atomic bytes */
	uint32_t *fails; /* guarded by lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static const struct storage_ops cc_ops;

bool chunk_cache_is(struct storage *st)
{
	return st && st->ops == &cc_ops;
}

uint64_t chunk_cache_fetched(struct storage *st)
{
	struct cc *cc = st->priv;
	return chunk_cache_is(st) ? __atomic_load_n(&cc->fetched, __ATOMIC_RELAXED) : 0;
}

/* ---- objects ---- */

/* Fetch chunk i from the remote (called by the one reader that marked it FETCHING). */
static int fetch_chunk(struct cc_obj *co, struct storage_object *o, uint64_t i)
{
	uint64_t off = i * BLOCK_CHUNK_SIZE;
	size_t len = (size_t)MIN((uint64_t)BLOCK_CHUNK_SIZE, o->size - off);
	_cleanup_free_ void *buf = malloc(len);
	if (!buf)
		return err_set_errno(ENOMEM, "cannot fetch chunk %llu of '%s'", (unsigned long long)i, o->key);
	if (storage_object_read(co->remote, buf, len, off) < 0)
		return err_prefix("cannot fetch chunk %llu of '%s'", (unsigned long long)i, o->key);
	if (full_pwrite(co->fd, buf, len, off) < 0)
		return err_set_errno(errno, "cannot write chunk cache '%s'", co->path);
	return 0;
}

static int ensure_chunk(struct cc_obj *co, struct storage_object *o, uint64_t i)
{
	uint32_t fails0;
	int r;
	if (__atomic_load_n(&co->state[i], __ATOMIC_ACQUIRE) == CHUNK_PRESENT)
		return 0;
	pthread_mutex_lock(&co->lock);
	fails0 = co->fails[i];
	while (co->state[i] == CHUNK_FETCHING)
		pthread_cond_wait(&co->cond, &co->lock);
	if (co->state[i] == CHUNK_PRESENT) {
		pthread_mutex_unlock(&co->lock);
		return 0;
	}
	if (co->fails[i] != fails0) {
		/* the fetch we waited for failed: report it, the next reader retries */
		pthread_mutex_unlock(&co->lock);
		return err_set_errno(EIO, "cannot fetch chunk %llu of '%s': the fetch failed",
				     (unsigned long long)i, o->key);
	}
	__atomic_store_n(&co->state[i], CHUNK_FETCHING, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&co->lock);

	r = fetch_chunk(co, o, i);

	pthread_mutex_lock(&co->lock);
	if (r == 0) {
		__atomic_store_n(&co->state[i], CHUNK_PRESENT, __ATOMIC_RELEASE);
		__atomic_add_fetch(&co->cc->fetched, 1, __ATOMIC_RELAXED);
	} else {
		__atomic_store_n(&co->state[i], CHUNK_ABSENT, __ATOMIC_RELAXED);
		co->fails[i]++;
	}
	pthread_cond_broadcast(&co->cond);
	pthread_mutex_unlock(&co->lock);
	if (r < 0 && !errno)
		errno = EIO;
	return r;
}

static int cc_obj_read(struct storage_object *o, void *buf, size_t len, uint64_t off)
{
	struct cc_obj *co = o->priv;
	char *p = buf;
	while (len > 0) {
		uint64_t i = off / BLOCK_CHUNK_SIZE;
		size_t n = (size_t)MIN((uint64_t)len, (i + 1) * BLOCK_CHUNK_SIZE - off);
		if (ensure_chunk(co, o, i) < 0)
			return -1;
		if (full_pread(co->fd, p, n, off) < 0)
			return err_set_errno(errno == ENODATA ? EIO : errno, "cannot read chunk cache '%s'",
					     co->path);
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static void cc_obj_close(struct storage_object *o)
{
	struct cc_obj *co = o->priv;
	if (co) {
		storage_object_close(co->remote);
		if (co->fd >= 0)
			close(co->fd);
		if (co->path)
			unlink(co->path);
		pthread_mutex_destroy(&co->lock);
		pthread_cond_destroy(&co->cond);
		free(co->path);
		free(co->state);
		free(co->fails);
		free(co);
	}
	free(o->key);
	free(o);
}

static const struct storage_object_ops cc_obj_ops = {
	.read = cc_obj_read,
	.close = cc_obj_close,
};

int chunk_cache_object_fd(struct storage_object *o, uint64_t off, uint64_t len)
{
	struct cc_obj *co;
	uint64_t end;
	if (o->ops != &cc_obj_ops)
		return err_set_errno(EINVAL, "'%s' is not a chunk-cached object", o->key);
	if (add_overflow_u64(off, len, &end) || end > o->size)
		return err_set_errno(EINVAL, "range %llu+%llu is past the end of '%s'",
				     (unsigned long long)off, (unsigned long long)len, o->key);
	co = o->priv;
	for (uint64_t i = off / BLOCK_CHUNK_SIZE; len && i <= (end - 1) / BLOCK_CHUNK_SIZE; i++)
		if (ensure_chunk(co, o, i) < 0)
			return -1;
	return co->fd;
}

static struct storage_object *cc_object_open(struct storage *st, const char *key)
{
	struct cc *cc = st->priv;
	struct storage_object *o = NULL;
	struct cc_obj *co = NULL;
	char name[PATH_MAX];
	size_t k;
	struct storage_object *remote = storage_object_open(cc->remote, key);
	if (!remote)
		return NULL;
	o = calloc(1, sizeof(*o));
	co = calloc(1, sizeof(*co));
	if (!o || !co || !(o->key = strdup(key)))
		goto err_nomem;
	o->ops = &cc_obj_ops;
	o->st = st;
	o->size = storage_object_size(remote);
	o->priv = co;
	co->cc = cc;
	co->remote = remote;
	co->fd = -1;
	pthread_mutex_init(&co->lock, NULL);
	pthread_cond_init(&co->cond, NULL);
	co->nchunks = (o->size + BLOCK_CHUNK_SIZE - 1) / BLOCK_CHUNK_SIZE;
	if (!(co->state = calloc(co->nchunks + 1, 1)) || !(co->fails = calloc(co->nchunks + 1, 4)))
		goto err_nomem;
	snprintf(name, sizeof(name), "%s", key);
	for (k = 0; name[k]; k++)
		if (name[k] == '/')
			name[k] = '-';
	if (asprintf(&co->path, "%s/%s-%llu.cache", cc->dir.path, name,
		     (unsigned long long)__atomic_add_fetch(&cc->seq, 1, __ATOMIC_RELAXED)) < 0) {
		co->path = NULL;
		goto err_nomem;
	}
	co->fd = open(co->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (co->fd < 0 || ftruncate(co->fd, (off_t)o->size) < 0) {
		err_set_errno(errno, "cannot create chunk cache '%s'", co->path);
		cc_obj_close(o);
		return NULL;
	}
	return o;
err_nomem:
	err_set_errno(ENOMEM, "cannot open '%s' through the chunk cache", key);
	if (o && co) {
		cc_obj_close(o);
	} else {
		storage_object_close(remote);
		if (o)
			free(o->key);
		free(o);
		free(co);
	}
	return NULL;
}

/* ---- pass-through ops ---- */

static int cc_size(struct storage *st, const char *key, uint64_t *size)
{
	return storage_size(((struct cc *)st->priv)->remote, key, size);
}
static void *cc_read_all(struct storage *st, const char *key, size_t *len)
{
	return storage_read_all(((struct cc *)st->priv)->remote, key, len);
}
static int cc_write_file(struct storage *st, const char *key, const char *path)
{
	return storage_write_file(((struct cc *)st->priv)->remote, key, path);
}
static int cc_write_buf(struct storage *st, const char *key, const void *buf, size_t len)
{
	return storage_write_buf(((struct cc *)st->priv)->remote, key, buf, len);
}
static int cc_download(struct storage *st, const char *key, const char *path)
{
	return storage_download(((struct cc *)st->priv)->remote, key, path);
}
static int cc_delete_prefix(struct storage *st, const char *prefix)
{
	return storage_delete_prefix(((struct cc *)st->priv)->remote, prefix);
}
static int cc_list(struct storage *st, const char *prefix, char ***keys, size_t *n)
{
	return storage_list(((struct cc *)st->priv)->remote, prefix, keys, n);
}
static int cc_crc32c(struct storage *st, const char *key, uint32_t *crc, bool *known)
{
	return storage_crc32c(((struct cc *)st->priv)->remote, key, crc, known);
}

static void cc_free(struct storage *st)
{
	struct cc *cc = st->priv;
	storage_free(cc->remote);
	block_dir_release(&cc->dir);
	free(cc);
	free(st->describe);
	free(st);
}

static const struct storage_ops cc_ops = {
	.name = "chunk-cache",
	.size = cc_size,
	.read_all = cc_read_all,
	.write_file = cc_write_file,
	.write_buf = cc_write_buf,
	.download = cc_download,
	.delete_prefix = cc_delete_prefix,
	.list = cc_list,
	.crc32c = cc_crc32c,
	.object_open = cc_object_open,
	.free = cc_free,
};

struct storage *chunk_cache_new(struct storage *remote, const char *cache_dir)
{
	struct storage *st = calloc(1, sizeof(*st));
	struct cc *cc = calloc(1, sizeof(*cc));
	if (!st || !cc || !(st->describe = strdup(storage_describe(remote)))) {
		err_set_errno(ENOMEM, "cannot create chunk cache");
		goto err;
	}
	block_dir_reap(cache_dir, "chunks", NULL, NULL);
	if (block_dir_claim(&cc->dir, cache_dir, "chunks") < 0)
		goto err;
	cc->remote = remote;
	st->ops = &cc_ops;
	st->priv = cc;
	return st;
err:
	if (st)
		free(st->describe);
	free(st);
	free(cc);
	storage_free(remote);
	return NULL;
}
