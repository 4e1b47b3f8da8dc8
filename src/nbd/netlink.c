/*
 * netlink.c - attaching an NBD server to the kernel's nbd driver over generic netlink
 * (family "nbd", linux/nbd-netlink.h), as the reference does (spec §4.9), with libmnl.
 *
 * CONNECT carries the device index (or none: the kernel picks one and answers with it), the
 * size, block size, timeouts, server flags and the client ends of socketpairs whose server
 * ends we serve without handshake (transmission phase straight away). STATUS is polled until
 * the device reports connected; DISCONNECT tears it down. The message builders are separate
 * functions so the unit test can check every attribute without the module.
 *
 * Threading: no shared state; each call opens its own netlink socket.
 */
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "internal.h"

bool nbd_kernel_available(void)
{
	struct stat sb;
	return stat("/sys/module/nbd", &sb) == 0;
}

static struct nlmsghdr *genl_start(void *buf, size_t cap, uint16_t type, uint8_t cmd,
				   uint8_t version, uint32_t seq)
{
	struct nlmsghdr *nlh;
	struct genlmsghdr *g;
	if (cap < MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(*g)))
		return NULL;
	memset(buf, 0, MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(*g)));
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = version;
	return nlh;
}

int nbd_nl_build_getfamily(void *buf, size_t cap, uint32_t seq, const char *family)
{
	struct nlmsghdr *nlh = genl_start(buf, cap, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, seq);
	if (!nlh || !mnl_attr_put_strz_check(nlh, cap, CTRL_ATTR_FAMILY_NAME, family))
		return err_set("netlink message does not fit in %zu bytes", cap);
	return (int)nlh->nlmsg_len;
}

int nbd_nl_build_connect(void *buf, size_t cap, uint16_t family, uint32_t seq,
			 const struct nbd_kernel_config *cfg)
{
	struct nlmsghdr *nlh = genl_start(buf, cap, family, NBD_CMD_CONNECT, NBD_GENL_VERSION, seq);
	struct nlattr *socks;
	bool ok;
	if (!nlh)
		goto err;
	ok = (cfg->index < 0 || mnl_attr_put_u32_check(nlh, cap, NBD_ATTR_INDEX, (uint32_t)cfg->index)) &&
	     mnl_attr_put_u64_check(nlh, cap, NBD_ATTR_SIZE_BYTES, cfg->size) &&
	     mnl_attr_put_u64_check(nlh, cap, NBD_ATTR_BLOCK_SIZE_BYTES, cfg->block_size) &&
	     (!cfg->timeout_s || mnl_attr_put_u64_check(nlh, cap, NBD_ATTR_TIMEOUT, cfg->timeout_s)) &&
	     mnl_attr_put_u64_check(nlh, cap, NBD_ATTR_SERVER_FLAGS, cfg->server_flags) &&
	     mnl_attr_put_u64_check(nlh, cap, NBD_ATTR_CLIENT_FLAGS, 0) &&
	     (!cfg->dead_conn_timeout_s ||
	      mnl_attr_put_u64_check(nlh, cap, NBD_ATTR_DEAD_CONN_TIMEOUT, cfg->dead_conn_timeout_s));
	if (!ok || !(socks = mnl_attr_nest_start_check(nlh, cap, NBD_ATTR_SOCKETS)))
		goto err;
	for (size_t i = 0; i < cfg->nfds; i++) {
		struct nlattr *item = mnl_attr_nest_start_check(nlh, cap, NBD_SOCK_ITEM);
		if (!item || !mnl_attr_put_u32_check(nlh, cap, NBD_SOCK_FD, (uint32_t)cfg->fds[i]))
			goto err;
		mnl_attr_nest_end(nlh, item);
	}
	mnl_attr_nest_end(nlh, socks);
	return (int)nlh->nlmsg_len;
err:
	return err_set("netlink CONNECT message does not fit in %zu bytes", cap);
}

static int build_index_cmd(void *buf, size_t cap, uint16_t family, uint32_t seq, uint8_t cmd,
			   int index)
{
	struct nlmsghdr *nlh = genl_start(buf, cap, family, cmd, NBD_GENL_VERSION, seq);
	if (!nlh || (index >= 0 && !mnl_attr_put_u32_check(nlh, cap, NBD_ATTR_INDEX, (uint32_t)index)))
		return err_set("netlink message does not fit in %zu bytes", cap);
	return (int)nlh->nlmsg_len;
}

