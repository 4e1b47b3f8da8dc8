/*
 * proto.c - the NBD protocol engine: fixed newstyle handshake and the transmission phase,
 * over an abstract stream so the same code runs on sockets (server.c) and on a fuzz buffer.
 *
 * Every length from the wire is checked before it sizes a read or an allocation: options
 * longer than NBD_MAX_OPTION and WRITE payloads longer than NBD_MAX_PAYLOAD close the
 * connection (their bytes cannot be skipped safely); everything that can be answered with an
 * error reply is (unknown options -> NBD_REP_ERR_UNSUP, bad ranges -> EINVAL/ENOSPC).
 *
 * Threading: nbd_serve_one may run in several threads on one connection: the read of a request
 * and its payload happens under c->recv_lock, the reply under c->send_lock, the device call
 * under neither. Only simple replies are used, so a READ reply is header + data in one writev.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "internal.h"

static void put_be16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}
static void put_be32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}
static void put_be64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}
static uint16_t get_be16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return be16toh(v);
}
static uint32_t get_be32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}
static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

uint16_t nbd_transmission_flags(const struct nbd_export *exp)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		     NBD_FLAG_CAN_MULTI_CONN;
	if (exp->read_only)
		f |= NBD_FLAG_READ_ONLY;
	else
		f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
	return f;
}

static int s_read(struct nbd_conn *c, void *buf, size_t len)
{
	if (len == 0)
		return 0;
	return c->s.read(c->s.opaque, buf, len);
}

static int s_write(struct nbd_conn *c, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	return c->s.writev(c->s.opaque, &iov, 1);
}

/* ---- handshake ---- */

static int opt_reply(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *data,
		     uint32_t len)
{
	uint8_t h[20];
	struct iovec iov[2];
	put_be64(h, NBD_MAGIC_OPT_REPLY);
	put_be32(h + 8, opt);
	put_be32(h + 12, type);
	put_be32(h + 16, len);
	iov[0] = (struct iovec){ h, sizeof(h) };
	iov[1] = (struct iovec){ (void *)data, len };
	if (c->s.writev(c->s.opaque, iov, len ? 2 : 1) < 0)
		return err_set("cannot send option reply");
	return 0;
}

static int opt_error(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
	return opt_reply(c, opt, type, msg, (uint32_t)strlen(msg));
}

static bool name_matches(const struct nbd_export *exp, const char *name)
{
	return !exp->name || !*name || !strcmp(exp->name, name);
}

static const char *export_name(const struct nbd_export *exp)
{
	return exp->name ? exp->name : "";
}

/* OPT_INFO / OPT_GO. Returns 1 when the export was accepted, 0 when an error reply was sent,
 * -1 on I/O failure. */
static int opt_info_go(struct nbd_conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
	uint32_t namelen;
	uint16_t nreq;
	char name[4097];
	uint8_t info[14];
	bool want_name = false, want_desc = false;
	if (len < 6)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "option data too short") < 0 ? -1 : 0;
	namelen = get_be32(data);
	if (namelen > len - 6 || namelen > 4096)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "export name length out of range") < 0 ? -1 : 0;
	nreq = get_be16(data + 4 + namelen);
	if ((uint64_t)4 + namelen + 2 + 2ull * nreq != len)
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "option length does not match its requests") < 0 ? -1 : 0;
	memcpy(name, data + 4, namelen);
	name[namelen] = 0;
	if (memchr(name, 0, namelen))
		return opt_error(c, opt, NBD_REP_ERR_INVALID, "export name contains NUL") < 0 ? -1 : 0;
	if (!name_matches(c->exp, name))
		return opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "no such export") < 0 ? -1 : 0;
	for (uint16_t i = 0; i < nreq; i++) {
		uint16_t r = get_be16(data + 4 + namelen + 2 + 2 * i);
		want_name |= r == NBD_INFO_NAME;
		want_desc |= r == NBD_INFO_DESCRIPTION;
	}
	put_be16(info, NBD_INFO_EXPORT);
	put_be64(info + 2, c->exp->size);
	put_be16(info + 10, c->tflags);
	if (opt_reply(c, opt, NBD_REP_INFO, info, 12) < 0)
		return -1;
	/* block sizes: any alignment works (the devices do read-modify-write), 4 KiB preferred */
	put_be16(info, NBD_INFO_BLOCK_SIZE);
	put_be32(info + 2, 1);
	put_be32(info + 6, 4096);
	put_be32(info + 10, NBD_MAX_PAYLOAD);
	if (opt_reply(c, opt, NBD_REP_INFO, info, 14) < 0)
		return -1;
	if (want_name || want_desc) {
		for (int k = 0; k < 2; k++) {
			const char *s;
			size_t sl;
			_cleanup_free_ uint8_t *b = NULL;
			uint16_t type = k == 0 ? NBD_INFO_NAME : NBD_INFO_DESCRIPTION;
			s = k == 0 ? (want_name ? export_name(c->exp) : NULL)
				   : (want_desc ? c->exp->description : NULL);
			if (!s)
				continue;
			sl = strlen(s);
			if (!(b = malloc(2 + sl)))
				return err_set_errno(ENOMEM, "cannot send option reply");
			put_be16(b, type);
			memcpy(b + 2, s, sl);
			if (opt_reply(c, opt, NBD_REP_INFO, b, (uint32_t)(2 + sl)) < 0)
				return -1;
		}
	}
	if (opt_reply(c, opt, NBD_REP_ACK, NULL, 0) < 0)
		return -1;
	return 1;
}

