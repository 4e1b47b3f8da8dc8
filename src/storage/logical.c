/*
 * logical.c - reads a build's logical memfile/rootfs through its header (see logical.h).
 *
 * Data objects: one slot per distinct non-nil build id in the mappings (sorted by id, found
 * once per mapping at open time, so a read never searches for its object). Each slot knows how
 * many bytes its mappings need; logical_open checks that against the object sizes up front,
 * so a short diff object is refused before any byte is served.
 *
 * Invariants: the header is valid (header_validate) for the whole life of the struct, so
 * offset arithmetic on mappings cannot overflow. slot[i] is the object slot of mapping i, or
 * SLOT_NIL for nil mappings.
 *
 * Threading: slots are opened lazily under open_lock; the opened object pointer is published
 * with a release store and read with an acquire load, so readers of already-opened objects
 * never take the lock. storage_object_read is thread-safe by contract.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "logical.h"

#define SLOT_NIL UINT32_MAX
#define LEGACY_MEMFILE_BLOCK (2ull << 20)
#define LEGACY_BLOCK 4096ull

struct lobj {
	uuid_t16 build;
	char key[BUILD_KEY_MAX];
	uint64_t need;     /* bytes the mappings need from this object */
	size_t need_map;   /* index of the mapping that needs the most */
	struct storage_object *obj; /* NULL until opened; guarded by open_lock for writers */
};

struct logical {
	struct storage *st;
	struct header h;
	enum build_kind kind;
	bool legacy;
	struct logical_options opts;
	struct lobj *objs;
	size_t nobjs;
	uint32_t *slot;
	pthread_mutex_t open_lock; /* guards opening objs[*].obj */
};

static int cmp_idx_by_build(const void *a, const void *b, void *arg)
{
	const struct mapping *maps = arg;
	size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
	int c = memcmp(maps[ia].build_id.b, maps[ib].build_id.b, UUID_LEN);
	if (c)
		return c;
	return ia < ib ? -1 : ia > ib;
}

/* Build the slots: one per distinct non-nil build, with the bytes its mappings need. */
static int build_slots(struct logical *l)
{
	const struct header *h = &l->h;
	_cleanup_free_ size_t *idx = NULL;
	size_t n = 0;

	l->slot = malloc((h->nmaps ? h->nmaps : 1) * sizeof(*l->slot));
	idx = malloc((h->nmaps ? h->nmaps : 1) * sizeof(*idx));
	if (!l->slot || !idx)
		return err_set_errno(ENOMEM, "cannot open logical file");
	for (size_t i = 0; i < h->nmaps; i++) {
		l->slot[i] = SLOT_NIL;
		if (!uuid_is_nil(&h->maps[i].build_id))
			idx[n++] = i;
	}
	qsort_r(idx, n, sizeof(*idx), cmp_idx_by_build, h->maps);
	l->objs = calloc(n ? n : 1, sizeof(*l->objs));
	if (!l->objs)
		return err_set_errno(ENOMEM, "cannot open logical file");
	for (size_t k = 0; k < n; k++) {
		const struct mapping *m = &h->maps[idx[k]];
		struct lobj *o;
		uint64_t end = m->storage_offset + m->length; /* validated: no overflow */
		if (l->nobjs == 0 || !uuid_equal(&l->objs[l->nobjs - 1].build, &m->build_id)) {
			char id[UUID_STR_LEN + 1];
			if (l->nobjs >= SLOT_NIL)
				return err_set("cannot open logical file: too many builds");
			o = &l->objs[l->nobjs++];
			o->build = m->build_id;
			build_key(o->key, uuid_format(&m->build_id, id), build_kind_data_object(l->kind));
		}
		o = &l->objs[l->nobjs - 1];
		if (end > o->need || (end == o->need && o->need == 0)) {
			o->need = end;
			o->need_map = idx[k];
		}
		l->slot[idx[k]] = (uint32_t)(l->nobjs - 1);
	}
	return 0;
}

static int short_object_error(const struct logical *l, const struct lobj *o, uint64_t size)
{
	const struct mapping *m = &l->h.maps[o->need_map];
	char id[UUID_STR_LEN + 1];
	err_set("build %s %s: data object '%s' is %llu bytes, but the mapping at logical offset %llu needs %llu (storage offset %llu + length %llu)",
		       uuid_format(&o->build, id), build_kind_name(l->kind), o->key,
		       (unsigned long long)size, (unsigned long long)m->offset,
		       (unsigned long long)o->need, (unsigned long long)m->storage_offset,
		       (unsigned long long)m->length);
	errno = EIO;
	return -1;
}

