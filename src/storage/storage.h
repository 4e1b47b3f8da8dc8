/*
 * storage.h - where builds live: a storage location (local directory or bucket) holding
 * objects keyed "<build-id>/<name>", and the build layout on top of it.
 *
 * Backends: local directory (local.c), s3:// and gs:// buckets (bucket.c). All of them go
 * through this interface; no caller knows which one it has. Decorators (the block layer's
 * chunk cache) implement the same ops.
 *
 * Threading: a struct storage and a struct storage_object may be used from several threads
 * at once (backends keep no per-call state in them, or lock it).
 * Errors: -1/NULL + err_set(); a missing object sets errno = ENOENT so callers can tell it
 * apart (the message names the location and key).
 */
#ifndef ORCH_STORAGE_H
#define ORCH_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"

struct storage;
struct storage_object;

/* ---- locations (CONTRACTS §2) ---- */

/* Resolve the location a command should use: flag value if non-empty, else
 * TEMPLATE_BUCKET_NAME (bare name -> gs://NAME, or s3://NAME with STORAGE_PROVIDER=AWSBucket;
 * STORAGE_PROVIDER=Local -> LOCAL_TEMPLATE_STORAGE_BASE_PATH), else ".local-build".
 * Returns a malloc'd string (caller frees). */
char *storage_location_resolve(const char *flag_value);
bool storage_location_is_bucket(const char *location);

/* Open a location. A local directory with a templates/ subdirectory keeps builds there.
 * A local directory that does not exist is created only when create is true. */
struct storage *storage_open(const char *location, bool create);
void storage_free(struct storage *st);
/* Human-readable location (for messages), e.g. "/x/.local-build/templates" or "s3://b/p". */
const char *storage_describe(const struct storage *st);
/* For local storage: the directory holding the builds; NULL for buckets. */
const char *storage_local_dir(const struct storage *st);

/* ---- objects ---- */

/* Size of an object. ENOENT when missing. */
int storage_size(struct storage *st, const char *key, uint64_t *size);
int storage_exists(struct storage *st, const char *key, bool *exists);
/* Read a whole (small) object into a malloc'd buffer (caller frees). */
void *storage_read_all(struct storage *st, const char *key, size_t *len);
/* Atomically publish an object from a file or buffer (temp + rename, or a single PUT):
 * readers see either the old object, no object, or the complete new one. */
int storage_write_file(struct storage *st, const char *key, const char *path);
int storage_write_buf(struct storage *st, const char *key, const void *buf, size_t len);
/* Download an object to a local file (atomically: temp + rename). */
int storage_download(struct storage *st, const char *key, const char *path);
/* Delete every object whose key starts with prefix (e.g. "<build-id>/"). */
int storage_delete_prefix(struct storage *st, const char *prefix);
/* List keys under prefix (recursive, sorted). *keys is a malloc'd array of malloc'd strings;
 * free with storage_list_free. */
int storage_list(struct storage *st, const char *prefix, char ***keys, size_t *n);
void storage_list_free(char **keys, size_t n);
/* CRC32C recorded with the object (bucket metadata), or computed (local). *known = false
 * when the backend has none recorded. */
int storage_crc32c(struct storage *st, const char *key, uint32_t *crc, bool *known);

/* Open an object for repeated ranged reads. NULL + ENOENT when missing. */
struct storage_object *storage_object_open(struct storage *st, const char *key);
uint64_t storage_object_size(const struct storage_object *o);
/* Read exactly len bytes at off. Reading past the end is an error naming the key and offset. */
int storage_object_read(struct storage_object *o, void *buf, size_t len, uint64_t off);
const char *storage_object_key(const struct storage_object *o);
void storage_object_close(struct storage_object *o);

/* ---- builds ---- */

enum build_kind { BUILD_KIND_MEMFILE, BUILD_KIND_ROOTFS };
#define BUILD_MEMFILE "memfile"
#define BUILD_MEMFILE_HEADER "memfile.header"
#define BUILD_ROOTFS "rootfs.ext4"
#define BUILD_ROOTFS_HEADER "rootfs.ext4.header"
#define BUILD_SNAPFILE "snapfile"
#define BUILD_METADATA "metadata.json"
/* Object key max: "<36-char uuid>/<name>" */
#define BUILD_KEY_MAX 64

/* "memfile" | "rootfs" -> kind. 0/-1 (err set). */
int build_kind_parse(const char *s, enum build_kind *kind);
const char *build_kind_name(enum build_kind kind);            /* "memfile" / "rootfs" */
const char *build_kind_data_object(enum build_kind kind);     /* "memfile" / "rootfs.ext4" */
const char *build_kind_header_object(enum build_kind kind);   /* "...header" */
/* out = "<canonical build id>/<name>". build_id must already be canonical. */
void build_key(char out[BUILD_KEY_MAX], const char *build_id, const char *name);
/* A build is complete when metadata.json exists (CONTRACTS §2). */
int build_is_complete(struct storage *st, const char *build_id, bool *complete);

#endif
