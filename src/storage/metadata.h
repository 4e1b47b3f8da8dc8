/*
 * metadata.h - a build's metadata.json (CONTRACTS §3): compatible with the reference's
 * version 2 plus our "vmm", "disk_mib", "memfile"/"rootfs" block sizes. Unknown keys are kept
 * (the JSON tree is the source of truth; typed fields are read from and written into it).
 * A build is complete when metadata.json exists; it is written last.
 */
#ifndef ORCH_METADATA_H
#define ORCH_METADATA_H

#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"

struct json_object;
struct storage;

struct vmm_shape {
	char type[16];     /* "qemu" */
	char version[64];  /* e.g. "7.2.19" */
	char accel[8];     /* "tcg" | "kvm" */
	char cpu[32];      /* "max" */
	char machine[256]; /* "-M" argument */
	int vcpu;
	int memory_mib;
};

struct build_metadata {
	int version;                 /* 2 (1 = legacy: nothing else is known) */
	char build_id[40];
	char kernel_version[64];
	char from_build[40];         /* "" when built from an image */
	char from_image[256];
	struct vmm_shape vmm;
	uint64_t disk_mib;
	uint64_t memfile_block_size, rootfs_block_size;
	char user[64], workdir[256];
	char *start_cmd, *ready_cmd; /* malloc'd or NULL */
	struct json_object *root;    /* the whole document (owned) */
};

void metadata_init(struct build_metadata *m);
void metadata_release(struct build_metadata *m);
/* Parse; a document whose version is missing or <= 1 is legacy {version:1}. */
int metadata_parse(const char *json, size_t len, struct build_metadata *m);
/* Serialize typed fields into root and return a malloc'd JSON string. */
char *metadata_serialize(struct build_metadata *m);
int metadata_load(struct storage *st, const char *build_id, struct build_metadata *m);
/* Publish <build>/metadata.json (the last object of a build). */
int metadata_store(struct storage *st, const char *build_id, struct build_metadata *m);

#endif
