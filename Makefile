# The lab's two set-up commands are `make run` and `make test`; see README.md.
CARGO ?= cargo

.PHONY: all build release test deps lint run bench bench-deps clean movie interop-table fuzz fuzz-smoke soak

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

# Installs the real BitTorrent clients the interop tests use (when missing), checks format and
# lints, then runs every test.
test: deps lint
	$(CARGO) test --all-targets

# The standard experiment end to end (configs/default.yaml), printing the result.
run: release
	./target/release/testbed run --config configs/default.yaml

deps:
	bash tests/install-deps.sh

# The README's interop table, from the rows the interop tests wrote in their last run.
interop-table:
	@echo "| client | direction | result |"
	@echo "|---|---|---|"
	@cat run/interop/*.md 2>/dev/null | sort

# Format, lints, and the one-way layers of src/ (src/layers.rs: no module uses a layer above
# its own or beside it, the protocol layer uses no tokio, and no files use each other in a circle).
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --lib --quiet layers

# Every speed and scale figure beside its anchor (run/bench.json, benches/results.json and the
# table in BENCHMARKS.md made from it). QUICK=1 for a
# short pass; BENCH=tracker,wire,cap,scale,vod to pick sections.
bench: bench-deps
	QUICK=$(QUICK) BENCH=$(BENCH) $(CARGO) bench --bench lab

bench-deps:
	bash tests/install-deps.sh bench

# Fuzz the parsers (bencode, metainfo, wire codec, announce/scrape queries) with cargo-fuzz:
# FUZZ_SECS a target (default 10 minutes); fuzz-smoke is 30 s a target (CI runs it).
FUZZ_SECS ?= 600
fuzz:
	bash fuzz/run.sh $(FUZZ_SECS)

fuzz-smoke:
	bash fuzz/run.sh 30

# Robustness at length: 100 start/stop trials (a third with the supervisor SIGKILLed, a third
# with a daemonizing my client), then a 10-minute reincarnating world with the supervisor's fds
# and RSS checked flat. Prints the figures.
soak:
	STOP_TRIALS=100 $(CARGO) test --test it stop_trials -- --nocapture
	SOAK_SECS=600 $(CARGO) test --test it soak_ -- --ignored --nocapture

clean:
	$(CARGO) clean
	find run -mindepth 1 ! -name .gitkeep -delete

# The standard movie in fresh-files/ (committed; this is how it was made). Two minutes of
# ffmpeg's test pattern with a 440 Hz tone, about 60 KB/s in all (the default playback rate R),
# with the index at the front (+faststart) so that it plays while it downloads.
movie:
	ffmpeg -y -loglevel error \
	  -f lavfi -i testsrc2=size=640x360:rate=25:duration=120 \
	  -f lavfi -i sine=frequency=440:sample_rate=44100:duration=120 \
	  -c:v libx264 -preset veryslow -b:v 400k -maxrate 420k -bufsize 800k -pix_fmt yuv420p \
	  -c:a aac -b:a 64k -movflags +faststart -map_metadata -1 -fflags +bitexact \
	  fresh-files/movie.mp4
