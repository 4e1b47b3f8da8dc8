/*
 * fuzz_guest_cmdline - libFuzzer harness for orch-init's kernel command line parser
 * (src/guest/init/cmdline.c): any bytes, as /proc/cmdline text, must parse without memory
 * errors into a configuration whose strings are terminated and whose prefix is 0..32.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest/init/init.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct boot_config cfg;
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	cmdline_parse(text, &cfg);
	free(text);
	if (strnlen(cfg.init, sizeof(cfg.init)) == sizeof(cfg.init) ||
	    strnlen(cfg.root, sizeof(cfg.root)) == sizeof(cfg.root) ||
	    strnlen(cfg.rootfstype, sizeof(cfg.rootfstype)) == sizeof(cfg.rootfstype) ||
	    strnlen(cfg.envd, sizeof(cfg.envd)) == sizeof(cfg.envd) ||
	    strnlen(cfg.ip.hostname, sizeof(cfg.ip.hostname)) == sizeof(cfg.ip.hostname) ||
	    strnlen(cfg.ip.dev, sizeof(cfg.ip.dev)) == sizeof(cfg.ip.dev) ||
	    strnlen(cfg.ip_error, sizeof(cfg.ip_error)) == sizeof(cfg.ip_error))
		abort();
	if (cfg.ip.set && (cfg.ip.prefix < 0 || cfg.ip.prefix > 32 || !cfg.ip.dev[0]))
		abort();
	if (cfg.init[0] != '/' || cfg.envd[0] != '/')
		abort();
	return 0;
}
