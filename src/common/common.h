/*
 * common.h - the helpers every module uses: error recording, logging, checked arithmetic,
 * full reads/writes, UUIDs, CRC32C and cleanup attributes.
 *
 * Error convention (see docs/errors.md): library functions return 0 / -1 (or pointer / NULL)
 * and record "what failed: why" with err_set(); the command or request handler reports it
 * once with err_msg(). The error buffer is thread-local, so threads never see each other's
 * errors. Library code never prints except through log_*(), which goes to stderr.
 */
#ifndef ORCH_COMMON_H
#define ORCH_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define UNUSED __attribute__((unused))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

/* ---- errors ---- */
#define ERR_MSG_MAX 1024
/* Record an error message (replaces the previous one). Always returns -1. */
int err_set(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Same, appending ": strerror(errnum)"; sets errno = errnum. Returns -1. */
int err_set_errno(int errnum, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Prefix the current message with "what: " (context while unwinding). Returns -1. */
int err_prefix(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* The current message ("unknown error" when none). Valid until the next err_* call. */
const char *err_msg(void);
void err_clear(void);

/* ---- logging (stderr) ---- */
enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Program name used as prefix, e.g. "inspect-header". */
void log_set_prog(const char *prog);
const char *log_prog(void);
void log_msg(enum log_level lvl, const char *fmt, ...) PRINTF_LIKE(2, 3);
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Command-level failure: prints "<prog>: error: <err_msg()>" and exits 1. */
__attribute__((noreturn)) void die_err(void);
/* Prints "<prog>: error: <formatted>" and exits 1. */
__attribute__((noreturn)) void die(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* ---- checked arithmetic: return true on overflow ---- */
static inline bool add_overflow_u64(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_add_overflow(a, b, r);
}
static inline bool mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_mul_overflow(a, b, r);
}

/* ---- I/O: retry on EINTR and short transfers ---- */
/* 0 on success; -1 with errno (EIO-like short read at EOF reported as errno=0 -> ENODATA). */
int full_pread(int fd, void *buf, size_t len, uint64_t off);
int full_pwrite(int fd, const void *buf, size_t len, uint64_t off);
int full_read(int fd, void *buf, size_t len);
int full_write(int fd, const void *buf, size_t len);
/* Read a whole file into a malloc'd buffer (caller frees); sets *len. NULL + err on failure. */
void *read_file(const char *path, size_t *len);
/* Write a buffer to path atomically: temp file in the same dir, fsync, rename. 0/-1 + err. */
int write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode);
/* mkdir -p. 0/-1 + err. */
int mkdir_p(const char *path, mode_t mode);
/* rm -rf (does not cross mount points). 0/-1 + err. Missing path is success. */
int remove_tree(const char *path);
/* Monotonic time in nanoseconds. */
uint64_t now_ns(void);

/* ---- UUIDs: 16 bytes in RFC-4122 string order ---- */
#define UUID_LEN 16
#define UUID_STR_LEN 36
typedef struct {
	uint8_t b[UUID_LEN];
} uuid_t16;
/* Parse "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (any case). 0/-1 (err set). */
int uuid_parse(const char *s, uuid_t16 *out);
/* Lowercase with dashes; out must hold UUID_STR_LEN + 1 bytes. Returns out. */
char *uuid_format(const uuid_t16 *u, char *out);
bool uuid_is_nil(const uuid_t16 *u);
bool uuid_equal(const uuid_t16 *a, const uuid_t16 *b);
/* Random version-4 UUID from getrandom(). */
void uuid_generate(uuid_t16 *out);
/* Validate and canonicalise a user-supplied build id into out (37 bytes). 0/-1 + err. */
int build_id_canonical(const char *in, char *out);

/* ---- CRC32C (Castagnoli) ---- */
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len);
static inline uint32_t crc32c(const void *buf, size_t len)
{
	return crc32c_update(0, buf, len);
}

/* ---- cleanup attributes ---- */
void cleanup_freep(void *p);
void cleanup_closep(int *fd);
void cleanup_fclosep(FILE **f);
#define _cleanup_free_ __attribute__((cleanup(cleanup_freep)))
#define _cleanup_close_ __attribute__((cleanup(cleanup_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(cleanup_fclosep)))
/* Hand ownership out of a cleanup-managed variable. */
#define TAKE_PTR(p) ({ __typeof__(p) _p = (p); (p) = NULL; _p; })
#define TAKE_FD(fd) ({ int _fd = (fd); (fd) = -1; _fd; })

#endif
