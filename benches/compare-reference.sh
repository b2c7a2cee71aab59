#!/usr/bin/env bash
# Whole-process comparison of `twingraph check` with Microsoft's reference
# DTDL parser (DTDLParser's WebAssembly build, via tools/oracle) on the same
# files, measured side by side in one run: the two commands alternate, so
# both see the same machine noise. Prints each median and the ratio.
#
#   benches/compare-reference.sh [FOLDER]      (default: RealEstateCore, 1,364 interfaces)
#   RUNS=9 benches/compare-reference.sh ...     (default 7 runs each)
#
# Needs node and npm (tools/oracle installs the reference parser from the npm registry).
set -euo pipefail
cd "$(dirname "$0")/.."

corpus=${TWINGRAPH_DTDL_CORPUS:-../shared/corpora/dtdl}
folder=${1:-$corpus/models/realestatecore-rec}
runs=${RUNS:-7}

cargo build --release --quiet
if [ ! -d tools/oracle/node_modules ]; then
  (cd tools/oracle && npm ci --silent --no-audit --no-fund)
fi

# Both must accept the folder, or the timing means nothing.
./target/release/twingraph check "$folder" >/dev/null
node tools/oracle/check.mjs "$folder" >/dev/null

elapsed_ms() {
  local start end
  start=$(date +%s%N)
  "$@" >/dev/null
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ours=()
theirs=()
for _ in $(seq "$runs"); do
  ours+=("$(elapsed_ms ./target/release/twingraph check "$folder")")
  theirs+=("$(elapsed_ms node tools/oracle/check.mjs "$folder")")
done
m_ours=$(printf '%s\n' "${ours[@]}" | median)
m_theirs=$(printf '%s\n' "${theirs[@]}" | median)

echo "folder:             $folder"
echo "runs:               $runs each, alternating"
echo "twingraph check:    median ${m_ours} ms   (all: ${ours[*]})"
echo "reference parser:   median ${m_theirs} ms   (all: ${theirs[*]})"
awk -v a="$m_theirs" -v b="$m_ours" 'BEGIN { if (b < 1) b = 1; printf "ratio:              %.1fx faster\n", a / b }'
