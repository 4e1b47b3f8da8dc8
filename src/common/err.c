/*
 * err.c - thread-local "what failed: why" messages and the command-level reporters.
 * Each thread has its own buffer, so no locking; messages are truncated at ERR_MSG_MAX.
 */
#include <errno.h>
#include <string.h>

#include "common.h"

static __thread char err_buf[ERR_MSG_MAX];
static __thread bool err_has;

int err_set(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	err_has = true;
	return -1;
}

int err_set_errno(int errnum, const char *fmt, ...)
{
	va_list ap;
	size_t n;
	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	n = strlen(err_buf);
	if (n < sizeof(err_buf))
		snprintf(err_buf + n, sizeof(err_buf) - n, ": %s", strerror(errnum));
	err_has = true;
	errno = errnum;
	return -1;
}

int err_prefix(const char *fmt, ...)
{
	char old[ERR_MSG_MAX], pre[ERR_MSG_MAX];
	va_list ap;
	int saved = errno;
	snprintf(old, sizeof(old), "%s", err_has ? err_buf : "unknown error");
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	snprintf(err_buf, sizeof(err_buf), "%s: %s", pre, old);
	err_has = true;
	errno = saved;
	return -1;
}

const char *err_msg(void)
{
	return err_has ? err_buf : "unknown error";
}

void err_clear(void)
{
	err_has = false;
	err_buf[0] = 0;
}

void die_err(void)
{
	fprintf(stderr, "%s: error: %s\n", log_prog(), err_msg());
	exit(1);
}

void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: error: ", log_prog());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}
