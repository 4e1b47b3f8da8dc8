/*
 * sandbox.c - the sandbox lifecycle (see sandbox.h for the sequence).
 *
 * Ownership: struct sandbox owns, in acquisition order, its directory + lock, the snapshot
 * cache entry lock, the rootfs build, COW and NBD server, the network slot and the VM;
 * sandbox_kill releases them in reverse order, and every failing constructor calls it on the
 * partial sandbox, so no path leaks one of them.
 * The QEMU pid is written to <dir>/qemu.pid so that sandbox_reap_dead can kill the VM of an
 * orchestrator that was SIGKILLed (QEMU outlives its parent).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "block/block.h"
#include "common/common.h"
#include "nbd/nbd.h"
#include "network/network.h"
#include "sandbox.h"
#include "snapshot.h"
#include "storage/logical.h"
#include "vmm/vmm.h"

#define INIT_TIMEOUT_MS 10000
#define BOOT_ENVD_TIMEOUT_MS 60000
#define GUEST_CMDLINE                                                                              \
	"console=ttyS0 loglevel=1 lpj=5000000 no_timer_check panic=1 reboot=t root=/dev/vda rw "   \
	"init=/usr/bin/orch-init ip=169.254.0.21::169.254.0.22:255.255.255.252:sandbox:eth0:off"

struct sandbox {
	char id[48];
	char dir[PATH_MAX];
	int lock_fd;
	char build_id[UUID_STR_LEN + 1]; /* resumed from ("" for a fresh boot) */
	struct storage *st;              /* where build_id lives (not owned) */
	struct build_metadata meta;
	bool have_meta;
	struct snapshot_files snap;
	struct block_build *rootfs;
	struct block_source rootfs_src;
	struct cow *cow;
	struct nbd_server *nbd;
	char rootfs_image[PATH_MAX]; /* fresh boot: the image the VM writes */
	struct net_slot *slot;
	struct net_pool *net_pool; /* slot goes back to it (not owned) */
	struct vmm *vm;
	struct vmm_machine machine;
	char memfile[PATH_MAX];
	struct envdc envd;
	struct sandbox_times t;
	bool vm_died;
	char died_why[256];
};

const char *sandbox_id(const struct sandbox *s)
{
	return s->id;
}

const char *sandbox_host_ip(const struct sandbox *s)
{
	return s->slot ? s->slot->host_ip : "";
}

int sandbox_netns_index(const struct sandbox *s)
{
	return s->slot ? (int)s->slot->idx : -1;
}

const struct sandbox_times *sandbox_times(const struct sandbox *s)
{
	return &s->t;
}

const struct build_metadata *sandbox_metadata(const struct sandbox *s)
{
	return s->have_meta ? &s->meta : NULL;
}

int sandbox_vmm_pid(const struct sandbox *s)
{
	return s->vm ? (int)vmm_pid(s->vm) : -1;
}

bool sandbox_alive(struct sandbox *s, const char **why)
{
	const char *w = NULL;
	if (s->vm_died) {
		if (why)
			*why = s->died_why;
		return false;
	}
	if (!s->vm) {
		if (why)
			*why = "the VM is not running";
		return false;
	}
	if (vmm_alive(s->vm, &w))
		return true;
	s->vm_died = true;
	snprintf(s->died_why, sizeof(s->died_why), "%s", w ? w : "QEMU exited");
	if (why)
		*why = s->died_why;
	return false;
}

static volatile int *cancel_flag;

void sandbox_set_cancel_flag(volatile int *flag)
{
	cancel_flag = flag;
}

static bool alive_cb(void *opaque)
{
	if (cancel_flag && *cancel_flag)
		return false;
	return sandbox_alive(opaque, NULL);
}

/* SANDBOX_DIR/<id>/ with its lock held. */
static int sandbox_dir_claim(struct sandbox *s, const struct hostenv *he, const char *id)
{
	char lock[PATH_MAX + 8];
	if (id)
		snprintf(s->id, sizeof(s->id), "%s", id);
	else {
		uuid_t16 u;
		char us[UUID_STR_LEN + 1];
		uuid_generate(&u);
		uuid_format(&u, us);
		snprintf(s->id, sizeof(s->id), "sbx-%.8s%.4s", us, us + 9);
	}
	if (strchr(s->id, '/') || s->id[0] == '.')
		return err_set("invalid sandbox id '%s'", s->id);
	snprintf(s->dir, sizeof(s->dir), "%s/%s", he->sandbox_dir, s->id);
	if (mkdir_p(he->sandbox_dir, 0755) < 0)
		return -1;
	if (mkdir(s->dir, 0700) < 0)
		return err_set_errno(errno, "cannot create sandbox directory '%s'", s->dir);
	snprintf(lock, sizeof(lock), "%s/lock", s->dir);
	s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0)
		return err_set_errno(errno, "cannot lock '%s'", lock);
	return 0;
}

