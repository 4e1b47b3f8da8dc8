/*
 * test_nbd.c - the NBD server driven by a minimal client over socketpairs and unix sockets
 * (handshake, commands, pipelining, errors, stop with live connections), the buffer-driven
 * engine, and the exact netlink messages of the kernel attach path (the real attach skips
 * without the nbd module).
 */
#include <endian.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "nbd/nbd.h"
#include "test.h"

#define DEV_SIZE (1u << 20)

static uint8_t disk[DEV_SIZE];
static int flushes;

static int m_read(void *o, void *buf, size_t len, uint64_t off)
{
	(void)o;
	memcpy(buf, disk + off, len);
	return 0;
}
static int m_write(void *o, const void *buf, size_t len, uint64_t off)
{
	(void)o;
	if (off == 4096 * 200) /* a poisoned block: device error */
		return errno = EIO, -1;
	memcpy(disk + off, buf, len);
	return 0;
}
static int m_flush(void *o)
{
	(void)o;
	__atomic_add_fetch(&flushes, 1, __ATOMIC_RELAXED);
	return 0;
}
static int m_zero(void *o, uint64_t len, uint64_t off)
{
	(void)o;
	memset(disk + off, 0, len);
	return 0;
}
static const struct nbd_dev_ops mem_ops = { .read = m_read, .write = m_write, .flush = m_flush,
					    .trim = m_zero, .zero = m_zero };
static const struct nbd_export mem_exp = { .name = "disk", .size = DEV_SIZE, .ops = &mem_ops };

/* ---- a tiny client ---- */

static int rd(int fd, void *b, size_t n)
{
	return full_read(fd, b, n);
}
static void put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}
static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}
static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

static int client_hello(int fd)
{
	uint8_t hello[18], b[4];
	if (rd(fd, hello, 18) < 0 || get64(hello) != 0x4e42444d41474943ull)
		return -1;
	put32(b, 1);
	return full_write(fd, b, 4);
}

static int client_opt_go(int fd, const char *name, uint64_t *size, uint16_t *flags)
{
	uint8_t b[64];
	uint32_t nl = (uint32_t)strlen(name);
	uint64_t magic = htobe64(0x49484156454F5054ull);
	memcpy(b, &magic, 8);
	put32(b + 8, 7);
	put32(b + 12, 4 + nl + 2);
	put32(b + 16, nl);
	memcpy(b + 20, name, nl);
	memset(b + 20 + nl, 0, 2);
	if (full_write(fd, b, 22 + nl) < 0)
		return -1;
	for (;;) {
		uint8_t rh[20], data[256];
		uint32_t type, len;
		if (rd(fd, rh, 20) < 0)
			return -1;
		type = get32(rh + 12);
		len = get32(rh + 16);
		if (len > sizeof(data) || rd(fd, data, len) < 0)
			return -1;
		if (type == 1)
			return 0;
		if (type != 3)
			return -(int)(type & 0xff) - 1;
		if (len >= 12 && data[0] == 0 && data[1] == 0) {
			*size = get64(data + 2);
			*flags = (uint16_t)((data[10] << 8) | data[11]);
		}
	}
}

static int client_go(int fd, const char *name, uint64_t *size, uint16_t *flags)
{
	if (client_hello(fd) < 0)
		return -1;
	return client_opt_go(fd, name, size, flags);
}

static int send_req(int fd, uint16_t type, uint64_t cookie, uint64_t off, uint32_t len, const void *payload)
{
	uint8_t h[28];
	uint64_t v;
	put32(h, 0x25609513);
	h[4] = h[5] = 0;
	h[6] = (uint8_t)(type >> 8);
	h[7] = (uint8_t)type;
	v = htobe64(cookie);
	memcpy(h + 8, &v, 8);
	v = htobe64(off);
	memcpy(h + 16, &v, 8);
	put32(h + 24, len);
	if (full_write(fd, h, 28) < 0)
		return -1;
	return payload && len ? full_write(fd, payload, len) : 0;
}

