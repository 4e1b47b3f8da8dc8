# Build format (src/storage/header.c, logical.c) and the inspect commands.
# ASan/UBSan builds of the three commands, so tests/shell/format_bad.sh can show that bad
# input never produces a sanitizer report; built with the other ASan artefacts (asan-tests,
# part of `make check`).
FORMAT_CMDS := inspect-header inspect-data simulate-headers-merge
FORMAT_ASAN_BINS := $(FORMAT_CMDS:%=$(B)/asan/bin/%)

$(FORMAT_ASAN_BINS): $(B)/asan/bin/%: cmd/%/main.c $(B)/asan/liborch.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -O1 $< $(B)/asan/liborch.a $(LDLIBS) -o $@

asan-tests: $(FORMAT_ASAN_BINS)
