/*
 * header.c - the E2B build header (reference spec §3): parse versions 1-3, write 3, validate,
 * look up, merge, normalize, build diff headers.
 *
 * The on-disk layout exists only here (struct header_disk_*), as byte arrays so that no
 * alignment or padding can creep in; header_from_disk() / header_to_disk() are the only
 * conversions between it and struct header. Everything else works on struct header.
 *
 * Validation is total (CONTRACTS §2): every byte string either parses into a header whose
 * mappings are sorted, contiguous from 0, block-aligned and cover exactly [0, size) without any
 * 64-bit overflow, or produces problems "[offset N] what" where N is the byte offset of the
 * offending field in the header object. All arithmetic on values read from disk is
 * overflow-checked. A storage offset of a nil mapping is meaningless (spec §3.6) and never
 * checked.
 *
 * Threading: no global state; a parsed header is immutable and may be shared by readers.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "header.h"

/* ---- the disk format ---- */

struct header_disk_metadata {
	uint8_t version[8];
	uint8_t block_size[8];
	uint8_t size[8];
	uint8_t generation[8];
	uint8_t build_id[UUID_LEN];
	uint8_t base_build_id[UUID_LEN];
};

struct header_disk_mapping {
	uint8_t offset[8];
	uint8_t length[8];
	uint8_t build_id[UUID_LEN];
	uint8_t storage_offset[8];
};

_Static_assert(sizeof(struct header_disk_metadata) == HEADER_METADATA_SIZE, "metadata layout");
_Static_assert(sizeof(struct header_disk_mapping) == HEADER_MAPPING_SIZE, "mapping layout");

/* Field offsets inside a mapping record, for problem messages. */
#define MAP_OFF_OFFSET 0
#define MAP_OFF_LENGTH 8
#define MAP_OFF_STORAGE 32
#define META_OFF_VERSION 0
#define META_OFF_BLOCK_SIZE 8
#define META_OFF_SIZE 16

#define HEADER_MIN_BLOCK 512ull
#define HEADER_MAX_BLOCK (1ull << 30)

static uint64_t get_le64(const uint8_t p[8])
{
	uint64_t v;
	memcpy(&v, p, 8);
	return le64toh(v);
}

