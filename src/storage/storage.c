/*
 * storage.c - location resolution, backend dispatch and the build layout helpers.
 * Every public entry point checks the key before a backend sees it, so no backend can be
 * made to touch a path outside its location.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

bool storage_location_is_bucket(const char *loc)
{
	return loc && (!strncmp(loc, "s3://", 5) || !strncmp(loc, "gs://", 5));
}

char *storage_location_resolve(const char *flag_value)
{
	const char *env, *prov;
	char *out;
	if (flag_value && *flag_value)
		return strdup(flag_value);
	prov = getenv("STORAGE_PROVIDER");
	if (prov && !strcmp(prov, "Local")) {
		env = getenv("LOCAL_TEMPLATE_STORAGE_BASE_PATH");
		return strdup(env && *env ? env : "/tmp/templates");
	}
	env = getenv("TEMPLATE_BUCKET_NAME");
	if (env && *env) {
		if (storage_location_is_bucket(env) || strchr(env, '/') || env[0] == '.')
			return strdup(env);
		if (asprintf(&out, "%s://%s", prov && !strcmp(prov, "AWSBucket") ? "s3" : "gs", env) < 0)
			return NULL;
		return out;
	}
	return strdup(".local-build");
}

struct storage *storage_open(const char *location, bool create)
{
	if (!location || !*location) {
		err_set("empty storage location");
		return NULL;
	}
	if (storage_location_is_bucket(location))
		return bucket_storage_open(location);
	return local_storage_open(location, create);
}

void storage_free(struct storage *st)
{
	if (!st)
		return;
	st->ops->free(st);
}

const char *storage_describe(const struct storage *st)
{
	return st->describe;
}

const char *storage_local_dir(const struct storage *st)
{
	return st->local_dir;
}

int storage_key_check(const char *key)
{
	const char *p = key;
	if (!key || !*key || *key == '/')
		return err_set("invalid object key '%s'", key ? key : "");
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
			return err_set("invalid object key '%s'", key);
		if (!slash)
			break;
		p = slash + 1;
	}
	return 0;
}

#define CHECK_KEY(k)                                                                               \
	do {                                                                                       \
		if (storage_key_check(k) < 0) {                                                    \
			errno = EINVAL;                                                            \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

int storage_size(struct storage *st, const char *key, uint64_t *size)
{
	CHECK_KEY(key);
	return st->ops->size(st, key, size);
}

int storage_exists(struct storage *st, const char *key, bool *exists)
{
	uint64_t size;
	CHECK_KEY(key);
	if (st->ops->size(st, key, &size) == 0) {
		*exists = true;
		return 0;
	}
	if (errno == ENOENT) {
		*exists = false;
		return 0;
	}
	return -1;
}

void *storage_read_all(struct storage *st, const char *key, size_t *len)
{
	if (storage_key_check(key) < 0)
		return NULL;
	return st->ops->read_all(st, key, len);
}

int storage_write_file(struct storage *st, const char *key, const char *path)
{
	CHECK_KEY(key);
	return st->ops->write_file(st, key, path);
}

int storage_write_buf(struct storage *st, const char *key, const void *buf, size_t len)
{
	CHECK_KEY(key);
	return st->ops->write_buf(st, key, buf, len);
}

int storage_download(struct storage *st, const char *key, const char *path)
{
	CHECK_KEY(key);
	return st->ops->download(st, key, path);
}

int storage_delete_prefix(struct storage *st, const char *prefix)
{
	CHECK_KEY(prefix);
	return st->ops->delete_prefix(st, prefix);
}

int storage_list(struct storage *st, const char *prefix, char ***keys, size_t *n)
{
	if (prefix && *prefix)
		CHECK_KEY(prefix);
	return st->ops->list(st, prefix ? prefix : "", keys, n);
}

void storage_list_free(char **keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

int storage_crc32c(struct storage *st, const char *key, uint32_t *crc, bool *known)
{
	CHECK_KEY(key);
	return st->ops->crc32c(st, key, crc, known);
}

struct storage_object *storage_object_open(struct storage *st, const char *key)
{
	if (storage_key_check(key) < 0) {
		errno = EINVAL;
		return NULL;
	}
	return st->ops->object_open(st, key);
}

uint64_t storage_object_size(const struct storage_object *o)
{
	return o->size;
}

const char *storage_object_key(const struct storage_object *o)
{
	return o->key;
}

int storage_object_read(struct storage_object *o, void *buf, size_t len, uint64_t off)
{
	uint64_t end;
	if (add_overflow_u64(off, len, &end) || end > o->size)
		return err_set_errno(ENODATA, "cannot read %zu bytes at offset %llu of '%s' in %s: object is only %llu bytes",
				     len, (unsigned long long)off, o->key, o->st->describe,
				     (unsigned long long)o->size);
	if (len == 0)
		return 0;
	return o->ops->read(o, buf, len, off);
}

void storage_object_close(struct storage_object *o)
{
	if (o)
		o->ops->close(o);
}

/* ---- builds ---- */

int build_kind_parse(const char *s, enum build_kind *kind)
{
	if (s && !strcmp(s, "memfile")) {
		*kind = BUILD_KIND_MEMFILE;
		return 0;
	}
	if (s && (!strcmp(s, "rootfs") || !strcmp(s, "rootfs.ext4"))) {
		*kind = BUILD_KIND_ROOTFS;
		return 0;
	}
	return err_set("invalid kind '%s': must be memfile or rootfs", s ? s : "");
}

const char *build_kind_name(enum build_kind kind)
{
	return kind == BUILD_KIND_MEMFILE ? "memfile" : "rootfs";
}

const char *build_kind_data_object(enum build_kind kind)
{
	return kind == BUILD_KIND_MEMFILE ? BUILD_MEMFILE : BUILD_ROOTFS;
}

const char *build_kind_header_object(enum build_kind kind)
{
	return kind == BUILD_KIND_MEMFILE ? BUILD_MEMFILE_HEADER : BUILD_ROOTFS_HEADER;
}

void build_key(char out[BUILD_KEY_MAX], const char *build_id, const char *name)
{
	snprintf(out, BUILD_KEY_MAX, "%s/%s", build_id, name);
}

int build_is_complete(struct storage *st, const char *build_id, bool *complete)
{
	char key[BUILD_KEY_MAX];
	build_key(key, build_id, BUILD_METADATA);
	return storage_exists(st, key, complete);
}
