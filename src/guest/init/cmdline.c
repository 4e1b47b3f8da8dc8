/*
 * cmdline.c - the kernel command line, as orch-init reads it.
 *
 * The kernel consumes init= and root= itself only when it mounts the root on its own; with an
 * initramfs they reach us through /proc/cmdline, and ip= is never interpreted by a kernel
 * without CONFIG_IP_PNP (Debian's cloud kernel). Parsing never fails: anything unusable falls
 * back to a default, and ip= problems are described in cfg->ip_error so PID 1 can print them.
 * Tokens are split on blanks; double quotes group blanks into a token, as the kernel does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init.h"

static void copy_str(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src);
}

/* Splits s at ':' into at most n fields (in place); returns the number of fields. */
static int split_colon(char *s, char **f, int n)
{
	int i = 0;

	f[i++] = s;
	for (char *p = s; *p && i < n; p++) {
		if (*p == ':') {
			*p = '\0';
			f[i++] = p + 1;
		}
	}
	return i;
}

static int mask_to_prefix(struct in_addr mask)
{
	uint32_t m = ntohl(mask.s_addr);
	int prefix = 0;

	while (prefix < 32 && (m & (1u << (31 - prefix))))
		prefix++;
	if (prefix < 32 && (m << prefix) != 0)
		return -1;	/* holes: not a netmask */
	return prefix;
}

static void parse_ip(char *val, struct boot_config *cfg)
{
	struct ip_config *ip = &cfg->ip;
	char *f[10] = { 0 };
	int n = split_colon(val, f, 10);
	struct in_addr mask;

	memset(ip, 0, sizeof(*ip));
	copy_str(ip->dev, sizeof(ip->dev), "eth0");
	if (n == 1) {
		/* ip=dhcp, ip=off, ...: only a static address is supported */
		if (strcmp(f[0], "off") && strcmp(f[0], "none"))
			snprintf(cfg->ip_error, sizeof(cfg->ip_error),
				 "ip=%.40s: only static addresses are supported", f[0]);
		return;
	}
	if (!f[0] || inet_pton(AF_INET, f[0], &ip->addr) != 1) {
		snprintf(cfg->ip_error, sizeof(cfg->ip_error), "ip=: bad client address '%.40s'",
			 f[0] ? f[0] : "");
		return;
	}
	if (n > 2 && f[2][0] && inet_pton(AF_INET, f[2], &ip->gw) != 1) {
		snprintf(cfg->ip_error, sizeof(cfg->ip_error), "ip=: bad gateway '%.40s'", f[2]);
		return;
	}
	if (n > 3 && f[3][0]) {
		if (inet_pton(AF_INET, f[3], &mask) != 1 || (ip->prefix = mask_to_prefix(mask)) < 0) {
			snprintf(cfg->ip_error, sizeof(cfg->ip_error), "ip=: bad netmask '%.40s'", f[3]);
			return;
		}
	} else {
		/* the kernel's rule: the address class decides */
		uint32_t a = ntohl(ip->addr.s_addr);
		ip->prefix = a < 0x80000000u ? 8 : a < 0xc0000000u ? 16 : 24;
	}
	if (n > 4 && f[4][0])
		copy_str(ip->hostname, sizeof(ip->hostname), f[4]);
	if (n > 5 && f[5][0]) {
		if (strlen(f[5]) >= IFNAMSIZ) {
			snprintf(cfg->ip_error, sizeof(cfg->ip_error), "ip=: bad device '%.40s'", f[5]);
			return;
		}
		copy_str(ip->dev, sizeof(ip->dev), f[5]);
	}
	if (n > 6 && f[6][0] && strcmp(f[6], "off") && strcmp(f[6], "none"))
		snprintf(cfg->ip_error, sizeof(cfg->ip_error),
			 "ip=: autoconf '%.20s' unsupported, using the static address", f[6]);
	ip->set = true;
}

