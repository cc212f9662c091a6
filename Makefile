# Convenience targets; the scripts under scripts/ are the source of truth (the README's two
# commands call them directly, so a machine without make can run them too).
.PHONY: all build demo test bench bench-smoke onnxruntime data model deps clean-third-party deb install check-units

all: build

build:
	cargo build --release --locked

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

# The benchmark suite (docs/BENCHMARKS.md): one table, JSON in target/bench/. bench-smoke: tiny sizes.
bench:
	bash scripts/bench.sh

bench-smoke:
	bash scripts/bench.sh --smoke

deps:
	bash scripts/system-deps.sh

onnxruntime:
	bash scripts/fetch-onnxruntime.sh

# The Debian package target/debian/inspectord_*.deb (cargo-deb), with its contents checked.
deb:
	bash scripts/package.sh

# systemd-analyze verify + security (exposure <= 1.0) of the units under systemd/.
check-units:
	bash scripts/check-units.sh

# What the package installs, for systems without dpkg; does not build (make build onnxruntime
# first). PREFIX=/usr (default) or /usr/local; DESTDIR for staging. Keeps an existing
# /etc/inspectord/inspectord.toml (writes inspectord.toml.dist beside it; FORCE_CONFIG=1 replaces).
# Includes the Modbus bridge's and the gateway's units, configs (modbus.toml, gateway.toml:
# installed once, never replaced) and docs.
PREFIX ?= /usr
DESTDIR ?=
install:
	PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' bash scripts/install.sh

data:
	python3 models/fetch_elpv.py --root .

# Reproduce the encoder from scratch: venv, fetch, split check, train, export, evaluate.
model:
	bash scripts/system-deps.sh model
	bash models/reproduce.sh

clean-third-party:
	rm -rf third_party data
