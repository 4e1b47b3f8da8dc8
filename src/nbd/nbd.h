/*
 * nbd.h - an NBD server (NetworkBlockDevice/nbd doc/proto.md) for one export backed by an
 * abstract device, plus the kernel attach path over generic netlink.
 *
 * Protocol: fixed newstyle handshake (OPT_GO, OPT_INFO, OPT_EXPORT_NAME, OPT_LIST, OPT_ABORT;
 * every other option is answered NBD_REP_ERR_UNSUP), simple replies only; commands READ,
 * WRITE, DISC, FLUSH, TRIM, WRITE_ZEROES. Transmission flags HAS_FLAGS, SEND_FLUSH, SEND_TRIM,
 * SEND_WRITE_ZEROES, CAN_MULTI_CONN (+ READ_ONLY for read-only exports).
 *
 * Threading: each connection has NBD_WORKERS_PER_CONN threads in a leader/follower loop:
 * a thread takes the connection's receive lock, reads one request (and a write payload),
 * releases it, runs the request against the device, and sends the reply under the
 * connection's send lock (one writev per reply). Requests are served concurrently and
 * replies may come out of order (the cookie matches them). The device ops are therefore
 * called from many threads at once and must be thread-safe.
 *
 * A protocol violation closes that connection (with a log line); the server keeps serving
 * the others. Errors from library calls: -1/NULL + err_set().
 */
#ifndef ORCH_NBD_H
#define ORCH_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../common/common.h"

/* Largest READ/WRITE payload (proto.md "Size constraints": 2^25). A larger READ gets an
 * EINVAL reply; a larger WRITE closes the connection (its payload cannot be trusted). */
#define NBD_MAX_PAYLOAD (32u << 20)
#define NBD_WORKERS_PER_CONN 8
/* Open connections per server; more are closed at accept. */
#define NBD_MAX_CONNECTIONS 256
/* A client must finish the handshake within this many seconds of silence. */
#define NBD_HANDSHAKE_TIMEOUT_S 30

/* The device behind an export. Each op returns 0, or -1 with errno set (mapped to the NBD
 * error field: EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP; others -> EIO).
 * Ranges are already checked against the size. flush/trim/zero may be NULL: flush and
 * trim then succeed without action, zero falls back to writing a zero buffer. */
/* Where a range of the device lives, for zero-copy READ replies (splice). */
struct nbd_extent {
	int fd;          /* < 0: the bytes are zeros */
	uint64_t offset; /* in fd */
	uint64_t length;
};
#define NBD_MAX_EXTENTS 64
/* Reads of at least this many bytes use map (when given) instead of read. */
#define NBD_SPLICE_MIN (64u << 10)

struct nbd_dev_ops {
	int (*read)(void *opaque, void *buf, size_t len, uint64_t off);
	/* Optional: describe [off, off+len) as at most max extents covering it exactly, in order.
	 * Returns the number of extents, or 0 when the range cannot be described that way (the
	 * server then uses read). The fds must stay open for the device's lifetime. */
	int (*map)(void *opaque, uint64_t off, uint64_t len, struct nbd_extent *ext, int max);
	int (*write)(void *opaque, const void *buf, size_t len, uint64_t off);
	int (*flush)(void *opaque);
	int (*trim)(void *opaque, uint64_t len, uint64_t off);
	int (*zero)(void *opaque, uint64_t len, uint64_t off);
};

struct nbd_export {
	const char *name;        /* "" = default export; any name is accepted when NULL */
	const char *description; /* may be NULL */
	uint64_t size;
	bool read_only;
	const struct nbd_dev_ops *ops;
	void *opaque;
};

struct nbd_server;

/* The export is copied (strings duplicated); opaque must outlive the server. */
struct nbd_server *nbd_server_new(const struct nbd_export *exp);
/* Listen on a unix socket (removes a stale socket file first) / on TCP at host:port (port 0
 * picks one; *bound gets it). Call before nbd_server_start; several listeners are fine. */
