/*
 * migstream.c - QEMU 7.2 migration stream filter (see migstream.h, PLATFORM.md §3.6).
 *
 * Layout we parse (all big-endian):
 *   u32 magic "QEVM", u32 version 3
 *   0x07 configuration: u32 len + machine name, then subsections 0x05 (u8 len + name, u32
 *        version, body): target-page-bits (u32), capabilities (u32 n, n x (u8 len + name)),
 *        uuid (16 bytes)
 *   iterative sections of "ram": 0x01 START (u32 id, u8 len + "ram", u32 instance, u32
 *        version) / 0x02 PART / 0x03 END (u32 id), then records u64 (offset | flags):
 *        MEM_SIZE (setup: per block u8 len + idstr, u64 used length, u64 address when
 *        x-ignore-shared is on, until the lengths sum to the total), ZERO (+1 byte), PAGE
 *        (+4096 bytes), each with u8 len + block name unless CONTINUE; EOS ends the section;
 *        then footer 0x7e + u32 section id
 *   then FULL (0x04) device sections, EOF (0x00) and the JSON description: copied verbatim.
 *
 * Kept page records are rewritten with their block name and CONTINUE cleared, because
 * dropping a record may break the chain CONTINUE relies on (chains run across sections).
 * Invariant: every byte we emit was parsed, except the verbatim device tail.
 * Threading: none (all state on the stack of one call).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "common/common.h"
#include "vmm/migstream.h"

#define RD_BUF (1u << 20)
#define WR_BUF (1u << 20)
#define MAX_BLOCKS 64
#define MAX_CAPS 64

struct mrd {
	int fd;           /* -1: memory mode */
	const uint8_t *p; /* current buffer (memory: the input; fd: buf) */
	uint8_t *buf;
	size_t pos, len;
	uint64_t off; /* stream offset of p[pos] */
	uint64_t timeout_ms;
	bool eof;
};

struct mwr {
	int fd; /* -1: memory mode */
	uint8_t *buf;
	size_t len, cap;
	uint64_t total;
};

struct ramblock {
	char name[256];
	uint64_t used;
};

struct mfilter {
	struct mrd rd;
	struct mwr wr;
	const char *drop;
	struct migstream_stats st;
	struct ramblock blocks[MAX_BLOCKS];
	unsigned nblocks;
	int cur; /* block of the last record with a name, for CONTINUE; -1 none */
	bool have_ram_sid;
	uint32_t ram_sid;
	bool setup_seen;
};

static int rd_fill(struct mrd *r, size_t need, const char *what)
{
	if (r->fd < 0)
		goto short_read;
	if (r->pos > 0) {
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->len -= r->pos;
		r->pos = 0;
	}
	while (r->len < need && !r->eof) {
		ssize_t n;
		if (r->timeout_ms) {
			struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
			int pr = poll(&pfd, 1, (int)MIN(r->timeout_ms, (uint64_t)INT32_MAX));
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr < 0)
				return err_set_errno(errno, "[offset %llu] poll", (unsigned long long)r->off);
			if (pr == 0)
				return err_set("[offset %llu] timed out reading the stream while reading %s",
					       (unsigned long long)r->off, what);
		}
		n = read(r->fd, r->buf + r->len, RD_BUF - r->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_set_errno(errno, "[offset %llu] read", (unsigned long long)r->off);
		if (n == 0)
			r->eof = true;
		r->len += (size_t)n;
	}
	r->p = r->buf;
	if (r->len >= need)
		return 0;
short_read:
	return err_set("[offset %llu] stream truncated while reading %s", (unsigned long long)r->off,
		       what);
}

/* Pointer to the next n bytes (valid until the next read), consumed. */
static const uint8_t *rd_take(struct mrd *r, size_t n, const char *what)
{
	const uint8_t *q;
	if (r->len - r->pos < n && rd_fill(r, n, what) < 0)
		return NULL;
	q = r->p + r->pos;
	r->pos += n;
	r->off += n;
	return q;
}

