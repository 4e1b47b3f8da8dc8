/*
 * test_block.c - COW overlay semantics and export, the chunk cache (single flight, failures
 * not memoized) over a fake remote storage, and owned directories.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "block/block.h"
#include "storage/internal.h"
#include "storage/logical.h"
#include "test.h"

#define BS 4096u

/* ---- a memory base device with a recognisable pattern ---- */

static uint8_t base_byte(uint64_t off)
{
	return (uint8_t)((off * 7 + off / 4096) | 1);
}

static int mem_read(void *opaque, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	(void)opaque;
	for (size_t i = 0; i < len; i++)
		p[i] = base_byte(off + i);
	return 0;
}

static char tmpdir[256];

static void mk_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_block.XXXXXX");
	if (!mkdtemp(tmpdir))
		abort();
}

static bool range_is(struct cow *c, uint64_t off, size_t len, int (*expect)(uint64_t))
{
	uint8_t *b = malloc(len);
	bool ok = b && cow_read(c, b, len, off) == 0;
	for (size_t i = 0; ok && i < len; i++)
		if (b[i] != (uint8_t)expect(off + i)) {
			printf("  byte %llu is %u, expected %u\n", (unsigned long long)(off + i), b[i],
			       (uint8_t)expect(off + i));
			ok = false;
		}
	free(b);
	return ok;
}

static int exp_base(uint64_t off)
{
	return base_byte(off);
}

static void test_cow_read_write(void)
{
	char path[300];
	struct block_source src = { .read = mem_read, .size = 64 * BS, .block_size = BS };
	struct cow *c;
	uint8_t buf[3 * BS];
	mk_tmpdir();
	snprintf(path, sizeof(path), "%s/cow", tmpdir);
	c = cow_new(&src, path);
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK(range_is(c, 0, 64 * BS, exp_base));
	/* unaligned write across two blocks: the rest of both blocks keeps the base bytes */
	memset(buf, 0xee, sizeof(buf));
	CHECK(cow_write(c, buf, 100, BS - 50) == 0);
	CHECK_EQ_U64(cow_written_blocks(c), 2);
	CHECK(cow_read(c, buf, 2 * BS, 0) == 0);
	CHECK(buf[BS - 51] == base_byte(BS - 51));
	CHECK(buf[BS - 50] == 0xee && buf[BS + 49] == 0xee);
	CHECK(buf[BS + 50] == base_byte(BS + 50));
	/* aligned multi-block write */
	memset(buf, 0x42, sizeof(buf));
	CHECK(cow_write(c, buf, 3 * BS, 10 * BS) == 0);
	CHECK(cow_read(c, buf, BS, 12 * BS) == 0 && buf[0] == 0x42 && buf[BS - 1] == 0x42);
	CHECK(range_is(c, 13 * BS, 10 * BS, exp_base));
	/* zero: partial edges are zeroed too */
	CHECK(cow_zero(c, 2 * BS, 20 * BS + 10) == 0);
	CHECK(cow_read(c, buf, 3 * BS, 20 * BS) == 0);
	CHECK(buf[9] == base_byte(20 * BS + 9) && buf[10] == 0 && buf[2 * BS + 9] == 0 &&
	      buf[2 * BS + 10] == base_byte(22 * BS + 10));
	/* trim: only whole blocks inside the range */
	CHECK(cow_trim(c, 3 * BS, 30 * BS + 1) == 0);
	CHECK(cow_read(c, buf, 3 * BS, 30 * BS) == 0);
	CHECK(buf[0] == base_byte(30 * BS) && buf[BS - 1] == base_byte(31 * BS - 1) && buf[BS] == 0 &&
	      buf[3 * BS - 1] == 0);
	CHECK(range_is(c, 33 * BS, BS, exp_base));
	/* out of range */
	errno = 0;
	CHECK(cow_write(c, buf, 2, 64 * BS - 1) < 0 && errno == ENOSPC);
	CHECK(cow_read(c, buf, 1, 64 * BS) < 0);
	cow_free(c);
	CHECK(access(path, F_OK) < 0);
	remove_tree(tmpdir);
}