int nbd_nl_build_status(void *buf, size_t cap, uint16_t family, uint32_t seq, int index)
{
	return build_index_cmd(buf, cap, family, seq, NBD_CMD_STATUS, index);
}

int nbd_nl_build_disconnect(void *buf, size_t cap, uint16_t family, uint32_t seq, int index)
{
	return build_index_cmd(buf, cap, family, seq, NBD_CMD_DISCONNECT, index);
}

/* ---- talking to the kernel ---- */

struct nl {
	struct mnl_socket *sock;
	uint32_t portid, seq;
	uint16_t family;
};

struct reply_ctx {
	uint16_t family; /* filled by the GETFAMILY callback */
	int index;       /* NBD_ATTR_INDEX from a CONNECT reply, or status of a device */
	int want_index;
	bool connected;
};

static int attr_family_cb(const struct nlattr *a, void *data)
{
	struct reply_ctx *rc = data;
	if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID && mnl_attr_validate(a, MNL_TYPE_U16) >= 0)
		rc->family = mnl_attr_get_u16(a);
	return MNL_CB_OK;
}

static int dev_attr_cb(const struct nlattr *a, void *data)
{
	struct reply_ctx *rc = data;
	/* a device item: index + connected */
	if (mnl_attr_get_type(a) == NBD_DEVICE_ITEM) {
		struct nlattr *in;
		int idx = -1;
		bool conn = false;
		mnl_attr_for_each_nested(in, a) {
			if (mnl_attr_get_type(in) == NBD_DEVICE_INDEX)
				idx = (int)mnl_attr_get_u32(in);
			else if (mnl_attr_get_type(in) == NBD_DEVICE_CONNECTED)
				conn = mnl_attr_get_u8(in) != 0;
		}
		if (idx == rc->want_index)
			rc->connected = conn;
	}
	return MNL_CB_OK;
}

static int attr_nbd_cb(const struct nlattr *a, void *data)
{
	struct reply_ctx *rc = data;
	if (mnl_attr_get_type(a) == NBD_ATTR_INDEX && mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
		rc->index = (int)mnl_attr_get_u32(a);
	else if (mnl_attr_get_type(a) == NBD_ATTR_DEVICE_LIST)
		mnl_attr_parse_nested(a, dev_attr_cb, data);
	return MNL_CB_OK;
}

static int msg_cb(const struct nlmsghdr *nlh, void *data)
{
	struct reply_ctx *rc = data;
	if (nlh->nlmsg_type == GENL_ID_CTRL)
		mnl_attr_parse(nlh, sizeof(struct genlmsghdr), attr_family_cb, data);
	else if (rc->family && nlh->nlmsg_type == rc->family)
		mnl_attr_parse(nlh, sizeof(struct genlmsghdr), attr_nbd_cb, data);
	return MNL_CB_OK;
}

/* Send buf (len bytes) and process replies until the ACK. */
static int nl_call(struct nl *nl, void *buf, int len, struct reply_ctx *rc, const char *what)
{
	char rbuf[MNL_SOCKET_BUFFER_SIZE];
	uint32_t seq = ((struct nlmsghdr *)buf)->nlmsg_seq;
	int r;
	if (mnl_socket_sendto(nl->sock, buf, (size_t)len) < 0)
		return err_set_errno(errno, "netlink %s: cannot send", what);
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->sock, rbuf, sizeof(rbuf));
		if (n < 0)
			return err_set_errno(errno, "netlink %s: cannot receive", what);
		r = mnl_cb_run(rbuf, (size_t)n, seq, nl->portid, msg_cb, rc);
		if (r < 0)
			return err_set_errno(errno, "netlink %s failed", what);
		if (r == MNL_CB_STOP)
			return 0;
	}
}