static int missing_object_error(const struct logical *l, const struct lobj *o)
{
	char id[UUID_STR_LEN + 1];
	err_prefix("build %s %s: data object '%s' needed by the mapping at logical offset %llu cannot be opened",
		   uuid_format(&o->build, id), build_kind_name(l->kind), o->key,
		   (unsigned long long)l->h.maps[o->need_map].offset);
	return -1;
}

static struct storage_object *open_slot_locked(struct logical *l, struct lobj *o)
{
	struct storage_object *obj;
	if (l->opts.open_object)
		obj = l->opts.open_object(l->opts.opaque, o->key);
	else
		obj = storage_object_open(l->st, o->key);
	if (!obj) {
		missing_object_error(l, o);
		return NULL;
	}
	if (storage_object_size(obj) < o->need) {
		short_object_error(l, o, storage_object_size(obj));
		storage_object_close(obj);
		return NULL;
	}
	return obj;
}

static struct storage_object *get_object(struct logical *l, uint32_t s)
{
	struct lobj *o = &l->objs[s];
	struct storage_object *obj = __atomic_load_n(&o->obj, __ATOMIC_ACQUIRE);
	if (obj)
		return obj;
	pthread_mutex_lock(&l->open_lock);
	obj = o->obj;
	if (!obj) {
		obj = open_slot_locked(l, o);
		if (obj)
			__atomic_store_n(&o->obj, obj, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&l->open_lock);
	return obj;
}

/* Up-front size check of every slot. */
static int check_slots(struct logical *l)
{
	for (size_t s = 0; s < l->nobjs; s++) {
		struct lobj *o = &l->objs[s];
		if (l->st && !l->opts.open_object) {
			uint64_t size;
			if (storage_size(l->st, o->key, &size) < 0)
				return missing_object_error(l, o);
			if (size < o->need)
				return short_object_error(l, o, size);
		} else if (!get_object(l, (uint32_t)s)) {
			return -1;
		}
	}
	return 0;
}

struct logical *logical_open_header(struct storage *st, struct header *h, enum build_kind kind,
				    const struct logical_options *opts)
{
	struct logical *l = calloc(1, sizeof(*l));
	if (!l) {
		header_release(h);
		err_set_errno(ENOMEM, "cannot open logical file");
		return NULL;
	}
	l->h = *h;
	memset(h, 0, sizeof(*h));
	l->st = st;
	l->kind = kind;
	if (opts)
		l->opts = *opts;
	pthread_mutex_init(&l->open_lock, NULL);
	if (!st && !l->opts.open_object) {
		err_set("cannot open logical file: no storage and no object opener");
		goto err;
	}
	if (header_validate(&l->h) < 0 || build_slots(l) < 0)
		goto err;
	if (!l->opts.lazy_size_check && check_slots(l) < 0)
		goto err;
	return l;
err:
	logical_close(l);
	return NULL;
}

int logical_load_header(struct storage *st, const char *build_id, enum build_kind kind,
			struct header *h, bool *legacy)
{
	char id[UUID_STR_LEN + 1], hkey[BUILD_KEY_MAX], dkey[BUILD_KEY_MAX];
	_cleanup_free_ void *buf = NULL;
	size_t len;
	uint64_t size, bs;
	uuid_t16 u;

	memset(h, 0, sizeof(*h));
	*legacy = false;
	if (build_id_canonical(build_id, id) < 0 || uuid_parse(id, &u) < 0)
		return -1;
	build_key(hkey, id, build_kind_header_object(kind));
	build_key(dkey, id, build_kind_data_object(kind));
	buf = storage_read_all(st, hkey, &len);
	if (buf) {
		if (header_parse(buf, len, h) < 0)
			return err_prefix("invalid header '%s' in %s", hkey, storage_describe(st));
		return 0;
	}
	if (errno != ENOENT)
		return err_prefix("cannot read header of build %s %s", id, build_kind_name(kind));
	if (storage_size(st, dkey, &size) < 0) {
		if (errno == ENOENT)
			return err_set_errno(ENOENT, "build %s not found in %s: neither '%s' nor '%s' exists",
					     id, storage_describe(st), hkey, dkey);
		return err_prefix("cannot read build %s %s", id, build_kind_name(kind));
	}
	/* legacy build (spec §2.1) */
	bs = LEGACY_BLOCK;
	if (kind == BUILD_KIND_MEMFILE && size % LEGACY_MEMFILE_BLOCK == 0)
		bs = LEGACY_MEMFILE_BLOCK;
	if (header_legacy(h, &u, bs, size) < 0)
		return err_prefix("build %s %s", id, build_kind_name(kind));
	*legacy = true;
	return 0;
}

struct logical *logical_open(struct storage *st, const char *build_id, enum build_kind kind)
{
	struct header h;
	bool legacy;
	struct logical *l;
	if (logical_load_header(st, build_id, kind, &h, &legacy) < 0)
		return NULL;
	l = logical_open_header(st, &h, kind, NULL);
	if (l)
		l->legacy = legacy;
	return l;
}

int logical_check_objects(struct storage *st, const struct header *h, enum build_kind kind)
{
	struct header copy;
	struct logical *l;
	if (header_copy(&copy, h) < 0)
		return -1;
	l = logical_open_header(st, &copy, kind, NULL);
	if (!l)
		return -1;
	logical_close(l);
	return 0;
}

int logical_object_problems(struct storage *st, const struct header *h, enum build_kind kind,
			    struct header_problem **probs, size_t *nprobs, size_t *nmissing)
{
	struct logical l = { .st = st, .h = *h, .kind = kind }; /* borrows h's mappings */
	struct header_problem *v = NULL;
	size_t n = 0;
	int rc = -1;

