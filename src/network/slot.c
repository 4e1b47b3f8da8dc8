/*
 * slot.c - network slots: addressing, creation, removal, owner locks, stale clean-up and a
 * small pool (see network.h for the layout of a slot, docs/network.md for the why).
 *
 * Ownership protocol (CONTRACTS §6): the lock file <run_dir>/slot-<idx>.lock is created
 * (O_EXCL) and flock()ed before any resource of idx exists, and unlinked only after all of
 * them are gone, while still locked. Hence:
 *   lock held                      -> a live owner: never touched
 *   lock file present, lock free   -> leftovers of a dead owner: removed by whoever locks it
 *   no lock file but ns-<idx> or veth-<idx> exists -> foreign (not ours): idx skipped
 * After flock we check the path still names the inode we locked (a releaser may have unlinked
 * it in between) and retry otherwise. Lock fds are O_CLOEXEC so QEMU never inherits a lock.
 * Threading: acquire/release/cleanup are thread-safe (no shared state; flock arbitrates);
 * the pool's ready list is guarded by pool->lock.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "common/common.h"
#include "network/internal.h"
#include "network/network.h"

#define HOST_CIDR_DEFAULT 0x0a0b0000u /* 10.11.0.0/16 */
#define VRT_CIDR_DEFAULT 0x0a0c0000u  /* 10.12.0.0/16 */

static int parse_cidr(const char *s, uint32_t *base, unsigned *prefix)
{
	char ip[32];
	unsigned p;
	struct in_addr a;
	const char *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof(ip) || sscanf(slash + 1, "%u", &p) != 1 || p > 30)
		return err_set("invalid CIDR '%s'", s);
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	if (inet_pton(AF_INET, ip, &a) != 1)
		return err_set("invalid CIDR '%s'", s);
	*base = ntohl(a.s_addr) & (p ? ~0u << (32 - p) : 0);
	*prefix = p;
	return 0;
}

int net_config_default(struct net_config *cfg)
{
	const char *h = getenv("SANDBOXES_HOST_NETWORK_CIDR"), *v = getenv("SANDBOXES_VRT_NETWORK_CIDR");
	const char *d = getenv("ORCH_NETWORK_DIR");
	unsigned hp = 16, vp = 16;

	memset(cfg, 0, sizeof(*cfg));
	cfg->host_cidr = HOST_CIDR_DEFAULT;
	cfg->vrt_cidr = VRT_CIDR_DEFAULT;
	cfg->run_dir = d && *d ? d : NET_DEFAULT_RUN_DIR;
	if (h && *h && parse_cidr(h, &cfg->host_cidr, &hp) < 0)
		return err_prefix("SANDBOXES_HOST_NETWORK_CIDR");
	if (v && *v && parse_cidr(v, &cfg->vrt_cidr, &vp) < 0)
		return err_prefix("SANDBOXES_VRT_NETWORK_CIDR");
	/* slots = 2^(32 - vrt prefix) / 2 - 2, capped by the host range */
	uint64_t nv = (1ull << (32 - vp)) / 2 - 2, nh = (1ull << (32 - hp)) - 2;
	cfg->max_slots = (unsigned)MIN(MIN(nv, nh), (uint64_t)NET_MAX_SLOTS);
	return 0;
}

int net_slot_addrs(const struct net_config *cfg, unsigned idx, uint32_t *host_ip,
		   uint32_t *veth_ip, uint32_t *vpeer_ip)
{
	if (idx == 0 || idx > cfg->max_slots)
		return err_set("slot %u out of range [1, %u]", idx, cfg->max_slots);
	*host_ip = cfg->host_cidr + idx;
	*veth_ip = cfg->vrt_cidr + 2 * idx;
	*vpeer_ip = cfg->vrt_cidr + 2 * idx + 1;
	return 0;
}