int nbd_server_listen_unix(struct nbd_server *srv, const char *path);
int nbd_server_listen_tcp(struct nbd_server *srv, const char *host, int port, int *bound);
/* Start the accept threads. */
int nbd_server_start(struct nbd_server *srv);
/* Serve one already-connected socket (e.g. a socketpair end). handshake=false starts in
 * the transmission phase (the kernel client after a netlink CONNECT). Takes ownership of fd. */
int nbd_server_serve_fd(struct nbd_server *srv, int fd, bool handshake);
/* Stop accepting, close every connection (in-flight requests finish), join all threads,
 * remove unix socket files. Idempotent. */
void nbd_server_stop(struct nbd_server *srv);
/* Stops if needed, then frees. NULL is fine. */
void nbd_server_free(struct nbd_server *srv);

struct nbd_stats {
	uint64_t connections; /* accepted so far */
	uint64_t active;      /* open now */
	uint64_t requests;
	uint64_t protocol_errors; /* connections closed on an error: violations, I/O failures */
};
void nbd_server_stats(struct nbd_server *srv, struct nbd_stats *out);

/* ---- the protocol engine, drivable from a buffer (fuzz/fuzz_nbd.c) ----
 * An nbd_stream is where a connection reads and writes; nbd_conn_run_stream runs a whole
 * connection (handshake when asked, then requests one at a time) on the calling thread.
 * Returns 0 when the client ended the session cleanly (DISC / ABORT), -1 on a protocol
 * violation or I/O failure (err set). */
struct nbd_stream {
	/* read exactly len bytes: 0, or -1 (EOF or error) */
	int (*read)(void *opaque, void *buf, size_t len);
	/* write iov in full: 0, or -1 */
	int (*writev)(void *opaque, const struct iovec *iov, int iovcnt);
	void *opaque;
};
int nbd_conn_run_stream(const struct nbd_export *exp, const struct nbd_stream *s, bool handshake);

/* ---- kernel client (generic netlink family "nbd", linux/nbd-netlink.h) ---- */

/* True when /sys/module/nbd exists (the nbd module is loaded). */
bool nbd_kernel_available(void);

struct nbd_kernel_config {
	int index;          /* -1: let the kernel pick */
	uint64_t size;
	uint64_t block_size;
	uint64_t timeout_s; /* 0: kernel default */
	uint64_t dead_conn_timeout_s;
	uint64_t server_flags; /* NBD transmission flags */
	const int *fds;     /* client ends of the socketpairs */
	size_t nfds;
};

/* Message builders (exposed for the unit test). Each writes one netlink message into buf
 * (at least NBD_NL_BUF bytes) and returns its length, or -1 (err set) when it does not fit. */
#define NBD_NL_BUF 8192
int nbd_nl_build_getfamily(void *buf, size_t cap, uint32_t seq, const char *family);
int nbd_nl_build_connect(void *buf, size_t cap, uint16_t family, uint32_t seq,
			 const struct nbd_kernel_config *cfg);
int nbd_nl_build_status(void *buf, size_t cap, uint16_t family, uint32_t seq, int index);
int nbd_nl_build_disconnect(void *buf, size_t cap, uint16_t family, uint32_t seq, int index);

/* Resolve a generic netlink family name to its id (a real round trip with the kernel).
 * ENOENT when the family is not registered. */
int nbd_nl_family_id(const char *family, uint16_t *id);

/* Attach a server to a kernel nbd device: creates cfg-like socketpairs (nconn of them),
 * serves the server ends with srv (no handshake), sends CONNECT, polls STATUS until
 * connected. *index gets the device number (/dev/nbdN). */
int nbd_kernel_attach(struct nbd_server *srv, uint64_t size, uint64_t block_size, int nconn,
		      int *index);
int nbd_kernel_detach(int index);
/* STATUS: *connected for device index. */
int nbd_kernel_status(int index, bool *connected);

#endif