static int nl_open_family(struct nl *nl, const char *family)
{
	char buf[NBD_NL_BUF];
	struct reply_ctx rc = { 0 };
	int len;
	memset(nl, 0, sizeof(*nl));
	nl->sock = mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC);
	if (!nl->sock)
		return err_set_errno(errno, "cannot open generic netlink socket");
	if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		mnl_socket_close(nl->sock);
		return err_set_errno(errno, "cannot bind generic netlink socket");
	}
	nl->portid = mnl_socket_get_portid(nl->sock);
	nl->seq = (uint32_t)time(NULL);
	len = nbd_nl_build_getfamily(buf, sizeof(buf), ++nl->seq, family);
	if (len < 0 || nl_call(nl, buf, len, &rc, "GETFAMILY") < 0 || !rc.family) {
		int e = errno;
		mnl_socket_close(nl->sock);
		if (len >= 0 && (e == ENOENT || !rc.family))
			return err_set_errno(ENOENT, "generic netlink family '%s' not found%s", family,
					     strcmp(family, NBD_GENL_FAMILY_NAME) ? "" : " (is the nbd module loaded?)");
		return -1;
	}
	nl->family = rc.family;
	return 0;
}

static int nl_open(struct nl *nl)
{
	return nl_open_family(nl, NBD_GENL_FAMILY_NAME);
}

int nbd_nl_family_id(const char *family, uint16_t *id)
{
	struct nl nl;
	if (nl_open_family(&nl, family) < 0)
		return -1;
	*id = nl.family;
	mnl_socket_close(nl.sock);
	return 0;
}

int nbd_kernel_status(int index, bool *connected)
{
	struct nl nl;
	char buf[NBD_NL_BUF];
	struct reply_ctx rc = { .want_index = index, .index = -1 };
	int len, r;
	if (nl_open(&nl) < 0)
		return -1;
	rc.family = nl.family;
	len = nbd_nl_build_status(buf, sizeof(buf), nl.family, ++nl.seq, index);
	r = len < 0 ? -1 : nl_call(&nl, buf, len, &rc, "STATUS");
	mnl_socket_close(nl.sock);
	*connected = rc.connected;
	return r;
}

int nbd_kernel_detach(int index)
{
	struct nl nl;
	char buf[NBD_NL_BUF];
	struct reply_ctx rc = { .index = -1 };
	int len, r;
	if (nl_open(&nl) < 0)
		return -1;
	rc.family = nl.family;
	len = nbd_nl_build_disconnect(buf, sizeof(buf), nl.family, ++nl.seq, index);
	r = len < 0 ? -1 : nl_call(&nl, buf, len, &rc, "DISCONNECT");
	mnl_socket_close(nl.sock);
	return r;
}

int nbd_kernel_attach(struct nbd_server *srv, uint64_t size, uint64_t block_size, int nconn,
		      int *index)
{
	struct nl nl;
	char buf[NBD_NL_BUF];
	int fds[16];
	struct reply_ctx rc = { .index = -1 };
	struct nbd_kernel_config cfg = {
		.index = -1, .size = size, .block_size = block_size, .timeout_s = 30,
		.dead_conn_timeout_s = 30,
		.server_flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
				NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN,
		.fds = fds,
	};
	int len, ret = -1, n = 0;
	if (!nbd_kernel_available())
		return err_set_errno(ENOENT, "the nbd kernel module is not loaded (/sys/module/nbd is missing)");
	if (nconn < 1 || nconn > 16)
		return err_set_errno(EINVAL, "between 1 and 16 connections, not %d", nconn);
	if (nl_open(&nl) < 0)
		return -1;
	for (; n < nconn; n++) {
		int sp[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
			err_set_errno(errno, "cannot create socketpair");
			goto out;
		}
		if (nbd_server_serve_fd(srv, sp[1], false) < 0) {
			close(sp[0]);
			goto out;
		}
		fds[n] = sp[0];
	}
	cfg.nfds = (size_t)n;
	rc.family = nl.family;
	len = nbd_nl_build_connect(buf, sizeof(buf), nl.family, ++nl.seq, &cfg);
	if (len < 0 || nl_call(&nl, buf, len, &rc, "CONNECT") < 0 || rc.index < 0)
		goto out;
	*index = rc.index;
	for (int tries = 0; tries < 3000; tries++) {
		bool conn = false;
		if (nbd_kernel_status(rc.index, &conn) < 0)
			goto out;
		if (conn) {
			ret = 0;
			goto out;
		}
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	err_set("nbd device %d did not report connected", rc.index);
out:
	/* the kernel holds its own references to the client ends now */
	for (int i = 0; i < n; i++)
		close(fds[i]);
	mnl_socket_close(nl.sock);
	return ret;
}