static void parse_token(char *tok, struct boot_config *cfg)
{
	char *eq = strchr(tok, '=');
	const char *val = eq ? eq + 1 : "";

	if (eq)
		*eq = '\0';
	if (!strcmp(tok, "init") && eq && val[0] == '/')
		copy_str(cfg->init, sizeof(cfg->init), val);
	else if (!strcmp(tok, "root") && eq && val[0])
		copy_str(cfg->root, sizeof(cfg->root), val);
	else if (!strcmp(tok, "rootfstype") && eq && val[0])
		copy_str(cfg->rootfstype, sizeof(cfg->rootfstype), val);
	else if (!strcmp(tok, "rootflags") && eq)
		copy_str(cfg->rootflags, sizeof(cfg->rootflags), val);
	else if (!strcmp(tok, "ro") && !eq)
		cfg->ro = true;
	else if (!strcmp(tok, "rw") && !eq)
		cfg->ro = false;
	else if (!strcmp(tok, "orch.rootwait") && eq)
		cfg->rootwait_ms = (unsigned)strtoul(val, NULL, 10);
	else if (!strcmp(tok, "orch.envd") && eq) {
		if (!strcmp(val, "off"))
			cfg->envd_off = true;
		else if (val[0] == '/')
			copy_str(cfg->envd, sizeof(cfg->envd), val);
	} else if (!strcmp(tok, "ip") && eq) {
		cfg->ip_error[0] = '\0';
		parse_ip(eq + 1, cfg);
	}
}

void cmdline_parse(const char *text, struct boot_config *cfg)
{
	char tok[1024];

	memset(cfg, 0, sizeof(*cfg));
	copy_str(cfg->init, sizeof(cfg->init), INIT_REAL_DEFAULT);
	copy_str(cfg->root, sizeof(cfg->root), "/dev/vda");
	copy_str(cfg->rootfstype, sizeof(cfg->rootfstype), "ext4");
	copy_str(cfg->envd, sizeof(cfg->envd), INIT_ENVD_DEFAULT);
	cfg->rootwait_ms = 10000;

	for (const char *p = text; *p;) {
		size_t n = 0;
		bool quoted = false, toolong = false;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (!*p)
			break;
		for (; *p && (quoted || (*p != ' ' && *p != '\t' && *p != '\n')); p++) {
			if (*p == '"') {
				quoted = !quoted;
				continue;
			}
			if (n + 1 < sizeof(tok))
				tok[n++] = *p;
			else
				toolong = true;
		}
		tok[n] = '\0';
		if (!toolong)
			parse_token(tok, cfg);
	}
}

int cmdline_read(char *buf, size_t len)
{
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	size_t got = 0;

	if (fd < 0)
		return -1;
	while (got + 1 < len) {
		ssize_t n = read(fd, buf + got, len - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return 0;
}

void cmdline_print(int fd, const struct boot_config *cfg)
{
	char a[INET_ADDRSTRLEN] = "", g[INET_ADDRSTRLEN] = "";

	dprintf(fd, "init=%s\nroot=%s\nrootfstype=%s\nrootflags=%s\nmode=%s\nrootwait_ms=%u\n",
		cfg->init, cfg->root, cfg->rootfstype, cfg->rootflags, cfg->ro ? "ro" : "rw",
		cfg->rootwait_ms);
	dprintf(fd, "envd=%s\n", cfg->envd_off ? "off" : cfg->envd);
	if (cfg->ip.set) {
		inet_ntop(AF_INET, &cfg->ip.addr, a, sizeof(a));
		if (cfg->ip.gw.s_addr)
			inet_ntop(AF_INET, &cfg->ip.gw, g, sizeof(g));
		dprintf(fd, "ip=%s/%d\ngateway=%s\nhostname=%s\ndevice=%s\n", a, cfg->ip.prefix, g,
			cfg->ip.hostname, cfg->ip.dev);
	} else {
		dprintf(fd, "ip=none\n");
	}
	if (cfg->ip_error[0])
		dprintf(fd, "ip_error=%s\n", cfg->ip_error);
}
