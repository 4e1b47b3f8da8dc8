/*
 * rest.c - envd's REST endpoints (spec/envd.yaml of the reference): POST /init, GET /envs,
 * GET /metrics, GET /files (download) and POST /files (multipart or raw upload).
 *
 * File access runs under the requesting user's filesystem identity (ident_enter), so the
 * kernel's permission checks decide what a non-root user may read or write; errno maps to
 * the status per CONTRACTS §5. Uploads stream to disk through a fixed buffer: memory use
 * does not depend on the file size.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "envd.h"

#define UPLOAD_BUF (128 * 1024)

int request_user(struct conn *c, const char *explicit_name, struct envd_user *u, int *status,
		 char *msg, size_t msglen)
{
	char name[256] = "";
	const char *auth = http_header(&c->req, "Authorization");
	if (explicit_name && *explicit_name) {
		snprintf(name, sizeof(name), "%s", explicit_name);
	} else if (auth && strncasecmp(auth, "Basic ", 6) == 0) {
		unsigned char *dec;
		size_t dl;
		const char *b = auth + 6;
		while (*b == ' ')
			b++;
		if (b64_decode(b, strlen(b), &dec, &dl) < 0) {
			*status = 401;
			snprintf(msg, msglen, "invalid basic auth header");
			return -1;
		}
		size_t i = 0;
		while (i < dl && dec[i] != ':' && i + 1 < sizeof(name)) {
			name[i] = (char)dec[i];
			i++;
		}
		name[i] = '\0';
		free(dec);
	}
	if (!*name)
		state_default_user(name, sizeof(name));
	if (!*name) {
		*status = 400;
		snprintf(msg, msglen, "no user specified");
		return -1;
	}
	if (user_lookup(name, u) < 0) {
		*status = 401;
		snprintf(msg, msglen, "error looking up user '%s': %s", name,
			 errno == ENOENT ? "unknown user" : strerror(errno));
		return -1;
	}
	return 0;
}

static void handle_init(struct conn *c)
{
	char *body = NULL;
	size_t len = 0;
	int r = conn_body_read_all(c, 1u << 20, &body, &len);
	if (r == -2) {
		conn_json_error(c, 413, "request body too large");
		return;
	}
	if (r < 0) {
		conn_json_error(c, 400, "cannot read request body: %s", strerror(errno));
		return;
	}
	struct json_object *o = NULL;
	if (len > 0) {
		struct json_tokener *tok = json_tokener_new();
		o = json_tokener_parse_ex(tok, body, (int)len);
		bool bad = !o || json_tokener_get_error(tok) != json_tokener_success ||
			   tok->char_offset != (int)len;
		json_tokener_free(tok);
		if (bad) {
			json_object_put(o);
			free(body);
			conn_json_error(c, 400, "malformed JSON in request body");
			return;
		}
	} else {
		o = json_object_new_object();
	}
	free(body);
	const char *msg = "", *clock_action = "none";
	int status = state_apply_init(o, http_header(&c->req, "X-Access-Token"), &msg, &clock_action);
	json_object_put(o);
	if (status != 204) {
		conn_json_error(c, status, "%s", msg);
		return;
	}
	char extra[160];
	snprintf(extra, sizeof(extra),
		 "X-Envd-Version: " ENVD_VERSION "\r\nX-Envd-Clock: %s\r\nCache-Control: no-store\r\n",
		 clock_action);
	conn_respond(c, 204, NULL, NULL, 0, extra);
}

static void handle_envs(struct conn *c)
{
	struct json_object *o = state_env_vars();
	conn_respond_json(c, 200, o);
	json_object_put(o);
}

static void handle_metrics(struct conn *c)
{
	struct sysinfo si;
	sysinfo(&si);
	struct statvfs vfs;
	uint64_t disk_total = 0, disk_used = 0;
	if (statvfs("/", &vfs) == 0) {
		disk_total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
		disk_used = disk_total - (uint64_t)vfs.f_bfree * vfs.f_frsize;
	}
	uint64_t unit = si.mem_unit ? si.mem_unit : 1;
	uint64_t total = si.totalram * unit, used = (si.totalram - si.freeram - si.bufferram) * unit;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "ts", json_object_new_int64(time(NULL)));
	json_object_object_add(o, "cpu_count", json_object_new_int((int)sysconf(_SC_NPROCESSORS_ONLN)));
	json_object_object_add(o, "cpu_used_pct", json_object_new_double(0));
	json_object_object_add(o, "mem_total", json_object_new_int64((int64_t)total));
	json_object_object_add(o, "mem_used", json_object_new_int64((int64_t)used));
	json_object_object_add(o, "mem_total_mib", json_object_new_int64((int64_t)(total >> 20)));
	json_object_object_add(o, "mem_used_mib", json_object_new_int64((int64_t)(used >> 20)));
	json_object_object_add(o, "disk_total", json_object_new_int64((int64_t)disk_total));
	json_object_object_add(o, "disk_used", json_object_new_int64((int64_t)disk_used));
	conn_respond_json(c, 200, o);
	json_object_put(o);
}

/* Query parameters shared by GET and POST /files. Returns 0 or answers and returns -1. */
static int files_params(struct conn *c, char *path, size_t plen, bool *have_path,
			struct envd_user *u)
{
	char uname[256];
	ssize_t ul = http_query_get(c->req.query, "username", uname, sizeof(uname));
	ssize_t pl = http_query_get(c->req.query, "path", path, plen);
	if (ul == -2 || pl == -2) {
		conn_json_error(c, 400, "invalid query parameter encoding");
		return -1;
	}
	*have_path = pl >= 0 && pl > 0;
	if (pl < 0)
		path[0] = '\0';
	int status;
	char msg[512];
	if (request_user(c, ul > 0 ? uname : NULL, u, &status, msg, sizeof(msg)) < 0) {
		conn_json_error(c, status, "%s", msg);
		return -1;
	}
	return 0;
}

