/*
 * network.h - per-sandbox network slots (reference spec §8.1-8.2, docs/network.md).
 *
 * Slot idx (1 .. NET_MAX_SLOTS) owns:
 *   - namespace ns-<idx> (/run/netns/ns-<idx>)
 *   - veth pair: veth-<idx> on the host with vethIP/31, eth0 in the namespace with vpeerIP/31
 *     (vethIP = VRT + 2*idx, vpeerIP = VRT + 2*idx + 1; VRT default 10.12.0.0/16)
 *   - host route hostIP/32 via vpeerIP (hostIP = HOST + idx; HOST default 10.11.0.0/16)
 *   - tap0 169.254.0.22/30 (MAC NET_TAP_MAC) in the namespace (guest 169.254.0.21, identical in every slot so
 *     snapshots stay portable), default route via vethIP, forwarding on
 *   - nftables table `ip orch-slot` in the namespace: DNAT hostIP -> 169.254.0.21 arriving on
 *     eth0, SNAT 169.254.0.21 -> hostIP leaving on eth0; so the host reaches the guest's envd
 *     at hostIP:49983
 *   - with internet access: table `ip orch-slot-<idx>` on the host (masquerade hostIP/32 and
 *     forward accept for veth-<idx>) and net.ipv4.ip_forward=1 on the host
 * Ownership (CONTRACTS §6): <run_dir>/slot-<idx>.lock, held with flock by the owning process
 * for the slot's whole life and created before any resource. A lock file whose lock is free
 * marks a dead owner's leftovers: net_cleanup_stale() (and net_slot_acquire() when it meets
 * one) removes them. Names of a slot without a lock file (foreign) are never touched.
 * Threading: functions are thread-safe (namespace work runs on short-lived threads that
 * setns(); the caller's thread never changes namespace). A struct net_slot is owned by one
 * thread at a time.
 */
#ifndef ORCH_NETWORK_H
#define ORCH_NETWORK_H

#include <stdbool.h>
#include <stdint.h>

#define NET_TAP_NAME "tap0"
#define NET_TAP_IP "169.254.0.22"
#define NET_GUEST_IP "169.254.0.21"
#define NET_TAP_PREFIX 30
/* tap0's MAC, fixed like the guest's (02:fc:00:00:00:05) so snapshots move between slots */
#define NET_TAP_MAC "02:fc:00:00:00:06"
#define NET_TAP_MAC_BYTES { 0x02, 0xfc, 0x00, 0x00, 0x00, 0x06 }
#define NET_NS_PEER "eth0"
#define NET_ENVD_PORT 49983
#define NET_NETNS_DIR "/run/netns"
#define NET_DEFAULT_RUN_DIR "/run/orch/network"
#define NET_MAX_SLOTS 32766u

struct net_config {
	const char *run_dir;   /* lock files; NULL: $ORCH_NETWORK_DIR, else NET_DEFAULT_RUN_DIR */
	uint32_t host_cidr;    /* host byte order base of the hostIP range (10.11.0.0) */
	uint32_t vrt_cidr;     /* base of the veth /31 range (10.12.0.0) */
	unsigned max_slots;    /* highest idx tried */
	bool internet;         /* outbound NAT through the host (host nft table + ip_forward) */
	const char *nft_path;  /* NULL: "nft" from PATH */
};

/* Defaults, then env SANDBOXES_HOST_NETWORK_CIDR / SANDBOXES_VRT_NETWORK_CIDR (a.b.c.d/n) and
 * ORCH_NETWORK_DIR. 0/-1 + err (bad env value). */
int net_config_default(struct net_config *cfg);

struct net_slot {
	unsigned idx;
	char ns_name[32];  /* ns-<idx> */
	char ns_path[64];  /* /run/netns/ns-<idx> (for vmm_config.netns_path) */
	char veth[16];     /* veth-<idx> */
	char host_ip[16];  /* where the host reaches the guest: hostIP (dotted) */
	char veth_ip[16];
	char vpeer_ip[16];
	bool internet;
	/* private */
	int lock_fd;
	char lock_path[256];
	char nft_path[256];
};

/* Take the lowest free idx, create everything, return the slot (free with net_slot_release).
 * 0/-1 + err (nothing left behind on failure). */
int net_slot_acquire(const struct net_config *cfg, struct net_slot **out);
/* Remove every resource of the slot, unlock, free. Continues past errors; 0 or -1 + err
 * with the first one. NULL is a no-op. */
int net_slot_release(struct net_slot *slot);
/* Remove the leftovers of slots whose owner died (lock file present, lock free). *removed
 * (optional) = slots cleaned. Never touches a slot whose lock is held. 0/-1 + err. */
int net_cleanup_stale(const struct net_config *cfg, unsigned *removed);

/* Addresses of slot idx (host byte order). 0/-1 + err when idx is out of range. */
int net_slot_addrs(const struct net_config *cfg, unsigned idx, uint32_t *host_ip,
		   uint32_t *veth_ip, uint32_t *vpeer_ip);

/* A pool of pre-created slots: net_pool_get() takes one (creating it when the pool is
 * empty), net_pool_put() releases it. The pool keeps up to `prefill` ready slots, refilled
 * by net_pool_fill() (call it off the hot path). Thread-safe (mutex guards the ready list). */
struct net_pool;
struct net_pool *net_pool_new(const struct net_config *cfg, unsigned prefill);
int net_pool_fill(struct net_pool *p);
int net_pool_get(struct net_pool *p, struct net_slot **out);
int net_pool_put(struct net_pool *p, struct net_slot *slot);
/* Releases every ready slot and frees the pool. 0 or -1 + err. */
int net_pool_free(struct net_pool *p);

#endif
