/* Unit tests of the local storage backend and location resolution. */
#include <errno.h>
#include <sys/stat.h>

#include "storage/storage.h"
#include "test.h"

static char dir[] = "/tmp/orch-unit-storage.XXXXXX";

static void local_roundtrip(void)
{
	struct storage *st = storage_open(dir, false);
	struct storage_object *o;
	char buf[16];
	size_t len;
	char **keys;
	size_t n;
	uint64_t size;
	bool ex;
	CHECK(st != NULL);
	if (!st)
		return;
	CHECK(storage_write_buf(st, "b1/memfile.header", "hello world", 11) == 0);
	CHECK(storage_write_buf(st, "b1/memfile", "0123456789", 10) == 0);
	CHECK(storage_write_buf(st, "b2/memfile", "x", 1) == 0);
	CHECK(storage_size(st, "b1/memfile", &size) == 0 && size == 10);
	CHECK(storage_exists(st, "b1/nope", &ex) == 0 && !ex);
	CHECK(storage_size(st, "b1/nope", &size) < 0 && errno == ENOENT);
	char *all = storage_read_all(st, "b1/memfile.header", &len);
	CHECK(all && len == 11 && !memcmp(all, "hello world", 11));
	free(all);
	o = storage_object_open(st, "b1/memfile");
	CHECK(o && storage_object_size(o) == 10);
	if (o) {
		CHECK(storage_object_read(o, buf, 4, 3) == 0 && !memcmp(buf, "3456", 4));
		CHECK(storage_object_read(o, buf, 4, 8) < 0);
		CHECK(strstr(err_msg(), "b1/memfile") != NULL);
		storage_object_close(o);
	}
	CHECK(storage_list(st, "b1/", &keys, &n) == 0 && n == 2);
	if (n == 2) {
		CHECK_STR(keys[0], "b1/memfile");
		CHECK_STR(keys[1], "b1/memfile.header");
	}
	storage_list_free(keys, n);
	CHECK(storage_delete_prefix(st, "b1/") == 0);
	CHECK(storage_exists(st, "b1/memfile", &ex) == 0 && !ex);
	CHECK(storage_exists(st, "b2/memfile", &ex) == 0 && ex);
	storage_free(st);
}

static void keys_cannot_escape(void)
{
	struct storage *st = storage_open(dir, false);
	uint64_t size;
	CHECK(storage_size(st, "../etc/passwd", &size) < 0);
	CHECK(storage_size(st, "/etc/passwd", &size) < 0);
	CHECK(storage_size(st, "a//b", &size) < 0);
	CHECK(storage_object_open(st, "b/../../x") == NULL);
	storage_free(st);
}

static void templates_subdir(void)
{
	char sub[256];
	struct storage *st;
	snprintf(sub, sizeof(sub), "%s/templates", dir);
	CHECK(mkdir(sub, 0755) == 0);
	st = storage_open(dir, false);
	CHECK(st && strcmp(storage_local_dir(st), sub) == 0);
	storage_free(st);
	CHECK(storage_open("/nonexistent/orch-x", false) == NULL);
}

static void location_resolution(void)
{
	char *l;
	unsetenv("STORAGE_PROVIDER");
	unsetenv("TEMPLATE_BUCKET_NAME");
	l = storage_location_resolve(NULL);
	CHECK_STR(l, ".local-build");
	free(l);
	l = storage_location_resolve("s3://x");
	CHECK_STR(l, "s3://x");
	free(l);
	setenv("TEMPLATE_BUCKET_NAME", "bkt", 1);
	l = storage_location_resolve("");
	CHECK_STR(l, "gs://bkt");
	free(l);
	setenv("STORAGE_PROVIDER", "AWSBucket", 1);
	l = storage_location_resolve(NULL);
	CHECK_STR(l, "s3://bkt");
	free(l);
	setenv("STORAGE_PROVIDER", "Local", 1);
	setenv("LOCAL_TEMPLATE_STORAGE_BASE_PATH", "/srv/t", 1);
	l = storage_location_resolve(NULL);
	CHECK_STR(l, "/srv/t");
	free(l);
	unsetenv("STORAGE_PROVIDER");
	unsetenv("TEMPLATE_BUCKET_NAME");
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	RUN(local_roundtrip);
	RUN(keys_cannot_escape);
	RUN(templates_subdir);
	RUN(location_resolution);
	remove_tree(dir);
	TEST_EXIT();
}