static void handle_download(struct conn *c)
{
	char qpath[PATH_MAX], path[PATH_MAX], err[512], wd[PATH_MAX];
	bool have_path;
	struct envd_user u;
	if (files_params(c, qpath, sizeof(qpath), &have_path, &u) < 0)
		return;
	state_default_workdir(wd, sizeof(wd));
	if (path_resolve(qpath, &u, *wd ? wd : NULL, path, sizeof(path), err, sizeof(err)) < 0) {
		conn_json_error(c, 400, "%s", err);
		return;
	}
	struct ident_saved id;
	ident_enter(&u, &id);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int e = errno;
	ident_leave(&id);
	if (fd < 0) {
		if (e == ENOENT)
			conn_json_error(c, 404, "path '%s' does not exist", path);
		else
			conn_json_error(c, errno_http_status(e), "error opening file '%s': %s", path,
					strerror(e));
		return;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode) || !S_ISREG(st.st_mode)) {
		bool dir = S_ISDIR(st.st_mode);
		close(fd);
		conn_json_error(c, 400, dir ? "path '%s' is a directory" : "path '%s' is not a regular file",
				path);
		return;
	}
	fcntl(fd, F_SETFL, 0);
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	char extra[PATH_MAX + 128];
	char fname[256];
	size_t j = 0;
	for (const char *p = base; *p && j + 2 < sizeof(fname); p++)
		if (*p != '"' && *p != '\\' && (unsigned char)*p >= ' ')
			fname[j++] = *p;
	fname[j] = '\0';
	snprintf(extra, sizeof(extra), "Content-Disposition: inline; filename=\"%s\"\r\nVary: Accept-Encoding\r\n",
		 fname);
	if (conn_respond_head(c, 200, "application/octet-stream", (uint64_t)st.st_size, extra) == 0 &&
	    strcmp(c->req.method, "HEAD") != 0) {
		off_t off = 0;
		while (off < st.st_size) {
			ssize_t n = sendfile(c->fd, fd, &off, (size_t)MIN(st.st_size - off, 1 << 30));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				c->broken = true; /* the length is promised: the connection cannot be reused */
				break;
			}
		}
	}
	close(fd);
}

/* ---- upload ---- */

struct upload {
	struct conn *c;
	bool gzip; /* Content-Encoding: gzip */
	z_stream zs;
	char *zin;
	bool zin_eof, z_end;
	struct envd_user *u;
	struct json_object *result; /* array of EntryInfo */
	int status;                 /* error status or 0 */
	char msg[600];
};

