/*
 * s3_util.c - the pure parts of the bucket client: location URLs, SigV4 percent-encoding,
 * the CRC32C metadata value, a small XML scanner for S3 responses and the backoff schedule.
 *
 * The XML scanner is deliberately tiny: S3 responses we read (ListObjectsV2, errors,
 * InitiateMultipartUpload, CompleteMultipartUpload) are flat enough that "text of every
 * <Tag>" is all we need; it never allocates more than the value it returns and refuses an
 * unterminated element. No state; safe from any thread.
 */
#include <errno.h>
#include <string.h>

#include "s3_client.h"

int s3_url_parse(const char *url, char **scheme, char **bucket, char **prefix)
{
	const char *p, *slash;
	size_t blen, plen;
	char *s = NULL, *b = NULL, *pre = NULL;
	if (!url || (strncmp(url, "s3://", 5) && strncmp(url, "gs://", 5)))
		return err_set_errno(EINVAL, "invalid bucket url '%s': must start with s3:// or gs://",
				     url ? url : "");
	p = url + 5;
	slash = strchr(p, '/');
	blen = slash ? (size_t)(slash - p) : strlen(p);
	if (blen == 0)
		return err_set_errno(EINVAL, "invalid bucket url '%s': no bucket name", url);
	for (size_t i = 0; i < blen; i++) {
		char ch = p[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '.' || ch == '_'))
			return err_set_errno(EINVAL, "invalid bucket url '%s': bad character '%c' in bucket name",
					     url, ch);
	}
	if (slash) {
		const char *q = slash;
		while (*q == '/')
			q++;
		plen = strlen(q);
		while (plen > 0 && q[plen - 1] == '/')
			plen--;
		pre = strndup(q, plen);
		if (pre && strstr(pre, "//")) {
			free(pre);
			return err_set_errno(EINVAL, "invalid bucket url '%s': empty path component", url);
		}
	} else {
		pre = strdup("");
	}
	s = strndup(url, 2);
	b = strndup(p, blen);
	if (!s || !b || !pre) {
		free(s);
		free(b);
		free(pre);
		return err_set_errno(ENOMEM, "cannot parse '%s'", url);
	}
	*scheme = s;
	*bucket = b;
	*prefix = pre;
	return 0;
}

