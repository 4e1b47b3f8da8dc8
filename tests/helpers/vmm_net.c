/*
 * vmm_net.c - VMM + network slots end to end (tests/shell/vmm_network.sh): boots a guest in
 * slot A on tap0 (guest 169.254.0.21), talks to its listener on port 49983 from the host at
 * A's host IP (DNAT in the namespace), snapshots it, restores the snapshot in slot B and talks
 * to it at B's host IP: the same guest network config works in every slot.
 * Prints PASS/FAIL lines. Single-threaded.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "common/common.h"
#include "common/flags.h"
#include "network/network.h"
#include "vmm/vmm.h"

static int failed;
#define PASS(n) printf("PASS %s\n", n)
#define FAIL(n, ...)                                                                               \
	do {                                                                                       \
		printf("FAIL %s: ", n);                                                            \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		failed = 1;                                                                        \
	} while (0)

/* Connect to ip:port and read what the server says (until EOF); retries until deadline. */
static int ask(const char *ip, int port, double secs, char *out, size_t n)
{
	uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, ip, &sa.sin_addr);
	while (now_ns() < end) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		size_t len = 0;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
			goto retry;
		if (poll(&p, 1, 300) != 1)
			goto retry;
		int e = 0;
		socklen_t el = sizeof(e);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
		if (e)
			goto retry;
		p.events = POLLIN;
		while (len < n - 1 && poll(&p, 1, 2000) == 1) {
			ssize_t r = read(fd, out + len, n - 1 - len);
			if (r <= 0)
				break;
			len += (size_t)r;
		}
		close(fd);
		out[len] = '\0';
		if (len)
			return 0;
		usleep(20000);
		continue;
	retry:
		close(fd);
		usleep(20000);
	}
	return -1;
}

static bool wait_log(const char *path, const char *needle, double secs)
{
	uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
	while (now_ns() < end) {
		size_t len;
		char *b = read_file(path, &len);
		bool hit = b && memmem(b, len, needle, strlen(needle));
		free(b);
		if (hit)
			return true;
		usleep(50000);
	}
	return false;
}

int main(int argc, char **argv)
{
	const char *kernel = NULL, *initrd = NULL, *dir = NULL, *rootfs = NULL;
	struct flag fl[] = {
		FLAG_REQ("kernel", FLAG_STRING, &kernel, "guest kernel"),
		FLAG_REQ("initrd", FLAG_STRING, &initrd, "guest initrd (busybox + virtio_net)"),
		FLAG_REQ("dir", FLAG_STRING, &dir, "work directory (lock files in DIR/net)"),
		FLAG_DEF("rootfs", FLAG_STRING, &rootfs, "disk: image path or nbd:unix:SOCKET"),
	};
	struct flagset fs = { .prog = "vmm_net", .flags = fl, .nflags = ARRAY_SIZE(fl) };
	struct net_config nc;
	struct net_slot *a = NULL, *b = NULL;
	struct vmm_machine m;
	struct vmm_config c;
	struct vmm *vm = NULL;
	char mem[512], state[512], ser_a[512], ser_b[512], qlog[512], netdir[512], got[256];
	long n1 = -1, n2 = -1;

	flags_parse(&fs, argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(mem, sizeof(mem), "%s/mem", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(ser_a, sizeof(ser_a), "%s/serial-a.log", dir);
	snprintf(ser_b, sizeof(ser_b), "%s/serial-b.log", dir);
	snprintf(qlog, sizeof(qlog), "%s/qemu.log", dir);
	snprintf(netdir, sizeof(netdir), "%s/net", dir);
	if (net_config_default(&nc) < 0 || vmm_machine_default(&m, NULL, 1, 256) < 0)
		die_err();
	nc.run_dir = netdir;
	if (net_slot_acquire(&nc, &a) < 0 || net_slot_acquire(&nc, &b) < 0) {
		FAIL("vmm_net_slots", "%s", err_msg());
		goto out;
	}
	printf("slot A %u (%s), slot B %u (%s)\n", a->idx, a->host_ip, b->idx, b->host_ip);

	memset(&c, 0, sizeof(c));
	c.machine = m;
	c.memfile = mem;
	c.serial_log = ser_a;
	c.qemu_log = qlog;
	c.kernel = kernel;
	c.initrd = initrd;
	c.cmdline = "console=ttyS0 loglevel=1 lpj=5000000 no_timer_check panic=-1 reboot=t";
	c.tap = NET_TAP_NAME;
	c.rootfs = rootfs;
	c.netns_path = a->ns_path;
	if (vmm_boot(&c, &vm) < 0) {
		FAIL("vmm_net_boot", "%s", err_msg());
		goto out;
	}
	if (!wait_log(ser_a, "NET UP", 90)) {
		FAIL("vmm_net_boot", "guest did not bring its network up");
		goto out;
	}
	if (ask(a->host_ip, NET_ENVD_PORT, 20, got, sizeof(got)) == 0 && sscanf(got, "GUEST %ld", &n1) == 1)
		PASS("vmm_net_host_reaches_guest");
	else
		FAIL("vmm_net_host_reaches_guest", "no answer from %s:%d (got '%s')", a->host_ip, NET_ENVD_PORT, got);
	if (vmm_snapshot(vm, state) < 0) {
		FAIL("vmm_net_snapshot", "%s", err_msg());
		goto out;
	}
	vmm_quit(vm);
	vm = NULL;

	c.serial_log = ser_b;
	c.netns_path = b->ns_path;
	uint64_t t0 = now_ns();
	if (vmm_restore(&c, state, &vm) < 0) {
		FAIL("vmm_net_restore_other_slot", "%s", err_msg());
		goto out;
	}
	got[0] = '\0';
	if (ask(b->host_ip, NET_ENVD_PORT, 20, got, sizeof(got)) == 0 && sscanf(got, "GUEST %ld", &n2) == 1 && n2 >= n1) {
		PASS("vmm_net_restore_other_slot");
		printf("restore in slot B: running in %.1f ms, first answer at %s after %.1f ms (tick %ld -> %ld)\n",
		       vmm_times(vm)->spawn_to_running / 1e6, b->host_ip, (now_ns() - t0) / 1e6, n1, n2);
	} else {
		FAIL("vmm_net_restore_other_slot", "no answer at %s (got '%s')", b->host_ip, got);
	}
out:
	if (vm && vmm_quit(vm) < 0)
		FAIL("vmm_net_quit", "%s", err_msg());
	if (net_slot_release(a) < 0 || net_slot_release(b) < 0)
		FAIL("vmm_net_release", "%s", err_msg());
	return failed;
}