static void test_cow_map(void)
{
	char path[300];
	struct block_source zero = block_zero_source(16 * BS, BS);
	struct block_source nomap = { .read = mem_read, .size = 16 * BS, .block_size = BS };
	struct nbd_extent e[8];
	struct cow *c, *c2;
	uint8_t buf[BS];
	mk_tmpdir();
	snprintf(path, sizeof(path), "%s/cow", tmpdir);
	c = cow_new(&zero, path);
	snprintf(path, sizeof(path), "%s/cow2", tmpdir);
	c2 = cow_new(&nomap, path);
	CHECK(c && c2);
	if (!c || !c2)
		return;
	memset(buf, 1, sizeof(buf));
	CHECK(cow_write(c, buf, BS, 4 * BS) == 0 && cow_write(c, buf, BS, 5 * BS) == 0);
	/* zeros [0,4), COW [4,6), zeros [6,8) */
	CHECK_EQ_U64(cow_map(c, 0, 8 * BS, e, 8), 3);
	CHECK(e[0].fd < 0 && e[0].length == 4 * BS);
	CHECK(e[1].fd >= 0 && e[1].offset == 4 * BS && e[1].length == 2 * BS);
	CHECK(e[2].fd < 0 && e[2].offset == 6 * BS && e[2].length == 2 * BS);
	CHECK_EQ_U64(cow_map(c, 100, 10, e, 8), 1);
	CHECK_EQ_U64(cow_map(c, 0, 8 * BS, e, 2), 0);  /* needs 3 extents */
	CHECK_EQ_U64(cow_map(c, 0, 17 * BS, e, 8), 0); /* past the end */
	CHECK_EQ_U64(cow_map(c2, 0, BS, e, 8), 0);     /* base cannot map */
	cow_free(c);
	cow_free(c2);
	remove_tree(tmpdir);
}

struct writer_arg {
	struct cow *c;
	int id;
};

static void *writer(void *p)
{
	struct writer_arg *a = p;
	uint8_t buf[BS];
	for (int i = 0; i < 64; i++) {
		uint64_t b = (uint64_t)i * 4 + (uint64_t)a->id;
		memset(buf, (int)(b & 0xff) | 1, sizeof(buf));
		/* half-block writes exercise read-modify-write under contention */
		if (cow_write(a->c, buf, BS / 2, b * BS) < 0 || cow_write(a->c, buf, BS / 2, b * BS + BS / 2) < 0)
			return (void *)1;
		if (cow_read(a->c, buf, BS, ((uint64_t)i * 7 % 256) * BS) < 0)
			return (void *)1;
	}
	return NULL;
}

static void test_cow_concurrent(void)
{
	char path[300];
	struct block_source src = { .read = mem_read, .size = 256 * BS, .block_size = BS };
	struct cow *c;
	pthread_t t[4];
	struct writer_arg a[4];
	bool ok = true;
	mk_tmpdir();
	snprintf(path, sizeof(path), "%s/cow", tmpdir);
	c = cow_new(&src, path);
	CHECK(c != NULL);
	if (!c)
		return;
	for (int i = 0; i < 4; i++) {
		a[i] = (struct writer_arg){ c, i };
		pthread_create(&t[i], NULL, writer, &a[i]);
	}
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(t[i], &r);
		ok &= r == NULL;
	}
	CHECK(ok);
	for (uint64_t b = 0; b < 256; b++) {
		uint8_t buf[BS];
		CHECK(cow_read(c, buf, BS, b * BS) == 0);
		if (buf[0] != ((b & 0xff) | 1) || buf[BS - 1] != ((b & 0xff) | 1)) {
			printf("  block %llu has %u/%u\n", (unsigned long long)b, buf[0], buf[BS - 1]);
			CHECK(false);
			break;
		}
	}
	CHECK_EQ_U64(cow_written_blocks(c), 256);
	cow_free(c);
	remove_tree(tmpdir);
}

