/*
 * copy-build - copies one build between storage locations (reference spec §1.3):
 *   copy-build -build ID -from SRC -to DST
 * SRC and DST are local directories or bucket URLs (CONTRACTS §2). Copied: the build's
 * memfile and rootfs headers, its snapfile and metadata.json, and every data object the
 * headers' mappings reference - ancestors' diffs included, ancestors' headers and metadata
 * not. A missing header next to a present data object is a legacy build: the data object is
 * copied alone.
 *
 * Invariants:
 * - Order: all data objects, then headers and snapfile, then metadata.json. A build is
 *   complete when metadata.json exists, and it is written only when everything else arrived.
 * - Every object is published atomically by the backend (temp + rename locally, a single PUT
 *   or a completed multipart upload in buckets), so a copy that fails part-way leaves no
 *   object that looks complete but is not.
 * - An object already at the destination with the same size and CRC32C is skipped. CRCs come
 *   from the backend (x-amz-meta-crc32c, or computed for local files); when a bucket object
 *   has none recorded it is read and computed.
 * - After writing, the destination's size and CRC32C are checked against the source's.
 * - Large objects stream (file to bucket, bucket to file, bucket to temp file to bucket);
 *   nothing is held in memory whole.
 *
 * Threading: a small pool of workers (-parallel) takes objects of the current phase from a
 * shared index; struct job's lock guards the index, the counters and the first error.
 * A progress line (objects, bytes, rate) goes to stderr.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/common.h"
#include "common/flags.h"
#include "storage/header.h"
#include "storage/storage.h"

#define PHASES 3 /* data objects, headers + snapfile, metadata.json */

struct item {
	char key[BUILD_KEY_MAX];
	int phase;
	uint64_t size;
};

struct job {
	struct storage *src, *dst;
	const char *tmpdir; /* for bucket -> bucket copies */
	struct item *items;
	size_t nitems;
	pthread_mutex_t lock; /* guards everything below */
	size_t next;          /* next item of the current phase */
	int phase;
	size_t done, copied, skipped;
	uint64_t bytes_done, bytes_total, bytes_copied;
	bool failed;
	char err[ERR_MSG_MAX];
	uint64_t t0;
	bool tty;
	uint64_t last_print;
};

/* ---- planning ---- */

static int items_add(struct item **v, size_t *n, size_t *cap, const char *key, int phase)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*v)[i].key, key))
			return 0;
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct item *nv = realloc(*v, nc * sizeof(*nv));
		if (!nv)
			return err_set_errno(ENOMEM, "out of memory");
		*v = nv;
		*cap = nc;
	}
	memset(&(*v)[*n], 0, sizeof(**v));
	snprintf((*v)[*n].key, BUILD_KEY_MAX, "%s", key);
	(*v)[*n].phase = phase;
	(*n)++;
	return 0;
}

/* The objects one kind (memfile or rootfs) contributes: its header and every data object the
 * header references; or, for a legacy build, the data object alone. *found = false when the
 * build has neither. */
static int plan_kind(struct storage *src, const char *build, enum build_kind kind, struct item **v,
		     size_t *n, size_t *cap, bool *found)
{
	char hkey[BUILD_KEY_MAX], dkey[BUILD_KEY_MAX];
	_cleanup_free_ void *buf = NULL;
	struct header h;
	size_t len;
	int rc = 0;
	build_key(hkey, build, build_kind_header_object(kind));
	build_key(dkey, build, build_kind_data_object(kind));
	*found = false;
	buf = storage_read_all(src, hkey, &len);
	if (!buf) {
		bool exists;
		if (errno != ENOENT)
			return -1;
		if (storage_exists(src, dkey, &exists) < 0)
			return -1;
		if (!exists)
			return 0;
		log_info("%s has no header: legacy build, copying the data object alone", dkey);
		*found = true;
		return items_add(v, n, cap, dkey, 0);
	}
	*found = true;
	if (header_parse(buf, len, &h) < 0)
		return err_prefix("invalid header '%s' in %s", hkey, storage_describe(src));
	for (size_t i = 0; i < h.nmaps && rc == 0; i++) {
		char id[UUID_STR_LEN + 1], key[BUILD_KEY_MAX];
		if (uuid_is_nil(&h.maps[i].build_id))
			continue;
		build_key(key, uuid_format(&h.maps[i].build_id, id), build_kind_data_object(kind));
		rc = items_add(v, n, cap, key, 0);
	}
	header_release(&h);
	if (rc == 0)
		rc = items_add(v, n, cap, hkey, 1);
	return rc;
}

