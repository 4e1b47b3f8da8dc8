/*
 * rtnl.c - the few rtnetlink requests a slot needs (libmnl), tap creation, named network
 * namespaces (the /run/netns convention of iproute2, so `ip netns` sees ours) and running
 * nft inside a namespace.
 *
 * Every request asks for an ACK and waits for it, so errors come back as errno values.
 * Namespace work happens on a fresh thread that calls setns()/unshare() and then exits:
 * the caller's threads never change namespace. Threading: no shared state.
 */
#include <arpa/inet.h>
#include <net/if.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <libmnl/libmnl.h>

#include "common/common.h"
#include "network/internal.h"
#include "network/network.h"

int rtnl_open(struct rtnl *r)
{
	r->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!r->nl)
		return err_set_errno(errno, "rtnetlink socket");
	if (mnl_socket_bind(r->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int e = errno;
		mnl_socket_close(r->nl);
		r->nl = NULL;
		return err_set_errno(e, "rtnetlink bind");
	}
	r->portid = mnl_socket_get_portid(r->nl);
	r->seq = (unsigned)now_ns();
	return 0;
}

void rtnl_close(struct rtnl *r)
{
	if (r->nl)
		mnl_socket_close(r->nl);
	r->nl = NULL;
}

/* Send and wait for the ACK; -1 with errno (err not set: callers word it). */
static int rtnl_talk(struct rtnl *r, struct nlmsghdr *nlh)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	ssize_t n;
	int ret;

	nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = ++r->seq;
	if (mnl_socket_sendto(r->nl, nlh, nlh->nlmsg_len) < 0)
		return -1;
	for (;;) {
		n = mnl_socket_recvfrom(r->nl, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		ret = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, r->portid, NULL, NULL);
		if (ret <= MNL_CB_STOP)
			return ret < 0 ? -1 : 0;
	}
}

int rtnl_ifindex(const char *name)
{
	return (int)if_nametoindex(name);
}

int rtnl_link_up(struct rtnl *r, int ifindex)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;

	nlh->nlmsg_type = RTM_NEWLINK;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = ifindex;
	ifm->ifi_flags = IFF_UP;
	ifm->ifi_change = IFF_UP;
	if (rtnl_talk(r, nlh) < 0)
		return err_set_errno(errno, "cannot bring up interface %d", ifindex);
	return 0;
}

int rtnl_link_set_mac(struct rtnl *r, int ifindex, const uint8_t mac[6])
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;

	nlh->nlmsg_type = RTM_NEWLINK;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = ifindex;
	mnl_attr_put(nlh, IFLA_ADDRESS, 6, mac);
	if (rtnl_talk(r, nlh) < 0)
		return err_set_errno(errno, "cannot set the MAC address of interface %d", ifindex);
	return 0;
}

int rtnl_veth_add(struct rtnl *r, const char *name, const char *peer_name, int peer_nsfd)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm, *pifm;
	struct nlattr *linkinfo, *data, *peer;

	nlh->nlmsg_type = RTM_NEWLINK;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	pifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*pifm));
	pifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer_name);
	mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)peer_nsfd);
	mnl_attr_nest_end(nlh, peer);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, linkinfo);
	if (rtnl_talk(r, nlh) < 0)
		return err_set_errno(errno, "cannot create veth pair %s/%s", name, peer_name);
	return 0;
}

int rtnl_link_del(struct rtnl *r, const char *name)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifinfomsg *ifm;

	nlh->nlmsg_type = RTM_DELLINK;
	ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	if (rtnl_talk(r, nlh) < 0) {
		if (errno == ENODEV)
			return 0;
		return err_set_errno(errno, "cannot delete interface %s", name);
	}
	return 0;
}

int rtnl_addr_add(struct rtnl *r, int ifindex, uint32_t ip, int prefix)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct ifaddrmsg *ifa;
	uint32_t be = htonl(ip);

	nlh->nlmsg_type = RTM_NEWADDR;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)ifindex;
	mnl_attr_put_u32(nlh, IFA_LOCAL, be);
	mnl_attr_put_u32(nlh, IFA_ADDRESS, be);
	if (rtnl_talk(r, nlh) < 0) {
		char s[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &be, s, sizeof(s));
		return err_set_errno(errno, "cannot add address %s/%d to interface %d", s, prefix, ifindex);
	}
	return 0;
}

int rtnl_route_add(struct rtnl *r, uint32_t dst, int prefix, uint32_t gw, int oif)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct rtmsg *rtm;

	nlh->nlmsg_type = RTM_NEWROUTE;
	nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = (unsigned char)prefix;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
	rtm->rtm_type = RTN_UNICAST;
	if (prefix)
		mnl_attr_put_u32(nlh, RTA_DST, htonl(dst));
	if (gw)
		mnl_attr_put_u32(nlh, RTA_GATEWAY, htonl(gw));
	if (oif)
		mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)oif);
	if (rtnl_talk(r, nlh) < 0)
		return err_set_errno(errno, "cannot add route %u.%u.%u.%u/%d", dst >> 24, (dst >> 16) & 255,
				     (dst >> 8) & 255, dst & 255, prefix);
	return 0;
}

