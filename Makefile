# Thin wrapper around CMake. `make demo` and `make test` work on a fresh Debian 12
# machine: they install the missing Debian packages first (scripts/install-deps).

BUILD_DIR ?= build
JOBS      ?= 2
GILSTAT   := $(BUILD_DIR)/bin/gilstat
FORMAT_DIRS := src include probe_ext tests/unit

.PHONY: all deps interpreters configure build test demo clean format

all: build

deps:
	scripts/install-deps

# The newer CPythons (Debian 3.13/3.14/3.15 packages and a free-threaded 3.13t
# built from source) are fetched into a cache once; later runs take seconds.
# Their launcher directory goes to CMake, which registers one e2e test per
# launcher.  Without network the fetch fails and those tests show as skipped.
INTERPRETERS_DIR_FILE := $(BUILD_DIR)/interpreters-dir

interpreters: deps
	@mkdir -p $(BUILD_DIR)
	@{ tests/interpreters/fetch | tail -n 1 && tests/interpreters/build-freethreaded | tail -n 1; } \
	  > $(INTERPRETERS_DIR_FILE).tmp \
	  && sort -u $(INTERPRETERS_DIR_FILE).tmp | tail -n 1 > $(INTERPRETERS_DIR_FILE) \
	  || { echo "warning: fetching the newer interpreters failed: their tests will be skipped" >&2; \
	       : > $(INTERPRETERS_DIR_FILE); }
	@rm -f $(INTERPRETERS_DIR_FILE).tmp

configure: deps
	dir=$$(cat $(INTERPRETERS_DIR_FILE) 2>/dev/null); \
	cmake -S . -B $(BUILD_DIR) $${dir:+-DGILSTAT_INTERPRETERS_DIR="$$dir"}

build: configure
	cmake --build $(BUILD_DIR) -j$(JOBS)

test: interpreters
	$(MAKE) build
	ctest --test-dir $(BUILD_DIR) --output-on-failure

# Every bundled demo under the probe, each number checked against the workload's truth.
demo: build
	$(GILSTAT) demo --check

clean:
	rm -rf $(BUILD_DIR)

format:
	@command -v clang-format >/dev/null || scripts/install-deps clang-format
	find $(FORMAT_DIRS) -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.c' \) \
	  -print0 | xargs -0 -r clang-format -i