static int cmp_item(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	if (x->phase != y->phase)
		return x->phase - y->phase;
	return strcmp(x->key, y->key);
}

/* ---- one object ---- */

/* CRC32C of an object: recorded by the backend, else computed by reading it. */
static int object_crc(struct storage *st, const char *key, uint32_t *crc)
{
	struct storage_object *o;
	_cleanup_free_ char *buf = NULL;
	uint64_t off = 0, size;
	uint32_t c = 0;
	bool known;
	if (storage_crc32c(st, key, crc, &known) < 0)
		return -1;
	if (known)
		return 0;
	if (!(o = storage_object_open(st, key)))
		return -1;
	size = storage_object_size(o);
	if (!(buf = malloc(4 << 20))) {
		storage_object_close(o);
		return err_set_errno(ENOMEM, "out of memory");
	}
	while (off < size) {
		size_t len = (size_t)MIN((uint64_t)(4 << 20), size - off);
		if (storage_object_read(o, buf, len, off) < 0) {
			storage_object_close(o);
			return -1;
		}
		c = crc32c_update(c, buf, len);
		off += len;
	}
	storage_object_close(o);
	*crc = c;
	return 0;
}

static int transfer(struct job *j, const char *key)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	const char *sdir = storage_local_dir(j->src), *ddir = storage_local_dir(j->dst);
	int rc;
	if (sdir) {
		snprintf(path, sizeof(path), "%s/%s", sdir, key);
		return storage_write_file(j->dst, key, path);
	}
	if (ddir) {
		snprintf(path, sizeof(path), "%s/%s", ddir, key);
		return storage_download(j->src, key, path);
	}
	/* bucket to bucket: stream through a temp file */
	snprintf(tmp, sizeof(tmp), "%s/%s", j->tmpdir, key);
	rc = storage_download(j->src, key, tmp);
	if (rc == 0)
		rc = storage_write_file(j->dst, key, tmp);
	unlink(tmp);
	return rc;
}

/* Copy one object unless the destination already holds it. *skipped says which happened. */
static int copy_one(struct job *j, const struct item *it, bool *skipped)
{
	uint32_t scrc, dcrc;
	uint64_t dsize;
	*skipped = false;
	if (object_crc(j->src, it->key, &scrc) < 0)
		return -1;
	if (storage_size(j->dst, it->key, &dsize) == 0) {
		if (dsize == it->size && object_crc(j->dst, it->key, &dcrc) == 0 && dcrc == scrc) {
			*skipped = true;
			return 0;
		}
	} else if (errno != ENOENT) {
		return -1;
	}
	if (transfer(j, it->key) < 0)
		return -1;
	/* verify what arrived */
	if (storage_size(j->dst, it->key, &dsize) < 0)
		return err_prefix("cannot verify");
	if (dsize != it->size)
		return err_set_errno(EIO, "verification failed: %llu bytes at the destination, %llu at the source",
				     (unsigned long long)dsize, (unsigned long long)it->size);
	if (object_crc(j->dst, it->key, &dcrc) < 0)
		return err_prefix("cannot verify");
	if (dcrc != scrc)
		return err_set_errno(EIO, "verification failed: crc32c %08x at the destination, %08x at the source",
				     dcrc, scrc);
	return 0;
}

/* ---- progress ---- */

static void progress_locked(struct job *j, bool final)
{
	double secs = (double)(now_ns() - j->t0) / 1e9;
	double rate = secs > 0 ? (double)j->bytes_copied / 1e6 / secs : 0;
	uint64_t now = now_ns();
	if (!final && !j->tty && now - j->last_print < 1000000000ull && j->done != j->nitems)
		return;
	j->last_print = now;
	fprintf(stderr, "%scopy-build: %zu/%zu objects (%zu skipped), %.1f/%.1f MiB, %.1f MB/s%s",
		j->tty ? "\r" : "", j->done, j->nitems, j->skipped, (double)j->bytes_done / 1048576.0,
		(double)j->bytes_total / 1048576.0, rate, j->tty && !final ? "   " : "\n");
	fflush(stderr);
}