static void fmt_ip(uint32_t ip, char out[16])
{
	snprintf(out, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

static const char *run_dir(const struct net_config *cfg)
{
	return cfg->run_dir ? cfg->run_dir : NET_DEFAULT_RUN_DIR;
}

static int slot_init(const struct net_config *cfg, unsigned idx, struct net_slot *s)
{
	uint32_t h = 0, v = 0, p = 0;
	memset(s, 0, sizeof(*s));
	s->lock_fd = -1;
	if (net_slot_addrs(cfg, idx, &h, &v, &p) < 0)
		return -1;
	s->idx = idx;
	snprintf(s->ns_name, sizeof(s->ns_name), "ns-%u", idx);
	snprintf(s->ns_path, sizeof(s->ns_path), NET_NETNS_DIR "/ns-%u", idx);
	snprintf(s->veth, sizeof(s->veth), "veth-%u", idx);
	fmt_ip(h, s->host_ip);
	fmt_ip(v, s->veth_ip);
	fmt_ip(p, s->vpeer_ip);
	s->internet = cfg->internet;
	snprintf(s->lock_path, sizeof(s->lock_path), "%s/slot-%u.lock", run_dir(cfg), idx);
	snprintf(s->nft_path, sizeof(s->nft_path), "%s", cfg->nft_path ? cfg->nft_path : "nft");
	return 0;
}

/* 1: locked by us (*fd), 0: held by someone else (or absent when !create), -1: error. */
static int lock_try(const char *path, bool create, int *fd_out, bool *existed)
{
	for (int tries = 0; tries < 100; tries++) {
		struct stat a, b;
		int fd = open(path, O_RDWR | O_CLOEXEC);
		*existed = fd >= 0;
		if (fd < 0 && errno == ENOENT && create) {
			fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			if (fd < 0 && errno == EEXIST)
				continue;
		}
		if (fd < 0) {
			if (errno == ENOENT)
				return 0;
			return err_set_errno(errno, "cannot open lock '%s'", path);
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int e = errno;
			close(fd);
			if (e == EWOULDBLOCK)
				return 0;
			return err_set_errno(e, "cannot lock '%s'", path);
		}
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
			*fd_out = fd;
			return 1;
		}
		close(fd); /* unlinked (and maybe recreated) by a releaser meanwhile */
	}
	return err_set("cannot lock '%s': it keeps changing", path);
}

struct ns_setup {
	const struct net_slot *s;
	uint32_t veth_ip, vpeer_ip;
};

static int write_sysctl(const char *path, const char *val)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || full_write(fd, val, strlen(val)) < 0)
		return err_set_errno(errno, "cannot write '%s'", path);
	return 0;
}