static struct sandbox *sandbox_alloc(void)
{
	struct sandbox *s = calloc(1, sizeof(*s));
	if (!s) {
		err_set_errno(ENOMEM, "cannot allocate a sandbox");
		return NULL;
	}
	s->lock_fd = -1;
	s->snap.lock_fd = -1;
	s->t.start_ns = now_ns();
	return s;
}

/* Release a half-built sandbox without losing the error that stopped it. Returns -1. */
static int kill_keeping_error(struct sandbox *s)
{
	char msg[ERR_MSG_MAX];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	sandbox_kill(s);
	return err_set("%s", msg);
}

static void write_pid(struct sandbox *s)
{
	char p[PATH_MAX + 16], buf[32];
	snprintf(p, sizeof(p), "%s/qemu.pid", s->dir);
	snprintf(buf, sizeof(buf), "%d\n", (int)vmm_pid(s->vm));
	write_file_atomic(p, buf, strlen(buf), 0644);
}

static int net_up(struct sandbox *s)
{
	struct net_config cfg;
	if (s->net_pool) {
		if (net_pool_get(s->net_pool, &s->slot) < 0)
			return err_prefix("sandbox %s: network", s->id);
	} else if (net_config_default(&cfg) < 0 || net_slot_acquire(&cfg, &s->slot) < 0) {
		return err_prefix("sandbox %s: network", s->id);
	}
	return envdc_init(&s->envd, s->slot->host_ip, ENVD_PORT);
}

static void vmm_paths(struct sandbox *s, struct vmm_config *cfg, char *serial, char *qlog)
{
	snprintf(serial, PATH_MAX, "%s/serial.log", s->dir);
	snprintf(qlog, PATH_MAX, "%s/qemu.log", s->dir);
	cfg->serial_log = serial;
	cfg->qemu_log = qlog;
	cfg->tap = NET_TAP_NAME;
	cfg->netns_path = s->slot->ns_path;
}

int sandbox_resume(const struct sandbox_opts *o, struct sandbox **out)
{
	struct sandbox *s = sandbox_alloc();
	struct vmm_config cfg = { 0 };
	struct json_object *vmmj;
	char sock[PATH_MAX + 16], cowp[PATH_MAX + 16], nbduri[PATH_MAX + 32];
	char serial[PATH_MAX], qlog[PATH_MAX];
	struct envdc_init_req init = { .access_token = o->access_token ? o->access_token : "local" };
	*out = NULL;
	if (!s)
		return -1;
	s->st = o->st;
	s->net_pool = o->net_pool;
	snprintf(s->build_id, sizeof(s->build_id), "%s", o->build_id);
	if (sandbox_dir_claim(s, o->he, o->sandbox_id) < 0)
		goto fail;
	if (metadata_load(o->st, o->build_id, &s->meta) < 0)
		goto fail;
	s->have_meta = true;
	if (s->meta.version < 2 || !json_object_object_get_ex(s->meta.root, "vmm", &vmmj)) {
		err_set("build %s has no VM description in metadata.json (not built by build-template?)", o->build_id);
		goto fail;
	}
	if (vmm_machine_from_json(vmmj, &s->machine) < 0) {
		err_prefix("build %s: metadata.json", o->build_id);
		goto fail;
	}
	if (snapshot_cache_get(o->he->snapshot_cache, o->st, o->build_id, &s->snap) < 0)
		goto fail;
	s->t.files_ns = now_ns();
	s->rootfs = block_build_open(o->st, o->build_id, BUILD_KIND_ROOTFS);
	if (!s->rootfs)
		goto fail;
	s->rootfs_src = block_build_source(s->rootfs);
	snprintf(cowp, sizeof(cowp), "%s/rootfs.cow", s->dir);
	if (!(s->cow = cow_new(&s->rootfs_src, cowp)))
		goto fail;
	{
		struct nbd_export exp = { .name = NULL, .size = cow_size(s->cow), .ops = &cow_nbd_ops, .opaque = s->cow };
		snprintf(sock, sizeof(sock), "%s/nbd.sock", s->dir);
		if (!(s->nbd = nbd_server_new(&exp)) || nbd_server_listen_unix(s->nbd, sock) < 0 ||
		    nbd_server_start(s->nbd) < 0)
			goto fail;
	}
	s->t.disk_ns = now_ns();
	if (net_up(s) < 0)
		goto fail;
	s->t.net_ns = now_ns();
	cfg.machine = s->machine;
	cfg.qemu_path = o->qemu_path;
	cfg.memfile = s->snap.memfile;
	snprintf(nbduri, sizeof(nbduri), "nbd:unix:%s", sock);
	cfg.rootfs = nbduri;
	vmm_paths(s, &cfg, serial, qlog);
	if (vmm_restore(&cfg, s->snap.snapfile, &s->vm) < 0) {
		err_prefix("sandbox %s: restoring build %s", s->id, o->build_id);
		goto fail;
	}
	write_pid(s);
	s->t.vmm_ns = now_ns();
	if (envdc_post_init(&s->envd, &init, o->init_timeout_ms ? o->init_timeout_ms : INIT_TIMEOUT_MS, 5,
			    alive_cb, s) < 0) {
		const char *why;
		if (!sandbox_alive(s, &why))
			err_set("sandbox %s died: %s", s->id, why);
		goto fail;
	}
	s->t.ready_ns = now_ns();
	*out = s;
	return 0;
fail:
	return kill_keeping_error(s);
}

