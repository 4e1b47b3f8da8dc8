/*
 * test_network.c - slot addressing (reference §8.1), CIDR configuration from the environment,
 * and the owner-lock protocol of net_cleanup_stale (a held lock is never cleaned, a free one
 * is). Creating real slots is covered by tests/shell/network_slots.sh.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "common/common.h"
#include "network/network.h"
#include "test.h"

static void ip_str(uint32_t ip, char *out)
{
	sprintf(out, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

static void test_addressing(void)
{
	struct net_config c;
	uint32_t h, v, p;
	char s[16];

	unsetenv("SANDBOXES_HOST_NETWORK_CIDR");
	unsetenv("SANDBOXES_VRT_NETWORK_CIDR");
	CHECK(net_config_default(&c) == 0);
	CHECK_EQ_U64(c.max_slots, 32766);
	CHECK(net_slot_addrs(&c, 1, &h, &v, &p) == 0);
	ip_str(h, s);
	CHECK_STR(s, "10.11.0.1");
	ip_str(v, s);
	CHECK_STR(s, "10.12.0.2");
	ip_str(p, s);
	CHECK_STR(s, "10.12.0.3");
	CHECK(net_slot_addrs(&c, 300, &h, &v, &p) == 0);
	ip_str(h, s);
	CHECK_STR(s, "10.11.1.44");
	ip_str(v, s);
	CHECK_STR(s, "10.12.2.88");
	ip_str(p, s);
	CHECK_STR(s, "10.12.2.89");
	CHECK(net_slot_addrs(&c, 32766, &h, &v, &p) == 0);
	ip_str(p, s);
	CHECK_STR(s, "10.12.255.253");
	CHECK(net_slot_addrs(&c, 0, &h, &v, &p) < 0);
	CHECK(net_slot_addrs(&c, 32767, &h, &v, &p) < 0);
}

static void test_config_env(void)
{
	struct net_config c;
	setenv("SANDBOXES_HOST_NETWORK_CIDR", "192.168.100.0/24", 1);
	setenv("SANDBOXES_VRT_NETWORK_CIDR", "172.30.0.0/20", 1);
	CHECK(net_config_default(&c) == 0);
	CHECK_EQ_U64(c.host_cidr, 0xc0a86400u);
	CHECK_EQ_U64(c.vrt_cidr, 0xac1e0000u);
	CHECK_EQ_U64(c.max_slots, 254); /* host /24 caps the vrt /20's 2046 */
	setenv("SANDBOXES_VRT_NETWORK_CIDR", "172.30.0.0", 1);
	CHECK(net_config_default(&c) < 0 && strstr(err_msg(), "SANDBOXES_VRT_NETWORK_CIDR"));
	setenv("SANDBOXES_VRT_NETWORK_CIDR", "300.1.1.1/16", 1);
	CHECK(net_config_default(&c) < 0);
	unsetenv("SANDBOXES_HOST_NETWORK_CIDR");
	unsetenv("SANDBOXES_VRT_NETWORK_CIDR");
}

static void test_cleanup_respects_live_locks(void)
{
	char dir[] = "/tmp/test_network.XXXXXX", live[128], dead[128], other[128];
	struct net_config c;
	unsigned removed = 99;
	int fd;

	if (geteuid() != 0)
		SKIP("needs root (removes namespaces and links)");
	if (access("/usr/sbin/nft", X_OK) && access("/sbin/nft", X_OK) && access("/usr/bin/nft", X_OK))
		SKIP("needs nft");
	CHECK(mkdtemp(dir) != NULL);
	CHECK(net_config_default(&c) == 0);
	c.run_dir = dir;
	/* high indexes nobody uses: no resources exist, so teardown is a no-op */
	snprintf(live, sizeof(live), "%s/slot-32001.lock", dir);
	snprintf(dead, sizeof(dead), "%s/slot-32002.lock", dir);
	snprintf(other, sizeof(other), "%s/unrelated.lock", dir);
	fd = open(live, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0);
	close(open(dead, O_RDWR | O_CREAT | O_CLOEXEC, 0644));
	close(open(other, O_RDWR | O_CREAT | O_CLOEXEC, 0644));
	CHECK(net_cleanup_stale(&c, &removed) == 0);
	CHECK_EQ_U64(removed, 1);
	CHECK(access(live, F_OK) == 0);
	CHECK(access(dead, F_OK) < 0);
	CHECK(access(other, F_OK) == 0);
	close(fd);
	CHECK(net_cleanup_stale(&c, &removed) == 0);
	CHECK_EQ_U64(removed, 1);
	CHECK(access(live, F_OK) < 0);
	unlink(other);
	CHECK(rmdir(dir) == 0);
}

int main(void)
{
	RUN(test_addressing);
	RUN(test_config_env);
	RUN(test_cleanup_respects_live_locks);
	TEST_EXIT();
}
