/*
 * log.c - leveled logging to stderr with the program name as prefix. The level is global and
 * set once at start (ORCH_LOG=debug|info|warn|error or a command's -v); stdio's own locking
 * keeps lines whole across threads.
 */
#include <string.h>

#include "common.h"

static enum log_level level = LOG_INFO;
static const char *prog = "orch";
static bool level_from_env;

static void level_init(void)
{
	const char *e;
	if (level_from_env)
		return;
	level_from_env = true;
	e = getenv("ORCH_LOG");
	if (!e)
		return;
	if (!strcmp(e, "debug"))
		level = LOG_DEBUG;
	else if (!strcmp(e, "info"))
		level = LOG_INFO;
	else if (!strcmp(e, "warn"))
		level = LOG_WARN;
	else if (!strcmp(e, "error"))
		level = LOG_ERROR;
}

void log_set_level(enum log_level lvl)
{
	level_from_env = true;
	level = lvl;
}

enum log_level log_get_level(void)
{
	level_init();
	return level;
}

void log_set_prog(const char *p)
{
	const char *slash = strrchr(p, '/');
	prog = slash ? slash + 1 : p;
}

const char *log_prog(void)
{
	return prog;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	char line[2048];
	va_list ap;
	level_init();
	if (lvl > level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s: %s\n", prog, names[lvl], line);
}