int sandbox_boot(const struct sandbox_boot_opts *o, struct sandbox **out)
{
	struct sandbox *s = sandbox_alloc();
	struct vmm_config cfg = { 0 };
	char kernel[PATH_MAX + 16], initrd[PATH_MAX + 16], serial[PATH_MAX], qlog[PATH_MAX];
	struct stat sb;
	*out = NULL;
	if (!s)
		return -1;
	if (sandbox_dir_claim(s, o->he, NULL) < 0)
		goto fail;
	if (vmm_machine_default(&s->machine, o->accel, o->vcpu, o->memory_mib) < 0)
		goto fail;
	if (net_up(s) < 0)
		goto fail;
	snprintf(s->memfile, sizeof(s->memfile), "%s/memfile", s->dir);
	snprintf(s->rootfs_image, sizeof(s->rootfs_image), "%s", o->rootfs_image);
	snprintf(kernel, sizeof(kernel), "%s/vmlinux.bin", o->kernel_dir);
	snprintf(initrd, sizeof(initrd), "%s/initrd.img", o->kernel_dir);
	cfg.machine = s->machine;
	cfg.qemu_path = o->qemu_path;
	cfg.memfile = s->memfile;
	cfg.kernel = kernel;
	cfg.initrd = stat(initrd, &sb) == 0 ? initrd : NULL;
	cfg.cmdline = GUEST_CMDLINE;
	cfg.rootfs = s->rootfs_image;
	vmm_paths(s, &cfg, serial, qlog);
	if (o->serial_log)
		cfg.serial_log = o->serial_log;
	if (vmm_boot(&cfg, &s->vm) < 0) {
		err_prefix("booting %s", kernel);
		goto fail;
	}
	write_pid(s);
	s->machine = *vmm_machine(s->vm);
	s->t.vmm_ns = now_ns();
	{
		struct envdc_init_req init = { .access_token = NULL };
		if (envdc_post_init(&s->envd, &init, o->envd_timeout_ms ? o->envd_timeout_ms : BOOT_ENVD_TIMEOUT_MS,
				    20, alive_cb, s) < 0) {
			const char *why;
			if (!sandbox_alive(s, &why))
				err_set("the VM died while booting: %s (console: %s)", why, cfg.serial_log);
			else
				err_prefix("waiting for envd in the booted VM (console: %s)", cfg.serial_log);
			goto fail;
		}
	}
	s->t.ready_ns = now_ns();
	*out = s;
	return 0;
fail:
	return kill_keeping_error(s);
}

int sandbox_exec(struct sandbox *s, const char *cmd, envdc_output_fn fn, void *opaque, int *exit_code,
		 uint64_t timeout_ms)
{
	struct envdc_proc p = { .cmd = cmd, .output = fn, .opaque = opaque, .timeout_ms = timeout_ms,
				.alive = alive_cb, .alive_opaque = s };
	return envdc_run(&s->envd, &p, exit_code, NULL);
}

int sandbox_exec_background(struct sandbox *s, const char *cmd, uint32_t *pid)
{
	struct envdc_proc p = { .cmd = cmd, .detach = true, .timeout_ms = 30000, .alive = alive_cb, .alive_opaque = s };
	return envdc_run(&s->envd, &p, NULL, pid);
}

