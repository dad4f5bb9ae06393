# Thin wrapper over CMake + Ninja. `make run` and `make test` are the two commands users need.
BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc)
PREFIX     ?= /usr/local
DESTDIR    ?=

.PHONY: all deps build run test test-asan lint format bench clean install

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Installs $(DESTDIR)$(PREFIX)/bin/cmesh. Builds what is out of date first, but does not
# run deps (installing packages is not part of installing cmesh).
install: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

run: build
	@bash scripts/run.sh $(BUILD)/cmesh

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(BUILD_ASAN)/build.ninja:
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMESH_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug

test-asan: deps $(BUILD_ASAN)/build.ninja
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS)

lint: deps
	@bash scripts/lint.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

bench: build
	@bash bench/run.sh $(BUILD)/cmesh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
