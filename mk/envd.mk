# envd: the in-guest agent, a static binary (src/guest/envd, docs/envd.md).
# It links the few src/common files it needs and libjson-c statically; nothing dynamic.
ENVD_SRCS := $(wildcard src/guest/envd/*.c)
ENVD_COMMON := src/common/err.c src/common/flags.c src/common/io.c src/common/log.c
ENVD_OBJS := $(ENVD_SRCS:%.c=$(B)/guest-obj/%.o) $(ENVD_COMMON:%.c=$(B)/guest-obj/%.o)
ENVD_CFLAGS = $(ALL_CFLAGS) -Os -ffunction-sections -fdata-sections

$(B)/guest-obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ENVD_CFLAGS) -MMD -MP -c $< -o $@

$(B)/guest/envd: $(ENVD_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -static -Wl,--gc-sections $(ENVD_OBJS) -l:libjson-c.a -l:libz.a -pthread -o $@

ALL_EXTRA += $(B)/guest/envd

# The HTTP parser harness needs only the parser: a specific rule beats the generic one.
$(B)/fuzz/fuzz_envd_http: fuzz/fuzz_envd_http.c src/guest/envd/http.c src/guest/envd/http.h
	@mkdir -p $(dir $@)
	$(CLANG) -std=gnu11 -D_GNU_SOURCE -Isrc -g -O1 -fsanitize=fuzzer,address,undefined \
	  fuzz/fuzz_envd_http.c src/guest/envd/http.c -o $@

# An AddressSanitizer/UBSan build of envd (dynamic) for tests/shell/envd_asan.sh.
$(B)/asan/guest/envd: $(ENVD_SRCS) $(ENVD_COMMON) $(wildcard src/guest/envd/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -O1 $(ENVD_SRCS) $(ENVD_COMMON) -ljson-c -lz -o $@

asan-tests: $(B)/asan/guest/envd
