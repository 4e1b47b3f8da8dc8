/*
 * build-template - build a template: a rootfs from a base image plus a VM snapshotted once
 * its start command is ready (seed README, spec §1.1); or, with -from-build, a diff build on
 * top of an existing one.
 */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "common/flags.h"
#include "common/hostenv.h"
#include "storage/storage.h"
#include "template/template.h"

static void print_size(struct storage *st, const char *build, const char *name)
{
	char key[BUILD_KEY_MAX], path[PATH_MAX + 80];
	const char *dir = storage_local_dir(st);
	struct stat sb;
	uint64_t size;
	build_key(key, build, name);
	if (dir) {
		snprintf(path, sizeof(path), "%s/%s", dir, key);
		if (stat(path, &sb) == 0)
			printf("  %-20s %10.1f KiB on disk, %10.1f KiB logical\n", name, (double)sb.st_blocks * 512 / 1024,
			       (double)sb.st_size / 1024);
		else
			printf("  %-20s (none)\n", name);
	} else if (storage_size(st, key, &size) == 0) {
		printf("  %-20s %10.1f KiB\n", name, (double)size / 1024);
	} else {
		printf("  %-20s (none)\n", name);
	}
}

int main(int argc, char **argv)
{
	const char *build = "", *storage_flag = "", *template_id = "local-template", *from_build = NULL;
	const char *base = "", *kernel = "", *kernel_path = "", *envd = "", *start_cmd = "", *ready_cmd = "";
	const char *firecracker = "", *fc_path = "", *vmm = "qemu", *qemu_path = NULL, *accel = "";
	int64_t vcpu = 2, memory = 1024, disk = 1024;
	uint64_t ready_timeout = 600ull * 1000000000ull;
	bool force = false, verbose = false;
	char bid[UUID_STR_LEN + 1], fid[UUID_STR_LEN + 1];
	struct flag fl[] = {
		FLAG_REQ("build", FLAG_STRING, &build, "Build ID (UUID)"),
		FLAG_DEF("storage", FLAG_STRING, &storage_flag, "Local path, s3://bucket or gs://bucket (default: $TEMPLATE_BUCKET_NAME or .local-build)"),
		FLAG_DEF("template", FLAG_STRING, &template_id, "Template ID (default local-template)"),
		FLAG_DEF("from-build", FLAG_STRING, &from_build, "Base build ID for an incremental (diff) build"),
		FLAG_DEF("base", FLAG_STRING, &base, "Base image: busybox (default), debian, a directory, a rootfs tarball, an OCI layout (oci:DIR[:TAG]) or a docker archive"),
		FLAG_DEF("kernel", FLAG_STRING, &kernel, "Kernel version in HOST_KERNELS_DIR (default: the default kernel)"),
		FLAG_DEF("kernel-path", FLAG_STRING, &kernel_path, "Local kernel vmlinux.bin path (overrides -kernel)"),
		FLAG_DEF("firecracker", FLAG_STRING, &firecracker, "Firecracker version (Firecracker VMM only)"),
		FLAG_DEF("firecracker-path", FLAG_STRING, &fc_path, "Local firecracker binary (Firecracker VMM only)"),
		FLAG_DEF("vmm", FLAG_STRING, &vmm, "VMM: qemu (default) or firecracker"),
		FLAG_DEF("qemu-path", FLAG_STRING, &qemu_path, "qemu-system-x86_64 binary"),
		FLAG_DEF("accel", FLAG_STRING, &accel, "Accelerator: kvm, tcg or auto (default: auto, or $ORCH_ACCEL)"),
		FLAG_DEF("envd", FLAG_STRING, &envd, "Path to the envd binary (default: $HOST_ENVD_PATH, else build/guest/envd)"),
		FLAG_DEF("vcpu", FLAG_INT, &vcpu, "vCPUs (default 2)"),
		FLAG_DEF("memory", FLAG_INT, &memory, "Memory in MiB (default 1024)"),
		FLAG_DEF("disk", FLAG_INT, &disk, "Free disk space in MiB (default 1024)"),
		FLAG_DEF("start-cmd", FLAG_STRING, &start_cmd, "Start command, left running in the snapshot"),
		FLAG_DEF("ready-cmd", FLAG_STRING, &ready_cmd, "Ready check, run every 2 s until it exits 0"),
		FLAG_DEF("ready-timeout", FLAG_DURATION, &ready_timeout, "How long to wait for the ready check (default 10m)"),
		FLAG_DEF("force", FLAG_BOOL, &force, "Replace an existing build with the same ID"),
		FLAG_DEF("v", FLAG_BOOL, &verbose, "Verbose"),
	};
	struct flagset fs = { .prog = "build-template",
			      .synopsis = "-build UUID [-storage DIR|s3://B|gs://B] [-from-build UUID] [-base SOURCE] [-start-cmd CMD] [-ready-cmd CMD] [flags]",
			      .about = "Build a sandbox template: a rootfs and a VM snapshotted once its start command is ready.",
			      .flags = fl, .nflags = ARRAY_SIZE(fl) };
	struct template_opts o = { 0 };
	struct template_result res;
	struct hostenv he;
	struct storage *st;
	char *loc;

	flags_parse(&fs, argc, argv);
	if (build_id_canonical(build, bid) < 0)
		die_err();
	if (from_build && build_id_canonical(from_build, fid) < 0)
		die_err();
	if (!strcmp(vmm, "firecracker") || *firecracker || *fc_path)
		die("Firecracker VMM not available on this host (use -vmm qemu)");
	if (strcmp(vmm, "qemu"))
		flags_usage_error(&fs, "unknown -vmm '%s' (qemu or firecracker)", vmm);
	if (vcpu < 1 || vcpu > 64)
		flags_usage_error(&fs, "-vcpu must be between 1 and 64");
	if (memory < 64 || memory > (1 << 20))
		flags_usage_error(&fs, "-memory must be between 64 and 1048576 MiB");
	if (disk < 0 || disk > (1 << 24))
		flags_usage_error(&fs, "-disk must be between 0 and 16777216 MiB");
	if (geteuid() != 0)
		die("must run as root (VM networking, image ownership)");
	if (verbose)
		log_set_level(LOG_DEBUG);
	loc = storage_location_resolve(storage_flag);
	if (!loc || hostenv_setup(loc, true, &he) < 0)
		die_err();
	st = storage_open(loc, true);
	if (!st)
		die_err();
	o.he = &he;
	o.st = st;
	o.build_id = bid;
	o.template_id = template_id;
	o.from_build = from_build ? fid : NULL;
	o.base = base;
	o.kernel = kernel;
	o.kernel_path = kernel_path;
	o.envd_path = envd;
	o.qemu_path = qemu_path;
	o.accel = accel;
	o.vcpu = (unsigned)vcpu;
	o.memory_mib = (uint64_t)memory;
	o.disk_mib = (uint64_t)disk;
	o.start_cmd = *start_cmd ? start_cmd : NULL;
	o.ready_cmd = *ready_cmd ? ready_cmd : NULL;
	o.ready_timeout_ns = ready_timeout;
	o.force = force;
	if (template_build(&o, &res) < 0) {
		fprintf(stderr, "build-template: error: %s\n", err_msg());
		if (res.log_path[0])
			fprintf(stderr, "build-template: build log: %s\n", res.log_path);
		storage_free(st);
		free(loc);
		return 1;
	}
	printf("build %s finished in %.1f s\n", bid, (double)res.total_ns / 1e9);
	printf("storage: %s\n", storage_describe(st));
	print_size(st, bid, "rootfs.ext4");
	print_size(st, bid, "memfile");
	print_size(st, bid, "rootfs.ext4.header");
	print_size(st, bid, "memfile.header");
	print_size(st, bid, "snapfile");
	print_size(st, bid, "metadata.json");
	printf("build log: %s\n", res.log_path);
	storage_free(st);
	free(loc);
	return 0;
}