static void *worker(void *opaque)
{
	struct job *j = opaque;
	for (;;) {
		struct item *it = NULL;
		bool skipped;
		int rc;
		pthread_mutex_lock(&j->lock);
		while (!j->failed && j->next < j->nitems) {
			if (j->items[j->next].phase == j->phase) {
				it = &j->items[j->next++];
				break;
			}
			j->next++;
		}
		pthread_mutex_unlock(&j->lock);
		if (!it)
			return NULL;
		rc = copy_one(j, it, &skipped);
		pthread_mutex_lock(&j->lock);
		if (rc < 0) {
			if (!j->failed) {
				j->failed = true;
				snprintf(j->err, sizeof(j->err), "cannot copy '%s' from %s to %s: %s", it->key,
					 storage_describe(j->src), storage_describe(j->dst), err_msg());
			}
		} else {
			j->done++;
			j->bytes_done += it->size;
			if (skipped) {
				j->skipped++;
			} else {
				j->copied++;
				j->bytes_copied += it->size;
			}
			log_debug("%s %s (%llu bytes)", skipped ? "skipped" : "copied", it->key,
				  (unsigned long long)it->size);
			progress_locked(j, false);
		}
		pthread_mutex_unlock(&j->lock);
	}
}

static int run_phase(struct job *j, int phase, unsigned parallel)
{
	pthread_t th[64];
	size_t count = 0;
	unsigned n, started = 0;
	for (size_t i = 0; i < j->nitems; i++)
		count += j->items[i].phase == phase;
	if (count == 0)
		return 0;
	j->phase = phase;
	j->next = 0;
	n = (unsigned)MIN((size_t)parallel, count);
	for (; started < n; started++)
		if (pthread_create(&th[started], NULL, worker, j) != 0)
			break;
	if (started == 0)
		worker(j);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (j->failed)
		return err_set("%s", j->err);
	return 0;
}