static void test_cow_export(void)
{
	char path[300], key[BUILD_KEY_MAX];
	const char *base_id = "30000000-0000-4000-8000-000000000001";
	const char *new_id = "30000000-0000-4000-8000-000000000002";
	uuid_t16 bu, nu;
	struct header h;
	struct storage *st;
	struct block_source src = { .read = mem_read, .size = 32 * BS, .block_size = BS };
	struct cow *c;
	struct cow_export_stats s;
	uint8_t buf[2 * BS];
	mk_tmpdir();
	snprintf(path, sizeof(path), "%s/storage", tmpdir);
	st = storage_open(path, true);
	CHECK(st != NULL);
	uuid_parse(base_id, &bu);
	uuid_parse(new_id, &nu);
	CHECK(header_legacy(&h, &bu, BS, 32 * BS) == 0);
	h.version = 3;
	h.generation = 4;
	snprintf(path, sizeof(path), "%s/cow", tmpdir);
	c = cow_new(&src, path);
	CHECK(c != NULL);
	if (!c || !st)
		return;
	memset(buf, 0x77, sizeof(buf));
	CHECK(cow_write(c, buf, 2 * BS, 3 * BS) == 0);  /* blocks 3,4: data */
	CHECK(cow_write(c, buf, 10, 9 * BS + 5) == 0);  /* block 9: data (RMW) */
	CHECK(cow_zero(c, BS, 20 * BS) == 0);           /* block 20: empty */
	memset(buf, 0, sizeof(buf));
	CHECK(cow_write(c, buf, BS, 21 * BS) == 0);     /* block 21: written zeros -> empty */
	CHECK(cow_export(c, &h, st, new_id, BUILD_KIND_ROOTFS, &s) == 0);
	CHECK_EQ_U64(s.dirty_blocks, 3);
	CHECK_EQ_U64(s.empty_blocks, 2);
	CHECK_EQ_U64(s.diff_bytes, 3 * BS);
	{
		uint64_t size = 0, soff, rem;
		size_t hl;
		struct header nh;
		void *hb;
		const struct mapping *m;
		build_key(key, new_id, BUILD_ROOTFS);
		CHECK(storage_size(st, key, &size) == 0);
		CHECK_EQ_U64(size, 3 * BS);
		build_key(key, new_id, BUILD_ROOTFS_HEADER);
		hb = storage_read_all(st, key, &hl);
		CHECK(hb && header_parse(hb, hl, &nh) == 0);
		free(hb);
		if (hb) {
			CHECK_EQ_U64(nh.generation, 5);
			CHECK(uuid_equal(&nh.build_id, &nu));
			m = header_lookup(&nh, 4 * BS, &soff, &rem);
			CHECK(m && uuid_equal(&m->build_id, &nu) && soff == BS);
			m = header_lookup(&nh, 9 * BS, &soff, &rem);
			CHECK(m && uuid_equal(&m->build_id, &nu) && soff == 2 * BS);
			m = header_lookup(&nh, 20 * BS, &soff, &rem);
			CHECK(m && uuid_is_nil(&m->build_id) && rem == 2 * BS);
			m = header_lookup(&nh, 8 * BS, &soff, &rem);
			CHECK(m && uuid_equal(&m->build_id, &bu) && soff == 8 * BS);
			header_release(&nh);
		}
	}
	/* the exported build read back through the block layer equals the COW view */
	{
		struct block_source bs;
		struct block_build *b;
		uint8_t *want = malloc(32 * BS), *got = malloc(32 * BS);
		/* the base needs a data object for the logical reader */
		int fd;
		snprintf(path, sizeof(path), "%s/storage/%s", tmpdir, base_id);
		mkdir(path, 0755);
		snprintf(path, sizeof(path), "%s/storage/%s/rootfs.ext4", tmpdir, base_id);
		fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		mem_read(NULL, want, 32 * BS, 0);
		CHECK(fd >= 0 && full_pwrite(fd, want, 32 * BS, 0) == 0);
		close(fd);
		b = block_build_open(st, new_id, BUILD_KIND_ROOTFS);
		CHECK(b != NULL);
		if (b) {
			bs = block_build_source(b);
			CHECK(bs.read(bs.opaque, got, 32 * BS, 0) == 0);
			CHECK(cow_read(c, want, 32 * BS, 0) == 0);
			CHECK(memcmp(want, got, 32 * BS) == 0);
			CHECK_EQ_U64(block_build_fetched(b), 0);
			block_build_close(b);
		} else {
			printf("  %s\n", err_msg());
		}
		free(want);
		free(got);
	}
	header_release(&h);
	cow_free(c);
	storage_free(st);
	remove_tree(tmpdir);
}

