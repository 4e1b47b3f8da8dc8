/*
 * internal.h - the backend vtable behind storage.h. Each backend fills a struct storage_ops;
 * storage.c dispatches and adds the checks every backend needs (key syntax, messages).
 */
#ifndef ORCH_STORAGE_INTERNAL_H
#define ORCH_STORAGE_INTERNAL_H

#include "storage.h"

struct storage_ops {
	const char *name;
	int (*size)(struct storage *st, const char *key, uint64_t *size);
	void *(*read_all)(struct storage *st, const char *key, size_t *len);
	int (*write_file)(struct storage *st, const char *key, const char *path);
	int (*write_buf)(struct storage *st, const char *key, const void *buf, size_t len);
	int (*download)(struct storage *st, const char *key, const char *path);
	int (*delete_prefix)(struct storage *st, const char *prefix);
	int (*list)(struct storage *st, const char *prefix, char ***keys, size_t *n);
	int (*crc32c)(struct storage *st, const char *key, uint32_t *crc, bool *known);
	struct storage_object *(*object_open)(struct storage *st, const char *key);
	void (*free)(struct storage *st);
};

struct storage_object_ops {
	int (*read)(struct storage_object *o, void *buf, size_t len, uint64_t off);
	void (*close)(struct storage_object *o);
};

struct storage {
	const struct storage_ops *ops;
	char *describe;   /* for messages */
	char *local_dir;  /* local backends only */
	void *priv;       /* backend state */
};

struct storage_object {
	const struct storage_object_ops *ops;
	struct storage *st;
	char *key;
	uint64_t size;
	void *priv;
};

/* Backends. */
struct storage *local_storage_open(const char *dir, bool create);
/* s3://bucket[/prefix] and gs://bucket[/prefix] (bucket.c). */
struct storage *bucket_storage_open(const char *url);

/* Key check shared by all backends: no "..", no leading '/', no empty component. */
int storage_key_check(const char *key);

#endif
