/*
 * metadata.c - metadata.json read/write with json-c. The parsed tree is kept so that keys
 * written by newer versions (or the reference) survive a read-modify-write.
 */
#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "metadata.h"
#include "storage.h"

void metadata_init(struct build_metadata *m)
{
	memset(m, 0, sizeof(*m));
	m->version = 2;
	m->memfile_block_size = 4096;
	m->rootfs_block_size = 4096;
	snprintf(m->user, sizeof(m->user), "root");
	snprintf(m->workdir, sizeof(m->workdir), "/");
	snprintf(m->vmm.type, sizeof(m->vmm.type), "qemu");
	m->root = json_object_new_object();
}

void metadata_release(struct build_metadata *m)
{
	free(m->start_cmd);
	free(m->ready_cmd);
	json_object_put(m->root);
	memset(m, 0, sizeof(*m));
}

static struct json_object *obj_get(struct json_object *o, const char *k)
{
	struct json_object *v;
	return o && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

static void copy_str(char *dst, size_t n, struct json_object *o, const char *k)
{
	struct json_object *v = obj_get(o, k);
	if (v && json_object_is_type(v, json_type_string))
		snprintf(dst, n, "%s", json_object_get_string(v));
}

static int64_t get_int(struct json_object *o, const char *k, int64_t def)
{
	struct json_object *v = obj_get(o, k);
	return v && (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))
		       ? json_object_get_int64(v)
		       : def;
}

int metadata_parse(const char *json, size_t len, struct build_metadata *m)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *root, *t, *v;
	if (!tok)
		return err_set_errno(ENOMEM, "cannot parse metadata.json");
	root = json_tokener_parse_ex(tok, json, (int)len);
	if (!root || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(root, json_type_object)) {
		err_set("metadata.json is not a JSON object: %s",
			json_tokener_error_desc(json_tokener_get_error(tok)));
		json_tokener_free(tok);
		json_object_put(root);
		return -1;
	}
	json_tokener_free(tok);
	metadata_init(m);
	json_object_put(m->root);
	m->root = root;
	m->version = (int)get_int(root, "version", 1);
	if (m->version <= 1) {
		m->version = 1;
		return 0;
	}
	t = obj_get(root, "template");
	copy_str(m->build_id, sizeof(m->build_id), t, "build_id");
	copy_str(m->kernel_version, sizeof(m->kernel_version), t, "kernel_version");
	t = obj_get(root, "vmm");
	copy_str(m->vmm.type, sizeof(m->vmm.type), t, "type");
	copy_str(m->vmm.version, sizeof(m->vmm.version), t, "version");
	copy_str(m->vmm.accel, sizeof(m->vmm.accel), t, "accel");
	copy_str(m->vmm.cpu, sizeof(m->vmm.cpu), t, "cpu");
	copy_str(m->vmm.machine, sizeof(m->vmm.machine), t, "machine");
	m->vmm.vcpu = (int)get_int(t, "vcpu", 0);
	m->vmm.memory_mib = (int)get_int(t, "memory_mib", 0);
	m->disk_mib = (uint64_t)get_int(root, "disk_mib", 0);
	m->memfile_block_size = (uint64_t)get_int(obj_get(root, "memfile"), "block_size", 4096);
	m->rootfs_block_size = (uint64_t)get_int(obj_get(root, "rootfs"), "block_size", 4096);
	t = obj_get(root, "context");
	copy_str(m->user, sizeof(m->user), t, "user");
	copy_str(m->workdir, sizeof(m->workdir), t, "workdir");
	t = obj_get(root, "start");
	if ((v = obj_get(t, "start_command")) && json_object_is_type(v, json_type_string))
		m->start_cmd = strdup(json_object_get_string(v));
	if ((v = obj_get(t, "ready_command")) && json_object_is_type(v, json_type_string))
		m->ready_cmd = strdup(json_object_get_string(v));
	copy_str(m->from_image, sizeof(m->from_image), root, "from_image");
	copy_str(m->from_build, sizeof(m->from_build), obj_get(root, "from_template"), "build_id");
	return 0;
}

/* Get or create a child object. */
static struct json_object *child(struct json_object *o, const char *k)
{
	struct json_object *v = obj_get(o, k);
	if (v && json_object_is_type(v, json_type_object))
		return v;
	v = json_object_new_object();
	json_object_object_add(o, k, v);
	return v;
}

static void put_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v ? v : ""));
}

char *metadata_serialize(struct build_metadata *m)
{
	struct json_object *r = m->root, *t;
	json_object_object_add(r, "version", json_object_new_int(m->version < 2 ? 2 : m->version));
	t = child(r, "template");
	put_str(t, "build_id", m->build_id);
	put_str(t, "kernel_version", m->kernel_version);
	if (!obj_get(t, "firecracker_version"))
		put_str(t, "firecracker_version", "");
	t = child(r, "vmm");
	put_str(t, "type", m->vmm.type);
	put_str(t, "version", m->vmm.version);
	put_str(t, "accel", m->vmm.accel);
	put_str(t, "cpu", m->vmm.cpu);
	put_str(t, "machine", m->vmm.machine);
	json_object_object_add(t, "vcpu", json_object_new_int(m->vmm.vcpu));
	json_object_object_add(t, "memory_mib", json_object_new_int(m->vmm.memory_mib));
	json_object_object_add(r, "disk_mib", json_object_new_int64((int64_t)m->disk_mib));
	json_object_object_add(child(r, "memfile"), "block_size", json_object_new_int64((int64_t)m->memfile_block_size));
	json_object_object_add(child(r, "rootfs"), "block_size", json_object_new_int64((int64_t)m->rootfs_block_size));
	t = child(r, "context");
	put_str(t, "user", m->user);
	put_str(t, "workdir", m->workdir);
	if (!obj_get(t, "env_vars"))
		json_object_object_add(t, "env_vars", json_object_new_object());
	if (m->start_cmd || m->ready_cmd) {
		t = child(r, "start");
		put_str(t, "start_command", m->start_cmd);
		put_str(t, "ready_command", m->ready_cmd);
	}
	if (m->from_image[0])
		put_str(r, "from_image", m->from_image);
	if (m->from_build[0])
		put_str(child(r, "from_template"), "build_id", m->from_build);
	return strdup(json_object_to_json_string_ext(r, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

int metadata_load(struct storage *st, const char *build_id, struct build_metadata *m)
{
	char key[BUILD_KEY_MAX];
	size_t len;
	char *buf;
	int r;
	build_key(key, build_id, BUILD_METADATA);
	buf = storage_read_all(st, key, &len);
	if (!buf) {
		if (errno == ENOENT)
			return err_set_errno(ENOENT, "build %s in %s is not complete (no metadata.json)", build_id,
					     storage_describe(st));
		return -1;
	}
	r = metadata_parse(buf, len, m);
	free(buf);
	if (r < 0)
		return err_prefix("build %s in %s", build_id, storage_describe(st));
	return 0;
}

int metadata_store(struct storage *st, const char *build_id, struct build_metadata *m)
{
	char key[BUILD_KEY_MAX];
	char *js = metadata_serialize(m);
	int r;
	if (!js)
		return err_set_errno(ENOMEM, "cannot serialize metadata.json");
	build_key(key, build_id, BUILD_METADATA);
	r = storage_write_buf(st, key, js, strlen(js));
	free(js);
	return r;
}
