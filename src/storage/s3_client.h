/*
 * s3_client.h - the S3-compatible HTTP client behind s3:// and gs:// locations (bucket.c).
 *
 * One client per location: endpoint, bucket, key prefix, SigV4 credentials, a pool of curl
 * handles (connection reuse) and the retry policy. Every request is signed by libcurl
 * (CURLOPT_AWS_SIGV4) with an unsigned payload. Requests are retried with exponential backoff
 * and full jitter on 5xx, 429, timeouts and broken connections; never on other 4xx.
 *
 * The pure helpers (URL parsing, XML scanning, CRC base64, backoff) are in s3_util.c and are
 * declared here so the unit tests can reach them.
 *
 * Threading: a struct s3_client is shared by any number of threads; the handle pool is the
 * only mutable state and has its own lock. Errors are recorded with err_set() in the calling
 * thread; a missing object sets errno = ENOENT, bad credentials errno = EACCES.
 */
#ifndef ORCH_S3_CLIENT_H
#define ORCH_S3_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"

/* ---- pure helpers (s3_util.c) ---- */

/* Split "s3://bucket/some/prefix/" into scheme "s3" | "gs", bucket and prefix without leading
 * or trailing slashes ("" when none). Each out string is malloc'd (caller frees). 0/-1 + err. */
int s3_url_parse(const char *url, char **scheme, char **bucket, char **prefix);

/* Percent-encode as SigV4 wants (RFC 3986 unreserved kept; '/' kept when keep_slash).
 * Returns malloc'd string or NULL (ENOMEM). */
char *s3_uri_encode(const char *s, bool keep_slash);

/* base64 of the big-endian CRC32C: always 8 characters ("AAAAAA==") + NUL. */
void s3_crc_b64(uint32_t crc, char out[9]);
/* Inverse; accepts exactly the 8-character form (surrounding blanks ignored). 0/-1. */
int s3_crc_from_b64(const char *s, uint32_t *crc);

/* Iterate the text of every <tag>...</tag> element in an XML document, in order. *pos is the
 * scan position (start with 0). Returns 1 and a malloc'd, entity-decoded *value when found,
 * 0 at the end, -1 on allocation failure or an unterminated element. */
int s3_xml_next(const char *xml, size_t len, const char *tag, size_t *pos, char **value);
/* The first <tag> value or NULL (malloc'd). */
char *s3_xml_first(const char *xml, size_t len, const char *tag);

/* ListObjectsV2 page: appends every <Key> (malloc'd) to the array keys (n used, cap allocated); sets *truncated and
 * *next_token (malloc'd or NULL). 0/-1 + err. */
int s3_list_parse(const char *xml, size_t len, char ***keys, size_t *n, size_t *cap,
		  bool *truncated, char **next_token);

/* Retry policy: the ceiling of the backoff before retry number attempt (0-based) is
 * min(cap_ms, base_ms * 2^attempt); the actual delay is uniform in [0, ceiling] (full jitter),
 * drawn from r in [0, 1). */
uint64_t s3_backoff_ceiling_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms);
uint64_t s3_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms, double r);
/* Whether an HTTP status (0 = transport failure) deserves a retry. */
bool s3_status_retryable(long status);

/* ---- client (s3_client.c) ---- */

struct s3_client;

/* What a HEAD found. */
struct s3_stat {
	uint64_t size;
	bool have_crc;
	uint32_t crc;
};

/* Open a client for "s3://bucket[/prefix]" or "gs://bucket[/prefix]" with credentials and
 * endpoint from the environment (CONTRACTS §2, docs/storage.md). NULL + err. */
struct s3_client *s3_client_new(const char *url);
void s3_client_free(struct s3_client *c);
/* "s3://bucket/prefix" as given (normalised), for messages. */
const char *s3_client_describe(const struct s3_client *c);

/* Object operations; keys are relative to the location's prefix. */
int s3_head(struct s3_client *c, const char *key, struct s3_stat *st);
/* Ranged GET of exactly len bytes at off into buf. */
int s3_get_range(struct s3_client *c, const char *key, void *buf, size_t len, uint64_t off);
/* Whole object into a malloc'd buffer. */
void *s3_get_all(struct s3_client *c, const char *key, size_t *len);
/* Whole object into a new local file at path (temp file beside it, size and CRC32C checked
 * against what the server reports, fsync, rename). */
int s3_download(struct s3_client *c, const char *key, const char *path);
/* Publish a buffer / a file with x-amz-meta-crc32c. Files larger than the multipart threshold
 * go up as a multipart upload with parallel parts; the object appears only when complete. */
int s3_put_buf(struct s3_client *c, const char *key, const void *buf, size_t len);
int s3_put_file(struct s3_client *c, const char *key, const char *path);
int s3_delete(struct s3_client *c, const char *key);
/* Keys under prefix (relative to the location), sorted. */
int s3_list(struct s3_client *c, const char *prefix, char ***keys, size_t *n);

/* Requests sent since the client was created (every attempt counts); for tests and -v. */
uint64_t s3_client_requests(const struct s3_client *c);
uint64_t s3_client_range_gets(const struct s3_client *c);

#endif
