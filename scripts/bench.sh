#!/usr/bin/env bash
# The benchmark suite (docs/BENCHMARKS.md): ONE table on stdout, the same figures as JSON in
# target/bench/results-{full,smoke}.json.
#
#   scripts/bench.sh            the full run (quiet machine; about an hour)
#   scripts/bench.sh --smoke    tiny sizes, a few seconds a row: proves the suite works (CI)
#
# Other arguments go to bench/run.py (--threads N, --sections peers,limit,kernel,refs,cores,latency,memory,
# --before-binary PATH: an older inspectord measured beside this one in row 3).
# bench/plot.py draws docs/benchmarks-refs.svg from the JSON.
# Set-up, all its own: the Debian packages, ONNX Runtime, the ELPV images (as scripts/test.sh),
# the Python peers' venv target/bench/venv (python3 -m venv; pinned bench/requirements.txt),
# the release binary and the pipeline_parts bench binary (benches/pipeline_parts.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/system-deps.sh
bash scripts/fetch-onnxruntime.sh
python3 models/fetch_elpv.py --root . >/dev/null

venv=target/bench/venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum bench/requirements.txt | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "bench: creating $venv (bench/requirements.txt)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt
  echo "$want" >"$stamp"
fi

cargo build --release --locked --quiet
# The two bench executables: benches/pipeline_parts.rs (plain) and benches/scoring.rs (criterion).
bins=$(cargo bench --locked --quiet --bench pipeline_parts --bench scoring --no-run --message-format=json |
  "$venv/bin/python" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])')
parts=$(awk '$1 == "pipeline_parts" {print $2}' <<<"$bins")
scoring=$(awk '$1 == "scoring" {print $2}' <<<"$bins")
for b in "$parts" "$scoring"; do
  [[ -n $b && -x $b ]] || { echo "bench: a bench binary was not built: $bins" >&2; exit 1; }
done

exec "$venv/bin/python" bench/run.py --parts "$parts" --scoring "$scoring" --binary target/release/inspectord "$@"
