/*
 * flags.c - Go-style flag parsing (see flags.h). Single-threaded, used once at start.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "flags.h"

int parse_u64_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;
	if (!s || !*s || *s == '-')
		return err_set("invalid number '%s'", s ? s : "");
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return err_set("invalid number '%s'", s);
	if (*end) {
		switch (*end) {
		case 'k': case 'K': mul = 1ull << 10; break;
		case 'm': case 'M': mul = 1ull << 20; break;
		case 'g': case 'G': mul = 1ull << 30; break;
		case 't': case 'T': mul = 1ull << 40; break;
		default: return err_set("invalid number '%s'", s);
		}
		end++;
		if (*end == 'i')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end)
			return err_set("invalid number '%s'", s);
	}
	if (mul_overflow_u64(v, mul, out))
		return err_set("number '%s' is too large", s);
	return 0;
}

int parse_duration_ns(const char *s, uint64_t *out)
{
	const char *p = s;
	uint64_t total = 0;
	if (!s || !*s)
		return err_set("invalid duration '%s'", s ? s : "");
	/* bare number: seconds */
	{
		char *end;
		double v = strtod(s, &end);
		if (end != s && *end == 0) {
			if (v < 0 || v > 1e9)
				return err_set("invalid duration '%s'", s);
			*out = (uint64_t)(v * 1e9);
			return 0;
		}
	}
	while (*p) {
		char *end;
		double v = strtod(p, &end);
		double unit;
		if (end == p || v < 0)
			return err_set("invalid duration '%s'", s);
		p = end;
		if (!strncmp(p, "ns", 2)) { unit = 1; p += 2; }
		else if (!strncmp(p, "us", 2)) { unit = 1e3; p += 2; }
		else if (!strncmp(p, "ms", 2)) { unit = 1e6; p += 2; }
		else if (*p == 's') { unit = 1e9; p += 1; }
		else if (*p == 'm') { unit = 60e9; p += 1; }
		else if (*p == 'h') { unit = 3600e9; p += 1; }
		else return err_set("invalid duration '%s' (use e.g. 30s, 2m, 500ms)", s);
		if (v * unit > 1e18)
			return err_set("invalid duration '%s'", s);
		total += (uint64_t)(v * unit);
	}
	*out = total;
	return 0;
}

static const char *type_hint(enum flag_type t)
{
	switch (t) {
	case FLAG_STRING: return " string";
	case FLAG_INT: return " int";
	case FLAG_U64: return " size";
	case FLAG_DURATION: return " duration";
	default: return "";
	}
}

void flags_usage(const struct flagset *fs, FILE *out)
{
	fprintf(out, "usage: %s %s\n", fs->prog, fs->synopsis ? fs->synopsis : "[flags]");
	if (fs->about)
		fprintf(out, "\n%s\n", fs->about);
	fprintf(out, "\nflags:\n");
	for (size_t i = 0; i < fs->nflags; i++) {
		const struct flag *f = &fs->flags[i];
		fprintf(out, "  -%s%s\n    \t%s%s\n", f->name, type_hint(f->type), f->help ? f->help : "",
			f->required ? " (required)" : "");
	}
	fprintf(out, "  -h\n    \tshow this help\n");
}

void flags_usage_error(const struct flagset *fs, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", fs->prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	flags_usage(fs, stderr);
	exit(2);
}

static struct flag *find_flag(struct flagset *fs, const char *name, size_t len)
{
	for (size_t i = 0; i < fs->nflags; i++)
		if (strlen(fs->flags[i].name) == len && !strncmp(fs->flags[i].name, name, len))
			return &fs->flags[i];
	return NULL;
}

static void set_value(struct flagset *fs, struct flag *f, const char *v)
{
	switch (f->type) {
	case FLAG_BOOL:
		if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "t") || !strcmp(v, "TRUE"))
			*(bool *)f->dest = true;
		else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "f") || !strcmp(v, "FALSE"))
			*(bool *)f->dest = false;
		else
			flags_usage_error(fs, "invalid boolean value '%s' for flag -%s", v, f->name);
		break;
	case FLAG_STRING:
		*(const char **)f->dest = v;
		break;
	case FLAG_INT: {
		char *end;
		long long n;
		errno = 0;
		n = strtoll(v, &end, 0);
		if (errno || end == v || *end)
			flags_usage_error(fs, "invalid value '%s' for flag -%s: not an integer", v, f->name);
		*(int64_t *)f->dest = n;
		break;
	}
	case FLAG_U64:
		if (parse_u64_size(v, (uint64_t *)f->dest) < 0)
			flags_usage_error(fs, "invalid value '%s' for flag -%s: %s", v, f->name, err_msg());
		break;
	case FLAG_DURATION:
		if (parse_duration_ns(v, (uint64_t *)f->dest) < 0)
			flags_usage_error(fs, "invalid value '%s' for flag -%s: %s", v, f->name, err_msg());
		break;
	}
	f->seen = true;
}

int flags_parse(struct flagset *fs, int argc, char **argv)
{
	int i;
	log_set_prog(fs->prog);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *eq;
		struct flag *f;
		size_t len;
		if (a[0] != '-' || a[1] == 0)
			break;
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		name = a + 1;
		if (*name == '-')
			name++;
		eq = strchr(name, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
		if ((len == 1 && name[0] == 'h') || (len == 4 && !strncmp(name, "help", 4))) {
			flags_usage(fs, stdout);
			exit(0);
		}
		f = find_flag(fs, name, len);
		if (!f)
			flags_usage_error(fs, "flag provided but not defined: -%.*s", (int)len, name);
		if (eq)
			set_value(fs, f, eq + 1);
		else if (f->type == FLAG_BOOL)
			set_value(fs, f, "true");
		else if (i + 1 < argc)
			set_value(fs, f, argv[++i]);
		else
			flags_usage_error(fs, "flag needs an argument: -%s", f->name);
	}
	for (size_t k = 0; k < fs->nflags; k++) {
		struct flag *f = &fs->flags[k];
		if (f->required && !f->seen)
			flags_usage_error(fs, "missing required flag -%s", f->name);
		if (f->required && f->type == FLAG_STRING && !**(const char **)f->dest)
			flags_usage_error(fs, "flag -%s must not be empty", f->name);
	}
	return i;
}

bool flags_seen(const struct flagset *fs, const char *name)
{
	for (size_t i = 0; i < fs->nflags; i++)
		if (!strcmp(fs->flags[i].name, name))
			return fs->flags[i].seen;
	return false;
}