static int rd_peek_u8(struct mrd *r, int *v)
{
	if (r->len - r->pos < 1) {
		if (r->fd < 0 || r->eof) {
			*v = -1;
			return 0;
		}
		if (rd_fill(r, 1, "a section type") < 0) {
			if (r->eof) {
				*v = -1;
				return 0;
			}
			return -1;
		}
	}
	*v = r->p[r->pos];
	return 0;
}

static uint64_t be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static int rd_u8(struct mrd *r, uint8_t *v, const char *what)
{
	const uint8_t *p = rd_take(r, 1, what);
	if (!p)
		return -1;
	*v = p[0];
	return 0;
}
static int rd_u32(struct mrd *r, uint32_t *v, const char *what)
{
	const uint8_t *p = rd_take(r, 4, what);
	if (!p)
		return -1;
	*v = (uint32_t)be(p, 4);
	return 0;
}
static int rd_u64(struct mrd *r, uint64_t *v, const char *what)
{
	const uint8_t *p = rd_take(r, 8, what);
	if (!p)
		return -1;
	*v = be(p, 8);
	return 0;
}
/* u8 length + bytes into a NUL-terminated name (len 0 allowed: caller decides). */
static int rd_name(struct mrd *r, char name[256], const char *what)
{
	uint8_t l;
	const uint8_t *p;
	if (rd_u8(r, &l, what) < 0 || !(p = rd_take(r, l, what)))
		return -1;
	memcpy(name, p, l);
	name[l] = '\0';
	if (memchr(name, '\0', l))
		return err_set("[offset %llu] %s contains a NUL byte", (unsigned long long)r->off, what);
	return 0;
}

static int wr_flush(struct mwr *w)
{
	if (w->fd < 0 || w->len == 0)
		return 0;
	if (full_write(w->fd, w->buf, w->len) < 0)
		return err_set_errno(errno, "writing the filtered stream");
	w->len = 0;
	return 0;
}

static int wr(struct mwr *w, const void *data, size_t n)
{
	if (w->cap - w->len < n) {
		if (w->fd >= 0) {
			if (wr_flush(w) < 0)
				return -1;
			if (n > w->cap) {
				if (full_write(w->fd, data, n) < 0)
					return err_set_errno(errno, "writing the filtered stream");
				w->total += n;
				return 0;
			}
		} else {
			size_t ncap = w->cap ? w->cap : 65536;
			uint8_t *nb;
			while (ncap - w->len < n)
				ncap *= 2;
			nb = realloc(w->buf, ncap);
			if (!nb)
				return err_set_errno(ENOMEM, "filter output");
			w->buf = nb;
			w->cap = ncap;
		}
	}
	memcpy(w->buf + w->len, data, n);
	w->len += n;
	w->total += n;
	return 0;
}