/* Read the (decoded) upload body: > 0 bytes, 0 at its end, -1 with errno. */
static ssize_t upload_read(struct upload *up, void *buf, size_t n)
{
	if (!up->gzip)
		return conn_body_read(up->c, buf, n);
	if (up->z_end)
		return 0;
	up->zs.next_out = buf;
	up->zs.avail_out = (uInt)MIN(n, 1u << 30);
	for (;;) {
		if (up->zs.avail_in == 0 && !up->zin_eof) {
			ssize_t r = conn_body_read(up->c, up->zin, 65536);
			if (r < 0)
				return -1;
			if (r == 0)
				up->zin_eof = true;
			up->zs.next_in = (Bytef *)up->zin;
			up->zs.avail_in = (uInt)r;
		}
		int zr = inflate(&up->zs, Z_NO_FLUSH);
		size_t produced = n - up->zs.avail_out;
		if (zr == Z_STREAM_END) {
			up->z_end = true;
			return (ssize_t)produced;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR) {
			errno = EBADMSG;
			return -1;
		}
		if (produced)
			return (ssize_t)produced;
		if (up->zin_eof && up->zs.avail_in == 0) {
			errno = EBADMSG; /* truncated gzip stream */
			return -1;
		}
	}
}

/* Open the destination as the user, creating parents. Returns fd or -1 with up->status. */
static int upload_open(struct upload *up, const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), "/");
	struct ident_saved id;
	ident_enter(up->u, &id);
	int fd = -1, e = 0;
	struct stat st;
	if (ensure_dirs(dir) < 0) {
		e = errno;
		snprintf(up->msg, sizeof(up->msg), "error ensuring directories '%s': %s", dir, strerror(e));
	} else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		e = EISDIR;
		snprintf(up->msg, sizeof(up->msg), "path is a directory: %s", path);
	} else if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0666)) < 0) {
		e = errno;
		snprintf(up->msg, sizeof(up->msg), "error opening file '%s': %s", path, strerror(e));
	}
	ident_leave(&id);
	if (fd < 0)
		up->status = errno_http_status(e);
	return fd;
}

static int upload_write(struct upload *up, int fd, const char *path, const void *data, size_t len)
{
	if (full_write(fd, data, len) < 0) {
		int e = errno;
		up->status = errno_http_status(e);
		snprintf(up->msg, sizeof(up->msg), e == ENOSPC ? "not enough disk space available: writing '%s': %s"
							     : "error writing file '%s': %s",
			 path, strerror(e));
		return -1;
	}
	return 0;
}

static void upload_done(struct upload *up, const char *path)
{
	struct json_object *e = json_object_new_object();
	const char *base = strrchr(path, '/');
	json_object_object_add(e, "path", json_object_new_string(path));
	json_object_object_add(e, "name", json_object_new_string(base ? base + 1 : path));
	json_object_object_add(e, "type", json_object_new_string("file"));
	json_object_array_add(up->result, e);
}

static int resolve_for_upload(struct upload *up, const char *in, char *out, size_t outlen)
{
	char wd[PATH_MAX], err[512];
	state_default_workdir(wd, sizeof(wd));
	if (!in || !*in) {
		up->status = 400;
		snprintf(up->msg, sizeof(up->msg), "no path given for the uploaded file");
		return -1;
	}
	if (path_resolve(in, up->u, *wd ? wd : NULL, out, outlen, err, sizeof(err)) < 0) {
		up->status = 400;
		snprintf(up->msg, sizeof(up->msg), "%s", err);
		return -1;
	}
	for (size_t i = 0; i < json_object_array_length(up->result); i++) {
		const char *p = json_get_string(json_object_array_get_idx(up->result, i), "path");
		if (p && strcmp(p, out) == 0) {
			up->status = 400;
			snprintf(up->msg, sizeof(up->msg),
				 "you cannot upload multiple files to the same path '%s' in one upload request", out);
			return -1;
		}
	}
	return 0;
}

static void upload_raw(struct upload *up, const char *qpath)
{
	char path[PATH_MAX];
	if (resolve_for_upload(up, qpath, path, sizeof(path)) < 0)
		return;
	int fd = upload_open(up, path);
	if (fd < 0)
		return;
	char *buf = malloc(UPLOAD_BUF);
	for (;;) {
		ssize_t n = buf ? upload_read(up, buf, UPLOAD_BUF) : -1;
		if (n < 0) {
			up->status = 400;
			if (errno == EBADMSG) {
				snprintf(up->msg, sizeof(up->msg), "invalid gzip body");
				break;
			}
			snprintf(up->msg, sizeof(up->msg), "error reading request body: %s", strerror(errno));
			break;
		}
		if (n == 0) {
			upload_done(up, path);
			break;
		}
		if (upload_write(up, fd, path, buf, (size_t)n) < 0)
			break;
	}
	free(buf);
	close(fd);
}

