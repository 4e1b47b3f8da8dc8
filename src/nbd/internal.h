/*
 * internal.h - what the NBD protocol engine (proto.c) and the socket/thread side (server.c)
 * share: wire constants and the connection.
 */
#ifndef ORCH_NBD_INTERNAL_H
#define ORCH_NBD_INTERNAL_H

#include <pthread.h>

#include "nbd.h"

#define NBD_MAGIC_INIT 0x4e42444d41474943ull     /* "NBDMAGIC" */
#define NBD_MAGIC_OPT 0x49484156454f5054ull      /* "IHAVEOPT" */
#define NBD_MAGIC_OPT_REPLY 0x3e889045565a9ull
#define NBD_MAGIC_REQUEST 0x25609513u
#define NBD_MAGIC_SIMPLE_REPLY 0x67446698u

#define NBD_HS_FIXED_NEWSTYLE 1u
#define NBD_HS_NO_ZEROES 2u

enum {
	NBD_OPT_EXPORT_NAME = 1,
	NBD_OPT_ABORT = 2,
	NBD_OPT_LIST = 3,
	NBD_OPT_STARTTLS = 5,
	NBD_OPT_INFO = 6,
	NBD_OPT_GO = 7,
	NBD_OPT_STRUCTURED_REPLY = 8,
};

#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_ERR_UNSUP (0x80000000u + 1)
#define NBD_REP_ERR_INVALID (0x80000000u + 3)
#define NBD_REP_ERR_UNKNOWN (0x80000000u + 6)
#define NBD_REP_ERR_TOO_BIG (0x80000000u + 9)

enum { NBD_INFO_EXPORT = 0, NBD_INFO_NAME = 1, NBD_INFO_DESCRIPTION = 2, NBD_INFO_BLOCK_SIZE = 3 };

enum {
	NBD_CMD_READ = 0,
	NBD_CMD_WRITE = 1,
	NBD_CMD_DISC = 2,
	NBD_CMD_FLUSH = 3,
	NBD_CMD_TRIM = 4,
	NBD_CMD_WRITE_ZEROES = 6,
};

#define NBD_CMD_FLAG_FUA 1u
#define NBD_CMD_FLAG_NO_HOLE 2u

#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)

#define NBD_EPERM 1
#define NBD_EIO 5
#define NBD_ENOMEM 12
#define NBD_EINVAL 22
#define NBD_ENOSPC 28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP 95

/* Largest option payload we read (export names are at most 4096 bytes). */
#define NBD_MAX_OPTION 65536
/* Options accepted per handshake before the client is deemed hostile. */
#define NBD_MAX_OPTIONS 256

struct nbd_request {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t length;
};

/* Per-thread request buffer (grown on demand, shrunk back after huge requests). */
struct nbd_buf {
	void *p;
	size_t cap;
	int pipe[2];      /* for spliced READ replies; created on first use */
	size_t pipe_size; /* 0: no pipe yet */
	bool pipe_failed; /* could not create one: do not retry */
};

struct nbd_conn {
	const struct nbd_export *exp;
	struct nbd_stream s;
	uint16_t tflags;          /* transmission flags sent to the client */
	uint64_t id;              /* for log lines */
	pthread_mutex_t recv_lock; /* guards the read side of the stream and closing */
	pthread_mutex_t send_lock; /* guards the write side: one reply at a time */
	bool closing;
	/* server side (server.c); NULL in stream mode */
	struct nbd_server *srv;
	int fd;
	bool handshake;            /* run the handshake first (false: kernel socketpairs) */
	bool running;              /* a first thread has started; guarded by srv->lock */
	int workers;               /* live worker threads; guarded by srv->lock */
	struct nbd_conn *next;     /* in srv->conns; guarded by srv->lock */
	uint64_t *requests;        /* counter to bump, may be NULL */
	uint64_t *protocol_errors;
};

uint16_t nbd_transmission_flags(const struct nbd_export *exp);
/* Run the handshake. 1 = enter transmission, 0 = client aborted cleanly, -1 = violation or
 * I/O failure (err set). */
int nbd_handshake(struct nbd_conn *c);
/* Serve one request: read it (under recv_lock), run it, reply (under send_lock).
 * 1 = go on, 0 = client sent DISC or closed at a request boundary, -1 = violation or I/O
 * failure (err set; the connection must be closed). */
int nbd_serve_one(struct nbd_conn *c, struct nbd_buf *buf);
/* Free the data buffer (kept: the pipe). */
void nbd_buf_release(struct nbd_buf *b);
/* Free everything (at thread exit). */
void nbd_buf_free(struct nbd_buf *b);

#endif