int tap_create(const char *name)
{
	struct ifreq ifr;
	_cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return err_set_errno(errno, "cannot open /dev/net/tun");
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return err_set_errno(errno, "cannot create tap %s", name);
	if (ioctl(fd, TUNSETPERSIST, 1) < 0)
		return err_set_errno(errno, "cannot make tap %s persistent", name);
	return 0;
}

struct ns_job {
	int nsfd;
	const char *new_path;
	int (*fn)(void *);
	void *arg;
	int ret;
	char err[ERR_MSG_MAX];
};

static void *ns_thread(void *opaque)
{
	struct ns_job *j = opaque;
	j->ret = -1;
	if (j->new_path) {
		/* a new namespace for this thread, made persistent by a bind mount of its nsfs file */
		if (unshare(CLONE_NEWNET) < 0) {
			err_set_errno(errno, "unshare(CLONE_NEWNET)");
			goto out;
		}
		if (mount("/proc/thread-self/ns/net", j->new_path, "none", MS_BIND, NULL) < 0) {
			err_set_errno(errno, "cannot bind the namespace to '%s'", j->new_path);
			goto out;
		}
	} else if (setns(j->nsfd, CLONE_NEWNET) < 0) {
		err_set_errno(errno, "setns");
		goto out;
	}
	j->ret = j->fn ? j->fn(j->arg) : 0;
out:
	if (j->ret < 0)
		snprintf(j->err, sizeof(j->err), "%s", err_msg());
	return NULL;
}

static int ns_job_run(struct ns_job *j)
{
	pthread_t t;
	int e = pthread_create(&t, NULL, ns_thread, j);
	if (e)
		return err_set_errno(e, "cannot start a namespace thread");
	pthread_join(t, NULL);
	if (j->ret < 0)
		return err_set("%s", j->err);
	return 0;
}

int ns_run(int nsfd, int (*fn)(void *arg), void *arg)
{
	struct ns_job j = { .nsfd = nsfd, .fn = fn, .arg = arg };
	return ns_job_run(&j);
}

int ns_create(const char *path)
{
	struct ns_job j = { .nsfd = -1, .new_path = path };
	int fd;

	if (mkdir_p(NET_NETNS_DIR, 0755) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0)
		return err_set_errno(errno, "cannot create '%s'", path);
	close(fd);
	if (ns_job_run(&j) < 0) {
		unlink(path);
		return -1;
	}
	return 0;
}

int ns_delete(const char *path)
{
	if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return err_set_errno(errno, "cannot unmount '%s'", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return err_set_errno(errno, "cannot remove '%s'", path);
	return 0;
}

int nft_run(const char *nft, int nsfd, const char *script)
{
	int in[2] = { -1, -1 }, errp[2] = { -1, -1 };
	char ebuf[512];
	size_t elen = 0;
	int status;
	pid_t pid;

	/* stdin is a socket so that writing to an nft that died early gives EPIPE, not SIGPIPE */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		err_set_errno(errno, "pipe");
		goto fail;
	}
	char *argv[] = { (char *)nft, "-f", "-", NULL };
	pid = fork();
	if (pid < 0) {
		err_set_errno(errno, "fork");
		goto fail;
	}
	if (pid == 0) {
		if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0)
			_exit(126);
		if (dup2(in[0], 0) < 0 || dup2(errp[1], 1) < 0 || dup2(errp[1], 2) < 0)
			_exit(126);
		syscall(SYS_close_range, 3, ~0u, 0);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execvp(nft, argv);
		_exit(127);
	}
	close(in[0]);
	close(errp[1]);
	in[0] = errp[1] = -1;
	int wr = 0, werr = 0;
	for (size_t off = 0, len = strlen(script); off < len;) {
		ssize_t n = send(in[1], script + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			wr = -1;
			werr = errno;
			break;
		}
		off += (size_t)n;
	}
	close(in[1]);
	in[1] = -1;
	for (;;) {
		ssize_t n = read(errp[0], ebuf + elen, sizeof(ebuf) - 1 - elen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		elen += (size_t)n;
		if (elen == sizeof(ebuf) - 1) { /* drain the rest */
			char sink[512];
			while (read(errp[0], sink, sizeof(sink)) > 0)
				;
			break;
		}
	}
	ebuf[elen] = '\0';
	close(errp[0]);
	errp[0] = -1;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && wr == 0)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
		return err_set("cannot run '%s' (install nftables)", nft);
	ebuf[strcspn(ebuf, "\n")] = '\0';
	if (wr < 0 && !ebuf[0])
		return err_set_errno(werr, "nft: writing the ruleset");
	return err_set("nft: %s", ebuf[0] ? ebuf : "failed");
fail:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	return -1;
}