/* Extract a (possibly quoted) parameter from a header value, e.g. boundary or name. */
static int header_param(const char *value, const char *param, char *out, size_t outlen)
{
	size_t pl = strlen(param);
	const char *p = value;
	while ((p = strchr(p, ';'))) {
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, param, pl) != 0 || p[pl] != '=')
			continue;
		p += pl + 1;
		size_t o = 0;
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				if (o + 1 >= outlen)
					return -1;
				out[o++] = *p++;
			}
		} else {
			while (*p && *p != ';' && *p != ' ' && *p != '\t') {
				if (o + 1 >= outlen)
					return -1;
				out[o++] = *p++;
			}
		}
		out[o] = '\0';
		return 0;
	}
	return -1;
}

/*
 * Streaming multipart/form-data reader. buf holds [0, have) unparsed bytes. Parts named "file"
 * are written to disk; other parts are skipped.
 */
static void upload_multipart(struct upload *up, const char *ctype, const char *qpath)
{
	char boundary[200], delim[210];
	if (header_param(ctype, "boundary", boundary, sizeof(boundary)) < 0 || !*boundary ||
	    strlen(boundary) > 70) {
		up->status = 400;
		snprintf(up->msg, sizeof(up->msg), "multipart body without a valid boundary");
		return;
	}
	int dl = snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
	size_t cap = UPLOAD_BUF + 8192, have = 2;
	char *buf = malloc(cap);
	if (!buf) {
		up->status = 500;
		snprintf(up->msg, sizeof(up->msg), "out of memory");
		return;
	}
	/* Pretend a CRLF precedes the body so the first delimiter looks like the others. */
	buf[0] = '\r';
	buf[1] = '\n';
	bool eof = false;
	enum { PREAMBLE, HEADERS, DATA, END } st = PREAMBLE;
	int fd = -1;
	char path[PATH_MAX] = "";
	bool skip = false;
	size_t nfiles = 0;
#define FILL()                                                                               \
	do {                                                                                 \
		if (eof)                                                                     \
			break;                                                               \
		ssize_t _n = upload_read(up, buf + have, cap - have);                        \
		if (_n < 0) {                                                                \
			up->status = 400;                                                    \
			snprintf(up->msg, sizeof(up->msg), "error reading request body: %s", \
				 strerror(errno));                                           \
			goto out;                                                            \
		}                                                                            \
		if (_n == 0)                                                                 \
			eof = true;                                                          \
		have += (size_t)_n;                                                          \
	} while (0)
	while (st != END) {
		if (st == PREAMBLE || st == DATA) {
			char *d = memmem(buf, have, delim, (size_t)dl);
			size_t safe = d ? (size_t)(d - buf) : (have > (size_t)dl ? have - (size_t)dl : 0);
			if (st == DATA && safe > 0 && !skip && fd >= 0 &&
			    upload_write(up, fd, path, buf, safe) < 0)
				goto out;
			if (!d) {
				memmove(buf, buf + safe, have - safe);
				have -= safe;
				if (eof) {
					up->status = 400;
					snprintf(up->msg, sizeof(up->msg), "multipart body ends without the closing boundary");
					goto out;
				}
				FILL();
				continue;
			}
			/* delimiter found: finish the current part */
			if (st == DATA && fd >= 0) {
				close(fd);
				fd = -1;
				upload_done(up, path);
			}
			memmove(buf, buf + safe, have - safe);
			have -= safe;
			size_t after = (size_t)dl;
			while (have < after + 2 && !eof)
				FILL();
			if (have < after + 2) {
				up->status = 400;
				snprintf(up->msg, sizeof(up->msg), "truncated multipart body");
				goto out;
			}
			if (buf[after] == '-' && buf[after + 1] == '-') {
				st = END;
				break;
			}
			memmove(buf, buf + after, have - after);
			have -= after;
			st = HEADERS;
			continue;
		}
		/* HEADERS: the rest of the delimiter line, then header lines up to an empty line */
		char *end = memmem(buf, have, "\r\n\r\n", 4);
		if (!end) {
			if (have >= cap || eof) {
				up->status = 400;
				snprintf(up->msg, sizeof(up->msg), "malformed multipart part headers");
				goto out;
			}
			FILL();
			continue;
		}
		*end = '\0';
		char name[64] = "", filename[PATH_MAX] = "";
		char *save = NULL;
		for (char *line = strtok_r(buf, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
			if (strncasecmp(line, "Content-Disposition:", 20) == 0) {
				header_param(line, "name", name, sizeof(name));
				header_param(line, "filename", filename, sizeof(filename));
			}
		}
		size_t hl = (size_t)(end - buf) + 4;
		memmove(buf, buf + hl, have - hl);
		have -= hl;
		/* The data runs up to the next "\r\n--boundary" (that CRLF belongs to the delimiter). */
		skip = strcmp(name, "file") != 0;
		if (!skip) {
			if (resolve_for_upload(up, qpath && *qpath ? qpath : filename, path, sizeof(path)) < 0)
				goto out;
			fd = upload_open(up, path);
			if (fd < 0)
				goto out;
			nfiles++;
		}
		st = DATA;
	}
	if (nfiles == 0 && up->status == 0) {
		up->status = 400;
		snprintf(up->msg, sizeof(up->msg), "multipart body has no part named 'file'");
	}
out:
#undef FILL
	if (fd >= 0)
		close(fd);
	free(buf);
}

static void handle_upload(struct conn *c)
{
	char qpath[PATH_MAX];
	bool have_path;
	struct envd_user u;
	if (files_params(c, qpath, sizeof(qpath), &have_path, &u) < 0)
		return;
	const char *ctype = http_header(&c->req, "Content-Type");
	const char *cenc = http_header(&c->req, "Content-Encoding");
	struct upload up = { .c = c, .u = &u };
	if (cenc && strcasecmp(cenc, "gzip") == 0) {
		up.gzip = true;
		up.zin = malloc(65536);
		if (!up.zin || inflateInit2(&up.zs, 16 + MAX_WBITS) != Z_OK) {
			free(up.zin);
			conn_json_error(c, 500, "cannot set up gzip decoding");
			return;
		}
	} else if (cenc && strcasecmp(cenc, "identity") != 0) {
		conn_json_error(c, 400, "unsupported Content-Encoding '%s' (identity or gzip)", cenc);
		return;
	}
	up.result = json_object_new_array();
	if (ctype && strncasecmp(ctype, "multipart/", 10) == 0)
		upload_multipart(&up, ctype, have_path ? qpath : NULL);
	else if (ctype && strncasecmp(ctype, "application/octet-stream", 24) == 0)
		upload_raw(&up, have_path ? qpath : NULL);
	else {
		up.status = 400;
		snprintf(up.msg, sizeof(up.msg),
			 "unsupported content type: %s, expected multipart/form-data or application/octet-stream",
			 ctype ? ctype : "(none)");
	}
	if (up.status)
		conn_json_error(c, up.status, "%s", up.msg);
	else
		conn_respond_json(c, 200, up.result);
	json_object_put(up.result);
	if (up.gzip) {
		inflateEnd(&up.zs);
		free(up.zin);
	}
}

void rest_handle(struct conn *c)
{
	const char *m = c->req.method, *p = c->req.path;
	bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
	if (strcmp(p, "/init") == 0 && post)
		handle_init(c);
	else if (strcmp(p, "/envs") == 0 && get)
		handle_envs(c);
	else if (strcmp(p, "/metrics") == 0 && get)
		handle_metrics(c);
	else if (strcmp(p, "/files") == 0 && get)
		handle_download(c);
	else if (strcmp(p, "/files") == 0 && post)
		handle_upload(c);
	else if (strcmp(p, "/init") == 0 || strcmp(p, "/envs") == 0 || strcmp(p, "/files") == 0 ||
		 strcmp(p, "/metrics") == 0 || strcmp(p, "/health") == 0)
		conn_json_error(c, 405, "method %s not allowed on %s", m, p);
	else
		conn_json_error(c, 404, "no such endpoint: %s %s", m, p);
}