	*probs = NULL;
	*nprobs = *nmissing = 0;
	if (build_slots(&l) < 0)
		goto out;
	v = calloc(l.nobjs ? l.nobjs : 1, sizeof(*v));
	if (!v) {
		err_set_errno(ENOMEM, "cannot check data objects");
		goto out;
	}
	for (size_t s = 0; s < l.nobjs; s++) {
		const struct lobj *o = &l.objs[s];
		uint64_t size;
		if (storage_size(st, o->key, &size) < 0) {
			if (errno != ENOENT)
				goto out;
			(*nmissing)++;
			continue;
		}
		if (size < o->need) {
			v[n].offset = HEADER_METADATA_SIZE + (uint64_t)o->need_map * HEADER_MAPPING_SIZE;
			snprintf(v[n].msg, sizeof(v[n].msg),
				 "data object '%s' is %llu bytes, the mapping at logical offset %llu needs %llu",
				 o->key, (unsigned long long)size,
				 (unsigned long long)h->maps[o->need_map].offset,
				 (unsigned long long)o->need);
			n++;
		}
	}
	*probs = v;
	*nprobs = n;
	v = NULL;
	rc = 0;
out:
	free(v);
	free(l.objs);
	free(l.slot);
	return rc;
}

const struct header *logical_header(const struct logical *l)
{
	return &l->h;
}

uint64_t logical_size(const struct logical *l)
{
	return l->h.size;
}

bool logical_is_legacy(const struct logical *l)
{
	return l->legacy;
}

int logical_read(struct logical *l, void *buf, size_t len, uint64_t off)
{
	const struct header *h = &l->h;
	const struct mapping *m;
	uint64_t end, so, rem;
	uint8_t *p = buf;
	size_t i;

	if (add_overflow_u64(off, len, &end) || end > h->size)
		return err_set_errno(EINVAL, "cannot read %zu bytes at offset %llu of a %s of %llu bytes",
				     len, (unsigned long long)off, build_kind_name(l->kind),
				     (unsigned long long)h->size);
	if (len == 0)
		return 0;
	m = header_lookup(h, off, &so, &rem);
	if (!m)
		return -1;
	i = (size_t)(m - h->maps);
	while (len > 0) {
		size_t n = rem < len ? (size_t)rem : len;
		uint32_t s = l->slot[i];
		if (s == SLOT_NIL) {
			memset(p, 0, n);
		} else {
			struct storage_object *obj = get_object(l, s);
			if (!obj || storage_object_read(obj, p, n, so) < 0) {
				char id[UUID_STR_LEN + 1];
				return err_prefix("cannot read build %s %s at logical offset %llu",
						  uuid_format(&l->objs[s].build, id),
						  build_kind_name(l->kind), (unsigned long long)off);
			}
		}
		p += n;
		off += n;
		len -= n;
		if (len > 0) {
			/* mappings are contiguous: the next one starts exactly here */
			i++;
			so = h->maps[i].storage_offset;
			rem = h->maps[i].length;
		}
	}
	return 0;
}

void logical_close(struct logical *l)
{
	if (!l)
		return;
	for (size_t s = 0; s < l->nobjs; s++)
		storage_object_close(l->objs[s].obj);
	free(l->objs);
	free(l->slot);
	header_release(&l->h);
	pthread_mutex_destroy(&l->open_lock);
	free(l);
}
