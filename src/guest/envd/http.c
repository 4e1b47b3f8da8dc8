/*
 * http.c - HTTP/1.1 request head parsing, chunked decoding and query strings for envd.
 *
 * Everything here is a pure function over caller memory: the server feeds it what it has read
 * so far and the fuzz harness feeds it arbitrary bytes. Invariants: nothing reads past the
 * given length, the head is only modified once it is known to be complete, every size is
 * bounded (HTTP_MAX_HEAD, HTTP_MAX_HEADERS, 16 hex digits per chunk size).
 * Thread-safe: no state outside the arguments.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"

static bool is_tchar(unsigned char c)
{
	return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Find the end of the head: the first empty line. Returns the index just past it or 0. */
static size_t head_end(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

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

int http_percent_decode(char *s)
{
	char *w = s;
	for (const char *r = s; *r; r++) {
		if (*r == '%') {
			int h = hexval((unsigned char)r[1]), l = h < 0 ? -1 : hexval((unsigned char)r[2]);
			if (h < 0 || l < 0 || (h == 0 && l == 0))
				return -1;
			*w++ = (char)(h * 16 + l);
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return 0;
}

/* Trim spaces and tabs at both ends, in place. */
static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* Does a comma-separated header value contain token (case-insensitive)? */
static bool has_token(const char *value, const char *token)
{
	size_t tl = strlen(token);
	const char *p = value;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		const char *e = p;
		while (*e && *e != ',')
			e++;
		const char *t = e;
		while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0)
			return true;
		p = e;
	}
	return false;
}

static int derive(struct http_request *req, int *status)
{
	bool close = false, keep = false, have_te = false;
	req->content_length = -1;
	for (size_t i = 0; i < req->nheaders; i++) {
		const char *n = req->headers[i].name, *v = req->headers[i].value;
		if (strcasecmp(n, "content-length") == 0) {
			if (!*v || strlen(v) > 18)
				goto bad;
			for (const char *p = v; *p; p++)
				if (!isdigit((unsigned char)*p))
					goto bad;
			int64_t cl = strtoll(v, NULL, 10);
			if (req->content_length >= 0 && req->content_length != cl)
				goto bad;
			req->content_length = cl;
		} else if (strcasecmp(n, "transfer-encoding") == 0) {
			if (have_te || strcasecmp(v, "chunked") != 0) {
				*status = 501;
				return -1;
			}
			have_te = true;
		} else if (strcasecmp(n, "connection") == 0) {
			close |= has_token(v, "close");
			keep |= has_token(v, "keep-alive");
		} else if (strcasecmp(n, "expect") == 0) {
			if (strcasecmp(v, "100-continue") != 0) {
				*status = 417;
				return -1;
			}
			req->expect_continue = true;
		}
	}
	if (have_te) {
		if (req->content_length >= 0) /* request smuggling shape: refuse */
			goto bad;
		req->chunked = true;
	}
	req->keep_alive = req->minor >= 1 ? !close : keep;
	return 0;
bad:
	*status = 400;
	return -1;
}

ssize_t http_parse_head(char *buf, size_t len, struct http_request *req, int *status)
{
	memset(req, 0, sizeof(*req));
	size_t end = head_end(buf, len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD);
	if (end == 0) {
		if (len >= HTTP_MAX_HEAD) {
			*status = 431;
			return -1;
		}
		/* Reject obvious garbage early instead of waiting for 64 KiB of it. */
		for (size_t i = 0; i < len && buf[i] != ' ' && buf[i] != '\r' && buf[i] != '\n'; i++)
			if (!is_tchar((unsigned char)buf[i]) || i > 32) {
				*status = 400;
				return -1;
			}
		return 0;
	}
	if (memchr(buf, '\0', end)) {
		*status = 400;
		return -1;
	}
	/* The head is complete: split it into NUL-terminated lines. */
	char *lines = buf;
	buf[end - 1] = '\0';
	char *save = NULL;
	char *line = strtok_r(lines, "\n", &save);
	if (!line)
		goto bad;
	size_t ll = strlen(line);
	if (ll && line[ll - 1] == '\r')
		line[--ll] = '\0';
	/* request line: METHOD SP target SP HTTP/1.x */
	char *sp1 = strchr(line, ' ');
	if (!sp1 || sp1 == line)
		goto bad;
	*sp1 = '\0';
	for (char *p = line; *p; p++)
		if (!is_tchar((unsigned char)*p))
			goto bad;
	char *target = sp1 + 1;
	char *sp2 = strchr(target, ' ');
	if (!sp2 || sp2 == target)
		goto bad;
	*sp2 = '\0';
	const char *version = sp2 + 1;
	if (strncmp(version, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)version[7]) || version[8]) {
		*status = strncmp(version, "HTTP/", 5) == 0 ? 505 : 400;
		return -1;
	}
	req->minor = version[7] - '0';
	req->method = line;
	for (char *p = target; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f)
			goto bad;
	if (target[0] != '/' && strcmp(target, "*") != 0)
		goto bad;
	req->target = target;
	/* Split path and query: the path is decoded in place, so copy the target first by
	 * decoding only the path part (the target string keeps the raw form up to '?'). */
	char *q = strchr(target, '?');
	if (q) {
		*q = '\0';
		req->query = q + 1;
	} else {
		req->query = "";
	}
	req->path = target;
	if (http_percent_decode(req->path) < 0)
		goto bad;

	while ((line = strtok_r(NULL, "\n", &save))) {
		ll = strlen(line);
		if (ll && line[ll - 1] == '\r')
			line[--ll] = '\0';
		if (ll == 0)
			break;
		if (line[0] == ' ' || line[0] == '\t') /* obsolete line folding */
			goto bad;
		char *colon = strchr(line, ':');
		if (!colon || colon == line)
			goto bad;
		*colon = '\0';
		for (char *p = line; *p; p++)
			if (!is_tchar((unsigned char)*p))
				goto bad;
		char *value = trim(colon + 1);
		for (char *p = value; *p; p++)
			if ((unsigned char)*p < ' ' && *p != '\t')
				goto bad;
		if (req->nheaders == HTTP_MAX_HEADERS) {
			*status = 431;
			return -1;
		}
		req->headers[req->nheaders].name = line;
		req->headers[req->nheaders].value = value;
		req->nheaders++;
	}
	if (derive(req, status) < 0)
		return -1;
	return (ssize_t)end;
bad:
	*status = 400;
	return -1;
}