static int recv_reply(int fd, uint64_t *cookie, uint32_t *err)
{
	uint8_t h[16];
	if (rd(fd, h, 16) < 0 || get32(h) != 0x67446698)
		return -1;
	*err = get32(h + 4);
	*cookie = get64(h + 8);
	return 0;
}

static struct nbd_server *pair_server(int *cfd)
{
	int sp[2];
	struct nbd_server *srv = nbd_server_new(&mem_exp);
	if (!srv || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return NULL;
	if (nbd_server_serve_fd(srv, sp[1], true) < 0)
		return NULL;
	*cfd = sp[0];
	return srv;
}

static void test_commands(void)
{
	int fd = -1;
	uint64_t size = 0, cookie;
	uint16_t flags = 0;
	uint32_t err;
	uint8_t buf[8192];
	struct nbd_stats st;
	struct nbd_server *srv = pair_server(&fd);
	CHECK(srv != NULL);
	if (!srv)
		return;
	CHECK(client_go(fd, "disk", &size, &flags) == 0);
	CHECK_EQ_U64(size, DEV_SIZE);
	CHECK_EQ_U64(flags, 1 | 4 | 8 | 32 | 64 | 256);
	memset(buf, 0xa5, sizeof(buf));
	CHECK(send_req(fd, 1, 11, 4096, 8192, buf) == 0);
	CHECK(recv_reply(fd, &cookie, &err) == 0 && cookie == 11 && err == 0);
	CHECK(disk[4096] == 0xa5 && disk[4096 + 8191] == 0xa5 && disk[4095] == 0);
	memset(buf, 0, sizeof(buf));
	CHECK(send_req(fd, 0, 12, 4000, 200, NULL) == 0);
	CHECK(recv_reply(fd, &cookie, &err) == 0 && cookie == 12 && err == 0);
	CHECK(rd(fd, buf, 200) == 0 && buf[95] == 0 && buf[96] == 0xa5);
	/* write zeroes, trim, flush */
	CHECK(send_req(fd, 6, 13, 4096, 4096, NULL) == 0);
	CHECK(recv_reply(fd, &cookie, &err) == 0 && cookie == 13 && err == 0 && disk[4096] == 0);
	CHECK(send_req(fd, 4, 14, 8192, 4096, NULL) == 0);
	CHECK(recv_reply(fd, &cookie, &err) == 0 && cookie == 14 && err == 0 && disk[8192] == 0);
	CHECK(send_req(fd, 3, 15, 0, 0, NULL) == 0);
	CHECK(recv_reply(fd, &cookie, &err) == 0 && cookie == 15 && err == 0 && flushes >= 1);
	/* errors: device error, past the end, unknown command */
	CHECK(send_req(fd, 1, 16, 4096 * 200, 512, buf) == 0);
	CHECK(recv_reply(fd, &cookie, &err) == 0 && cookie == 16 && err == 5);
	CHECK(send_req(fd, 0, 17, DEV_SIZE - 10, 20, NULL) == 0);
	CHECK(recv_reply(fd, &cookie, &err) == 0 && cookie == 17 && err == 22);
	CHECK(send_req(fd, 1, 18, DEV_SIZE, 16, buf) == 0);
	CHECK(recv_reply(fd, &cookie, &err) == 0 && cookie == 18 && err == 28);
	CHECK(send_req(fd, 42, 19, 0, 0, NULL) == 0);
	CHECK(recv_reply(fd, &cookie, &err) == 0 && cookie == 19 && err == 22);
	/* pipelining: 100 reads in flight, every cookie answered once */
	{
		static uint8_t seen[100];
		bool ok = true;
		memset(seen, 0, sizeof(seen));
		for (int i = 0; i < 100; i++)
			ok &= send_req(fd, 0, 1000 + (uint64_t)i, (uint64_t)i * 4096, 4096, NULL) == 0;
		for (int i = 0; i < 100 && ok; i++) {
			ok &= recv_reply(fd, &cookie, &err) == 0 && err == 0 && cookie >= 1000 && cookie < 1100;
			ok &= rd(fd, buf, 4096) == 0;
			if (ok)
				seen[cookie - 1000]++;
		}
		for (int i = 0; ok && i < 100; i++)
			ok &= seen[i] == 1;
		CHECK(ok);
	}
	/* DISC closes */
	CHECK(send_req(fd, 2, 20, 0, 0, NULL) == 0);
	CHECK(read(fd, buf, 1) == 0);
	close(fd);
	nbd_server_stop(srv);
	nbd_server_stats(srv, &st);
	CHECK_EQ_U64(st.connections, 1);
	CHECK_EQ_U64(st.active, 0);
	CHECK_EQ_U64(st.protocol_errors, 0);
	nbd_server_free(srv);
}

static void test_unknown_export_and_violation(void)
{
	int fd = -1;
	uint64_t size;
	uint16_t flags;
	uint8_t junk[28] = "not an nbd request at all!!";
	struct nbd_stats st;
	struct nbd_server *srv = pair_server(&fd);
	CHECK(srv != NULL);
	if (!srv)
		return;
	CHECK_EQ_U64(client_go(fd, "other", &size, &flags), (uint64_t)(-(6 + 1)));
	/* after the error reply the client may go on haggling */
	CHECK(client_opt_go(fd, "", &size, &flags) == 0); /* default export */
	CHECK(full_write(fd, junk, sizeof(junk)) == 0);
	CHECK(read(fd, junk, 1) == 0); /* closed on the violation */
	close(fd);
	nbd_server_stop(srv);
	nbd_server_stats(srv, &st);
	CHECK_EQ_U64(st.protocol_errors, 1);
	nbd_server_free(srv);
}

static void test_listen_and_stop(void)
{
	char path[] = "/tmp/test_nbd.XXXXXX";
	char sock[64];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct nbd_server *srv = nbd_server_new(&mem_exp);
	int fds[3];
	uint64_t size;
	uint16_t flags;
	CHECK(mkdtemp(path) != NULL);
	snprintf(sock, sizeof(sock), "%s/s", path);
	CHECK(srv && nbd_server_listen_unix(srv, sock) == 0 && nbd_server_start(srv) == 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	for (int i = 0; i < 3; i++) {
		fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		CHECK(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) == 0);
	}
	CHECK(client_go(fds[0], "disk", &size, &flags) == 0); /* one in transmission */
	CHECK(client_go(fds[1], "disk", &size, &flags) == 0);
	/* fds[2] stays in the handshake; stop must not wait for any of them */
	nbd_server_stop(srv);
	CHECK(access(sock, F_OK) < 0);
	for (int i = 0; i < 3; i++) {
		uint8_t b[64];
		ssize_t n;
		while ((n = read(fds[i], b, sizeof(b))) > 0)
			;
		CHECK(n == 0 || errno == ECONNRESET);
		close(fds[i]);
	}
	nbd_server_free(srv);
	rmdir(path);
}

/* ---- spliced READ replies: a device that maps to a file and zeros ---- */

static int file_fd = -1;

static int f_map(void *o, uint64_t off, uint64_t len, struct nbd_extent *ext, int max)
{
	/* the first half of the device is the file, the second half zeros; 4 extents max */
	int n = 0;
	(void)o;
	while (len > 0 && n < max) {
		uint64_t half = DEV_SIZE / 2;
		uint64_t k = off < half ? MIN(len, half - off) : len;
		ext[n++] = (struct nbd_extent){ .fd = off < half ? file_fd : -1, .offset = off, .length = k };
		off += k;
		len -= k;
	}
	return len ? 0 : n;
}

static int f_read(void *o, void *buf, size_t len, uint64_t off)
{
	(void)o;
	memset(buf, 0, len);
	if (off < DEV_SIZE / 2)
		return full_pread(file_fd, buf, MIN(len, DEV_SIZE / 2 - off), off);
	return 0;
}

static void test_spliced_reads(void)
{
	static const struct nbd_dev_ops fops = { .read = f_read, .map = f_map };
	const struct nbd_export fexp = { .name = "", .size = DEV_SIZE, .ops = &fops, .read_only = true };
	char path[] = "/tmp/test_nbd_file.XXXXXX";
	static uint8_t content[DEV_SIZE / 2], got[DEV_SIZE];
	int sp[2], fd;
	uint64_t size, cookie;
	uint16_t flags;
	uint32_t err;
	struct nbd_server *srv;
	file_fd = mkstemp(path);
	CHECK(file_fd >= 0);
	unlink(path);
	for (size_t i = 0; i < sizeof(content); i++)
		content[i] = (uint8_t)(i * 13 + i / 4096);
	CHECK(full_pwrite(file_fd, content, sizeof(content), 0) == 0);
	srv = nbd_server_new(&fexp);
	CHECK(srv && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0 &&
	      nbd_server_serve_fd(srv, sp[1], true) == 0);
	fd = sp[0];
	CHECK(client_go(fd, "", &size, &flags) == 0);
	CHECK(flags & 2); /* read-only */
	/* whole device in 256 KiB reads (spliced: file extents and zero extents) */
	for (uint64_t off = 0; off < DEV_SIZE; off += 256 << 10) {
		CHECK(send_req(fd, 0, off, off, 256 << 10, NULL) == 0);
		CHECK(recv_reply(fd, &cookie, &err) == 0 && cookie == off && err == 0);
		CHECK(rd(fd, got + off, 256 << 10) == 0);
	}
	CHECK(memcmp(got, content, sizeof(content)) == 0);
	CHECK(got[DEV_SIZE / 2] == 0 && got[DEV_SIZE - 1] == 0);
	/* a read across the file/zeros boundary, and a small (copied) one */
	memset(got, 0xff, sizeof(got));
	CHECK(send_req(fd, 0, 1, DEV_SIZE / 2 - 4096, 128 << 10, NULL) == 0);
	CHECK(recv_reply(fd, &cookie, &err) == 0 && err == 0 && rd(fd, got, 128 << 10) == 0);
	CHECK(memcmp(got, content + DEV_SIZE / 2 - 4096, 4096) == 0 && got[4096] == 0 && got[(128 << 10) - 1] == 0);
	CHECK(send_req(fd, 0, 2, 100, 1000, NULL) == 0);
	CHECK(recv_reply(fd, &cookie, &err) == 0 && err == 0 && rd(fd, got, 1000) == 0);
	CHECK(memcmp(got, content + 100, 1000) == 0);
	/* the file shrank under us: the spliced reply cannot be completed -> connection closed */
	CHECK(ftruncate(file_fd, 4096) == 0);
	CHECK(send_req(fd, 0, 3, 0, 256 << 10, NULL) == 0);
	{
		uint8_t tmp[4096];
		ssize_t n, total = 0;
		while ((n = read(fd, tmp, sizeof(tmp))) > 0)
			total += n;
		CHECK(total < 16 + (256 << 10));
	}
	close(fd);
	nbd_server_free(srv);
	close(file_fd);
}

/* ---- buffer-driven engine ---- */

struct membuf {
	const uint8_t *p;
	size_t len, pos;
	size_t written;
};
static int mb_read(void *o, void *buf, size_t len)
{
	struct membuf *m = o;
	if (m->len - m->pos < len)
		return -1;
	memcpy(buf, m->p + m->pos, len);
	m->pos += len;
	return 0;
}
static int mb_writev(void *o, const struct iovec *iov, int n)
{
	struct membuf *m = o;
	for (int i = 0; i < n; i++)
		m->written += iov[i].iov_len;
	return 0;
}

static void test_stream_engine(void)
{
	/* flags, OPT_ABORT: clean end */
	uint8_t abort_msg[] = { 0, 0, 0, 1, 'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 2, 0, 0, 0, 0 };
	struct membuf m = { abort_msg, sizeof(abort_msg), 0, 0 };
	struct nbd_stream s = { mb_read, mb_writev, &m };
	CHECK(nbd_conn_run_stream(&mem_exp, &s, true) == 0);
	CHECK_EQ_U64(m.written, 18 + 20);
	/* truncated input: an error, no crash */
	m = (struct membuf){ abort_msg, 10, 0, 0 };
	CHECK(nbd_conn_run_stream(&mem_exp, &s, true) == -1);
	/* transmission phase straight away (kernel socketpairs): DISC ends cleanly */
	{
		uint8_t disc[28] = { 0x25, 0x60, 0x95, 0x13, 0, 0, 0, 2 };
		m = (struct membuf){ disc, sizeof(disc), 0, 0 };
		CHECK(nbd_conn_run_stream(&mem_exp, &s, false) == 0);
	}
}

/* ---- netlink ---- */

struct nl_seen {
	uint32_t index, nsocks, fds[8];
	uint64_t size, bs, timeout, dead, sflags, cflags;
	bool has_index, has_client_flags;
};

static int sock_item_cb(const struct nlattr *a, void *data)
{
	struct nl_seen *s = data;
	if (mnl_attr_get_type(a) == NBD_SOCK_ITEM) {
		struct nlattr *in;
		mnl_attr_for_each_nested(in, a) {
			if (mnl_attr_get_type(in) == NBD_SOCK_FD && mnl_attr_get_payload_len(in) == 4 && s->nsocks < 8)
				s->fds[s->nsocks++] = mnl_attr_get_u32(in);
		}
	}
	return MNL_CB_OK;
}

static int nbd_attr_cb(const struct nlattr *a, void *data)
{
	struct nl_seen *s = data;
	uint16_t len = mnl_attr_get_payload_len(a);
	switch (mnl_attr_get_type(a)) {
	case NBD_ATTR_INDEX:
		s->has_index = len == 4;
		s->index = mnl_attr_get_u32(a);
		break;
	case NBD_ATTR_SIZE_BYTES:
		s->size = len == 8 ? mnl_attr_get_u64(a) : 0;
		break;
	case NBD_ATTR_BLOCK_SIZE_BYTES:
		s->bs = len == 8 ? mnl_attr_get_u64(a) : 0;
		break;
	case NBD_ATTR_TIMEOUT:
		s->timeout = len == 8 ? mnl_attr_get_u64(a) : 0;
		break;
	case NBD_ATTR_DEAD_CONN_TIMEOUT:
		s->dead = len == 8 ? mnl_attr_get_u64(a) : 0;
		break;
	case NBD_ATTR_SERVER_FLAGS:
		s->sflags = len == 8 ? mnl_attr_get_u64(a) : ~0ull;
		break;
	case NBD_ATTR_CLIENT_FLAGS:
		s->has_client_flags = len == 8;
		s->cflags = mnl_attr_get_u64(a);
		break;
	case NBD_ATTR_SOCKETS:
		mnl_attr_parse_nested(a, sock_item_cb, s);
		break;
	}
	return MNL_CB_OK;
}

static void test_netlink_messages(void)
{
	static uint8_t buf[NBD_NL_BUF];
	int fds[3] = { 7, 8, 42 };
	struct nbd_kernel_config cfg = { .index = 3, .size = 1ull << 30, .block_size = 4096,
					  .timeout_s = 30, .dead_conn_timeout_s = 30,
					  .server_flags = 0x101, .fds = fds, .nfds = 3 };
	struct nl_seen s = { 0 };
	struct nlmsghdr *nlh = (struct nlmsghdr *)buf;
	struct genlmsghdr *g;
	int len = nbd_nl_build_connect(buf, sizeof(buf), 0x1234, 77, &cfg);
	CHECK(len > 0 && (uint32_t)len == nlh->nlmsg_len);
	CHECK_EQ_U64(nlh->nlmsg_type, 0x1234);
	CHECK_EQ_U64(nlh->nlmsg_seq, 77);
	CHECK(nlh->nlmsg_flags == (NLM_F_REQUEST | NLM_F_ACK));
	g = mnl_nlmsg_get_payload(nlh);
	CHECK_EQ_U64(g->cmd, NBD_CMD_CONNECT);
	CHECK_EQ_U64(g->version, NBD_GENL_VERSION);
	CHECK(mnl_attr_parse(nlh, sizeof(*g), nbd_attr_cb, &s) == MNL_CB_OK);
	CHECK(s.has_index && s.index == 3);
	CHECK_EQ_U64(s.size, 1ull << 30);
	CHECK_EQ_U64(s.bs, 4096);
	CHECK_EQ_U64(s.timeout, 30);
	CHECK_EQ_U64(s.dead, 30);
	CHECK_EQ_U64(s.sflags, 0x101);
	CHECK(s.has_client_flags && s.cflags == 0);
	CHECK_EQ_U64(s.nsocks, 3);
	CHECK(s.fds[0] == 7 && s.fds[1] == 8 && s.fds[2] == 42);
	/* exact size: header 16 + genl 4 + 7 scalar attrs (1 u32 = 8, 6 u64 = 12 each)
	 * + sockets nest 4 + 3 items x (nest 4 + u32 8) */
	CHECK_EQ_U64(len, 16 + 4 + 8 + 6 * 12 + 4 + 3 * 12);
	/* no index: the kernel picks one */
	cfg.index = -1;
	memset(&s, 0, sizeof(s));
	len = nbd_nl_build_connect(buf, sizeof(buf), 0x1234, 78, &cfg);
	CHECK(len > 0 && mnl_attr_parse(nlh, sizeof(*g), nbd_attr_cb, &s) == MNL_CB_OK && !s.has_index);
	/* too small a buffer is an error, not an overflow */
	CHECK(nbd_nl_build_connect(buf, 64, 0x1234, 79, &cfg) < 0);
	/* STATUS and DISCONNECT carry the index */
	memset(&s, 0, sizeof(s));
	len = nbd_nl_build_status(buf, sizeof(buf), 0x1234, 80, 5);
	g = mnl_nlmsg_get_payload(nlh);
	CHECK(len == 16 + 4 + 8 && g->cmd == NBD_CMD_STATUS);
	CHECK(mnl_attr_parse(nlh, sizeof(*g), nbd_attr_cb, &s) == MNL_CB_OK && s.has_index && s.index == 5);
	len = nbd_nl_build_disconnect(buf, sizeof(buf), 0x1234, 81, 5);
	CHECK(len == 16 + 4 + 8 && g->cmd == NBD_CMD_DISCONNECT);
	/* GETFAMILY asks the controller for "nbd" */
	len = nbd_nl_build_getfamily(buf, sizeof(buf), 82, "nbd");
	g = mnl_nlmsg_get_payload(nlh);
	CHECK(len > 0 && nlh->nlmsg_type == GENL_ID_CTRL && g->cmd == CTRL_CMD_GETFAMILY);
	{
		struct nlattr *a = (struct nlattr *)((char *)g + MNL_ALIGN(sizeof(*g)));
		CHECK(mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_NAME && !strcmp(mnl_attr_get_str(a), "nbd"));
	}
}

static void test_netlink_round_trip(void)
{
	/* the same GETFAMILY request the attach path sends, answered by the real kernel */
	uint16_t id = 0;
	bool connected;
	if (nbd_nl_family_id("nlctrl", &id) < 0)
		SKIP("no generic netlink here: %s", err_msg());
	CHECK_EQ_U64(id, GENL_ID_CTRL);
	CHECK(nbd_nl_family_id("no-such-family-xyz", &id) < 0 && errno == ENOENT);
	if (!nbd_kernel_available()) {
		/* without the module the status query fails cleanly, naming the cause */
		CHECK(nbd_kernel_status(0, &connected) < 0 && errno == ENOENT);
		CHECK(strstr(err_msg(), "nbd module") != NULL);
	}
}

static void test_kernel_attach(void)
{
	struct nbd_server *srv;
	int index = -1;
	bool connected = false;
	if (!nbd_kernel_available())
		SKIP("no nbd kernel module (/sys/module/nbd is missing; modules cannot be loaded here)");
	srv = nbd_server_new(&mem_exp);
	CHECK(srv && nbd_kernel_attach(srv, DEV_SIZE, 4096, 2, &index) == 0);
	CHECK(nbd_kernel_status(index, &connected) == 0 && connected);
	CHECK(nbd_kernel_detach(index) == 0);
	nbd_server_free(srv);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	RUN(test_commands);
	RUN(test_unknown_export_and_violation);
	RUN(test_listen_and_stop);
	RUN(test_spliced_reads);
	RUN(test_stream_engine);
	RUN(test_netlink_messages);
	RUN(test_netlink_round_trip);
	RUN(test_kernel_attach);
	TEST_EXIT();
}
