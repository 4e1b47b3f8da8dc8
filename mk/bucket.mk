# Bucket storage (src/storage/bucket.c, s3_*.c): libcurl for the S3/GCS XML API.
LDLIBS += -lcurl

# ASan/UBSan builds of copy-build and the bucket test tool for tests/shell/bucket_asan.sh
# (worker threads, curl callbacks, retries and multipart under the sanitizers); built with the
# other ASan artefacts (asan-tests, part of `make check`).
$(B)/asan/bin/copy-build: cmd/copy-build/main.c $(B)/asan/liborch.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -O1 $< $(B)/asan/liborch.a $(LDLIBS) -o $@

$(B)/asan/helpers/bucket_tool: tests/helpers/bucket_tool.c $(B)/asan/liborch.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ASAN_FLAGS) -O1 $< $(B)/asan/liborch.a $(LDLIBS) -o $@

asan-tests: $(B)/asan/bin/copy-build $(B)/asan/helpers/bucket_tool
