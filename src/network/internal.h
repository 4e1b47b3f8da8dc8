/*
 * internal.h - rtnetlink helpers (rtnl.c) and namespace/nft helpers shared by slot.c.
 * All rtnl_* calls act in the network namespace of the calling thread at rtnl_open().
 */
#ifndef ORCH_NETWORK_INTERNAL_H
#define ORCH_NETWORK_INTERNAL_H

#include <stdint.h>

struct mnl_socket;

struct rtnl {
	struct mnl_socket *nl;
	unsigned seq;
	unsigned portid;
};

int rtnl_open(struct rtnl *r);
void rtnl_close(struct rtnl *r);
/* 0 when name does not exist (and no error). */
int rtnl_ifindex(const char *name);
int rtnl_link_up(struct rtnl *r, int ifindex);
int rtnl_link_set_mac(struct rtnl *r, int ifindex, const uint8_t mac[6]);
/* veth pair: name here, peer named peer_name in the namespace peer_nsfd. */
int rtnl_veth_add(struct rtnl *r, const char *name, const char *peer_name, int peer_nsfd);
/* Deletes a link by name; a missing link is success. */
int rtnl_link_del(struct rtnl *r, const char *name);
/* IPv4 address ip/prefix on ifindex (host byte order). */
int rtnl_addr_add(struct rtnl *r, int ifindex, uint32_t ip, int prefix);
/* IPv4 route dst/prefix via gw (0: on-link) out of oif (0: any). dst 0, prefix 0 = default. */
int rtnl_route_add(struct rtnl *r, uint32_t dst, int prefix, uint32_t gw, int oif);

/* Persistent tap device name in the calling thread's namespace. */
int tap_create(const char *name);

/* Run fn(arg) on a new thread that has joined the namespace nsfd (or created a new one when
 * nsfd < 0 and new_ns_path names the file to bind it to). The thread's error message is
 * carried back. */
int ns_run(int nsfd, int (*fn)(void *arg), void *arg);
int ns_create(const char *path);
/* Unmount and remove a named namespace; missing is success. */
int ns_delete(const char *path);

/* Feed script to `nft -f -` running in nsfd (-1: our namespace). 0/-1 + err with nft's
 * first error line. */
int nft_run(const char *nft, int nsfd, const char *script);

#endif
