#!/usr/bin/env bash
# Peak resident memory of full-resolution fits (issue 10's targets), each under /usr/bin/time -v:
#   fit mri on the 1 mm MNI152 T1 (197 × 233 × 189) and on a 256³ volume,
#   fit ct on a 256³ cone-beam scan (50 views, 384² detector) in rays and grid modes.
# Usage: scripts/bench-memory.sh [OUT_DIR] [GRID_STEPS]   (default runs/memory, 2 steps a full-grid fit)
# The full-grid fits run whole-grid steps on the CPU: minutes a step on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/memory}"
steps="${2:-2}"
bin="${FFVOL_BIN:-target/release/ffvol}"
[[ -x "$bin" ]] || cargo build --release
scripts/fetch-datasets.sh >/dev/null
mkdir -p "$out"
mni=datasets/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
"$bin" simulate ct --phantom shepp3d --geometry benchmarks/geometry/cone256.toml --supersample 1 \
  --output "$out/cone256" >/dev/null
measure() { # name, then the command
  local name="$1"; shift
  rm -rf "$out/$name"
  /usr/bin/time -v "$@" --output "$out/$name" >"$out/$name.log" 2>&1
  local kb s plan
  kb=$(grep 'Maximum resident' "$out/$name.log" | awk '{print $NF}')
  s=$(grep 'Elapsed (wall' "$out/$name.log" | awk '{print $NF}')
  plan=$(grep -A1 '^memory plan' "$out/$name.log" | grep -o 'host [0-9.]* [KMG]iB' | head -1)
  printf '| %s | %s | %.2f GiB | %s |\n' "$name" "$plan" "$(echo "$kb / 1048576" | bc -l)" "$s"
}
echo "| run | plan | peak resident | wall |"
echo "|---|---|---|---|"
measure mri-mni-1mm "$bin" fit mri --preset fast --volume "$mni" --steps "$steps"
measure mri-256 "$bin" fit mri --preset fast --volume "$out/cone256/truth.nii.gz" --steps "$steps"
measure ct-cone256-rays "$bin" fit ct --projections "$out/cone256/projections.npy" \
  --geometry "$out/cone256/geometry.toml" --truth "$out/cone256/truth.nii.gz" --render rays --steps 20
measure ct-cone256-grid "$bin" fit ct --projections "$out/cone256/projections.npy" \
  --geometry "$out/cone256/geometry.toml" --truth "$out/cone256/truth.nii.gz" --render grid --steps "$steps"
