# The lab's two set-up commands are `make run` and `make test`; see README.md.
CARGO ?= cargo

.PHONY: all build release test deps lint run bench clean

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Installs the real BitTorrent clients the interop tests use (when missing), checks format and
# lints, then runs every test.
test: deps lint
	$(CARGO) test --all-targets

deps:
	bash tests/install-deps.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
	find run -mindepth 1 ! -name .gitkeep -delete