static int opt_list(struct nbd_conn *c, uint32_t len)
{
	const char *name = export_name(c->exp);
	const char *desc = c->exp->description ? c->exp->description : "";
	size_t nl = strlen(name), dl = strlen(desc);
	_cleanup_free_ uint8_t *b = NULL;
	if (len != 0)
		return opt_error(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
	if (!(b = malloc(4 + nl + dl)))
		return err_set_errno(ENOMEM, "cannot send export list");
	put_be32(b, (uint32_t)nl);
	memcpy(b + 4, name, nl);
	memcpy(b + 4 + nl, desc, dl);
	if (opt_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, b, (uint32_t)(4 + nl + dl)) < 0)
		return -1;
	return opt_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

int nbd_handshake(struct nbd_conn *c)
{
	uint8_t hello[18];
	uint8_t cflags_be[4];
	uint32_t cflags;
	bool no_zeroes;
	_cleanup_free_ uint8_t *data = NULL;
	put_be64(hello, NBD_MAGIC_INIT);
	put_be64(hello + 8, NBD_MAGIC_OPT);
	put_be16(hello + 16, NBD_HS_FIXED_NEWSTYLE | NBD_HS_NO_ZEROES);
	if (s_write(c, hello, sizeof(hello)) < 0)
		return err_set("cannot send greeting");
	if (s_read(c, cflags_be, 4) < 0)
		return err_set("client closed before sending its flags");
	cflags = get_be32(cflags_be);
	if (cflags & ~(NBD_HS_FIXED_NEWSTYLE | NBD_HS_NO_ZEROES))
		return err_set("unknown client flags 0x%x", cflags);
	no_zeroes = cflags & NBD_HS_NO_ZEROES;
	if (!(data = malloc(NBD_MAX_OPTION)))
		return err_set_errno(ENOMEM, "cannot run handshake");
	for (int n = 0; n < NBD_MAX_OPTIONS; n++) {
		uint8_t oh[16];
		uint32_t opt, len;
		int r;
		if (s_read(c, oh, sizeof(oh)) < 0)
			return err_set("client closed during option haggling");
		if (get_be64(oh) != NBD_MAGIC_OPT)
			return err_set("bad option magic 0x%016llx", (unsigned long long)get_be64(oh));
		opt = get_be32(oh + 8);
		len = get_be32(oh + 12);
		if (len > NBD_MAX_OPTION)
			return err_set("option %u has %u bytes of data (limit %u)", opt, len, NBD_MAX_OPTION);
		if (s_read(c, data, len) < 0)
			return err_set("client closed inside option %u", opt);
		switch (opt) {
		case NBD_OPT_EXPORT_NAME: {
			uint8_t reply[10 + 124];
			char name[4097];
			if (len > 4096)
				return err_set("export name of %u bytes", len);
			memcpy(name, data, len);
			name[len] = 0;
			if (memchr(name, 0, len) || !name_matches(c->exp, name))
				return err_set("client asked for unknown export '%s'", name);
			memset(reply, 0, sizeof(reply));
			put_be64(reply, c->exp->size);
			put_be16(reply + 8, c->tflags);
			if (s_write(c, reply, no_zeroes ? 10 : sizeof(reply)) < 0)
				return err_set("cannot send export info");
			return 1;
		}
		case NBD_OPT_ABORT:
			opt_reply(c, opt, NBD_REP_ACK, NULL, 0); /* the client may already be gone */
			return 0;
		case NBD_OPT_LIST:
			if (opt_list(c, len) < 0)
				return -1;
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
			r = opt_info_go(c, opt, data, len);
			if (r < 0)
				return -1;
			if (r == 1 && opt == NBD_OPT_GO)
				return 1;
			break;
		default:
			if (opt_error(c, opt, NBD_REP_ERR_UNSUP, "option not supported") < 0)
				return -1;
			break;
		}
	}
	return err_set("more than %d options", NBD_MAX_OPTIONS);
}

/* ---- transmission ---- */

static int nbd_errno(int e)
{
	switch (e) {
	case EPERM:
	case EROFS:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
		return NBD_ENOTSUP;
	default:
		return NBD_EIO;
	}
}

static int buf_reserve(struct nbd_buf *b, size_t len)
{
	void *p;
	if (len <= b->cap)
		return 0;
	p = malloc(len);
	if (!p)
		return -1;
	free(b->p);
	b->p = p;
	b->cap = len;
	return 0;
}

void nbd_buf_release(struct nbd_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->cap = 0;
}

static void pipe_close(struct nbd_buf *b)
{
	if (b->pipe_size) {
		close(b->pipe[0]);
		close(b->pipe[1]);
	}
	b->pipe_size = 0;
}

void nbd_buf_free(struct nbd_buf *b)
{
	nbd_buf_release(b);
	pipe_close(b);
}

static bool pipe_ready(struct nbd_buf *b)
{
	int sz;
	if (b->pipe_size)
		return true;
	if (b->pipe_failed || pipe2(b->pipe, O_CLOEXEC) < 0) {
		b->pipe_failed = true;
		return false;
	}
	fcntl(b->pipe[1], F_SETPIPE_SZ, 1 << 20); /* best effort: the default 64 KiB works too */
	sz = fcntl(b->pipe[1], F_GETPIPE_SZ);
	b->pipe_size = sz > 0 ? (size_t)sz : 65536;
	return true;
}

/* Send a READ reply whose data comes from file extents, spliced from the page cache into the
 * socket without passing through user memory. Called with the range already validated.
 * 1 = sent, 0 = not possible (nothing sent: use the copying path), -1 = failed after the
 * header went out (the connection must be closed: proto.md allows nothing else). */
static int send_read_spliced(struct nbd_conn *c, struct nbd_buf *b, uint64_t cookie,
			     const struct nbd_extent *ext, int n)
{
	static const uint8_t zeros[65536];
	uint8_t h[16];
	int ret = -1;
	if (c->fd < 0 || !pipe_ready(b))
		return 0;
	put_be32(h, NBD_MAGIC_SIMPLE_REPLY);
	put_be32(h + 4, 0);
	put_be64(h + 8, cookie);
	pthread_mutex_lock(&c->send_lock);
	if (send(c->fd, h, sizeof(h), MSG_NOSIGNAL | MSG_MORE) != (ssize_t)sizeof(h)) {
		/* a short send of 16 bytes on a blocking socket means the peer is gone */
		err_set_errno(errno, "cannot send reply");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		uint64_t left = ext[i].length;
		loff_t off = (loff_t)ext[i].offset;
		while (left > 0) {
			ssize_t k;
			if (ext[i].fd < 0) {
				k = send(c->fd, zeros, (size_t)MIN(left, (uint64_t)sizeof(zeros)), MSG_NOSIGNAL | MSG_MORE);
				if (k < 0 && errno == EINTR)
					continue;
				if (k <= 0) {
					err_set_errno(errno, "cannot send reply data");
					goto out;
				}
				left -= (uint64_t)k;
				continue;
			}
			k = splice(ext[i].fd, &off, b->pipe[1], NULL, (size_t)MIN(left, (uint64_t)b->pipe_size),
				   SPLICE_F_MOVE);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				err_set_errno(k == 0 ? EIO : errno, "cannot read %llu bytes at %llu for a reply",
					      (unsigned long long)left, (unsigned long long)off);
				goto out;
			}
			left -= (uint64_t)k;
			while (k > 0) {
				ssize_t w = splice(b->pipe[0], NULL, c->fd, NULL, (size_t)k,
						   SPLICE_F_MOVE | (left || i + 1 < n ? SPLICE_F_MORE : 0));
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0) {
					err_set_errno(errno, "cannot send reply data");
					goto out;
				}
				k -= w;
			}
		}
	}
	ret = 1;