static int wr_u8(struct mwr *w, uint8_t v)
{
	return wr(w, &v, 1);
}
static int wr_be(struct mwr *w, uint64_t v, int n)
{
	uint8_t b[8];
	for (int i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return wr(w, b, (size_t)n);
}
static int wr_name(struct mwr *w, const char *name)
{
	size_t l = strlen(name);
	return wr_u8(w, (uint8_t)l) < 0 ? -1 : wr(w, name, l);
}

#define OFF(f) ((unsigned long long)(f)->rd.off)

static int parse_configuration(struct mfilter *f)
{
	struct mrd *r = &f->rd;
	uint32_t len, ver;
	const uint8_t *name;
	int next;

	if (rd_u32(r, &len, "the configuration length") < 0)
		return -1;
	if (len > 4096)
		return err_set("[offset %llu] machine name of %u bytes", OFF(f), len);
	if (!(name = rd_take(r, len, "the machine name")))
		return -1;
	if (wr_u8(&f->wr, MIG_CONFIGURATION) < 0 || wr_be(&f->wr, len, 4) < 0 || wr(&f->wr, name, len) < 0)
		return -1;
	for (;;) {
		char sub[256];
		if (rd_peek_u8(r, &next) < 0)
			return -1;
		if (next != MIG_SUBSECTION)
			return 0;
		rd_take(r, 1, "subsection");
		if (rd_name(r, sub, "a configuration subsection name") < 0 ||
		    rd_u32(r, &ver, "a subsection version") < 0)
			return -1;
		if (wr_u8(&f->wr, MIG_SUBSECTION) < 0 || wr_name(&f->wr, sub) < 0 || wr_be(&f->wr, ver, 4) < 0)
			return -1;
		if (!strcmp(sub, "configuration/target-page-bits")) {
			uint32_t bits;
			if (rd_u32(r, &bits, "target-page-bits") < 0)
				return -1;
			if (bits != 12)
				return err_set("[offset %llu] target page bits %u, only 12 is supported", OFF(f), bits);
			if (wr_be(&f->wr, bits, 4) < 0)
				return -1;
		} else if (!strcmp(sub, "configuration/capabilities")) {
			uint32_t n;
			if (rd_u32(r, &n, "the capability count") < 0)
				return -1;
			if (n > MAX_CAPS)
				return err_set("[offset %llu] %u capabilities", OFF(f), n);
			if (wr_be(&f->wr, n, 4) < 0)
				return -1;
			for (uint32_t i = 0; i < n; i++) {
				char cap[256];
				if (rd_name(r, cap, "a capability name") < 0)
					return -1;
				if (!strcmp(cap, "x-ignore-shared"))
					f->st.ignore_shared = 1;
				else
					return err_set("[offset %llu] unknown migration capability '%s'", OFF(f), cap);
				if (wr_name(&f->wr, cap) < 0)
					return -1;
			}
		} else if (!strcmp(sub, "configuration/uuid")) {
			const uint8_t *u = rd_take(r, 16, "the uuid");
			if (!u || wr(&f->wr, u, 16) < 0)
				return -1;
		} else {
			return err_set("[offset %llu] unknown configuration subsection '%s'", OFF(f), sub);
		}
	}
}

static int find_block(struct mfilter *f, const char *name)
{
	for (unsigned i = 0; i < f->nblocks; i++)
		if (!strcmp(f->blocks[i].name, name))
			return (int)i;
	return -1;
}

static int parse_mem_size(struct mfilter *f, uint64_t total)
{
	struct mrd *r = &f->rd;
	uint64_t left = total;

	if (f->setup_seen)
		return err_set("[offset %llu] second RAM setup record", OFF(f));
	f->setup_seen = true;
	if (wr_be(&f->wr, total | MIG_RAM_MEM_SIZE, 8) < 0)
		return -1;
	while (left > 0) {
		struct ramblock *b;
		uint64_t addr;
		if (f->nblocks == MAX_BLOCKS)
			return err_set("[offset %llu] more than %d RAM blocks", OFF(f), MAX_BLOCKS);
		b = &f->blocks[f->nblocks];
		if (rd_name(r, b->name, "a RAM block name") < 0 || rd_u64(r, &b->used, "a RAM block length") < 0)
			return -1;
		if (!b->name[0] || b->used == 0 || b->used > left)
			return err_set("[offset %llu] RAM block '%s' of %llu bytes does not fit the total %llu",
				       OFF(f), b->name, (unsigned long long)b->used, (unsigned long long)total);
		if (find_block(f, b->name) >= 0)
			return err_set("[offset %llu] RAM block '%s' listed twice", OFF(f), b->name);
		if (wr_name(&f->wr, b->name) < 0 || wr_be(&f->wr, b->used, 8) < 0)
			return -1;
		if (f->st.ignore_shared) {
			if (rd_u64(r, &addr, "a RAM block address") < 0 || wr_be(&f->wr, addr, 8) < 0)
				return -1;
		}
		left -= b->used;
		f->nblocks++;
	}
	f->st.nblocks = f->nblocks;
	return 0;
}

/* Records of one ram section, up to and including EOS. */
static int parse_ram_records(struct mfilter *f)
{
	struct mrd *r = &f->rd;

	for (;;) {
		uint64_t v, addr;
		unsigned flags;
		if (rd_u64(r, &v, "a RAM record") < 0)
			return -1;
		addr = v & ~(uint64_t)(MIG_PAGE_SIZE - 1);
		flags = (unsigned)(v & (MIG_PAGE_SIZE - 1));
		if (flags == MIG_RAM_EOS)
			return wr_be(&f->wr, v, 8);
		if (flags == MIG_RAM_MEM_SIZE) {
			if (parse_mem_size(f, addr) < 0)
				return -1;
			continue;
		}
		unsigned kind = flags & ~(unsigned)MIG_RAM_CONTINUE;
		if (kind != MIG_RAM_PAGE && kind != MIG_RAM_ZERO)
			return err_set("[offset %llu] unsupported RAM record flags 0x%x", OFF(f) - 8, flags);
		if (!f->setup_seen)
			return err_set("[offset %llu] RAM page record before the setup record", OFF(f) - 8);
		if (!(flags & MIG_RAM_CONTINUE)) {
			char name[256];
			if (rd_name(r, name, "a RAM block name") < 0)
				return -1;
			if ((f->cur = find_block(f, name)) < 0)
				return err_set("[offset %llu] page of unknown RAM block '%s'", OFF(f), name);
		} else if (f->cur < 0) {
			return err_set("[offset %llu] CONTINUE record without a previous block", OFF(f) - 8);
		}
		struct ramblock *b = &f->blocks[f->cur];
		if (addr >= b->used)
			return err_set("[offset %llu] page at 0x%llx beyond RAM block '%s' (%llu bytes)",
				       OFF(f), (unsigned long long)addr, b->name,
				       (unsigned long long)b->used);
		size_t plen = kind == MIG_RAM_PAGE ? MIG_PAGE_SIZE : 1;
		const uint8_t *payload = rd_take(r, plen, "a RAM page");
		if (!payload)
			return -1;
		if (f->drop && !strcmp(b->name, f->drop)) {
			if (kind == MIG_RAM_PAGE)
				f->st.dropped_pages++;
			else
				f->st.dropped_zero++;
			continue;
		}
		f->st.kept_pages++;
		if (wr_be(&f->wr, addr | kind, 8) < 0 || wr_name(&f->wr, b->name) < 0 ||
		    wr(&f->wr, payload, plen) < 0)
			return -1;
	}
}

static int parse_ram_section(struct mfilter *f, uint8_t type)
{
	struct mrd *r = &f->rd;
	uint32_t sid, sid2;
	uint8_t footer;

	if (rd_u32(r, &sid, "a section id") < 0)
		return -1;
	if (wr_u8(&f->wr, type) < 0 || wr_be(&f->wr, sid, 4) < 0)
		return -1;
	if (type == MIG_SECTION_START) {
		char name[256];
		uint32_t inst, ver;
		if (rd_name(r, name, "a section name") < 0 || rd_u32(r, &inst, "an instance id") < 0 ||
		    rd_u32(r, &ver, "a section version") < 0)
			return -1;
		if (strcmp(name, "ram"))
			return err_set("[offset %llu] unsupported iterative section '%s'", OFF(f), name);
		if (f->have_ram_sid)
			return err_set("[offset %llu] second START of section 'ram'", OFF(f));
		if (ver != 4)
			return err_set("[offset %llu] ram section version %u, expected 4 (QEMU 7.2)", OFF(f), ver);
		f->have_ram_sid = true;
		f->ram_sid = sid;
		if (wr_name(&f->wr, name) < 0 || wr_be(&f->wr, inst, 4) < 0 || wr_be(&f->wr, ver, 4) < 0)
			return -1;
	} else if (!f->have_ram_sid || sid != f->ram_sid) {
		return err_set("[offset %llu] section id %u is not the ram section", OFF(f), sid);
	}
	f->st.ram_sections++;
	if (parse_ram_records(f) < 0)
		return -1;
	if (rd_u8(r, &footer, "a section footer") < 0 || rd_u32(r, &sid2, "a footer section id") < 0)
		return -1;
	if (footer != MIG_SECTION_FOOTER || sid2 != sid)
		return err_set("[offset %llu] bad section footer (0x%02x, id %u, expected id %u)", OFF(f), footer,
			       sid2, sid);
	return wr_u8(&f->wr, footer) < 0 ? -1 : wr_be(&f->wr, sid2, 4);
}

/* Copy everything left in the input to the output. */
static int copy_rest(struct mfilter *f)
{
	struct mrd *r = &f->rd;
	for (;;) {
		size_t avail = r->len - r->pos;
		if (avail) {
			if (wr(&f->wr, r->p + r->pos, avail) < 0)
				return -1;
			r->pos += avail;
			r->off += avail;
		}
		if (r->fd < 0 || r->eof)
			return 0;
		if (rd_fill(r, 1, "the device state") < 0 && !r->eof)
			return -1;
		err_clear();
	}
}

static int filter_run(struct mfilter *f)
{
	struct mrd *r = &f->rd;
	uint32_t magic, ver;

	if (rd_u32(r, &magic, "the magic") < 0 || rd_u32(r, &ver, "the version") < 0)
		return -1;
	if (magic != MIG_MAGIC)
		return err_set("[offset 0] not a QEMU migration stream (magic 0x%08x)", magic);
	if (ver != MIG_VERSION)
		return err_set("[offset 4] migration stream version %u, expected %u", ver, MIG_VERSION);
	if (wr_be(&f->wr, magic, 4) < 0 || wr_be(&f->wr, ver, 4) < 0)
		return -1;
	for (;;) {
		uint8_t t;
		if (rd_u8(r, &t, "a section type") < 0)
			return -1;
		switch (t) {
		case MIG_CONFIGURATION:
			if (f->st.ram_sections)
				return err_set("[offset %llu] configuration after ram sections", OFF(f) - 1);
			if (parse_configuration(f) < 0)
				return -1;
			break;
		case MIG_SECTION_START:
		case MIG_SECTION_PART:
		case MIG_SECTION_END:
			if (parse_ram_section(f, t) < 0)
				return -1;
			break;
		case MIG_SECTION_FULL:
		case MIG_SECTION_EOF:
			if (!f->setup_seen)
				return err_set("[offset %llu] device state without a RAM setup record", OFF(f) - 1);
			if (wr_u8(&f->wr, t) < 0)
				return -1;
			return copy_rest(f);
		default:
			return err_set("[offset %llu] unsupported section type 0x%02x", OFF(f) - 1, t);
		}
	}
}

static void filter_finish_stats(struct mfilter *f, struct migstream_stats *st)
{
	f->st.in_bytes = f->rd.off;
	f->st.out_bytes = f->wr.total;
	if (st)
		*st = f->st;
}

int migstream_filter_fd(int in_fd, int out_fd, const char *drop_block, uint64_t timeout_ms,
			struct migstream_stats *st)
{
	struct mfilter *f = calloc(1, sizeof(*f));
	int r = -1;

	if (!f)
		return err_set_errno(ENOMEM, "migration filter");
	f->rd.fd = in_fd;
	f->rd.timeout_ms = timeout_ms;
	f->wr.fd = out_fd;
	f->drop = drop_block;
	f->cur = -1;
	f->rd.buf = malloc(RD_BUF);
	f->wr.buf = malloc(WR_BUF);
	f->wr.cap = WR_BUF;
	if (!f->rd.buf || !f->wr.buf) {
		err_set_errno(ENOMEM, "migration filter");
		goto out;
	}
	f->rd.p = f->rd.buf;
	if (filter_run(f) < 0 || wr_flush(&f->wr) < 0)
		goto out;
	filter_finish_stats(f, st);
	r = 0;
out:
	if (r < 0)
		err_prefix("migration stream");
	free(f->rd.buf);
	free(f->wr.buf);
	free(f);
	return r;
}

int migstream_filter_buf(const void *in, size_t len, const char *drop_block, void **out,
			 size_t *out_len, struct migstream_stats *st)
{
	struct mfilter *f = calloc(1, sizeof(*f));
	int r = -1;

	*out = NULL;
	*out_len = 0;
	if (!f)
		return err_set_errno(ENOMEM, "migration filter");
	f->rd.fd = -1;
	f->rd.p = in;
	f->rd.len = len;
	f->rd.eof = true;
	f->wr.fd = -1;
	f->drop = drop_block;
	f->cur = -1;
	if (filter_run(f) < 0) {
		err_prefix("migration stream");
		free(f->wr.buf);
		goto out;
	}
	filter_finish_stats(f, st);
	*out = f->wr.buf ? (void *)f->wr.buf : malloc(1);
	*out_len = f->wr.len;
	r = 0;
out:
	free(f);
	return r;
}
