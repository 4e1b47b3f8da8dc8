/*
 * uuid.c - UUID parsing/formatting (RFC 4122 string order, matching the E2B header bytes)
 * and build-id validation: ids are the only user input that becomes a path component, so
 * anything that is not exactly a UUID is refused here.
 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "common.h"

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int uuid_parse(const char *s, uuid_t16 *out)
{
	size_t j = 0;
	if (!s || strlen(s) != UUID_STR_LEN)
		return err_set("'%s' is not a UUID", s ? s : "");
	for (size_t i = 0; i < UUID_STR_LEN;) {
		int hi, lo;
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return err_set("'%s' is not a UUID", s);
			i++;
			continue;
		}
		hi = hexval((unsigned char)s[i]);
		lo = hexval((unsigned char)s[i + 1]);
		if (hi < 0 || lo < 0)
			return err_set("'%s' is not a UUID", s);
		out->b[j++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	return 0;
}

char *uuid_format(const uuid_t16 *u, char *out)
{
	static const char hex[] = "0123456789abcdef";
	char *p = out;
	for (int i = 0; i < UUID_LEN; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u->b[i] >> 4];
		*p++ = hex[u->b[i] & 15];
	}
	*p = 0;
	return out;
}

bool uuid_is_nil(const uuid_t16 *u)
{
	for (int i = 0; i < UUID_LEN; i++)
		if (u->b[i])
			return false;
	return true;
}

bool uuid_equal(const uuid_t16 *a, const uuid_t16 *b)
{
	return memcmp(a->b, b->b, UUID_LEN) == 0;
}

void uuid_generate(uuid_t16 *out)
{
	size_t got = 0;
	while (got < UUID_LEN) {
		ssize_t n = getrandom(out->b + got, UUID_LEN - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			abort(); /* getrandom on Linux >= 3.17 does not fail otherwise */
		}
		got += (size_t)n;
	}
	out->b[6] = (uint8_t)((out->b[6] & 0x0f) | 0x40);
	out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80);
}

int build_id_canonical(const char *in, char *out)
{
	uuid_t16 u;
	if (uuid_parse(in, &u) < 0)
		return err_set("invalid build id '%s': must be a UUID", in ? in : "");
	uuid_format(&u, out);
	return 0;
}