out:
	pthread_mutex_unlock(&c->send_lock);
	if (ret < 0) {
		int e = errno;
		sigset_t pipe_set;
		pipe_close(b); /* it may hold stray bytes */
		if (e == EPIPE) {
			/* the SIGPIPE splice raised is pending on this thread (blocked): drop it */
			sigemptyset(&pipe_set);
			sigaddset(&pipe_set, SIGPIPE);
			sigtimedwait(&pipe_set, NULL, &(struct timespec){ 0, 0 });
		}
		errno = e;
	}
	return ret;
}

static int send_reply(struct nbd_conn *c, uint64_t cookie, uint32_t error, const void *data,
		      size_t len)
{
	uint8_t h[16];
	struct iovec iov[2];
	int r;
	put_be32(h, NBD_MAGIC_SIMPLE_REPLY);
	put_be32(h + 4, error);
	put_be64(h + 8, cookie);
	iov[0] = (struct iovec){ h, sizeof(h) };
	iov[1] = (struct iovec){ (void *)data, len };
	pthread_mutex_lock(&c->send_lock);
	r = c->s.writev(c->s.opaque, iov, len && !error ? 2 : 1);
	pthread_mutex_unlock(&c->send_lock);
	if (r < 0)
		return err_set("cannot send reply");
	return 0;
}

