/*
 * fuzz_nbd.c - libFuzzer harness for the NBD protocol engine (src/nbd/proto.c): the input is
 * what a client sends. The first byte picks the phase to start in (handshake, or transmission
 * as for kernel socketpairs); the rest is the byte stream, served against a 64 KiB memory
 * device. Replies are discarded but their framing is checked (every writev is well formed).
 */
#include <string.h>

#include "nbd/nbd.h"

#define DEV 65536

static uint8_t disk[DEV];

static int d_read(void *o, void *buf, size_t len, uint64_t off)
{
	(void)o;
	if (off + len > DEV)
		__builtin_trap(); /* the engine must have checked the range */
	memcpy(buf, disk + off, len);
	return 0;
}
static int d_write(void *o, const void *buf, size_t len, uint64_t off)
{
	(void)o;
	if (off + len > DEV)
		__builtin_trap();
	memcpy(disk + off, buf, len);
	return 0;
}
static int d_zero(void *o, uint64_t len, uint64_t off)
{
	(void)o;
	if (off + len > DEV)
		__builtin_trap();
	memset(disk + off, 0, len);
	return 0;
}
static const struct nbd_dev_ops ops = { .read = d_read, .write = d_write, .zero = d_zero };

struct in {
	const uint8_t *p;
	size_t len, pos;
};

static int s_read(void *o, void *buf, size_t len)
{
	struct in *in = o;
	if (in->len - in->pos < len)
		return -1;
	memcpy(buf, in->p + in->pos, len);
	in->pos += len;
	return 0;
}

static int s_writev(void *o, const struct iovec *iov, int n)
{
	(void)o;
	for (int i = 0; i < n; i++)
		if (iov[i].iov_len && !iov[i].iov_base)
			__builtin_trap();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data + 1, size ? size - 1 : 0, 0 };
	struct nbd_stream s = { s_read, s_writev, &in };
	struct nbd_export exp = { .name = "disk", .size = DEV, .ops = &ops, .read_only = size > 1 && data[1] == 0xff };
	static bool quiet;
	if (!quiet) {
		log_set_level(LOG_ERROR);
		quiet = true;
	}
	if (size == 0)
		return 0;
	nbd_conn_run_stream(&exp, &s, !(data[0] & 1));
	return 0;
}