/* ---- chunk cache over a fake remote ---- */

#define REMOTE_SIZE (20u << 20)

struct fake {
	pthread_mutex_t lock;
	int reads;          /* object reads served (or failed) */
	int fail_next;      /* fail this many reads */
	unsigned delay_ms;  /* per read */
};
static struct fake fake = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int fake_obj_read(struct storage_object *o, void *buf, size_t len, uint64_t off)
{
	bool fail;
	(void)o;
	if (fake.delay_ms)
		nanosleep(&(struct timespec){ 0, (long)fake.delay_ms * 1000000L }, NULL);
	pthread_mutex_lock(&fake.lock);
	fake.reads++;
	fail = fake.fail_next > 0;
	if (fail)
		fake.fail_next--;
	pthread_mutex_unlock(&fake.lock);
	if (fail)
		return err_set_errno(EIO, "injected failure");
	for (size_t i = 0; i < len; i++)
		((uint8_t *)buf)[i] = base_byte(off + i);
	return 0;
}

static void fake_obj_close(struct storage_object *o)
{
	free(o->key);
	free(o);
}

static const struct storage_object_ops fake_obj_ops = { .read = fake_obj_read, .close = fake_obj_close };

static struct storage_object *fake_open(struct storage *st, const char *key)
{
	struct storage_object *o = calloc(1, sizeof(*o));
	o->ops = &fake_obj_ops;
	o->st = st;
	o->key = strdup(key);
	o->size = REMOTE_SIZE;
	return o;
}

static void fake_free(struct storage *st)
{
	free(st->describe);
	free(st);
}

static const struct storage_ops fake_ops = { .name = "fake", .object_open = fake_open, .free = fake_free };

static struct storage *fake_storage(void)
{
	struct storage *st = calloc(1, sizeof(*st));
	st->ops = &fake_ops;
	st->describe = strdup("fake://remote");
	return st;
}

struct reader_arg {
	struct storage_object *o;
	uint64_t off;
	size_t len;
	int result;
};

static void *reader(void *p)
{
	struct reader_arg *a = p;
	uint8_t *b = malloc(a->len);
	a->result = storage_object_read(a->o, b, a->len, a->off);
	for (size_t i = 0; a->result == 0 && i < a->len; i++)
		if (b[i] != base_byte(a->off + i))
			a->result = 2;
	free(b);
	return NULL;
}