/* Runs inside the slot's namespace. */
static int ns_setup_fn(void *arg)
{
	struct ns_setup *n = arg;
	struct rtnl r = { 0 };
	struct in_addr tap_ip;
	int lo, eth, tap, ret = -1;

	inet_pton(AF_INET, NET_TAP_IP, &tap_ip);
	if (rtnl_open(&r) < 0)
		return -1;
	if (!(lo = rtnl_ifindex("lo")) || !(eth = rtnl_ifindex(NET_NS_PEER))) {
		err_set("namespace %s: lo or %s missing", n->s->ns_name, NET_NS_PEER);
		goto out;
	}
	if (rtnl_link_up(&r, lo) < 0 || rtnl_addr_add(&r, eth, n->vpeer_ip, 31) < 0 ||
	    rtnl_link_up(&r, eth) < 0 || tap_create(NET_TAP_NAME) < 0)
		goto out;
	if (!(tap = rtnl_ifindex(NET_TAP_NAME))) {
		err_set("tap %s vanished", NET_TAP_NAME);
		goto out;
	}
	/* the same MAC in every slot: a restored guest's ARP entry for its gateway stays valid */
	static const uint8_t tap_mac[6] = NET_TAP_MAC_BYTES;
	if (rtnl_link_set_mac(&r, tap, tap_mac) < 0 ||
	    rtnl_addr_add(&r, tap, ntohl(tap_ip.s_addr), NET_TAP_PREFIX) < 0 || rtnl_link_up(&r, tap) < 0 ||
	    rtnl_route_add(&r, 0, 0, n->veth_ip, eth) < 0 ||
	    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1\n") < 0)
		goto out;
	ret = 0;
out:
	rtnl_close(&r);
	return ret;
}

/* Remove every resource of slot idx that exists; first error wins, the rest still run. */
static int slot_teardown(const struct net_slot *s, bool host_table)
{
	struct rtnl r = { 0 };
	int ret = 0;
	char script[256];

	if (host_table) {
		snprintf(script, sizeof(script), "table ip orch-slot-%u\ndelete table ip orch-slot-%u\n", s->idx,
			 s->idx);
		if (nft_run(s->nft_path, -1, script) < 0)
			ret = -1;
	}
	if (rtnl_open(&r) == 0) {
		if (rtnl_link_del(&r, s->veth) < 0 && ret == 0)
			ret = -1;
		rtnl_close(&r);
	} else {
		ret = -1;
	}
	if (ns_delete(s->ns_path) < 0 && ret == 0)
		ret = -1;
	if (ret < 0)
		err_prefix("removing network slot %u", s->idx);
	return ret;
}

static int slot_create(const struct net_slot *s, const struct net_config *cfg)
{
	struct rtnl r = { 0 };
	_cleanup_close_ int nsfd = -1;
	struct ns_setup n = { .s = s };
	uint32_t host_ip = 0;
	char script[1024];
	int veth, ret = -1;

	if (net_slot_addrs(cfg, s->idx, &host_ip, &n.veth_ip, &n.vpeer_ip) < 0)
		return -1;
	if (ns_create(s->ns_path) < 0)
		return -1;
	if ((nsfd = open(s->ns_path, O_RDONLY | O_CLOEXEC)) < 0)
		return err_set_errno(errno, "cannot open '%s'", s->ns_path);
	if (rtnl_open(&r) < 0)
		return -1;
	if (rtnl_veth_add(&r, s->veth, NET_NS_PEER, nsfd) < 0)
		goto out;
	if (!(veth = rtnl_ifindex(s->veth))) {
		err_set("veth %s vanished", s->veth);
		goto out;
	}
	if (rtnl_addr_add(&r, veth, n.veth_ip, 31) < 0 || rtnl_link_up(&r, veth) < 0)
		goto out;
	if (ns_run(nsfd, ns_setup_fn, &n) < 0)
		goto out;
	if (rtnl_route_add(&r, host_ip, 32, n.vpeer_ip, veth) < 0)
		goto out;
	snprintf(script, sizeof(script),
		 "table ip orch-slot {\n"
		 "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;\n"
		 "    iifname \"%s\" ip daddr %s dnat to %s\n  }\n"
		 "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n"
		 "    oifname \"%s\" ip saddr %s snat to %s\n  }\n"
		 "}\n",
		 NET_NS_PEER, s->host_ip, NET_GUEST_IP, NET_NS_PEER, NET_GUEST_IP, s->host_ip);
	if (nft_run(s->nft_path, nsfd, script) < 0)
		goto out;
	if (s->internet) {
		snprintf(script, sizeof(script),
			 "table ip orch-slot-%u {\n"
			 "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n"
			 "    ip saddr %s oifname != \"%s\" masquerade\n  }\n"
			 "  chain forward { type filter hook forward priority filter; policy accept;\n"
			 "    iifname \"%s\" accept\n    oifname \"%s\" accept\n  }\n"
			 "}\n",
			 s->idx, s->host_ip, s->veth, s->veth, s->veth);
		if (nft_run(s->nft_path, -1, script) < 0 ||
		    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1\n") < 0)
			goto out;
	}
	ret = 0;
out:
	rtnl_close(&r);
	return ret;
}

static bool slot_foreign(const struct net_slot *s)
{
	return access(s->ns_path, F_OK) == 0 || rtnl_ifindex(s->veth) != 0;
}

int net_slot_acquire(const struct net_config *cfg, struct net_slot **out)
{
	struct net_slot *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return err_set_errno(ENOMEM, "network slot");
	if (mkdir_p(run_dir(cfg), 0755) < 0)
		goto err;
	for (unsigned idx = 1; idx <= cfg->max_slots; idx++) {
		bool existed;
		int fd = -1, r;
		char pid[32];
		if (slot_init(cfg, idx, s) < 0)
			goto err;
		r = lock_try(s->lock_path, true, &fd, &existed);
		if (r < 0)
			goto err;
		if (r == 0)
			continue;
		if (!existed && slot_foreign(s)) {
			unlink(s->lock_path);
			close(fd);
			continue;
		}
		if (existed && slot_teardown(s, true) < 0) {
			close(fd); /* keep the lock file: the leftovers are still ours to remove */
			continue;
		}
		s->lock_fd = fd;
		snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
		if (ftruncate(fd, 0) < 0 || full_pwrite(fd, pid, strlen(pid), 0) < 0) {
			err_set_errno(errno, "cannot write '%s'", s->lock_path);
			goto err_locked;
		}
		if (slot_create(s, cfg) < 0)
			goto err_locked;
		*out = s;
		return 0;
	}
	err_set("no free network slot (1..%u)", cfg->max_slots);
	goto err;
err_locked:
	err_prefix("network slot %u", s->idx);
	{
		char msg[ERR_MSG_MAX];
		snprintf(msg, sizeof(msg), "%s", err_msg());
		if (slot_teardown(s, s->internet) == 0)
			unlink(s->lock_path);
		close(s->lock_fd);
		err_set("%s", msg);
	}
err:
	free(s);
	return -1;
}

int net_slot_release(struct net_slot *s)
{
	int ret;
	if (!s)
		return 0;
	ret = slot_teardown(s, s->internet);
	if (ret == 0)
		unlink(s->lock_path); /* still locked: nobody can take idx before this */
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s);
	return ret;
}

int net_cleanup_stale(const struct net_config *cfg, unsigned *removed)
{
	_cleanup_free_ struct net_slot *s = calloc(1, sizeof(*s));
	DIR *d;
	struct dirent *e;
	unsigned n = 0;
	int ret = 0;

	if (removed)
		*removed = 0;
	if (!s)
		return err_set_errno(ENOMEM, "network cleanup");
	if (!(d = opendir(run_dir(cfg)))) {
		if (errno == ENOENT)
			return 0;
		return err_set_errno(errno, "cannot open '%s'", run_dir(cfg));
	}
	while ((e = readdir(d))) {
		unsigned idx;
		char tail;
		int fd = -1, r;
		bool existed;
		if (sscanf(e->d_name, "slot-%u.lock%c", &idx, &tail) != 1)
			continue;
		if (slot_init(cfg, idx, s) < 0)
			continue; /* out of this config's range: not ours to judge */
		r = lock_try(s->lock_path, false, &fd, &existed);
		if (r <= 0) {
			if (r < 0)
				ret = -1;
			continue;
		}
		if (slot_teardown(s, true) == 0) {
			unlink(s->lock_path);
			n++;
		} else {
			ret = -1;
		}
		close(fd);
	}
	closedir(d);
	if (removed)
		*removed = n;
	return ret;
}

struct net_pool {
	pthread_mutex_t lock; /* guards ready/nready */
	struct net_config cfg;
	struct net_slot **ready;
	unsigned nready, prefill;
};

struct net_pool *net_pool_new(const struct net_config *cfg, unsigned prefill)
{
	struct net_pool *p = calloc(1, sizeof(*p));
	if (!p || !(p->ready = calloc(prefill ? prefill : 1, sizeof(*p->ready)))) {
		free(p);
		err_set_errno(ENOMEM, "network pool");
		return NULL;
	}
	pthread_mutex_init(&p->lock, NULL);
	p->cfg = *cfg;
	p->prefill = prefill;
	return p;
}

int net_pool_fill(struct net_pool *p)
{
	for (;;) {
		struct net_slot *s;
		pthread_mutex_lock(&p->lock);
		bool full = p->nready >= p->prefill;
		pthread_mutex_unlock(&p->lock);
		if (full)
			return 0;
		if (net_slot_acquire(&p->cfg, &s) < 0)
			return -1;
		pthread_mutex_lock(&p->lock);
		if (p->nready < p->prefill) {
			p->ready[p->nready++] = s;
			s = NULL;
		}
		pthread_mutex_unlock(&p->lock);
		if (s)
			net_slot_release(s);
	}
}

int net_pool_get(struct net_pool *p, struct net_slot **out)
{
	pthread_mutex_lock(&p->lock);
	*out = p->nready ? p->ready[--p->nready] : NULL;
	pthread_mutex_unlock(&p->lock);
	return *out ? 0 : net_slot_acquire(&p->cfg, out);
}

int net_pool_put(struct net_pool *p, struct net_slot *slot)
{
	(void)p;
	/* a used slot carries the guest's conntrack state: never handed out again */
	return net_slot_release(slot);
}

int net_pool_free(struct net_pool *p)
{
	int ret = 0;
	if (!p)
		return 0;
	for (unsigned i = 0; i < p->nready; i++)
		if (net_slot_release(p->ready[i]) < 0)
			ret = -1;
	pthread_mutex_destroy(&p->lock);
	free(p->ready);
	free(p);
	return ret;
}
