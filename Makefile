# Orchestrator build. `make` builds every command into build/bin; see README.md for targets.
# Modules are discovered: every src/<module>/*.c (except src/guest) goes into build/liborch.a,
# every cmd/<name>/main.c becomes build/bin/<name>, every tests/unit/test_*.c a unit test.
# Area-specific rules (guest binaries, extra libraries) live in mk/*.mk.

CC ?= gcc
CLANG ?= clang
OPT ?= -O2
WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
       -Wno-format-nonliteral -Wno-format-truncation
ifneq ($(CI),)
WERROR ?= -Werror
endif
CFLAGS ?= $(OPT) -g
ALL_CFLAGS = -std=gnu11 $(WARN) $(WERROR) -D_GNU_SOURCE -pthread -Isrc $(EXTRA_CFLAGS) $(CFLAGS)
LDLIBS = -pthread -ljson-c
ASAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

B = build
LIB_SRCS := $(shell find src -name '*.c' -not -path 'src/guest/*' | sort)
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/obj/%.o)
ASAN_OBJS := $(LIB_SRCS:%.c=$(B)/asan/obj/%.o)
CMDS := $(notdir $(patsubst %/main.c,%,$(wildcard cmd/*/main.c)))
BINS := $(CMDS:%=$(B)/bin/%)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
ASAN_UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(B)/asan/tests/%)
TEST_HELPER_SRCS := $(wildcard tests/helpers/*.c)
TEST_HELPERS := $(TEST_HELPER_SRCS:tests/helpers/%.c=$(B)/tests/helpers/%)
FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=$(B)/fuzz/%)
BENCH_SRCS := $(wildcard bench/*/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRCS))

# extra targets appended by mk/*.mk; `all` stays the default goal whatever they define first
ALL_EXTRA :=
all:
-include mk/*.mk

.PHONY: all deps check check-slow demo fuzz bench tests asan-tests clean
all: $(BINS) $(ALL_EXTRA)

deps:
	@bash scripts/deps.sh

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(B)/liborch.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

$(B)/bin/%: $(B)/obj/cmd/%/main.o $(B)/liborch.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(B)/liborch.a $(LDLIBS) -o $@

$(B)/tests/test_%: $(B)/obj/tests/unit/test_%.o $(B)/liborch.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(B)/liborch.a $(LDLIBS) -o $@

$(B)/tests/helpers/%: $(B)/obj/tests/helpers/%.o $(B)/liborch.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(B)/liborch.a $(LDLIBS) -o $@

$(B)/bench/%: $(B)/obj/bench/%.o $(B)/liborch.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $< $(B)/liborch.a $(LDLIBS) -o $@

# AddressSanitizer + UBSan build of the library and unit tests
$(B)/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -O1 -MMD -MP -c $< -o $@

$(B)/asan/liborch.a: $(ASAN_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(B)/asan/tests/test_%: tests/unit/test_%.c $(B)/asan/liborch.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -O1 $< $(B)/asan/liborch.a $(LDLIBS) -o $@

# libFuzzer harnesses: clang, the library sources compiled in with the sanitizers
$(B)/fuzz/fuzz_%: fuzz/fuzz_%.c $(LIB_SRCS)
	@mkdir -p $(dir $@)
	$(CLANG) -std=gnu11 -D_GNU_SOURCE -Isrc -g -O1 -fsanitize=fuzzer,address,undefined \
	  $< $(LIB_SRCS) $(LDLIBS) -o $@

tests: all $(UNIT_BINS) $(TEST_HELPERS)
asan-tests: $(ASAN_UNIT_BINS)

check: deps
	@$(MAKE) --no-print-directory all tests asan-tests
	@bash scripts/run-tests.sh

check-slow: deps
	@$(MAKE) --no-print-directory all tests
	@SLOW=1 bash scripts/run-tests.sh tests/slow

demo: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/demo.sh

fuzz: deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)
	@bash scripts/run-fuzz.sh $(FUZZ_BINS)

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@bash scripts/run-bench.sh

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