int main(int argc, char **argv)
{
	const char *build_arg = NULL, *from_arg = NULL, *to_arg = NULL;
	int64_t parallel = 8;
	bool verbose = false;
	struct flag flags[] = {
		FLAG_REQ("build", FLAG_STRING, &build_arg, "build id (UUID) to copy"),
		FLAG_DEF("from", FLAG_STRING, &from_arg,
			 "source: local directory, s3://bucket[/prefix] or gs://bucket[/prefix] (default: TEMPLATE_BUCKET_NAME, else .local-build)"),
		FLAG_DEF("to", FLAG_STRING, &to_arg, "destination: local directory or bucket URL"),
		FLAG_DEF("parallel", FLAG_INT, &parallel, "objects transferred at once (1-64)"),
		FLAG_DEF("v", FLAG_BOOL, &verbose, "log every object"),
	};
	struct flagset fs = {
		.prog = "copy-build",
		.synopsis = "-build ID -from SRC -to DST [-parallel N] [-v]",
		.about = "Copies a build's headers, snapfile, metadata.json and every data object its headers "
			 "reference (ancestors' diffs included) between local directories and buckets. Objects "
			 "already identical at the destination (size + CRC32C) are skipped; metadata.json is "
			 "written last, only when everything else arrived.",
		.flags = flags,
		.nflags = ARRAY_SIZE(flags),
	};
	char build[UUID_STR_LEN + 1], key[BUILD_KEY_MAX], tmpdir[PATH_MAX];
	_cleanup_free_ char *from = NULL, *to = NULL;
	struct job j = { 0 };
	size_t cap = 0;
	bool found_mem, found_root, exists;
	int rc;

	log_set_prog("copy-build");
	flags_parse(&fs, argc, argv);
	if (verbose)
		log_set_level(LOG_DEBUG);
	if (parallel < 1 || parallel > 64)
		flags_usage_error(&fs, "-parallel must be between 1 and 64");
	if (build_id_canonical(build_arg, build) < 0)
		die_err();
	from = storage_location_resolve(from_arg);
	to = storage_location_resolve(to_arg);
	if (!from || !to)
		die("out of memory");
	if (!strcmp(from, to))
		flags_usage_error(&fs, "source and destination are the same location '%s'", from);

	if (!(j.src = storage_open(from, false)))
		die_err();

	/* plan: data objects the headers reference, then headers + snapfile, then metadata */
	if (plan_kind(j.src, build, BUILD_KIND_MEMFILE, &j.items, &j.nitems, &cap, &found_mem) < 0 ||
	    plan_kind(j.src, build, BUILD_KIND_ROOTFS, &j.items, &j.nitems, &cap, &found_root) < 0)
		die_err();
	build_key(key, build, BUILD_SNAPFILE);
	if (storage_exists(j.src, key, &exists) < 0)
		die_err();
	if (exists && items_add(&j.items, &j.nitems, &cap, key, 1) < 0)
		die_err();
	build_key(key, build, BUILD_METADATA);
	if (storage_exists(j.src, key, &exists) < 0)
		die_err();
	if (!found_mem && !found_root && !exists)
		die("build %s not found in %s", build, storage_describe(j.src));
	if (exists) {
		if (items_add(&j.items, &j.nitems, &cap, key, 2) < 0)
			die_err();
	} else {
		log_warn("build %s in %s is incomplete (no %s): copying what there is", build,
			 storage_describe(j.src), BUILD_METADATA);
	}
	qsort(j.items, j.nitems, sizeof(*j.items), cmp_item);
	for (size_t i = 0; i < j.nitems; i++) {
		if (storage_size(j.src, j.items[i].key, &j.items[i].size) < 0) {
			if (errno == ENOENT)
				die("build %s in %s is broken: '%s' is referenced but missing", build,
				    storage_describe(j.src), j.items[i].key);
			die_err();
		}
		j.bytes_total += j.items[i].size;
	}

	/* the destination is opened (a local one created) only once the build is known */
	if (!(j.dst = storage_open(to, true)))
		die_err();
	if (!strcmp(storage_describe(j.src), storage_describe(j.dst)))
		die("source and destination are the same location '%s'", storage_describe(j.src));

	/* one cheap request up front, so bad credentials or a missing bucket at the destination
	 * fail at once with one clear error instead of one per worker (local destinations
	 * report their errors on the first write) */
	if (!storage_local_dir(j.dst)) {
		char prefix[BUILD_KEY_MAX], **keys;
		size_t n;
		snprintf(prefix, sizeof(prefix), "%s/", build);
		if (storage_list(j.dst, prefix, &keys, &n) < 0) {
			err_prefix("cannot access destination %s", storage_describe(j.dst));
			die_err();
		}
		storage_list_free(keys, n);
	}

	tmpdir[0] = 0;
	if (!storage_local_dir(j.src) && !storage_local_dir(j.dst)) {
		const char *t = getenv("TMPDIR");
		snprintf(tmpdir, sizeof(tmpdir), "%s/copy-build.XXXXXX", t && *t ? t : "/tmp");
		if (!mkdtemp(tmpdir))
			die("cannot create a temp directory in '%s': %s", t && *t ? t : "/tmp", strerror(errno));
		j.tmpdir = tmpdir;
	}
	pthread_mutex_init(&j.lock, NULL);
	j.tty = isatty(2);
	j.t0 = now_ns();
	rc = 0;
	for (int phase = 0; phase < PHASES && rc == 0; phase++)
		rc = run_phase(&j, phase, (unsigned)parallel);
	if (tmpdir[0])
		remove_tree(tmpdir);
	if (rc < 0) {
		if (j.tty)
			fputc('\n', stderr);
		die_err();
	}
	pthread_mutex_lock(&j.lock);
	if (j.tty)
		progress_locked(&j, true), fputc('\n', stderr);
	{
		double secs = (double)(now_ns() - j.t0) / 1e9;
		fprintf(stderr,
			"copy-build: done: build %s, %zu objects: %zu copied (%llu bytes), %zu skipped (identical), %.2f s, %.1f MB/s\n",
			build, j.nitems, j.copied, (unsigned long long)j.bytes_copied, j.skipped, secs,
			secs > 0 ? (double)j.bytes_copied / 1e6 / secs : 0.0);
	}
	pthread_mutex_unlock(&j.lock);
	storage_free(j.src);
	storage_free(j.dst);
	free(j.items);
	return 0;
}
