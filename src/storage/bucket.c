/*
 * bucket.c - s3:// and gs:// locations behind the storage interface (storage.h), on the
 * S3-compatible client in s3_client.c.
 *
 * Every operation is one or a few HTTP requests; nothing is cached here (the block layer's
 * chunk cache decorates this backend for lazy reads). An object handle remembers the size
 * from its HEAD and serves storage_object_read with ranged GETs, so a reader fetches only the
 * ranges it touches.
 *
 * Checksums: objects we write carry x-amz-meta-crc32c (CONTRACTS §2); storage_crc32c reports
 * it, or GCS's own x-goog-hash crc32c, and says "unknown" when neither is there.
 *
 * Threading: the storage and its objects may be used from any number of threads; all shared
 * state is in the client (see s3_client.c).
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "s3_client.h"

static struct s3_client *cl(struct storage *st)
{
	return st->priv;
}

static int bucket_size(struct storage *st, const char *key, uint64_t *size)
{
	struct s3_stat s;
	if (s3_head(cl(st), key, &s) < 0)
		return -1;
	*size = s.size;
	return 0;
}

static void *bucket_read_all(struct storage *st, const char *key, size_t *len)
{
	return s3_get_all(cl(st), key, len);
}

static int bucket_write_file(struct storage *st, const char *key, const char *path)
{
	return s3_put_file(cl(st), key, path);
}

static int bucket_write_buf(struct storage *st, const char *key, const void *buf, size_t len)
{
	return s3_put_buf(cl(st), key, buf, len);
}

static int bucket_download(struct storage *st, const char *key, const char *path)
{
	return s3_download(cl(st), key, path);
}

static int bucket_list(struct storage *st, const char *prefix, char ***keys, size_t *n)
{
	return s3_list(cl(st), prefix, keys, n);
}

static int bucket_delete_prefix(struct storage *st, const char *prefix)
{
	char **keys;
	size_t n;
	int rc = 0;
	if (s3_list(cl(st), prefix, &keys, &n) < 0)
		return -1;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = s3_delete(cl(st), keys[i]);
	storage_list_free(keys, n);
	return rc;
}

static int bucket_crc32c(struct storage *st, const char *key, uint32_t *crc, bool *known)
{
	struct s3_stat s;
	if (s3_head(cl(st), key, &s) < 0)
		return -1;
	*known = s.have_crc;
	*crc = s.have_crc ? s.crc : 0;
	return 0;
}

static int bucket_obj_read(struct storage_object *o, void *buf, size_t len, uint64_t off)
{
	return s3_get_range(cl(o->st), o->key, buf, len, off);
}

static void bucket_obj_close(struct storage_object *o)
{
	free(o->key);
	free(o);
}

static const struct storage_object_ops bucket_obj_ops = {
	.read = bucket_obj_read,
	.close = bucket_obj_close,
};

static struct storage_object *bucket_object_open(struct storage *st, const char *key)
{
	struct storage_object *o;
	struct s3_stat s;
	if (s3_head(cl(st), key, &s) < 0)
		return NULL;
	o = calloc(1, sizeof(*o));
	if (!o || !(o->key = strdup(key))) {
		free(o);
		err_set_errno(ENOMEM, "cannot open '%s' in %s", key, st->describe);
		return NULL;
	}
	o->ops = &bucket_obj_ops;
	o->st = st;
	o->size = s.size;
	return o;
}

static void bucket_free(struct storage *st)
{
	log_debug("%s: %llu requests, %llu ranged reads", st->describe,
		  (unsigned long long)s3_client_requests(cl(st)),
		  (unsigned long long)s3_client_range_gets(cl(st)));
	s3_client_free(cl(st));
	free(st->describe);
	free(st);
}

static const struct storage_ops bucket_ops = {
	.name = "bucket",
	.size = bucket_size,
	.read_all = bucket_read_all,
	.write_file = bucket_write_file,
	.write_buf = bucket_write_buf,
	.download = bucket_download,
	.delete_prefix = bucket_delete_prefix,
	.list = bucket_list,
	.crc32c = bucket_crc32c,
	.object_open = bucket_object_open,
	.free = bucket_free,
};

struct storage *bucket_storage_open(const char *url)
{
	struct storage *st;
	struct s3_client *c = s3_client_new(url);
	if (!c)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (!st || !(st->describe = strdup(s3_client_describe(c)))) {
		free(st);
		s3_client_free(c);
		err_set_errno(ENOMEM, "cannot open '%s'", url);
		return NULL;
	}
	st->ops = &bucket_ops;
	st->priv = c;
	return st;
}
