/*
 * hostenv.h - the host directories of the seed's local mode (seed README "Environment
 * Variables", spec §1.1 setupEnv): each variable is honoured when set, else derived from
 * the data directory (the local storage directory, or .local-build for bucket locations)
 * and exported, so helpers and child processes see the same values.
 *
 *   ORCHESTRATOR_BASE_PATH  {data}/orchestrator   chunk caches, per-process state
 *   SNAPSHOT_CACHE_DIR      {data}/snapshot-cache materialised memfiles, shared per host
 *   HOST_KERNELS_DIR        {data}/kernels        <version>/vmlinux.bin (+ initrd.img)
 *   FIRECRACKER_VERSIONS_DIR {data}/fc-versions
 *   HOST_ENVD_PATH          {data}/envd/envd      (orch-init is looked up beside it)
 *   SANDBOX_DIR             {data}/sandbox        SANDBOX_DIR/<sandbox-id>/
 *
 * Binaries and kernels missing there are looked up in the build tree next to the running
 * executable (build/guest/, build/kernels/), so a fresh checkout works without copying.
 */
#ifndef ORCH_HOSTENV_H
#define ORCH_HOSTENV_H

#include <limits.h>
#include <stdbool.h>

struct hostenv {
	char data_dir[PATH_MAX];
	char base[PATH_MAX];
	char snapshot_cache[PATH_MAX];
	char kernels[PATH_MAX];
	char fc_versions[PATH_MAX];
	char envd[PATH_MAX];
	char sandbox_dir[PATH_MAX];
};

/* location: the resolved storage location (directory or bucket URL). create_templates: make
 * {data}/templates (build-template does, so builds land there). Creates the directories.
 * 0/-1 + err. */
int hostenv_setup(const char *location, bool create_templates, struct hostenv *out);

/* Find a guest binary ("envd", "orch-init"): explicit path if given, else the hostenv
 * location (envd: HOST_ENVD_PATH; orch-init: beside it), else build/guest/<name> next to the
 * executable. out gets the path. 0/-1 + err listing where it looked. */
int hostenv_find_guest_binary(const struct hostenv *he, const char *name, const char *explicit_path,
			      char *out, size_t cap);

/* Find the kernel directory <version>/ holding vmlinux.bin: HOST_KERNELS_DIR/<version>, else
 * build/kernels/<version> next to the executable. version "" or NULL = "default" (a symlink
 * made by scripts/kernel.sh). out gets the directory; real_version the resolved version name. */
int hostenv_find_kernel(const struct hostenv *he, const char *version, char *out, size_t cap,
			char *real_version, size_t vcap);

#endif
