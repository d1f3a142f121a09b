# Thin wrapper around CMake. `make demo` and `make test` work on a fresh Debian 12
# machine: they install the missing Debian packages first (scripts/install-deps).

BUILD_DIR ?= build
JOBS      ?= 2
GILSTAT   := $(BUILD_DIR)/bin/gilstat
FORMAT_DIRS := src include probe_ext tests/unit

.PHONY: all deps configure build test demo clean format

all: build

deps:
	scripts/install-deps

configure: deps
	cmake -S . -B $(BUILD_DIR)

build: configure
	cmake --build $(BUILD_DIR) -j$(JOBS)

test: build
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