static void put_le64(uint8_t p[8], uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

/* The one conversion disk -> memory. maps must hold n entries. */
static void header_from_disk(const struct header_disk_metadata *dm, const uint8_t *records,
			     size_t n, struct header *h)
{
	h->version = get_le64(dm->version);
	h->block_size = get_le64(dm->block_size);
	h->size = get_le64(dm->size);
	h->generation = get_le64(dm->generation);
	memcpy(h->build_id.b, dm->build_id, UUID_LEN);
	memcpy(h->base_build_id.b, dm->base_build_id, UUID_LEN);
	for (size_t i = 0; i < n; i++) {
		struct header_disk_mapping dmap;
		memcpy(&dmap, records + i * HEADER_MAPPING_SIZE, sizeof(dmap));
		h->maps[i].offset = get_le64(dmap.offset);
		h->maps[i].length = get_le64(dmap.length);
		memcpy(h->maps[i].build_id.b, dmap.build_id, UUID_LEN);
		h->maps[i].storage_offset = get_le64(dmap.storage_offset);
	}
	h->nmaps = n;
}

/* The one conversion memory -> disk. out holds 64 + 40 * nmaps bytes. */
static void header_to_disk(const struct header *h, uint8_t *out)
{
	struct header_disk_metadata dm;
	put_le64(dm.version, h->version >= 1 && h->version <= HEADER_VERSION ? h->version : HEADER_VERSION);
	put_le64(dm.block_size, h->block_size);
	put_le64(dm.size, h->size);
	put_le64(dm.generation, h->generation);
	memcpy(dm.build_id, h->build_id.b, UUID_LEN);
	memcpy(dm.base_build_id, h->base_build_id.b, UUID_LEN);
	memcpy(out, &dm, sizeof(dm));
	for (size_t i = 0; i < h->nmaps; i++) {
		struct header_disk_mapping dmap;
		put_le64(dmap.offset, h->maps[i].offset);
		put_le64(dmap.length, h->maps[i].length);
		memcpy(dmap.build_id, h->maps[i].build_id.b, UUID_LEN);
		put_le64(dmap.storage_offset, h->maps[i].storage_offset);
		memcpy(out + HEADER_METADATA_SIZE + i * HEADER_MAPPING_SIZE, &dmap, sizeof(dmap));
	}
}

/* Mapping arrays of large headers go on transparent huge pages when the kernel allows it:
 * a lookup in 100k mappings touches ~17 scattered cache lines of a 4 MB array, and on 4 KiB
 * pages most of them would also miss the TLB. Always released with free(). */
#define MAPS_HUGE_BYTES (2u << 20)
static struct mapping *maps_alloc(size_t n)
{
	size_t bytes;
	void *p;
	if (n == 0)
		n = 1;
	if (n > SIZE_MAX / sizeof(struct mapping))
		return NULL;
	bytes = n * sizeof(struct mapping);
	if (bytes < MAPS_HUGE_BYTES)
		return calloc(n, sizeof(struct mapping));
	if (posix_memalign(&p, MAPS_HUGE_BYTES, bytes) != 0)
		return NULL;
	madvise(p, (bytes + MAPS_HUGE_BYTES - 1) & ~(size_t)(MAPS_HUGE_BYTES - 1), MADV_HUGEPAGE);
	memset(p, 0, bytes);
	return p;
}

/* ---- problems ---- */

#define PROBLEMS_MAX 1000

struct problems {
	struct header_problem *v;
	size_t n, cap;
	uint64_t dropped;
	bool first_only; /* strict parse: stop at the first problem */
	bool oom;
};

/* Record a problem. Returns true when the caller should stop checking. */
static bool PRINTF_LIKE(3, 4) problem(struct problems *p, uint64_t off, const char *fmt, ...)
{
	va_list ap;
	if (p->n >= PROBLEMS_MAX) {
		p->dropped++;
		return false;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		struct header_problem *v = realloc(p->v, cap * sizeof(*v));
		if (!v) {
			p->oom = true;
			return true;
		}
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n].offset = off;
	va_start(ap, fmt);
	vsnprintf(p->v[p->n].msg, sizeof(p->v[p->n].msg), fmt, ap);
	va_end(ap);
	p->n++;
	return p->first_only;
}

static uint64_t map_field(size_t i, unsigned field)
{
	return HEADER_METADATA_SIZE + (uint64_t)i * HEADER_MAPPING_SIZE + field;
}

static bool block_size_valid(uint64_t bs)
{
	return bs >= HEADER_MIN_BLOCK && bs <= HEADER_MAX_BLOCK && (bs & (bs - 1)) == 0;
}

/* Metadata checks. Sets *bs_ok / *size_ok for the mapping checks. Returns true to stop. */
static bool check_metadata(const struct header *h, struct problems *p, bool *bs_ok, bool *size_ok)
{
	*bs_ok = *size_ok = false;
	if (h->version < 1 || h->version > HEADER_VERSION) {
		if (problem(p, META_OFF_VERSION, "unsupported version %llu (expected 1 to %d)",
			    (unsigned long long)h->version, HEADER_VERSION))
			return true;
	}
	if (h->block_size == 0) {
		if (problem(p, META_OFF_BLOCK_SIZE, "block size is 0"))
			return true;
	} else if ((h->block_size & (h->block_size - 1)) != 0) {
		if (problem(p, META_OFF_BLOCK_SIZE, "block size %llu is not a power of two",
			    (unsigned long long)h->block_size))
			return true;
	} else if (!block_size_valid(h->block_size)) {
		if (problem(p, META_OFF_BLOCK_SIZE, "block size %llu is outside [%llu, %llu]",
			    (unsigned long long)h->block_size, HEADER_MIN_BLOCK, HEADER_MAX_BLOCK))
			return true;
	} else {
		*bs_ok = true;
	}
	if (h->size == 0) {
		if (problem(p, META_OFF_SIZE, "size is 0"))
			return true;
	} else if (h->size > HEADER_MAX_SIZE) {
		if (problem(p, META_OFF_SIZE, "size %llu is larger than the maximum 2^50 (%llu)",
			    (unsigned long long)h->size, HEADER_MAX_SIZE))
			return true;
	} else if (*bs_ok && h->size % h->block_size) {
		if (problem(p, META_OFF_SIZE, "size %llu is not a multiple of the block size %llu",
			    (unsigned long long)h->size, (unsigned long long)h->block_size))
			return true;
	} else {
		*size_ok = *bs_ok;
	}
	return false;
}

/* Mapping checks (sorted, contiguous from 0, aligned, in bounds, no overflow). */
static bool check_mappings(const struct header *h, bool bs_ok, bool size_ok, struct problems *p)
{
	uint64_t expect = 0;
	bool expect_known = true, any_overflow = false;
	const uint64_t bs = h->block_size;
	for (size_t i = 0; i < h->nmaps; i++) {
		const struct mapping *m = &h->maps[i];
		uint64_t end, send;
		bool overflow = add_overflow_u64(m->offset, m->length, &end);
		if (m->length == 0 && problem(p, map_field(i, MAP_OFF_LENGTH), "mapping %zu has length 0", i))
			return true;
		if (bs_ok && m->offset % bs &&
		    problem(p, map_field(i, MAP_OFF_OFFSET),
			    "mapping %zu: offset %llu is not a multiple of the block size %llu", i,
			    (unsigned long long)m->offset, (unsigned long long)bs))
			return true;
		if (bs_ok && m->length % bs &&
		    problem(p, map_field(i, MAP_OFF_LENGTH),
			    "mapping %zu: length %llu is not a multiple of the block size %llu", i,
			    (unsigned long long)m->length, (unsigned long long)bs))
			return true;
		if (expect_known && m->offset < expect) {
			if (problem(p, map_field(i, MAP_OFF_OFFSET),
				    "mapping %zu at offset %llu overlaps the previous mapping, which ends at %llu",
				    i, (unsigned long long)m->offset, (unsigned long long)expect))
				return true;
		} else if (expect_known && m->offset > expect) {
			if (i == 0 ? problem(p, map_field(i, MAP_OFF_OFFSET),
					     "first mapping starts at offset %llu, not 0",
					     (unsigned long long)m->offset)
				   : problem(p, map_field(i, MAP_OFF_OFFSET),
					     "gap before mapping %zu: previous mapping ends at %llu, this one starts at %llu",
					     i, (unsigned long long)expect, (unsigned long long)m->offset))
				return true;
		}
		if (overflow) {
			any_overflow = true;
			expect_known = false;
			if (problem(p, map_field(i, MAP_OFF_LENGTH),
				    "mapping %zu: offset %llu + length %llu overflows 64 bits", i,
				    (unsigned long long)m->offset, (unsigned long long)m->length))
				return true;
			continue;
		}
		if (size_ok && end > h->size &&
		    problem(p, map_field(i, MAP_OFF_LENGTH),
			    "mapping %zu [%llu, %llu) ends past the size %llu", i,
			    (unsigned long long)m->offset, (unsigned long long)end,
			    (unsigned long long)h->size))
			return true;
		if (!uuid_is_nil(&m->build_id)) {
			if (add_overflow_u64(m->storage_offset, m->length, &send)) {
				if (problem(p, map_field(i, MAP_OFF_STORAGE),
					    "mapping %zu: storage offset %llu + length %llu overflows 64 bits", i,
					    (unsigned long long)m->storage_offset,
					    (unsigned long long)m->length))
					return true;
			} else if (bs_ok && m->storage_offset % bs &&
				   problem(p, map_field(i, MAP_OFF_STORAGE),
					   "mapping %zu: storage offset %llu is not a multiple of the block size %llu",
					   i, (unsigned long long)m->storage_offset, (unsigned long long)bs)) {
				return true;
			}
		}
		expect = end;
		expect_known = true;
	}
	if (size_ok && !any_overflow && h->nmaps > 0 && expect < h->size &&
	    problem(p, map_field(h->nmaps, 0), "mappings end at %llu, before the size %llu",
		    (unsigned long long)expect, (unsigned long long)h->size))
		return true;
	return false;
}

static void check_header(const struct header *h, struct problems *p)
{
	bool bs_ok, size_ok;
	if (check_metadata(h, p, &bs_ok, &size_ok))
		return;
	if (h->nmaps == 0 && size_ok) {
		problem(p, HEADER_METADATA_SIZE, "header has no mappings");
		return;
	}
	check_mappings(h, bs_ok, size_ok, p);
}

/* Shared by the strict and the lenient parser. Returns -1 on allocation failure only. */
static int parse_common(const void *buf, size_t len, struct header *h, bool *metadata_ok,
			struct problems *p)
{
	const uint8_t *b = buf;
	size_t nfull, rest;
	struct header_disk_metadata dm;
	bool bs_ok, size_ok;

	memset(h, 0, sizeof(*h));
	*metadata_ok = false;
	if (len == 0) {
		problem(p, 0, "header is empty (0 bytes, the metadata needs %d)", HEADER_METADATA_SIZE);
		return p->oom ? -1 : 0;
	}
	if (len < HEADER_METADATA_SIZE) {
		/* keep the fields that are there (the rest reads as 0) for inspect-header */
		memset(&dm, 0, sizeof(dm));
		memcpy(&dm, b, len);
		header_from_disk(&dm, NULL, 0, h);
		problem(p, len, "header is truncated: %zu bytes, the metadata needs %d", len,
			HEADER_METADATA_SIZE);
		return p->oom ? -1 : 0;
	}
	nfull = (len - HEADER_METADATA_SIZE) / HEADER_MAPPING_SIZE;
	rest = (len - HEADER_METADATA_SIZE) % HEADER_MAPPING_SIZE;
	h->maps = maps_alloc(nfull);
	if (!h->maps)
		return -1;
	memcpy(&dm, b, sizeof(dm));
	header_from_disk(&dm, b + HEADER_METADATA_SIZE, nfull, h);
	*metadata_ok = true;

	if (check_metadata(h, p, &bs_ok, &size_ok))
		return p->oom ? -1 : 0;
	if (rest && problem(p, map_field(nfull, 0),
			    "partial mapping record: %zu trailing bytes, a mapping is %d", rest,
			    HEADER_MAPPING_SIZE))
		return p->oom ? -1 : 0;
	if (nfull == 0) {
		/* spec §3.2: no mappings = the whole size belongs to the header's own build */
		if (size_ok) {
			h->maps[0] = (struct mapping){ .offset = 0, .length = h->size,
						       .build_id = h->build_id, .storage_offset = 0 };
			h->nmaps = 1;
		}
		return p->oom ? -1 : 0;
	}
	check_mappings(h, bs_ok, size_ok, p);
	return p->oom ? -1 : 0;
}

int header_parse(const void *buf, size_t len, struct header *h)
{
	struct problems p = { .first_only = true };
	bool mok;
	if (parse_common(buf, len, h, &mok, &p) < 0) {
		free(p.v);
		header_release(h);
		return err_set_errno(ENOMEM, "cannot parse header of %zu bytes", len);
	}
	if (p.n) {
		err_set("[offset %llu] %s", (unsigned long long)p.v[0].offset, p.v[0].msg);
		free(p.v);
		header_release(h);
		errno = EINVAL;
		return -1;
	}
	free(p.v);
	return 0;
}

int header_parse_report(const void *buf, size_t len, struct header *h, bool *metadata_ok,
			struct header_problem **probs, size_t *nprobs)
{
	struct problems p = { 0 };
	*probs = NULL;
	*nprobs = 0;
	if (parse_common(buf, len, h, metadata_ok, &p) < 0) {
		free(p.v);
		header_release(h);
		*metadata_ok = false;
		return err_set_errno(ENOMEM, "cannot parse header of %zu bytes", len);
	}
	if (p.dropped) {
		/* the last slot says how many were left out */
		snprintf(p.v[p.n - 1].msg, sizeof(p.v[p.n - 1].msg), "%llu more problems not shown",
			 (unsigned long long)p.dropped + 1);
	}
	*probs = p.v;
	*nprobs = p.n;
	return p.n ? 1 : 0;
}

int header_validate(const struct header *h)
{
	struct problems p = { .first_only = true };
	check_header(h, &p);
	if (p.oom) {
		free(p.v);
		return err_set_errno(ENOMEM, "cannot validate header");
	}
	if (p.n) {
		err_set("[offset %llu] %s", (unsigned long long)p.v[0].offset, p.v[0].msg);
		free(p.v);
		errno = EINVAL;
		return -1;
	}
	return 0;
}

void *header_serialize(const struct header *h, size_t *len)
{
	uint64_t total;
	uint8_t *out;
	if (mul_overflow_u64(h->nmaps, HEADER_MAPPING_SIZE, &total) ||
	    add_overflow_u64(total, HEADER_METADATA_SIZE, &total) || total > SIZE_MAX) {
		err_set_errno(EOVERFLOW, "cannot serialize header with %zu mappings", h->nmaps);
		return NULL;
	}
	out = malloc(total);
	if (!out) {
		err_set_errno(ENOMEM, "cannot serialize header with %zu mappings", h->nmaps);
		return NULL;
	}
	header_to_disk(h, out);
	*len = (size_t)total;
	return out;
}

int header_legacy(struct header *h, const uuid_t16 *build, uint64_t block_size, uint64_t size)
{
	memset(h, 0, sizeof(*h));
	h->maps = calloc(1, sizeof(*h->maps));
	if (!h->maps)
		return err_set_errno(ENOMEM, "cannot build legacy header");
	h->version = 1;
	h->generation = 1;
	h->block_size = block_size;
	h->size = size;
	h->build_id = *build;
	h->base_build_id = *build;
	h->maps[0] = (struct mapping){ .offset = 0, .length = size, .build_id = *build,
				       .storage_offset = 0 };
	h->nmaps = 1;
	if (header_validate(h) < 0) {
		err_prefix("legacy build (data object without header, %llu bytes)",
			   (unsigned long long)size);
		header_release(h);
		return -1;
	}
	return 0;
}

int header_copy(struct header *dst, const struct header *src)
{
	*dst = *src;
	dst->maps = maps_alloc(src->nmaps);
	if (!dst->maps) {
		dst->nmaps = 0;
		return err_set_errno(ENOMEM, "cannot copy header");
	}
	if (src->nmaps)
		memcpy(dst->maps, src->maps, src->nmaps * sizeof(*dst->maps));
	return 0;
}

void header_release(struct header *h)
{
	if (!h)
		return;
	free(h->maps);
	h->maps = NULL;
	h->nmaps = 0;
}

/* ---- lookup ---- */

/* Index of the last mapping whose offset is <= off (0 if none). Branch-free, so the CPU never
 * mispredicts on the data-dependent comparison, and it prefetches the four candidates two
 * levels ahead, so the ~17 dependent loads of a 100k-mapping search overlap their misses. */
static size_t lookup_index(const struct mapping *maps, size_t n, uint64_t off)
{
	const struct mapping *base = maps;
	while (n > 1) {
		size_t half = n / 2, n1 = n - half, q = n1 / 2, q2 = (n1 - q) / 2;
		__builtin_prefetch(&base[q2]);
		__builtin_prefetch(&base[q + q2]);
		__builtin_prefetch(&base[half + q2]);
		__builtin_prefetch(&base[half + q + q2]);
		base = base[half].offset <= off ? base + half : base;
		n = n1;
	}
	return (size_t)(base - maps);
}

const struct mapping *header_lookup(const struct header *h, uint64_t off, uint64_t *storage_off,
				    uint64_t *remaining)
{
	const struct mapping *m;
	uint64_t shift;
	if (off >= h->size || h->nmaps == 0) {
		err_set_errno(ERANGE, "offset %llu is outside the file of %llu bytes",
			      (unsigned long long)off, (unsigned long long)h->size);
		return NULL;
	}
	m = &h->maps[lookup_index(h->maps, h->nmaps, off)];
	if (m->offset > off || (shift = off - m->offset) >= m->length) {
		err_set_errno(EINVAL, "no mapping holds offset %llu", (unsigned long long)off);
		return NULL;
	}
	if (storage_off)
		*storage_off = m->storage_offset + shift; /* no overflow: validated */
	if (remaining)
		*remaining = m->length - shift;
	return m;
}

/* ---- merge / normalize ---- */

struct mapvec {
	struct mapping *v;
	size_t n, cap;
};

static int mapvec_push(struct mapvec *mv, const struct mapping *m)
{
	if (mv->n == mv->cap) {
		size_t cap = mv->cap ? mv->cap * 2 : 16;
		struct mapping *v;
		if (cap < mv->cap || cap > SIZE_MAX / sizeof(*v))
			return err_set_errno(ENOMEM, "too many mappings");
		v = realloc(mv->v, cap * sizeof(*v));
		if (!v)
			return err_set_errno(ENOMEM, "cannot merge mappings");
		mv->v = v;
		mv->cap = cap;
	}
	mv->v[mv->n++] = *m;
	return 0;
}

/* b shifted right by shift bytes (the tail of b). Storage offsets of nil mappings are
 * meaningless, so they may wrap; real ones are checked. */
static int map_tail(const struct mapping *b, uint64_t shift, struct mapping *out)
{
	uint64_t so;
	if (add_overflow_u64(b->storage_offset, shift, &so) && !uuid_is_nil(&b->build_id))
		return err_set_errno(EOVERFLOW, "mapping at offset %llu: storage offset overflows",
				     (unsigned long long)b->offset);
	*out = (struct mapping){ .offset = b->offset + shift, .length = b->length - shift,
				 .build_id = b->build_id, .storage_offset = so };
	return 0;
}

static int map_end(const struct mapping *m, uint64_t *end)
{
	if (add_overflow_u64(m->offset, m->length, end))
		return err_set_errno(EOVERFLOW, "mapping at offset %llu: offset + length %llu overflows",
				     (unsigned long long)m->offset, (unsigned long long)m->length);
	return 0;
}

int mappings_merge(const struct mapping *base_in, size_t nbase, const struct mapping *diff,
		   size_t ndiff, struct mapping **out, size_t *nout)
{
	struct mapvec mv = { 0 };
	struct mapping b; /* the current base element, possibly a trimmed copy */
	size_t i = 0, j = 0;

	*out = NULL;
	*nout = 0;
	if (ndiff == 0) {
		mv.v = malloc((nbase ? nbase : 1) * sizeof(*mv.v));
		if (!mv.v)
			return err_set_errno(ENOMEM, "cannot merge mappings");
		if (nbase)
			memcpy(mv.v, base_in, nbase * sizeof(*mv.v));
		*out = mv.v;
		*nout = nbase;
		return 0;
	}
	if (nbase)
		b = base_in[0];
	while (i < nbase && j < ndiff) {
		const struct mapping *d = &diff[j];
		uint64_t bend, dend;
		if (b.length == 0) {
			if (++i < nbase)
				b = base_in[i];
			continue;
		}
		if (d->length == 0) {
			j++;
			continue;
		}
		if (map_end(&b, &bend) < 0 || map_end(d, &dend) < 0)
			goto err;
		if (bend <= d->offset) { /* base entirely before diff */
			if (mapvec_push(&mv, &b) < 0)
				goto err;
			if (++i < nbase)
				b = base_in[i];
			continue;
		}
		if (dend <= b.offset) { /* diff entirely before base */
			if (mapvec_push(&mv, d) < 0)
				goto err;
			j++;
			continue;
		}
		if (b.offset >= d->offset && bend <= dend) { /* base covered by diff: drop it */
			if (++i < nbase)
				b = base_in[i];
			continue;
		}
		if (d->offset >= b.offset && dend <= bend) { /* diff inside base: split base */
			uint64_t left = d->offset - b.offset;
			if (left > 0) {
				struct mapping l = b;
				l.length = left;
				if (mapvec_push(&mv, &l) < 0)
					goto err;
			}
			if (mapvec_push(&mv, d) < 0)
				goto err;
			j++;
			if (bend - dend > 0) {
				if (map_tail(&b, dend - b.offset, &b) < 0)
					goto err;
			} else if (++i < nbase) {
				b = base_in[i];
			}
			continue;
		}
		if (b.offset > d->offset) { /* diff overlaps the start of base */
			if (mapvec_push(&mv, d) < 0)
				goto err;
			j++;
			if (b.length > dend - b.offset) {
				if (map_tail(&b, dend - b.offset, &b) < 0)
					goto err;
			} else if (++i < nbase) {
				b = base_in[i];
			}
			continue;
		}
		if (d->offset > b.offset) { /* diff overlaps the end of base; d stays */
			struct mapping l = b;
			l.length = d->offset - b.offset;
			if (mapvec_push(&mv, &l) < 0)
				goto err;
			if (++i < nbase)
				b = base_in[i];
			continue;
		}
		err_set_errno(EINVAL, "cannot merge mappings: invalid case at offset %llu",
			      (unsigned long long)b.offset);
		goto err;
	}
	if (i < nbase) {
		if (mapvec_push(&mv, &b) < 0)
			goto err;
		for (i++; i < nbase; i++)
			if (mapvec_push(&mv, &base_in[i]) < 0)
				goto err;
	}
	for (; j < ndiff; j++)
		if (mapvec_push(&mv, &diff[j]) < 0)
			goto err;
	if (!mv.v && !(mv.v = malloc(sizeof(*mv.v))))
		return err_set_errno(ENOMEM, "cannot merge mappings");
	*out = mv.v;
	*nout = mv.n;
	return 0;
err:
	free(mv.v);
	return -1;
}

size_t mappings_normalize(struct mapping *maps, size_t n)
{
	size_t w = 0;
	for (size_t r = 0; r < n; r++) {
		if (w > 0 && uuid_equal(&maps[w - 1].build_id, &maps[r].build_id))
			maps[w - 1].length += maps[r].length; /* bounded by size when valid */
		else
			maps[w++] = maps[r];
	}
	return w;
}

/* ---- creating mappings ---- */

/* Next block >= i whose bit equals want (nblocks when none). Skips whole words. */
static uint64_t bit_next(const uint64_t *bits, uint64_t i, uint64_t nblocks, bool want)
{
	while (i < nblocks) {
		uint64_t w = bits ? bits[i / 64] : 0;
		if (!want)
			w = ~w;
		w >>= i % 64;
		if (w) {
			uint64_t r = i + (uint64_t)__builtin_ctzll(w);
			return r < nblocks ? r : nblocks;
		}
		i = (i / 64 + 1) * 64;
	}
	return nblocks;
}

int mappings_from_bitmap(const uint64_t *bits, uint64_t nblocks, uint64_t block_size,
			 const uuid_t16 *build, struct mapping **out, size_t *nout)
{
	uint64_t total, cum = 0;
	size_t runs = 0, k = 0;
	struct mapping *v;
	*out = NULL;
	*nout = 0;
	if (mul_overflow_u64(nblocks, block_size, &total))
		return err_set_errno(EOVERFLOW, "%llu blocks of %llu bytes overflow 64 bits",
				     (unsigned long long)nblocks, (unsigned long long)block_size);
	for (uint64_t i = bit_next(bits, 0, nblocks, true); i < nblocks;) {
		uint64_t e = bit_next(bits, i, nblocks, false);
		runs++;
		i = bit_next(bits, e, nblocks, true);
	}
	v = malloc((runs ? runs : 1) * sizeof(*v));
	if (!v)
		return err_set_errno(ENOMEM, "cannot create mappings");
	for (uint64_t i = bit_next(bits, 0, nblocks, true); i < nblocks;) {
		uint64_t e = bit_next(bits, i, nblocks, false);
		uint64_t len = (e - i) * block_size;
		v[k++] = (struct mapping){ .offset = i * block_size, .length = len, .build_id = *build,
					   .storage_offset = cum };
		cum += len;
		i = bit_next(bits, e, nblocks, true);
	}
	*out = v;
	*nout = runs;
	return 0;
}

int header_diff(const struct header *base, const uuid_t16 *new_build, const uint64_t *dirty,
		const uint64_t *empty, struct header *out)
{
	static const uuid_t16 nil;
	_cleanup_free_ struct mapping *dm = NULL, *em = NULL, *diffm = NULL;
	struct mapping *m = NULL;
	size_t nd, ne, ndiff, n;
	uint64_t nblocks;

	memset(out, 0, sizeof(*out));
	if (header_validate(base) < 0)
		return err_prefix("cannot create diff header: invalid base header");
	nblocks = base->size / base->block_size;
	if (mappings_from_bitmap(dirty, nblocks, base->block_size, new_build, &dm, &nd) < 0 ||
	    mappings_from_bitmap(empty, nblocks, base->block_size, &nil, &em, &ne) < 0 ||
	    mappings_merge(dm, nd, em, ne, &diffm, &ndiff) < 0 ||
	    mappings_merge(base->maps, base->nmaps, diffm, ndiff, &m, &n) < 0)
		return err_prefix("cannot create diff header");
	n = mappings_normalize(m, n);
	out->version = HEADER_VERSION;
	out->block_size = base->block_size;
	out->size = base->size;
	out->generation = base->generation + 1;
	out->build_id = *new_build;
	out->base_build_id = base->base_build_id;
	out->maps = m;
	out->nmaps = n;
	if (header_validate(out) < 0) {
		header_release(out);
		return err_prefix("cannot create diff header");
	}
	return 0;
}

/* ---- formatting ---- */

static void json_mapping(FILE *f, const struct mapping *m)
{
	char id[UUID_STR_LEN + 1];
	fprintf(f, "{\"offset\":%llu,\"length\":%llu,\"build_id\":\"%s\",\"build_storage_offset\":%llu}",
		(unsigned long long)m->offset, (unsigned long long)m->length,
		uuid_format(&m->build_id, id), (unsigned long long)m->storage_offset);
}

static void json_mappings(FILE *f, const struct mapping *maps, size_t n)
{
	fputc('[', f);
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		json_mapping(f, &maps[i]);
	}
	fputc(']', f);
}