/* Run a decoded request; returns the NBD error (0 = success). */
static uint32_t run_request(struct nbd_conn *c, const struct nbd_request *rq, void *buf)
{
	const struct nbd_export *exp = c->exp;
	const struct nbd_dev_ops *ops = exp->ops;
	uint64_t end;
	uint16_t allowed = NBD_CMD_FLAG_FUA;
	int r = 0;
	if (rq->type == NBD_CMD_WRITE_ZEROES)
		allowed |= NBD_CMD_FLAG_NO_HOLE;
	if (rq->flags & ~allowed)
		return NBD_EINVAL;
	if (rq->type != NBD_CMD_READ && rq->type != NBD_CMD_WRITE && rq->type != NBD_CMD_FLUSH &&
	    rq->type != NBD_CMD_TRIM && rq->type != NBD_CMD_WRITE_ZEROES)
		return NBD_EINVAL;
	if (rq->type == NBD_CMD_FLUSH)
		return ops->flush && ops->flush(exp->opaque) < 0 ? (uint32_t)nbd_errno(errno) : 0;
	if (add_overflow_u64(rq->offset, rq->length, &end) || end > exp->size)
		return rq->type == NBD_CMD_WRITE ? NBD_ENOSPC : NBD_EINVAL;
	if (rq->type != NBD_CMD_READ && exp->read_only)
		return NBD_EPERM;
	if (rq->length == 0)
		return 0;
	switch (rq->type) {
	case NBD_CMD_READ:
		if (rq->length > NBD_MAX_PAYLOAD)
			return NBD_EINVAL;
		r = ops->read(exp->opaque, buf, rq->length, rq->offset);
		break;
	case NBD_CMD_WRITE:
		r = ops->write(exp->opaque, buf, rq->length, rq->offset);
		break;
	case NBD_CMD_TRIM:
		r = ops->trim ? ops->trim(exp->opaque, rq->length, rq->offset) : 0;
		break;
	case NBD_CMD_WRITE_ZEROES:
		if (ops->zero) {
			r = ops->zero(exp->opaque, rq->length, rq->offset);
		} else {
			/* no zero op: write zeros in pieces (buf is sized for this) */
			uint64_t done = 0;
			memset(buf, 0, MIN((uint64_t)rq->length, (uint64_t)NBD_MAX_PAYLOAD));
			while (done < rq->length && r == 0) {
				size_t n = (size_t)MIN((uint64_t)rq->length - done, (uint64_t)NBD_MAX_PAYLOAD);
				r = ops->write(exp->opaque, buf, n, rq->offset + done);
				done += n;
			}
		}
		break;
	default:
		return NBD_EINVAL;
	}
	if (r < 0)
		return (uint32_t)nbd_errno(errno);
	if ((rq->flags & NBD_CMD_FLAG_FUA) && rq->type != NBD_CMD_READ && ops->flush &&
	    ops->flush(exp->opaque) < 0)
		return (uint32_t)nbd_errno(errno);
	return 0;
}

/* Read one request (and its payload) under recv_lock. 1 = got one, 0 = end of session
 * (DISC, clean EOF, or another thread is closing), -1 = violation / I/O error. */
