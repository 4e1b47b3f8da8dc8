/*
 * resume_bench - the resume benchmark of issue 5 (bench/resume/run.sh drives it).
 *
 *   resume_bench -mode time -storage DIR -build ID -rootfs FILE -kernel-dir DIR -work DIR [-runs 20]
 *     (a) "cold": boot of the template's image (kernel + initrd + the rootfs logical file) in
 *     a fresh network slot; (b) "full": plain QEMU restore (started by hand, anonymous RAM,
 *     -incoming defer + exec:cat) of a full migration stream (RAM inside) saved once from a
 *     VM restored from the build; (c) "ours": sandbox_resume; optional "fullfile": the same
 *     stream restored through our VMM driver over an empty memfile. The restores and ours
 *     run in rotating order, round by round; then the (a) runs follow. Each is timed to envd
 *     answering POST /init: peers from just before the QEMU spawn (slot, disk copy and empty
 *     memfile are made before the clock starts), (c) from sandbox_resume's
 *     entry (so ours also pays for its disk, NBD server and network slot). One warm-up of
 *     each (not counted) first; ours' warm-up materialises the host's snapshot cache. Each run
 *     also reports the CPU time spent for it (all QEMU threads from /proc/PID/task/ * /schedstat
 *     plus this process's rusage delta: envd client, NBD server), which load does not inflate.
 *     -kinds cold,full,ours,fullfile picks the kinds (default cold,full,ours).
 *   resume_bench -mode mem -storage DIR -build ID [-n 16] [-idle 5s]
 *     Resumes n sandboxes of the build, lets them idle, then per QEMU: RssAnon (status),
 *     Private_Dirty (smaps_rollup) and the guest pages written since restore (pagemap of the
 *     MAP_PRIVATE memfile mapping); each sandbox must answer `echo` through envd; all killed.
 *
 * Output: "RESULT key=value ..." lines for run.sh plus readable lines. Exit 0 / 1 on failure.
 * Every QEMU started here is stopped before exit, also on SIGINT/SIGTERM (the cancel flag makes
 * waits give up). Threading: single-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/common.h"
#include "common/flags.h"
#include "common/hostenv.h"
#include "envdc/envdc.h"
#include "network/network.h"
#include "sandbox/sandbox.h"
#include "sandbox/snapshot.h"
#include "storage/metadata.h"
#include "storage/storage.h"
#include "vmm/dirty.h"
#include "vmm/vmm.h"

/* The fresh-boot command line of sandbox_boot (src/sandbox/sandbox.c GUEST_CMDLINE). */
#define BOOT_CMDLINE                                                                               \
	"console=ttyS0 loglevel=1 lpj=5000000 no_timer_check panic=1 reboot=t root=/dev/vda rw "   \
	"init=/usr/bin/orch-init ip=169.254.0.21::169.254.0.22:255.255.255.252:sandbox:eth0:off"

static volatile int interrupted;

static void on_signal(int sig UNUSED)
{
	interrupted = 1;
}

struct bench {
	struct hostenv he;
	struct storage *st;
	const char *build;
	const char *rootfs;     /* logical rootfs of the build (read-only master) */
	const char *kernel_dir;
	const char *work;
	struct vmm_machine machine;
	char stream[PATH_MAX];   /* full migration stream for (b) */
	char b_rootfs[PATH_MAX]; /* the disk as it was when the stream was saved */
	unsigned kinds;          /* bit 0 cold, 1 full, 2 ours: which kinds the timed runs do */
	struct net_pool *pool;   /* ours takes a pre-made slot, as the peers get theirs made before */
};

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* Sparse copy src -> dst (data extents only). 0/-1 + err. */
static int copy_sparse(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
	struct stat sb;
	off_t pos = 0;
	if (in < 0)
		return err_set_errno(errno, "open %s", src);
	if (fstat(in, &sb) < 0 || (out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
	    ftruncate(out, sb.st_size) < 0) {
		err_set_errno(errno, "copy %s -> %s", src, dst);
		goto done;
	}
	while (pos < sb.st_size) {
		off_t d = lseek(in, pos, SEEK_DATA), h;
		if (d < 0)
			break; /* ENXIO: only a hole is left */
		h = lseek(in, d, SEEK_HOLE);
		if (h < 0)
			h = sb.st_size;
		for (off_t o = d; o < h;) {
			loff_t io = o, oo = o;
			ssize_t n = copy_file_range(in, &io, out, &oo, (size_t)(h - o), 0);
			if (n <= 0) {
				err_set_errno(n < 0 ? errno : EIO, "copy_file_range %s", src);
				goto done;
			}
			o += n;
		}
		pos = h;
	}
	rc = 0;
done:
	close(in);
	if (out >= 0)
		close(out);
	return rc;
}

static int make_empty(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		if (fd >= 0)
			close(fd);
		return err_set_errno(errno, "create %s", path);
	}
	close(fd);
	return 0;
}