static char *memstream_finish(FILE *f, char **buf)
{
	if (ferror(f)) {
		fclose(f);
		free(*buf);
		err_set_errno(ENOMEM, "cannot format JSON");
		return NULL;
	}
	if (fclose(f) != 0) {
		free(*buf);
		err_set_errno(ENOMEM, "cannot format JSON");
		return NULL;
	}
	return *buf;
}

char *header_to_json(const struct header *h)
{
	char *buf = NULL, a[UUID_STR_LEN + 1], b[UUID_STR_LEN + 1];
	size_t len;
	FILE *f = open_memstream(&buf, &len);
	if (!f) {
		err_set_errno(errno, "cannot format JSON");
		return NULL;
	}
	fprintf(f, "{\"version\":%llu,\"block_size\":%llu,\"size\":%llu,\"generation\":%llu,"
		   "\"build_id\":\"%s\",\"base_build_id\":\"%s\",\"mappings\":",
		(unsigned long long)h->version, (unsigned long long)h->block_size,
		(unsigned long long)h->size, (unsigned long long)h->generation,
		uuid_format(&h->build_id, a), uuid_format(&h->base_build_id, b));
	json_mappings(f, h->maps, h->nmaps);
	fputc('}', f);
	return memstream_finish(f, &buf);
}

char *mappings_to_json(const struct mapping *maps, size_t n)
{
	char *buf = NULL;
	size_t len;
	FILE *f = open_memstream(&buf, &len);
	if (!f) {
		err_set_errno(errno, "cannot format JSON");
		return NULL;
	}
	json_mappings(f, maps, n);
	return memstream_finish(f, &buf);
}

char *mapping_format(const struct mapping *m, uint64_t block_size, char *out, size_t outlen)
{
	char range[48], id[UUID_STR_LEN + 1];
	uint64_t end = m->offset + m->length, send = m->storage_offset + m->length; /* wrap ok */
	if (block_size)
		snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)(m->offset / block_size),
			 (unsigned long long)(end / block_size));
	else
		snprintf(range, sizeof(range), "?-?");
	snprintf(out, outlen, "%-14s [%11llu,%11llu) := [%11llu,%11llu) \u2282 %s, %llu B", range,
		 (unsigned long long)m->offset, (unsigned long long)end,
		 (unsigned long long)m->storage_offset, (unsigned long long)send,
		 uuid_format(&m->build_id, id), (unsigned long long)m->length);
	return out;
}