static int recv_request(struct nbd_conn *c, struct nbd_request *rq, struct nbd_buf *buf)
{
	uint8_t h[28];
	int ret = -1;
	pthread_mutex_lock(&c->recv_lock);
	if (c->closing) {
		ret = 0;
		goto out;
	}
	if (c->s.read(c->s.opaque, h, sizeof(h)) < 0) {
		/* EOF at a request boundary: the client went away (counted as an end) */
		ret = 0;
		goto out_close;
	}
	if (get_be32(h) != NBD_MAGIC_REQUEST) {
		err_set("bad request magic 0x%08x", get_be32(h));
		goto out_close;
	}
	rq->flags = get_be16(h + 4);
	rq->type = get_be16(h + 6);
	rq->cookie = get_be64(h + 8);
	rq->offset = get_be64(h + 16);
	rq->length = get_be32(h + 24);
	if (rq->type == NBD_CMD_DISC) {
		ret = 0;
		goto out_close;
	}
	if (rq->type == NBD_CMD_WRITE) {
		if (rq->length > NBD_MAX_PAYLOAD) {
			err_set("write of %u bytes exceeds the %u byte limit", rq->length, NBD_MAX_PAYLOAD);
			goto out_close;
		}
		if (buf_reserve(buf, rq->length) < 0) {
			err_set_errno(ENOMEM, "cannot buffer a write of %u bytes", rq->length);
			goto out_close;
		}
		if (c->s.read(c->s.opaque, buf->p, rq->length) < 0) {
			err_set("client closed inside a %u byte write payload", rq->length);
			goto out_close;
		}
	} else if (rq->type == NBD_CMD_READ && rq->length <= NBD_MAX_PAYLOAD) {
		if (buf_reserve(buf, rq->length) < 0) {
			err_set_errno(ENOMEM, "cannot buffer a read of %u bytes", rq->length);
			goto out_close;
		}
	} else if (rq->type == NBD_CMD_WRITE_ZEROES && !c->exp->ops->zero) {
		if (buf_reserve(buf, MIN((uint64_t)rq->length, (uint64_t)NBD_MAX_PAYLOAD)) < 0) {
			err_set_errno(ENOMEM, "cannot buffer zeroes");
			goto out_close;
		}
	}
	ret = 1;
	goto out;
out_close:
	c->closing = true;
out:
	pthread_mutex_unlock(&c->recv_lock);
	return ret;
}

int nbd_serve_one(struct nbd_conn *c, struct nbd_buf *buf)
{
	struct nbd_request rq;
	uint32_t error;
	int r = recv_request(c, &rq, buf);
	if (r <= 0)
		return r;
	if (c->requests)
		__atomic_add_fetch(c->requests, 1, __ATOMIC_RELAXED);
	if (rq.type == NBD_CMD_READ && c->exp->ops->map && c->fd >= 0 && rq.length >= NBD_SPLICE_MIN &&
	    rq.length <= NBD_MAX_PAYLOAD && !(rq.flags & ~NBD_CMD_FLAG_FUA) &&
	    rq.offset <= c->exp->size && rq.length <= c->exp->size - rq.offset) {
		struct nbd_extent ext[NBD_MAX_EXTENTS];
		int n = c->exp->ops->map(c->exp->opaque, rq.offset, rq.length, ext, NBD_MAX_EXTENTS);
		if (n > 0) {
			r = send_read_spliced(c, buf, rq.cookie, ext, n);
			if (r != 0)
				return r;
		}
	}
	error = run_request(c, &rq, buf->p);
	if (send_reply(c, rq.cookie, error, buf->p, rq.type == NBD_CMD_READ ? rq.length : 0) < 0)
		return -1;
	/* don't keep huge buffers per thread */
	if (buf->cap > (4u << 20))
		nbd_buf_release(buf);
	return 1;
}

int nbd_conn_run_stream(const struct nbd_export *exp, const struct nbd_stream *s, bool handshake)
{
	struct nbd_conn c = { .exp = exp, .s = *s, .fd = -1 };
	struct nbd_buf buf = { 0 };
	int r = 1;
	c.tflags = nbd_transmission_flags(exp);
	pthread_mutex_init(&c.recv_lock, NULL);
	pthread_mutex_init(&c.send_lock, NULL);
	if (handshake)
		r = nbd_handshake(&c);
	while (r == 1)
		r = nbd_serve_one(&c, &buf);
	nbd_buf_free(&buf);
	pthread_mutex_destroy(&c.recv_lock);
	pthread_mutex_destroy(&c.send_lock);
	return r;
}