/* CPU time of every thread of pid so far (sum of /proc/PID/task/<tid>/schedstat run time). */
static uint64_t proc_cpu_ns(pid_t pid)
{
	char path[64], line[128];
	uint64_t sum = 0;
	DIR *d;
	struct dirent *e;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(d = opendir(path)))
		return 0;
	while ((e = readdir(d))) {
		char p[PATH_MAX];
		FILE *f;
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", (int)pid, e->d_name);
		if ((f = fopen(p, "re"))) {
			if (fgets(line, sizeof(line), f))
				sum += strtoull(line, NULL, 10);
			fclose(f);
		}
	}
	closedir(d);
	return sum;
}

/* CPU time of this process (all threads: envd client, NBD server, ...). */
static uint64_t self_cpu_ns(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

static bool vm_alive_cb(void *opaque)
{
	return !interrupted && vmm_alive(opaque, NULL);
}

/* A peer VM (not a sandbox): a network slot, its files in work/<tag>.*, one QEMU. */
struct peer {
	struct net_slot *slot;
	struct vmm *vm;
	struct envdc envd;
	char memfile[PATH_MAX], disk[PATH_MAX], serial[PATH_MAX], qlog[PATH_MAX];
};

static void peer_free(struct peer *p)
{
	if (p->vm)
		vmm_quit(p->vm);
	p->vm = NULL;
	if (p->slot)
		net_slot_release(p->slot);
	p->slot = NULL;
	unlink(p->memfile);
	unlink(p->disk);
	unlink(p->serial);
	unlink(p->qlog);
}

/* Slot + paths + the disk copied from disk_src; memfile empty (RAM size). Not timed. */
static int peer_prepare(struct bench *b, struct peer *p, const char *tag, const char *disk_src)
{
	struct net_config nc;
	memset(p, 0, sizeof(*p));
	snprintf(p->memfile, sizeof(p->memfile), "%s/%s.mem", b->work, tag);
	snprintf(p->disk, sizeof(p->disk), "%s/%s.disk", b->work, tag);
	snprintf(p->serial, sizeof(p->serial), "%s/%s.serial", b->work, tag);
	snprintf(p->qlog, sizeof(p->qlog), "%s/%s.qemu.log", b->work, tag);
	if (copy_sparse(disk_src, p->disk) < 0 || make_empty(p->memfile, b->machine.memory_mib << 20) < 0)
		return -1;
	if (net_config_default(&nc) < 0 || net_slot_acquire(&nc, &p->slot) < 0)
		return err_prefix("network slot");
	return envdc_init(&p->envd, p->slot->host_ip, ENVD_PORT);
}

static void peer_config(struct bench *b, struct peer *p, struct vmm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->machine = b->machine;
	cfg->memfile = p->memfile;
	cfg->serial_log = p->serial;
	cfg->qemu_log = p->qlog;
	cfg->rootfs = p->disk;
	cfg->tap = NET_TAP_NAME;
	cfg->netns_path = p->slot->ns_path;
}

static int peer_wait_init(struct peer *p, uint64_t timeout_ms)
{
	struct envdc_init_req init = { .access_token = "local" };
	if (envdc_post_init(&p->envd, &init, timeout_ms, 5, vm_alive_cb, p->vm) < 0) {
		const char *why;
		if (!vmm_alive(p->vm, &why))
			return err_set("the VM died: %s (console %s)", why, p->serial);
		return err_prefix("envd /init");
	}
	return 0;
}

/* (a) cold boot: spawn -> /init answered. *t = ns. */
static int run_cold(struct bench *b, uint64_t *t, uint64_t *running, uint64_t *cpu)
{
	struct peer p;
	struct vmm_config cfg;
	char kernel[PATH_MAX + 16], initrd[PATH_MAX + 16];
	uint64_t t0, c0;
	int rc = -1;
	if (peer_prepare(b, &p, "cold", b->rootfs) < 0)
		goto done;
	peer_config(b, &p, &cfg);
	snprintf(kernel, sizeof(kernel), "%s/vmlinux.bin", b->kernel_dir);
	snprintf(initrd, sizeof(initrd), "%s/initrd.img", b->kernel_dir);
	cfg.kernel = kernel;
	cfg.initrd = access(initrd, R_OK) == 0 ? initrd : NULL;
	cfg.cmdline = BOOT_CMDLINE;
	c0 = self_cpu_ns();
	t0 = now_ns();
	if (vmm_boot(&cfg, &p.vm) < 0 || peer_wait_init(&p, 120000) < 0) {
		err_prefix("cold boot");
		goto done;
	}
	*t = now_ns() - t0;
	*running = vmm_times(p.vm)->spawn_to_running;
	*cpu = proc_cpu_ns(vmm_pid(p.vm)) + self_cpu_ns() - c0;
	rc = 0;
done:
	peer_free(&p);
	return rc;
}

/* "fullfile": the full stream through our driver (vmm_restore over an empty memfile). */
static int run_full(struct bench *b, uint64_t *t, uint64_t *running, uint64_t *cpu)
{
	struct peer p;
	struct vmm_config cfg;
	uint64_t t0, c0;
	int rc = -1;
	if (peer_prepare(b, &p, "full", b->b_rootfs) < 0)
		goto done;
	peer_config(b, &p, &cfg);
	cfg.timeout_ms = 60000;
	c0 = self_cpu_ns();
	t0 = now_ns();
	if (vmm_restore(&cfg, b->stream, &p.vm) < 0 || peer_wait_init(&p, 30000) < 0) {
		err_prefix("full-stream restore");
		goto done;
	}
	*t = now_ns() - t0;
	*running = vmm_times(p.vm)->spawn_to_running;
	*cpu = proc_cpu_ns(vmm_pid(p.vm)) + self_cpu_ns() - c0;
	rc = 0;
done:
	peer_free(&p);
	return rc;
}

/* ---- (b) plain QEMU restore, QEMU started by hand (not through our driver) ----
 * Anonymous guest RAM (memory-backend-ram with our backend id, so the stream's RAM block
 * matches), `-incoming defer` + QMP over a unix socket: capabilities as on the source,
 * `migrate-incoming exec:cat STREAM`, wait for "completed", `cont`. This is how QEMU is
 * restored without our memfile model: every RAM page comes out of the stream. */
struct plain {
	pid_t pid;
	int qmp;
	FILE *qf;
	char sock[PATH_MAX]; /* QMP socket path ("" = none yet) */
};

static void plain_kill(struct plain *q)
{
	if (q->qf)
		fclose(q->qf);
	else if (q->qmp >= 0)
		close(q->qmp);
	q->qf = NULL;
	q->qmp = -1;
	if (q->pid > 0) {
		kill(q->pid, SIGKILL);
		waitpid(q->pid, NULL, 0);
	}
	q->pid = -1;
	if (q->sock[0])
		unlink(q->sock);
	q->sock[0] = '\0';
}

static bool plain_alive_cb(void *opaque)
{
	struct plain *q = opaque;
	return !interrupted && q->pid > 0 && waitpid(q->pid, NULL, WNOHANG) == 0;
}

/* Send one QMP command, read lines until its answer (events are skipped). 0/-1 + err. */
static int plain_cmd(struct plain *q, const char *cmd, char *reply, size_t cap)
{
	char line[8192];
	if (full_write(q->qmp, cmd, strlen(cmd)) < 0)
		return err_set_errno(errno, "QMP write");
	while (fgets(line, sizeof(line), q->qf)) {
		if (strstr(line, "\"event\""))
			continue;
		if (reply)
			snprintf(reply, cap, "%s", line);
		if (strstr(line, "\"error\""))
			return err_set("QMP %.*s: %s", (int)strcspn(cmd, "\n"), cmd, line);
		return 0;
	}
	return err_set("QMP: QEMU closed the connection (%s)", interrupted ? "interrupted" : "exited?");
}

static int plain_restore(struct bench *b, struct peer *p, struct plain *q)
{
	char mem[128], ser[PATH_MAX + 8], qmps[PATH_MAX + 32], drive[PATH_MAX + 64], smp[16], m[32];
	char *sock = q->sock, cmd[PATH_MAX + 128], reply[8192];
	const char *tap = "tap,id=n0,ifname=" NET_TAP_NAME ",script=no,downscript=no";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t deadline;
	snprintf(q->sock, sizeof(q->sock), "%s/plain.qmp", b->work);
	snprintf(mem, sizeof(mem), "memory-backend-ram,id=" VMM_RAM_ID ",size=%lluM",
		 (unsigned long long)b->machine.memory_mib);
	snprintf(ser, sizeof(ser), "file:%s", p->serial);
	snprintf(qmps, sizeof(qmps), "unix:%s,server=on,wait=off", sock);
	snprintf(drive, sizeof(drive), "id=root,file=%s,format=raw,if=none", p->disk);
	snprintf(smp, sizeof(smp), "%u", b->machine.vcpu);
	snprintf(m, sizeof(m), "%lluM", (unsigned long long)b->machine.memory_mib);
	char *argv[] = { "qemu-system-x86_64", "-M", b->machine.machine, "-accel", b->machine.accel, "-cpu",
			 b->machine.cpu, "-smp", smp, "-m", m, "-object", mem, "-nodefaults", "-no-user-config",
			 "-display", "none", "-serial", ser, "-qmp", qmps, "-no-reboot", "-drive", drive,
			 "-device", "virtio-blk-device,drive=root", "-netdev",
			 (char *)tap, "-device",
			 "virtio-net-device,netdev=n0,mac=" VMM_GUEST_MAC, "-incoming", "defer", NULL };
	unlink(sock);
	q->pid = fork();
	if (q->pid < 0)
		return err_set_errno(errno, "fork");
	if (q->pid == 0) {
		int ns = open(p->slot->ns_path, O_RDONLY | O_CLOEXEC), log;
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
			_exit(126);
		if ((log = open(p->qlog, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0) {
			dup2(log, 1);
			dup2(log, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	deadline = now_ns() + 10000000000ull;
	for (;;) {
		q->qmp = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (q->qmp < 0)
			return err_set_errno(errno, "socket");
		if (connect(q->qmp, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		close(q->qmp);
		q->qmp = -1;
		if (!plain_alive_cb(q))
			return err_set("QEMU exited at start (log %s)", p->qlog);
		if (now_ns() > deadline)
			return err_set("no QMP socket after 10 s");
		usleep(1000);
	}
	if (!(q->qf = fdopen(dup(q->qmp), "re")) || !fgets(reply, sizeof(reply), q->qf)) /* greeting */
		return err_set("QMP greeting");
	snprintf(cmd, sizeof(cmd),
		 "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"exec:cat %s\"}}\n", b->stream);
	if (plain_cmd(q, "{\"execute\":\"qmp_capabilities\"}\n", NULL, 0) < 0 ||
	    plain_cmd(q,
		      "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":["
		      "{\"capability\":\"x-ignore-shared\",\"state\":true},{\"capability\":\"events\",\"state\":true}]}}\n",
		      NULL, 0) < 0 ||
	    plain_cmd(q, cmd, NULL, 0) < 0)
		return -1;
	deadline = now_ns() + 60000000000ull;
	for (;;) {
		if (plain_cmd(q, "{\"execute\":\"query-migrate\"}\n", reply, sizeof(reply)) < 0)
			return -1;
		if (strstr(reply, "\"completed\""))
			break;
		if (strstr(reply, "\"failed\""))
			return err_set("incoming migration failed (log %s)", p->qlog);
		if (now_ns() > deadline || interrupted)
			return err_set("incoming migration not done after 60 s");
		usleep(1000);
	}
	return plain_cmd(q, "{\"execute\":\"cont\"}\n", NULL, 0);
}

/* (b) plain full-stream restore: spawn -> /init answered. *running = spawn -> cont answered. */
static int run_plain(struct bench *b, uint64_t *t, uint64_t *running, uint64_t *cpu)
{
	struct peer p;
	struct plain q = { .pid = -1, .qmp = -1, .sock = "" };
	struct envdc_init_req init = { .access_token = "local" };
	uint64_t t0, c0;
	int rc = -1;
	if (peer_prepare(b, &p, "plain", b->b_rootfs) < 0)
		goto done;
	unlink(p.memfile); /* anonymous RAM: no memfile */
	c0 = self_cpu_ns();
	t0 = now_ns();
	if (plain_restore(b, &p, &q) < 0) {
		err_prefix("plain full-stream restore");
		goto done;
	}
	*running = now_ns() - t0;
	if (envdc_post_init(&p.envd, &init, 30000, 5, plain_alive_cb, &q) < 0) {
		err_prefix("plain full-stream restore: envd /init");
		goto done;
	}
	*t = now_ns() - t0;
	*cpu = proc_cpu_ns(q.pid) + self_cpu_ns() - c0;
	rc = 0;
done:
	plain_kill(&q);
	peer_free(&p);
	return rc;
}

/* (c) ours. */
static int run_ours(struct bench *b, uint64_t *t, uint64_t *cpu, const struct sandbox_times **detail,
		    struct sandbox_times *keep)
{
	struct sandbox_opts o = { .he = &b->he, .st = b->st, .build_id = b->build, .access_token = "local" };
	struct sandbox *sb;
	uint64_t c0;
	if (!b->pool) {
		struct net_config nc;
		if (net_config_default(&nc) == 0)
			b->pool = net_pool_new(&nc, 1);
	}
	if (b->pool && net_pool_fill(b->pool) < 0) /* before the clock, like the peers' slots */
		return err_prefix("network slot");
	o.net_pool = b->pool;
	c0 = self_cpu_ns();
	if (sandbox_resume(&o, &sb) < 0)
		return err_prefix("resume");
	*cpu = proc_cpu_ns(sandbox_vmm_pid(sb)) + self_cpu_ns() - c0;
	*keep = *sandbox_times(sb);
	*detail = keep;
	*t = keep->ready_ns - keep->start_ns;
	if (sandbox_kill(sb) < 0)
		return err_prefix("killing the sandbox");
	return 0;
}

/* The full stream: restore the build's memfile + snapfile like a sandbox (but on a plain disk
 * file), wait for envd, save a plain migration stream with all RAM inside. */
static int make_stream(struct bench *b, uint64_t *bytes)
{
	struct snapshot_files sf;
	struct peer p;
	struct vmm_config cfg;
	struct stat sb;
	int rc = -1;
	snprintf(b->stream, sizeof(b->stream), "%s/full.stream", b->work);
	snprintf(b->b_rootfs, sizeof(b->b_rootfs), "%s/full.rootfs", b->work);
	if (snapshot_cache_get(b->he.snapshot_cache, b->st, b->build, &sf) < 0)
		return err_prefix("snapshot cache");
	if (peer_prepare(b, &p, "mkstream", b->rootfs) < 0)
		goto done;
	peer_config(b, &p, &cfg);
	cfg.memfile = sf.memfile;
	if (vmm_restore(&cfg, sf.snapfile, &p.vm) < 0 || peer_wait_init(&p, 30000) < 0) {
		err_prefix("restoring the build to make the full stream");
		goto done;
	}
	if (vmm_save_full(p.vm, b->stream) < 0) {
		err_prefix("full-stream save");
		goto done;
	}
	vmm_quit(p.vm);
	p.vm = NULL;
	/* the disk as the saved VM left it goes with the stream */
	if (rename(p.disk, b->b_rootfs) < 0) {
		err_set_errno(errno, "rename %s", p.disk);
		goto done;
	}
	if (stat(b->stream, &sb) < 0) {
		err_set_errno(errno, "stat %s", b->stream);
		goto done;
	}
	*bytes = (uint64_t)sb.st_size;
	rc = 0;
done:
	peer_free(&p);
	snapshot_files_release(&sf);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (p in 0..100) of n sorted values. */
static uint64_t pct(const uint64_t *s, int n, double p)
{
	int k = (int)((p / 100.0) * n + 0.999999) - 1;
	if (k < 0)
		k = 0;
	if (k >= n)
		k = n - 1;
	return s[k];
}

#define NKINDS 4
static int run_kind(struct bench *b, int k, uint64_t *t, uint64_t *running, uint64_t *cpu,
		    const struct sandbox_times **d, struct sandbox_times *keep)
{
	switch (k) {
	case 0:
		return run_cold(b, t, running, cpu);
	case 1:
		return run_plain(b, t, running, cpu);
	case 2:
		return run_ours(b, t, cpu, d, keep);
	default:
		return run_full(b, t, running, cpu);
	}
}

static int mode_time(struct bench *b, int runs)
{
	uint64_t *v[NKINDS], *cpu[NKINDS], stream_bytes = 0, t = 0, running = 0, c = 0;
	static const char *const name[NKINDS] = { "cold", "full", "ours", "fullfile" };
	static const char *const what[NKINDS] = { "cold boot", "plain full-stream restore", "ours",
						  "full-stream restore through our driver" };
	/* phase 1 rotates over these (ours between the restores), phase 2 = cold boots */
	static const int restores[3] = { 1, 2, 3 };
	const struct sandbox_times *d;
	struct sandbox_times keep;
	int rc = -1;
	for (int k = 0; k < NKINDS; k++)
		if (!(v[k] = calloc((size_t)runs, sizeof(uint64_t))) || !(cpu[k] = calloc((size_t)runs, sizeof(uint64_t))))
			die("out of memory");
	/* warm-up of ours first: it materialises the snapshot cache that make_stream uses too */
	if (run_ours(b, &t, &c, &d, &keep) < 0)
		goto done;
	printf("warm-up ours (first resume on this host, fills the snapshot cache): %.1f ms\n", ms(t));
	if (make_stream(b, &stream_bytes) < 0)
		goto done;
	printf("full migration stream: %.1f MiB (RAM %llu MiB)\n", (double)stream_bytes / (1 << 20),
	       (unsigned long long)b->machine.memory_mib);
	printf("RESULT stream_bytes=%llu\n", (unsigned long long)stream_bytes);
	for (int k = 0; k < NKINDS; k++) {
		if (k == 2 || !(b->kinds & (1u << k)))
			continue;
		if (run_kind(b, k, &t, &running, &c, &d, &keep) < 0)
			goto done;
		printf("warm-up %s: %.1f ms\n", what[k], ms(t));
	}
	fflush(stdout);
	/* Phase 1: the restores and ours, rotating so none always follows the same one. Phase 2:
	 * the cold boots, apart (a boot's page-cache churn should not be charged to a restore). */
	for (int phase = 0; phase < 2 && !interrupted; phase++) {
		for (int i = 0; i < runs && !interrupted; i++) {
			for (int j = 0; j < 3; j++) {
				int k = phase == 1 ? 0 : restores[(i + j) % 3];
				if (phase == 1 && j > 0)
					break;
				if (!(b->kinds & (1u << k)))
					continue;
				if (run_kind(b, k, &t, &running, &c, &d, &keep) < 0)
					goto done;
				v[k][i] = t;
				cpu[k][i] = c;
				if (k == 2)
					printf("run %2d %-8s %8.1f ms  cpu %7.1f ms  (files %.1f disk %.1f net %.1f vm running %.1f)\n",
					       i + 1, name[k], ms(t), ms(c), ms(d->files_ns - d->start_ns),
					       ms(d->disk_ns - d->start_ns), ms(d->net_ns - d->start_ns),
					       ms(d->vmm_ns - d->start_ns));
				else
					printf("run %2d %-8s %8.1f ms  cpu %7.1f ms  (%s %.1f)\n", i + 1, name[k], ms(t),
					       ms(c), k == 0 ? "vm started" : "vm running", ms(running));
				fflush(stdout);
			}
		}
	}
	if (interrupted) {
		err_set("interrupted");
		goto done;
	}
	for (int k = 0; k < NKINDS; k++) {
		if (!(b->kinds & (1u << k)))
			continue;
		qsort(v[k], (size_t)runs, sizeof(uint64_t), cmp_u64);
		qsort(cpu[k], (size_t)runs, sizeof(uint64_t), cmp_u64);
		printf("RESULT mode=%s runs=%d p50_ms=%.1f p99_ms=%.1f min_ms=%.1f max_ms=%.1f cpu_p50_ms=%.1f\n", name[k],
		       runs, ms(pct(v[k], runs, 50)), ms(pct(v[k], runs, 99)), ms(v[k][0]), ms(v[k][runs - 1]),
		       ms(pct(cpu[k], runs, 50)));
	}
	rc = 0;
done:
	for (int k = 0; k < NKINDS; k++) {
		free(v[k]);
		free(cpu[k]);
	}
	return rc;
}

/* "Key:   123 kB" from a /proc file, in kB; -1 when absent. */
static long long proc_kb(const char *path, const char *key)
{
	char line[256];
	size_t kl = strlen(key);
	long long v = -1;
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			v = strtoll(line + kl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static void discard(void *opaque UNUSED, enum envdc_stream s UNUSED, const void *data UNUSED, size_t len UNUSED)
{
}

static int mode_mem(struct bench *b, int n, uint64_t idle_ns)
{
	struct sandbox_opts o = { .he = &b->he, .st = b->st, .build_id = b->build, .access_token = "local" };
	struct sandbox **sb = calloc((size_t)n, sizeof(*sb));
	struct snapshot_files sf = { .lock_fd = -1 };
	uint64_t ram = b->machine.memory_mib << 20, t0;
	long long sum_anon = 0, sum_pd = 0, sum_dirty = 0;
	int rc = -1, started = 0, answered = 0;
	if (!sb)
		die("out of memory");
	/* the memfile path every sandbox maps (to find the RAM mapping in each QEMU) */
	if (snapshot_cache_get(b->he.snapshot_cache, b->st, b->build, &sf) < 0) {
		err_prefix("snapshot cache");
		goto done;
	}
	t0 = now_ns();
	for (; started < n && !interrupted; started++)
		if (sandbox_resume(&o, &sb[started]) < 0) {
			err_prefix("resume %d of %d", started + 1, n);
			goto done;
		}
	printf("%d sandboxes resumed in %.1f ms (one after another); idling %.1f s\n", n, ms(now_ns() - t0),
	       (double)idle_ns / 1e9);
	fflush(stdout);
	for (uint64_t end = now_ns() + idle_ns; now_ns() < end && !interrupted;)
		usleep(100000);
	if (interrupted) {
		err_set("interrupted");
		goto done;
	}
	printf("%-4s %-8s %12s %14s %14s %12s\n", "#", "qemu pid", "RssAnon MiB", "PrivDirty MiB", "guest dirty MiB",
	       "% of RAM");
	for (int i = 0; i < n; i++) {
		pid_t pid = sandbox_vmm_pid(sb[i]);
		char p1[64], p2[64];
		uint64_t start, len, *bits = NULL, np, nd = 0;
		long long anon, pd;
		snprintf(p1, sizeof(p1), "/proc/%d/status", (int)pid);
		snprintf(p2, sizeof(p2), "/proc/%d/smaps_rollup", (int)pid);
		anon = proc_kb(p1, "RssAnon");
		pd = proc_kb(p2, "Private_Dirty");
		if (anon < 0) {
			err_set("QEMU %d of sandbox %s: no RssAnon", (int)pid, sandbox_id(sb[i]));
			goto done;
		}
		if (dirty_find_mapping(pid, sf.memfile, &start, &len) < 0 || dirty_scan(pid, start, len, &bits, &np, &nd) < 0) {
			err_prefix("dirty pages of QEMU %d", (int)pid);
			goto done;
		}
		free(bits);
		sum_anon += anon;
		sum_pd += pd;
		sum_dirty += (long long)nd;
		printf("%-4d %-8d %12.1f %14.1f %14.1f %11.1f%%\n", i + 1, (int)pid, anon / 1024.0, pd / 1024.0,
		       (double)nd * DIRTY_PAGE / (1 << 20), 100.0 * (double)anon * 1024 / (double)ram);
	}
	for (int i = 0; i < n; i++) {
		int code = -1;
		if (sandbox_exec(sb[i], "echo hello", discard, NULL, &code, 10000) == 0 && code == 0)
			answered++;
	}
	printf("sandboxes answering `echo hello` through envd: %d of %d\n", answered, n);
	printf("RESULT mem n=%d ram_mib=%llu avg_rss_anon_kib=%lld avg_private_dirty_kib=%lld avg_guest_dirty_kib=%lld "
	       "pct_of_ram=%.2f answered=%d\n",
	       n, (unsigned long long)b->machine.memory_mib, sum_anon / n, sum_pd / n, sum_dirty * 4 / n,
	       100.0 * (double)sum_anon / n * 1024 / (double)ram, answered);
	rc = answered == n ? 0 : err_set("%d of %d sandboxes did not answer", n - answered, n);
done:
	for (int i = 0; i < started; i++)
		if (sb[i] && sandbox_kill(sb[i]) < 0 && rc == 0)
			rc = err_prefix("killing sandbox %d", i + 1);
	if (sf.lock_fd >= 0)
		snapshot_files_release(&sf);
	free(sb);
	return rc;
}

int main(int argc, char **argv)
{
	const char *kinds = "cold,full,ours";
	const char *mode = "", *storage_dir = "", *build = "", *rootfs = "", *kernel_dir = "", *work = "";
	int64_t runs = 20, n = 16;
	uint64_t idle = 5000000000ull;
	char bid[UUID_STR_LEN + 1];
	struct json_object *vj;
	struct build_metadata meta;
	struct bench b = { 0 };
	char *loc;
	int rc;
	struct flag fl[] = {
		FLAG_REQ("mode", FLAG_STRING, &mode, "time | mem"),
		FLAG_REQ("storage", FLAG_STRING, &storage_dir, "Storage directory of the bench template"),
		FLAG_REQ("build", FLAG_STRING, &build, "Build ID of the bench template"),
		FLAG_DEF("rootfs", FLAG_STRING, &rootfs, "time: the build's logical rootfs file (inspect-data -logical)"),
		FLAG_DEF("kernel-dir", FLAG_STRING, &kernel_dir, "time: directory with vmlinux.bin and initrd.img"),
		FLAG_DEF("work", FLAG_STRING, &work, "time: scratch directory (stream, disks, memfiles)"),
		FLAG_DEF("runs", FLAG_INT, &runs, "time: runs of each kind"),
		FLAG_DEF("kinds", FLAG_STRING, &kinds, "time: which kinds to time, comma list of cold,full,ours,fullfile"),
		FLAG_DEF("n", FLAG_INT, &n, "mem: concurrent sandboxes"),
		FLAG_DEF("idle", FLAG_DURATION, &idle, "mem: idle time before measuring"),
	};
	struct flagset fs = { .prog = "resume_bench",
			      .synopsis = "-mode time|mem -storage DIR -build ID [-rootfs F -kernel-dir D -work D -runs N -kinds K] [-n N -idle D]",
			      .about = "Resume benchmark (issue 5): cold boot vs full-stream restore vs ours; idle memory.",
			      .flags = fl, .nflags = ARRAY_SIZE(fl) };
	flags_parse(&fs, argc, argv);
	log_set_prog("resume_bench");
	if (build_id_canonical(build, bid) < 0)
		die_err();
	if (strcmp(mode, "time") == 0 && (!*rootfs || !*kernel_dir || !*work || runs < 1))
		flags_usage_error(&fs, "-mode time needs -rootfs, -kernel-dir, -work and -runs >= 1");
	if (strcmp(mode, "mem") == 0 && n < 1)
		flags_usage_error(&fs, "-n must be >= 1");
	for (const char *k = kinds; *k;) {
		size_t l = strcspn(k, ",");
		if (l == 4 && strncmp(k, "cold", 4) == 0)
			b.kinds |= 1;
		else if (l == 4 && strncmp(k, "full", 4) == 0)
			b.kinds |= 2;
		else if (l == 4 && strncmp(k, "ours", 4) == 0)
			b.kinds |= 4;
		else if (l == 8 && strncmp(k, "fullfile", 8) == 0)
			b.kinds |= 8;
		else
			flags_usage_error(&fs, "-kinds: unknown kind in %s", kinds);
		k += l + (k[l] == ',');
	}
	if (!b.kinds)
		flags_usage_error(&fs, "-kinds is empty");
	if (strcmp(mode, "time") != 0 && strcmp(mode, "mem") != 0)
		flags_usage_error(&fs, "unknown -mode %s", mode);
	if (geteuid() != 0)
		die("must run as root (network namespaces, taps)");
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	sandbox_set_cancel_flag(&interrupted);
	loc = storage_location_resolve(storage_dir);
	if (!loc || hostenv_setup(loc, false, &b.he) < 0 || !(b.st = storage_open(loc, false)))
		die_err();
	if (metadata_load(b.st, bid, &meta) < 0)
		die_err();
	if (!json_object_object_get_ex(meta.root, "vmm", &vj) || vmm_machine_from_json(vj, &b.machine) < 0)
		die("build %s: no usable vmm object in metadata.json", bid);
	metadata_release(&meta);
	if (sandbox_reap_dead(&b.he) < 0)
		log_warn("cleaning leftovers of dead sandboxes: %s", err_msg());
	b.build = bid;
	b.rootfs = rootfs;
	b.kernel_dir = kernel_dir;
	b.work = work;
	rc = strcmp(mode, "time") == 0 ? mode_time(&b, (int)runs) : mode_mem(&b, (int)n, idle);
	if (rc < 0)
		fprintf(stderr, "resume_bench: error: %s\n", err_msg());
	if (b.stream[0]) {
		unlink(b.stream);
		unlink(b.b_rootfs);
	}
	if (b.pool)
		net_pool_free(b.pool);
	storage_free(b.st);
	free(loc);
	return rc < 0 ? 1 : 0;
}