const char *http_header(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

enum {
	CH_SIZE,
	CH_EXT,
	CH_DATA,
	CH_DATA_END,
	CH_TRAILER_START,
	CH_TRAILER_LINE,
	CH_TRAILER_CR,
	CH_DONE,
};

#define CH_MAX_LINE 4096

int http_chunked_step(struct http_chunked *c, const char *in, size_t len, size_t max_data,
		      size_t *consumed, size_t *data_off, size_t *data_len)
{
	size_t i = 0;
	*data_off = 0;
	*data_len = 0;
	while (i < len && c->state != CH_DONE) {
		unsigned char ch = (unsigned char)in[i];
		switch (c->state) {
		case CH_SIZE: {
			int h = hexval(ch);
			if (h >= 0) {
				if (c->remaining >> 56)
					return -1;
				c->remaining = c->remaining * 16 + (uint64_t)h;
				c->digits = true;
			} else if (ch == ';' || ch == ' ' || ch == '\t') {
				if (!c->digits)
					return -1;
				c->state = CH_EXT;
			} else if (ch == '\r') {
				if (!c->digits)
					return -1;
				c->state = CH_EXT;
			} else if (ch == '\n') {
				if (!c->digits)
					return -1;
				c->digits = false;
				c->line = 0;
				c->state = c->remaining ? CH_DATA : CH_TRAILER_START;
			} else {
				return -1;
			}
			i++;
			break;
		}
		case CH_EXT:
			if (ch == '\n') {
				c->digits = false;
				c->line = 0;
				c->state = c->remaining ? CH_DATA : CH_TRAILER_START;
			} else if (++c->line > CH_MAX_LINE) {
				return -1;
			}
			i++;
			break;
		case CH_DATA: {
			size_t n = len - i;
			if (n > c->remaining)
				n = (size_t)c->remaining;
			if (n > max_data)
				n = max_data;
			*data_off = i;
			*data_len = n;
			c->remaining -= n;
			if (c->remaining == 0)
				c->state = CH_DATA_END;
			*consumed = i + n;
			return 0; /* hand the data out before parsing further */
		}
		case CH_DATA_END:
			if (ch == '\r' && c->line == 0) {
				c->line = 1;
			} else if (ch == '\n') {
				c->line = 0;
				c->state = CH_SIZE;
			} else {
				return -1;
			}
			i++;
			break;
		case CH_TRAILER_START:
			if (ch == '\r')
				c->state = CH_TRAILER_CR;
			else if (ch == '\n')
				c->state = CH_DONE;
			else
				c->state = CH_TRAILER_LINE;
			c->line = 0;
			i++;
			break;
		case CH_TRAILER_CR:
			if (ch != '\n')
				return -1;
			c->state = CH_DONE;
			i++;
			break;
		case CH_TRAILER_LINE:
			if (ch == '\n')
				c->state = CH_TRAILER_START;
			else if (++c->line > CH_MAX_LINE)
				return -1;
			i++;
			break;
		default:
			return -1;
		}
	}
	c->done = c->state == CH_DONE;
	*consumed = i;
	return 0;
}

ssize_t http_query_get(const char *query, const char *key, char *out, size_t outlen)
{
	size_t kl = strlen(key);
	const char *p = query;
	while (p && *p) {
		const char *amp = strchr(p, '&');
		size_t seg = amp ? (size_t)(amp - p) : strlen(p);
		if (seg >= kl && strncmp(p, key, kl) == 0 && (seg == kl || p[kl] == '=')) {
			const char *v = seg == kl ? p + kl : p + kl + 1;
			size_t vl = (size_t)(p + seg - v);
			size_t o = 0;
			for (size_t i = 0; i < vl; i++) {
				int c = (unsigned char)v[i];
				if (c == '+') {
					c = ' ';
				} else if (c == '%') {
					if (i + 2 >= vl)
						goto bad;
					int hi = hexval((unsigned char)v[i + 1]), lo = hexval((unsigned char)v[i + 2]);
					if (hi < 0 || lo < 0)
						goto bad;
					c = hi * 16 + lo;
					i += 2;
				}
				if (c == 0 || o + 1 >= outlen)
					goto bad;
				out[o++] = (char)c;
			}
			if (outlen)
				out[o] = '\0';
			return (ssize_t)o;
bad:
			if (outlen)
				out[0] = '\0';
			return -2;
		}
		p = amp ? amp + 1 : NULL;
	}
	return -1;
}

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 499: return "Client Closed Request";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}
