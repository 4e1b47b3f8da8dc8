/*
 * net.c - the guest's static network setup, the part of the kernel's IP autoconfig we need:
 * lo up; eth0 gets the ip= address (RTM_NEWADDR), goes up (SIOCSIFFLAGS) and a default route
 * via the gateway (RTM_NEWROUTE) is added. Hand-written rtnetlink: two requests, each checked
 * through its NLMSG_ERROR acknowledgement. The kernel gives lo 127.0.0.1 and ::1 itself when
 * the link goes up. A gateway outside the subnet gets an on-link route (RTNH_F_ONLINK).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "init.h"

struct nl_req {
	struct nlmsghdr h;
	union {
		struct ifaddrmsg ifa;
		struct rtmsg rt;
	};
	char attrs[256];
};

static void add_attr(struct nl_req *r, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)r + NLMSG_ALIGN(r->h.nlmsg_len));

	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	memcpy(RTA_DATA(a), data, len);
	r->h.nlmsg_len = NLMSG_ALIGN(r->h.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Sends one request and waits for its acknowledgement. 0 / -1 with errno. */
static int nl_talk(struct nl_req *r)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	char buf[4096];
	int fd, err = EIO;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -1;
	r->h.nlmsg_seq = 1;
	if (sendto(fd, r, r->h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
		err = errno;
		goto out;
	}
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = errno;
			goto out;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(h);
				err = -e->error;
				goto out;
			}
		}
	}
out:
	close(fd);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

static int link_up(const char *dev)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = -1;

	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

static int addr_add(unsigned ifindex, const struct ip_config *ip)
{
	struct nl_req r;

	memset(&r, 0, sizeof(r));
	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
	r.h.nlmsg_type = RTM_NEWADDR;
	r.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
	r.ifa.ifa_family = AF_INET;
	r.ifa.ifa_prefixlen = (unsigned char)ip->prefix;
	r.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
	r.ifa.ifa_index = ifindex;
	add_attr(&r, IFA_LOCAL, &ip->addr, 4);
	add_attr(&r, IFA_ADDRESS, &ip->addr, 4);
	if (ip->prefix < 31) {
		uint32_t host = ip->prefix ? (1u << (32 - ip->prefix)) - 1 : 0xffffffffu;
		struct in_addr brd = { .s_addr = ip->addr.s_addr | htonl(host) };
		add_attr(&r, IFA_BROADCAST, &brd, 4);
	}
	return nl_talk(&r);
}

static int route_add_default(unsigned ifindex, const struct ip_config *ip)
{
	uint32_t mask = ip->prefix ? htonl(~0u << (32 - ip->prefix)) : 0;
	struct nl_req r;

	memset(&r, 0, sizeof(r));
	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
	r.h.nlmsg_type = RTM_NEWROUTE;
	r.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
	r.rt.rtm_family = AF_INET;
	r.rt.rtm_table = RT_TABLE_MAIN;
	r.rt.rtm_protocol = RTPROT_BOOT;
	r.rt.rtm_scope = RT_SCOPE_UNIVERSE;
	r.rt.rtm_type = RTN_UNICAST;
	if ((ip->gw.s_addr & mask) != (ip->addr.s_addr & mask))
		r.rt.rtm_flags |= RTNH_F_ONLINK;
	add_attr(&r, RTA_GATEWAY, &ip->gw, 4);
	add_attr(&r, RTA_OIF, &ifindex, 4);
	return nl_talk(&r);
}

int net_setup(const struct ip_config *ip)
{
	char a[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN] = "none";
	unsigned ifindex = 0;
	int rc = 0;

	if (link_up("lo") < 0) {
		say("cannot bring lo up: %s", strerror(errno));
		rc = -1;
	}
	if (!ip->set)
		return rc;
	/* virtio_net probes while its module loads, but give a slow device a moment */
	for (int i = 0; i < 500 && !(ifindex = if_nametoindex(ip->dev)); i++)
		sleep_ms(10);
	if (!ifindex) {
		say("network device %s not found", ip->dev);
		return -1;
	}
	inet_ntop(AF_INET, &ip->addr, a, sizeof(a));
	if (addr_add(ifindex, ip) < 0 && errno != EEXIST) {
		say("cannot add address %s/%d to %s: %s", a, ip->prefix, ip->dev, strerror(errno));
		return -1;
	}
	if (link_up(ip->dev) < 0) {
		say("cannot bring %s up: %s", ip->dev, strerror(errno));
		return -1;
	}
	if (ip->gw.s_addr) {
		inet_ntop(AF_INET, &ip->gw, g, sizeof(g));
		if (route_add_default(ifindex, ip) < 0 && errno != EEXIST) {
			say("cannot add default route via %s: %s", g, strerror(errno));
			rc = -1;
		}
	}
	say("%s %s/%d gateway %s", ip->dev, a, ip->prefix, g);
	return rc;
}
