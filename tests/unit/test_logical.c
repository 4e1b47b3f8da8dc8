/*
 * test_logical.c - the logical file reader over a local storage directory: chains of diff
 * headers (header_diff) with packed data objects, compared with a per-block model; random
 * ranges from several threads at once; the object-opener hook (each object opened once);
 * early and lazy size checks of short objects; missing objects and builds; legacy builds.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "storage/logical.h"
#include "test.h"

#define BS 4096ull
#define NBLOCKS 300ull
#define GENS 4

static char dir[64];
static struct storage *st;
static uint8_t *model; /* the logical file of the newest build */
static char ids[GENS][UUID_STR_LEN + 1];

static uint64_t rng = 12345;
static uint64_t rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % n;
}

static int put(const char *id, const char *name, const void *buf, size_t len)
{
	char key[BUILD_KEY_MAX];
	build_key(key, id, name);
	return storage_write_buf(st, key, buf, len);
}

/* Builds a chain of GENS memfile builds; model = logical file of the last. */
static int make_chain(void)
{
	struct mapping nilmap = { 0, NBLOCKS * BS, { { 0 } }, 0 };
	struct header h = { 3, BS, NBLOCKS * BS, 0, { { 0 } }, { { 0 } }, &nilmap, 1 }, next;
	bool owned = false;
	model = calloc(NBLOCKS, BS);
	for (int g = 0; g < GENS; g++) {
		uint64_t dirty[(NBLOCKS + 63) / 64] = { 0 }, empty[(NBLOCKS + 63) / 64] = { 0 };
		uint8_t *data = malloc(NBLOCKS * BS);
		size_t packed = 0, hlen;
		uuid_t16 id;
		void *hb;
		uuid_generate(&id);
		uuid_format(&id, ids[g]);
		for (uint64_t b = 0; b < NBLOCKS; b++) {
			uint64_t r = rnd(10);
			if (g == 0 ? r < 7 : r < 2) {
				dirty[b / 64] |= 1ull << (b % 64);
				for (uint64_t k = 0; k < BS; k++)
					data[packed + k] = (uint8_t)(g * 31 + b * 7 + k + 1);
				memcpy(model + b * BS, data + packed, BS);
				packed += BS;
			} else if (g > 0 && r == 2) {
				empty[b / 64] |= 1ull << (b % 64);
				memset(model + b * BS, 0, BS);
			}
		}
		if (header_diff(&h, &id, dirty, empty, &next) < 0)
			return -1;
		if (g == 0)
			next.base_build_id = id;
		if (owned)
			header_release(&h);
		h = next;
		owned = true;
		hb = header_serialize(&h, &hlen);
		if (!hb || put(ids[g], BUILD_MEMFILE_HEADER, hb, hlen) < 0 ||
		    put(ids[g], BUILD_MEMFILE, data, packed) < 0)
			return -1;
		free(hb);
		free(data);
	}
	header_release(&h);
	return 0;
}

static void test_read_chain(void)
{
	struct logical *l = logical_open(st, ids[GENS - 1], BUILD_KIND_MEMFILE);
	uint8_t *buf = malloc(NBLOCKS * BS);
	CHECK(l != NULL);
	if (!l) {
		printf("  %s\n", err_msg());
		free(buf);
		return;
	}
	CHECK_EQ_U64(logical_size(l), NBLOCKS * BS);
	CHECK(!logical_is_legacy(l));
	CHECK(logical_read(l, buf, NBLOCKS * BS, 0) == 0);
	CHECK(memcmp(buf, model, NBLOCKS * BS) == 0);
	for (int i = 0; i < 2000; i++) {
		uint64_t off = rnd(NBLOCKS * BS), len = rnd(NBLOCKS * BS - off + 1);
		if (logical_read(l, buf, len, off) < 0 || memcmp(buf, model + off, len)) {
			printf("  range [%llu, +%llu) differs\n", (unsigned long long)off,
			       (unsigned long long)len);
			test_cur_failed = 1;
			break;
		}
	}
	CHECK(logical_read(l, buf, 0, NBLOCKS * BS) == 0);
	CHECK(logical_read(l, buf, 1, NBLOCKS * BS) == -1);
	CHECK(logical_read(l, buf, 2, UINT64_MAX) == -1);
	logical_close(l);
	free(buf);
}

struct worker {
	struct logical *l;
	uint64_t seed;
	int bad;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint8_t *buf = malloc(64 * BS);
	uint64_t s = w->seed;
	for (int i = 0; i < 3000; i++) {
		uint64_t off, len;
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		off = s % (NBLOCKS * BS);
		len = (s >> 20) % (64 * BS);
		if (len > NBLOCKS * BS - off)
			len = NBLOCKS * BS - off;
		if (logical_read(w->l, buf, len, off) < 0 || memcmp(buf, model + off, len))
			w->bad++;
	}
	free(buf);
	return NULL;
}

struct counting {
	struct storage *st;
	int opens;
	pthread_mutex_t lock;
};

static struct storage_object *counting_open(void *opaque, const char *key)
{
	struct counting *c = opaque;
	pthread_mutex_lock(&c->lock);
	c->opens++;
	pthread_mutex_unlock(&c->lock);
	return storage_object_open(c->st, key);
}

static void test_threads_and_opener(void)
{
	struct counting c = { .st = st, .lock = PTHREAD_MUTEX_INITIALIZER };
	struct logical_options opts = { .open_object = counting_open, .opaque = &c,
					.lazy_size_check = true };
	struct header h;
	bool legacy;
	struct logical *l;
	pthread_t t[4];
	struct worker w[4];
	int bad = 0;
	CHECK(logical_load_header(st, ids[GENS - 1], BUILD_KIND_MEMFILE, &h, &legacy) == 0);
	l = logical_open_header(NULL, &h, BUILD_KIND_MEMFILE, &opts);
	CHECK(l != NULL && h.maps == NULL);
	if (!l)
		return;
	CHECK_EQ_U64(c.opens, 0); /* lazy */
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ l, 0x1234567ull * (uint64_t)(i + 1), 0 };
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		bad += w[i].bad;
	}
	CHECK_EQ_U64(bad, 0);
	CHECK(c.opens >= 1 && c.opens <= GENS); /* each object once */
	logical_close(l);
}