char *s3_uri_encode(const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(n * 3 + 1), *o = out;
	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '.' || ch == '_' || ch == '~' || (keep_slash && ch == '/')) {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = 0;
	return out;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void s3_crc_b64(uint32_t crc, char out[9])
{
	uint8_t b[4] = { (uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc };
	uint32_t v = (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2];
	out[0] = b64[v >> 18 & 63];
	out[1] = b64[v >> 12 & 63];
	out[2] = b64[v >> 6 & 63];
	out[3] = b64[v & 63];
	v = (uint32_t)b[3] << 16;
	out[4] = b64[v >> 18 & 63];
	out[5] = b64[v >> 12 & 63];
	out[6] = '=';
	out[7] = '=';
	out[8] = 0;
}

static int b64_val(char ch)
{
	const char *p = ch ? strchr(b64, ch) : NULL;
	return p ? (int)(p - b64) : -1;
}

int s3_crc_from_b64(const char *s, uint32_t *crc)
{
	int v[6];
	size_t n;
	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		n--;
	if (n != 8 || s[6] != '=' || s[7] != '=')
		return -1;
	for (int i = 0; i < 6; i++)
		if ((v[i] = b64_val(s[i])) < 0)
			return -1;
	if (v[5] & 15) /* non-canonical trailing bits */
		return -1;
	*crc = (uint32_t)v[0] << 26 | (uint32_t)v[1] << 20 | (uint32_t)v[2] << 14 | (uint32_t)v[3] << 8 |
	       (uint32_t)v[4] << 2 | (uint32_t)v[5] >> 4;
	return 0;
}

/* Decode the five predefined entities and numeric references; others are kept verbatim. */
static char *xml_decode(const char *s, size_t len)
{
	char *out = malloc(len + 1), *o = out;
	size_t i = 0;
	if (!out)
		return NULL;
	while (i < len) {
		static const struct {
			const char *ent;
			char ch;
		} ents[] = { { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&quot;", '"' }, { "&apos;", '\'' } };
		bool done = false;
		if (s[i] == '&') {
			for (size_t k = 0; k < ARRAY_SIZE(ents); k++) {
				size_t el = strlen(ents[k].ent);
				if (i + el <= len && !memcmp(s + i, ents[k].ent, el)) {
					*o++ = ents[k].ch;
					i += el;
					done = true;
					break;
				}
			}
			if (!done && i + 3 < len && s[i + 1] == '#') {
				const char *semi = memchr(s + i, ';', len - i);
				if (semi) {
					char num[16];
					size_t nl = (size_t)(semi - (s + i + 2));
					if (nl > 0 && nl < sizeof(num)) {
						unsigned long cp;
						char *end;
						memcpy(num, s + i + 2, nl);
						num[nl] = 0;
						cp = num[0] == 'x' ? strtoul(num + 1, &end, 16) : strtoul(num, &end, 10);
						if (*end == 0 && cp > 0 && cp < 0x80) {
							*o++ = (char)cp;
							i = (size_t)(semi - s) + 1;
							done = true;
						}
					}
				}
			}
		}
		if (!done)
			*o++ = s[i++];
	}
	*o = 0;
	return out;
}

static const char *mem_find(const char *hay, size_t hlen, const char *needle)
{
	size_t nl = strlen(needle);
	return nl <= hlen ? memmem(hay, hlen, needle, nl) : NULL;
}

int s3_xml_next(const char *xml, size_t len, const char *tag, size_t *pos, char **value)
{
	char open[72], selfclose[72], close_[72];
	size_t ol;
	const char *start, *end, *from;
	if (strlen(tag) > 64)
		return err_set_errno(EINVAL, "xml tag too long");
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(selfclose, sizeof(selfclose), "<%s/>", tag);
	snprintf(close_, sizeof(close_), "</%s>", tag);
	ol = strlen(open);
	if (*pos >= len)
		return 0;
	from = xml + *pos;
	start = mem_find(from, len - *pos, open);
	{
		const char *sc = mem_find(from, len - *pos, selfclose);
		if (sc && (!start || sc < start)) {
			*pos = (size_t)(sc - xml) + strlen(selfclose);
			if (!(*value = strdup("")))
				return err_set_errno(ENOMEM, "cannot parse xml");
			return 1;
		}
	}
	if (!start)
		return 0;
	start += ol;
	end = mem_find(start, len - (size_t)(start - xml), close_);
	if (!end)
		return err_set_errno(EPROTO, "malformed xml: <%s> is not closed", tag);
	if (!(*value = xml_decode(start, (size_t)(end - start))))
		return err_set_errno(ENOMEM, "cannot parse xml");
	*pos = (size_t)(end - xml) + strlen(close_);
	return 1;
}

char *s3_xml_first(const char *xml, size_t len, const char *tag)
{
	size_t pos = 0;
	char *v = NULL;
	if (!xml || s3_xml_next(xml, len, tag, &pos, &v) != 1)
		return NULL;
	return v;
}

int s3_list_parse(const char *xml, size_t len, char ***keys, size_t *n, size_t *cap,
		  bool *truncated, char **next_token)
{
	size_t pos = 0;
	char *v, *t;
	int r;
	if (!mem_find(xml, len, "<ListBucketResult"))
		return err_set_errno(EPROTO, "malformed list response: no <ListBucketResult>");
	while ((r = s3_xml_next(xml, len, "Key", &pos, &v)) == 1) {
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 64;
			char **nk = realloc(*keys, nc * sizeof(*nk));
			if (!nk) {
				free(v);
				return err_set_errno(ENOMEM, "cannot list objects");
			}
			*keys = nk;
			*cap = nc;
		}
		(*keys)[(*n)++] = v;
	}
	if (r < 0)
		return -1;
	t = s3_xml_first(xml, len, "IsTruncated");
	*truncated = t && !strcmp(t, "true");
	free(t);
	*next_token = s3_xml_first(xml, len, "NextContinuationToken");
	if (*truncated && (!*next_token || !**next_token)) {
		free(*next_token);
		*next_token = NULL;
		return err_set_errno(EPROTO, "malformed list response: truncated without a continuation token");
	}
	return 0;
}

uint64_t s3_backoff_ceiling_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms)
{
	uint64_t v = base_ms;
	for (unsigned i = 0; i < attempt && v < cap_ms; i++)
		v = v > cap_ms / 2 ? cap_ms : v * 2; /* saturate: no wrap-around */
	return MIN(v, cap_ms);
}

uint64_t s3_backoff_ms(unsigned attempt, uint64_t base_ms, uint64_t cap_ms, double r)
{
	uint64_t ceil = s3_backoff_ceiling_ms(attempt, base_ms, cap_ms);
	if (r < 0)
		r = 0;
	if (r >= 1)
		r = 0.999999;
	return (uint64_t)((double)(ceil + 1) * r);
}

bool s3_status_retryable(long status)
{
	return status == 0 || status == 408 || status == 429 || status >= 500;
}
