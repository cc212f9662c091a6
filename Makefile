# Convenience targets; the scripts under scripts/ are the source of truth (the README's two
# commands call them directly, so a machine without make can run them too).
.PHONY: all build demo test onnxruntime data model deps clean-third-party

all: build

build:
	cargo build --release --locked

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

deps:
	bash scripts/system-deps.sh

onnxruntime:
	bash scripts/fetch-onnxruntime.sh

data:
	python3 models/fetch_elpv.py --root .

# Reproduce the encoder from scratch: venv, fetch, split check, train, export, evaluate.
model:
	bash scripts/system-deps.sh model
	bash models/reproduce.sh

clean-third-party:
	rm -rf third_party data