static void machine_to_meta(const struct vmm_machine *m, struct build_metadata *meta)
{
	snprintf(meta->vmm.type, sizeof(meta->vmm.type), "%s", m->type);
	snprintf(meta->vmm.version, sizeof(meta->vmm.version), "%s", m->version);
	snprintf(meta->vmm.accel, sizeof(meta->vmm.accel), "%s", m->accel);
	snprintf(meta->vmm.cpu, sizeof(meta->vmm.cpu), "%s", m->cpu);
	snprintf(meta->vmm.machine, sizeof(meta->vmm.machine), "%s", m->machine);
	meta->vmm.vcpu = (int)m->vcpu;
	meta->vmm.memory_mib = (int)m->memory_mib;
}

static void delete_build(struct storage *st, const char *build)
{
	char prefix[UUID_STR_LEN + 2];
	snprintf(prefix, sizeof(prefix), "%s/", build);
	if (storage_delete_prefix(st, prefix) < 0)
		log_warn("cannot remove the failed build %s: %s", build, err_msg());
}

int sandbox_snapshot_build(struct sandbox *s, struct storage *st, const char *new_build,
			   struct build_metadata *meta)
{
	char state[PATH_MAX + 16], key[BUILD_KEY_MAX];
	struct pack_stats ps;
	if (!s->vm)
		return err_set("sandbox %s has no running VM", s->id);
	snprintf(state, sizeof(state), "%s/snapfile", s->dir);
	if (vmm_snapshot(s->vm, state) < 0)
		return err_prefix("snapshotting sandbox %s", s->id);
	s->machine = *vmm_machine(s->vm);
	vmm_quit(s->vm);
	s->vm = NULL;
	if (snapshot_pack_full(s->memfile, 4096, st, new_build, BUILD_KIND_MEMFILE, s->dir, &ps) < 0)
		goto fail;
	log_debug("memfile: %llu of %llu pages stored", (unsigned long long)ps.data_blocks,
		  (unsigned long long)ps.blocks);
	if (snapshot_pack_full(s->rootfs_image, 4096, st, new_build, BUILD_KIND_ROOTFS, s->dir, &ps) < 0)
		goto fail;
	build_key(key, new_build, BUILD_SNAPFILE);
	if (storage_write_file(st, key, state) < 0)
		goto fail;
	snprintf(meta->build_id, sizeof(meta->build_id), "%s", new_build);
	machine_to_meta(&s->machine, meta);
	meta->memfile_block_size = meta->rootfs_block_size = 4096;
	if (metadata_store(st, new_build, meta) < 0)
		goto fail;
	return 0;
fail: {
	char msg[ERR_MSG_MAX];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	delete_build(st, new_build);
	return err_set("%s", msg);
}
}

int sandbox_pause(struct sandbox *s, struct storage *st, const char *new_build, struct build_metadata *meta,
		  struct sandbox_pause_stats *stats)
{
	char state[PATH_MAX + 16], diffp[PATH_MAX + 16], key[BUILD_KEY_MAX];
	struct vmm_diff diff = { 0 };
	struct cow_export_stats cs;
	struct header memh = { 0 };
	struct build_metadata own;
	bool legacy;
	uint64_t t0 = now_ns();
	if (!s->vm || !s->cow)
		return err_set("sandbox %s was not resumed from a build; cannot pause it into a diff", s->id);
	memset(stats, 0, sizeof(*stats));
	snprintf(state, sizeof(state), "%s/snapfile.new", s->dir);
	snprintf(diffp, sizeof(diffp), "%s/memfile.diff", s->dir);
	if (vmm_pause_diff(s->vm, state, diffp, &diff) < 0)
		return err_prefix("pausing sandbox %s", s->id);
	stats->state_bytes = diff.state_bytes;
	stats->stream_bytes = diff.stream_bytes;
	stats->memfile_diff_bytes = diff.ndirty * VMM_PAGE_SIZE;
	vmm_quit(s->vm);
	s->vm = NULL;
	/* the NBD client is gone with QEMU: the COW holds every write */
	if (cow_export(s->cow, block_build_header(s->rootfs), st, new_build, BUILD_KIND_ROOTFS, &cs) < 0)
		goto fail;
	stats->rootfs_diff_bytes = cs.diff_bytes;
	if (logical_load_header(s->st, s->build_id, BUILD_KIND_MEMFILE, &memh, &legacy) < 0)
		goto fail;
	if (snapshot_publish_diff(diffp, diff.bitmap, diff.npages, &memh, st, new_build, BUILD_KIND_MEMFILE) < 0)
		goto fail;
	build_key(key, new_build, BUILD_SNAPFILE);
	if (storage_write_file(st, key, state) < 0)
		goto fail;
	if (!meta) {
		char *js = metadata_serialize(&s->meta);
		if (!js || metadata_parse(js, strlen(js), &own) < 0) {
			free(js);
			goto fail;
		}
		free(js);
		meta = &own;
	}
	snprintf(meta->build_id, sizeof(meta->build_id), "%s", new_build);
	snprintf(meta->from_build, sizeof(meta->from_build), "%s", s->build_id);
	machine_to_meta(&s->machine, meta);
	if (metadata_store(st, new_build, meta) < 0) {
		if (meta == &own)
			metadata_release(&own);
		goto fail;
	}
	if (meta == &own)
		metadata_release(&own);
	header_release(&memh);
	vmm_diff_release(&diff);
	unlink(diffp);
	stats->pause_ns = now_ns() - t0;
	return 0;
fail: {
	char msg[ERR_MSG_MAX];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	header_release(&memh);
	vmm_diff_release(&diff);
	delete_build(st, new_build);
	return err_set("%s", msg);
}
}