static int run_readers(struct storage_object *o, int n, uint64_t off, size_t len, int *errors)
{
	pthread_t t[16];
	struct reader_arg a[16];
	int bad = 0;
	*errors = 0;
	for (int i = 0; i < n; i++) {
		a[i] = (struct reader_arg){ o, off + (uint64_t)i * 512, len, 0 };
		pthread_create(&t[i], NULL, reader, &a[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		if (a[i].result == -1)
			(*errors)++;
		else if (a[i].result != 0)
			bad++;
	}
	return bad;
}

static void test_chunk_cache(void)
{
	struct storage *cc;
	struct storage_object *o;
	int errors;
	char dir[300];
	uint8_t b[100];
	mk_tmpdir();
	snprintf(dir, sizeof(dir), "%s/cache", tmpdir);
	cc = chunk_cache_new(fake_storage(), dir);
	CHECK(cc != NULL && chunk_cache_is(cc));
	if (!cc)
		return;
	o = storage_object_open(cc, "40000000-0000-4000-8000-000000000001/rootfs.ext4");
	CHECK(o != NULL && storage_object_size(o) == REMOTE_SIZE);
	if (!o)
		return;
	/* 8 concurrent readers of one chunk: one fetch */
	fake.delay_ms = 100;
	CHECK(run_readers(o, 8, 100, 1000, &errors) == 0);
	CHECK_EQ_U64(errors, 0);
	CHECK_EQ_U64(fake.reads, 1);
	CHECK_EQ_U64(chunk_cache_fetched(cc), 1);
	/* cached: no more fetches */
	CHECK(run_readers(o, 4, 5000, 4096, &errors) == 0 && errors == 0);
	CHECK_EQ_U64(fake.reads, 1);
	/* a read across the chunk boundary fetches the next chunk only */
	fake.delay_ms = 0;
	CHECK(storage_object_read(o, b, sizeof(b), BLOCK_CHUNK_SIZE - 50) == 0);
	CHECK(b[0] == base_byte(BLOCK_CHUNK_SIZE - 50) && b[99] == base_byte(BLOCK_CHUNK_SIZE + 49));
	CHECK_EQ_U64(fake.reads, 2);
	/* a failing fetch is reported to everyone waiting for it ... */
	fake.delay_ms = 300;
	fake.fail_next = 1;
	CHECK(run_readers(o, 4, 3 * (uint64_t)BLOCK_CHUNK_SIZE, 4096, &errors) == 0);
	CHECK_EQ_U64(errors, 4);
	CHECK_EQ_U64(fake.reads, 3);
	CHECK_EQ_U64(chunk_cache_fetched(cc), 2);
	/* ... and not memoized: the next reader fetches again and succeeds */
	fake.delay_ms = 0;
	CHECK(run_readers(o, 1, 3 * (uint64_t)BLOCK_CHUNK_SIZE, 4096, &errors) == 0 && errors == 0);
	CHECK_EQ_U64(fake.reads, 4);
	CHECK_EQ_U64(chunk_cache_fetched(cc), 3);
	/* the last (short) chunk */
	CHECK(storage_object_read(o, b, sizeof(b), REMOTE_SIZE - sizeof(b)) == 0);
	CHECK(b[99] == base_byte(REMOTE_SIZE - 1));
	CHECK(storage_object_read(o, b, sizeof(b), REMOTE_SIZE - 10) < 0);
	storage_object_close(o);
	storage_free(cc);
	/* the cache directory is gone with the storage */
	{
		struct stat sb;
		int n = 0;
		char cmd[400];
		snprintf(cmd, sizeof(cmd), "%s", dir);
		CHECK(stat(cmd, &sb) == 0);
		n = block_dir_reap(dir, "chunks", NULL, NULL);
		CHECK_EQ_U64(n, 0);
		CHECK(rmdir(dir) == 0); /* empty: nothing was left */
	}
	remove_tree(tmpdir);
}

static void test_dir_ownership(void)
{
	struct block_dir d;
	char parent[300], path[400];
	pid_t pid;
	int st;
	mk_tmpdir();
	snprintf(parent, sizeof(parent), "%s/owned", tmpdir);
	CHECK(block_dir_claim(&d, parent, "x") == 0);
	/* a live owner's directory is never reaped */
	CHECK_EQ_U64(block_dir_reap(parent, "x", NULL, NULL), 0);
	CHECK(access(d.path, F_OK) == 0);
	/* a dead owner's is */
	pid = fork();
	if (pid == 0) {
		struct block_dir c;
		_exit(block_dir_claim(&c, parent, "x") == 0 ? 0 : 1); /* exits holding it */
	}
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_EQ_U64(block_dir_reap(parent, "x", NULL, NULL), 1);
	CHECK(access(d.path, F_OK) == 0);
	snprintf(path, sizeof(path), "%s", d.path);
	block_dir_release(&d);
	CHECK(access(path, F_OK) < 0);
	remove_tree(tmpdir);
}

int main(void)
{
	RUN(test_cow_read_write);
	RUN(test_cow_map);
	RUN(test_cow_concurrent);
	RUN(test_cow_export);
	RUN(test_chunk_cache);
	RUN(test_dir_ownership);
	TEST_EXIT();
}