static void test_short_object(void)
{
	char key[BUILD_KEY_MAX];
	struct logical *l;
	uint64_t size;
	uint8_t *data;
	build_key(key, ids[0], BUILD_MEMFILE);
	CHECK(storage_size(st, key, &size) == 0);
	data = calloc(1, size);
	CHECK(put(ids[0], BUILD_MEMFILE, data, size - 100) == 0);
	l = logical_open(st, ids[GENS - 1], BUILD_KIND_MEMFILE);
	CHECK(l == NULL);
	if (l)
		logical_close(l);
	else if (!strstr(err_msg(), ids[0]) || !strstr(err_msg(), "memfile") ||
		 !strstr(err_msg(), "logical offset")) {
		printf("  message does not name build, file and offset: %s\n", err_msg());
		test_cur_failed = 1;
	}
	{ /* lazily checked: open succeeds, the read that needs the object fails */
		struct counting c = { .st = st, .lock = PTHREAD_MUTEX_INITIALIZER };
		struct logical_options opts = { .open_object = counting_open, .opaque = &c,
						.lazy_size_check = true };
		struct header h;
		bool legacy;
		uint8_t *buf = malloc(NBLOCKS * BS);
		CHECK(logical_load_header(st, ids[0], BUILD_KIND_MEMFILE, &h, &legacy) == 0);
		l = logical_open_header(NULL, &h, BUILD_KIND_MEMFILE, &opts);
		CHECK(l != NULL);
		if (l) {
			CHECK(logical_read(l, buf, NBLOCKS * BS, 0) == -1);
			CHECK(strstr(err_msg(), "logical offset") != NULL);
			logical_close(l);
		}
		free(buf);
	}
	/* missing object */
	{
		char path[256];
		snprintf(path, sizeof(path), "%s/%s/%s", dir, ids[0], BUILD_MEMFILE);
		CHECK(unlink(path) == 0);
	}
	l = logical_open(st, ids[GENS - 1], BUILD_KIND_MEMFILE);
	CHECK(l == NULL && strstr(err_msg(), ids[0]) != NULL);
	logical_close(l);
	CHECK(put(ids[0], BUILD_MEMFILE, data, size) == 0);
	free(data);
}

static void test_missing_and_invalid(void)
{
	struct logical *l = logical_open(st, "01234567-89ab-4def-8123-456789abcdef", BUILD_KIND_ROOTFS);
	CHECK(l == NULL && errno == ENOENT && strstr(err_msg(), "not found"));
	logical_close(l);
	l = logical_open(st, "../etc", BUILD_KIND_ROOTFS);
	CHECK(l == NULL && strstr(err_msg(), "UUID"));
	CHECK(put("11111111-2222-4333-8444-555555555555", BUILD_ROOTFS_HEADER, "garbage", 7) == 0);
	l = logical_open(st, "11111111-2222-4333-8444-555555555555", BUILD_KIND_ROOTFS);
	CHECK(l == NULL && strstr(err_msg(), "[offset 7]"));
	logical_close(l);
}

static void test_legacy(void)
{
	const char *id = "aaaaaaaa-2222-4333-8444-555555555555";
	uint8_t *data = malloc(4 * (2u << 20)), *buf = malloc(4 * (2u << 20));
	struct logical *l;
	for (size_t i = 0; i < 4 * (2u << 20); i++)
		data[i] = (uint8_t)(i * 13 + 5);
	CHECK(put(id, BUILD_MEMFILE, data, 4 * (2u << 20)) == 0);
	l = logical_open(st, id, BUILD_KIND_MEMFILE);
	CHECK(l != NULL);
	if (l) {
		CHECK(logical_is_legacy(l));
		CHECK_EQ_U64(logical_header(l)->block_size, 2u << 20);
		CHECK_EQ_U64(logical_header(l)->version, 1);
		CHECK(logical_read(l, buf, 4 * (2u << 20), 0) == 0);
		CHECK(memcmp(buf, data, 4 * (2u << 20)) == 0);
		logical_close(l);
	}
	CHECK(put("bbbbbbbb-2222-4333-8444-555555555555", BUILD_ROOTFS, data, 3 * 4096) == 0);
	l = logical_open(st, "bbbbbbbb-2222-4333-8444-555555555555", BUILD_KIND_ROOTFS);
	CHECK(l != NULL && logical_header(l)->block_size == 4096);
	logical_close(l);
	CHECK(put("cccccccc-2222-4333-8444-555555555555", BUILD_ROOTFS, data, 3 * 4096 + 1) == 0);
	l = logical_open(st, "cccccccc-2222-4333-8444-555555555555", BUILD_KIND_ROOTFS);
	CHECK(l == NULL && strstr(err_msg(), "legacy"));
	logical_close(l);
	free(data);
	free(buf);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_logical.XXXXXX");
	if (!mkdtemp(dir) || !(st = storage_open(dir, false)) || make_chain() < 0) {
		printf("FAIL setup: %s\n", err_msg());
		return 1;
	}
	RUN(test_read_chain);
	RUN(test_threads_and_opener);
	RUN(test_short_object);
	RUN(test_missing_and_invalid);
	RUN(test_legacy);
	storage_free(st);
	remove_tree(dir);
	free(model);
	TEST_EXIT();
}