int sandbox_kill(struct sandbox *s)
{
	int r = 0;
	const char *why = NULL;
	if (!s)
		return 0;
	if (s->vm) {
		if (!s->vm_died && !vmm_alive(s->vm, &why)) {
			s->vm_died = true;
			snprintf(s->died_why, sizeof(s->died_why), "%s", why ? why : "QEMU exited");
		}
		vmm_quit(s->vm);
		s->vm = NULL;
	}
	if (s->vm_died)
		r = err_set("sandbox %s died: %s", s->id, s->died_why);
	nbd_server_free(s->nbd);
	cow_free(s->cow);
	block_build_close(s->rootfs);
	if (s->slot && (s->net_pool ? net_pool_put(s->net_pool, s->slot) : net_slot_release(s->slot)) < 0)
		log_warn("sandbox %s: releasing network slot: %s", s->id, err_msg());
	snapshot_files_release(&s->snap);
	if (s->have_meta)
		metadata_release(&s->meta);
	if (s->dir[0] && s->lock_fd >= 0)
		remove_tree(s->dir);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s);
	return r;
}

/* Kill the QEMU of a dead owner: its pid file names it, and its command line must mention the
 * sandbox directory (so a recycled pid is never hit). */
static void kill_orphan_vmm(const char *dir)
{
	char p[PATH_MAX + 16], buf[32], cmdline[8192];
	size_t len;
	int pid, fd;
	ssize_t n;
	char *s;
	snprintf(p, sizeof(p), "%s/qemu.pid", dir);
	s = read_file(p, &len);
	if (!s)
		return;
	pid = atoi(s);
	free(s);
	if (pid <= 1)
		return;
	snprintf(buf, sizeof(buf), "/proc/%d/cmdline", pid);
	fd = open(buf, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, cmdline, sizeof(cmdline) - 1);
	close(fd);
	if (n <= 0)
		return;
	for (ssize_t i = 0; i < n; i++)
		if (!cmdline[i])
			cmdline[i] = ' ';
	cmdline[n] = 0;
	if (strstr(cmdline, dir)) {
		kill(pid, SIGKILL);
		for (int i = 0; i < 100 && kill(pid, 0) == 0; i++)
			usleep(10000);
	}
}

int sandbox_reap_dead(const struct hostenv *he)
{
	struct net_config cfg;
	unsigned removed = 0;
	DIR *d = opendir(he->sandbox_dir);
	struct dirent *e;
	int r = 0;
	if (d) {
		while ((e = readdir(d))) {
			char dir[PATH_MAX], lock[PATH_MAX + 8];
			int fd;
			if (e->d_name[0] == '.')
				continue;
			snprintf(dir, sizeof(dir), "%s/%s", he->sandbox_dir, e->d_name);
			snprintf(lock, sizeof(lock), "%s/lock", dir);
			fd = open(lock, O_RDWR | O_CLOEXEC);
			if (fd < 0)
				continue; /* not ours */
			if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
				log_info("removing leftovers of dead sandbox %s", e->d_name);
				kill_orphan_vmm(dir);
				remove_tree(dir);
			}
			close(fd);
		}
		closedir(d);
	}
	if (net_config_default(&cfg) == 0 && net_cleanup_stale(&cfg, &removed) < 0)
		r = -1;
	else if (removed)
		log_info("removed %u network slot(s) of dead sandboxes", removed);
	return r;
}
