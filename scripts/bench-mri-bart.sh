#!/usr/bin/env bash
# Benchmark 4 of issue 14, the CPU side: BART's compressed sensing (`bart pics -l1`, l1-wavelet,
# one coil, sensitivities of one) against the zero-filled inverse FFT and `ffvol fit mri` (its
# default config), on the SAME k-space and mask files: the MNI152 T1 (scripts/fetch-datasets.sh)
# at 48³ and 96³ under the paper's Gaussian mask (200,000 draws at 96³, scaled by the voxel count).
#
#   scripts/bench-mri-bart.sh [OUT]            (default runs/bench-mri-bart)
#   SIZES="48 96"   test sizes (default both); FIT_SIZES="48" sizes that also run `fit mri`
#   (default 48: the fast preset's 400 full-grid steps at 96³ take about an hour on 2 cores)
#   LAMBDAS=...     BART's regularisation weights swept on the validation volume
#   FIT_ARGS=...    extra flags for `fit mri` (default none: the default config)
#
# 1. Each volume's k-space and mask come from `ffvol fit mri --volume V --steps 1`, which writes
#    the k-space it trains on (kspace.npy, centred) and its mask (mask.npy) into the run folder.
# 2. λ is swept on a validation volume: the same template at 64³ under a mask of another seed
#    (--seed 7); the best λ is used on the test sizes. (There is one brain here: the validation
#    volume differs in resolution and mask, not in anatomy.)
# 3. scripts/mri_bart.py converts the files to BART's .cfl/.hdr (centred unitary FFT), checks that
#    BART's zero-filled inverse FFT gives ffvol's zero-filled PSNR to 0.01 dB, and runs pics.
# 4. `ffvol fit mri --volume V --kspace K --mask M` fits the same files.
# PSNR is ffvol's (whole volume, [0, 1] by min-max, prediction clipped); times are wall seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/bench-mri-bart}"
sizes="${SIZES:-48 96}"
fit_sizes="${FIT_SIZES:-48}"
lambdas="${LAMBDAS:-0.0005,0.001,0.002,0.005,0.01,0.02,0.05}"
bin=target/release/ffvol
command -v bart >/dev/null || { echo "error: bart not found (apt-get install -y bart)" >&2; exit 1; }
python3 -c "import numpy, nibabel" || { echo "error: python3 needs numpy and nibabel" >&2; exit 1; }
cargo build --release --quiet
for n in 64 $sizes; do
  [ -f "datasets/mni152_t1_$n.nii.gz" ] || scripts/fetch-datasets.sh
done
mkdir -p "$out"
log="$out/log.txt"
: > "$log"

kspace() { # volume run-folder [extra fit flags]: writes kspace.npy and mask.npy
  local v=$1 d=$2
  shift 2
  "$bin" fit mri --volume "$v" --steps 1 --output "$d" --force "$@" >> "$log" 2>&1
}

val=datasets/mni152_t1_64.nii.gz
echo "validation: $val, mask seed 7; λ in $lambdas" | tee -a "$log"
kspace "$val" "$out/val64" --seed 7
python3 scripts/mri_bart.py "$out/val64" "$val" "$out/val64-bart" --lambdas "$lambdas" | tee -a "$log" > "$out/val64-bart.txt"
best=$(sed -n 's/^BEST \([^ ]*\) .*/\1/p' "$out/val64-bart.txt")
echo "chosen λ = $best" | tee -a "$log"

rows=()
for n in $sizes; do
  v="datasets/mni152_t1_$n.nii.gz"
  kspace "$v" "$out/k$n"
  python3 scripts/mri_bart.py "$out/k$n" "$v" "$out/bart$n" --lambdas "$best" | tee -a "$log" > "$out/bart$n.txt"
  read -r _ zf_ffvol zf_bart < <(grep '^ZERO_FILLED' "$out/bart$n.txt")
  read -r _ lam bart_psnr bart_s < <(grep '^BEST' "$out/bart$n.txt")
  rows+=("| $n³ | zero-filled inverse FFT (ffvol) | $(printf %.2f "$zf_ffvol") | – |")
  rows+=("| $n³ | zero-filled inverse FFT (BART \`fft -i -u\`) | $(printf %.2f "$zf_bart") | – |")
  rows+=("| $n³ | \`bart pics -S -l1 -r $lam -i 30\` | $(printf %.2f "$bart_psnr") | $bart_s |")
  if [[ " $fit_sizes " == *" $n "* ]]; then
    # shellcheck disable=SC2086
    "$bin" fit mri --volume "$v" --kspace "$out/k$n/kspace.npy" --mask "$out/k$n/mask.npy" \
      --output "$out/fit$n" --force ${FIT_ARGS:-} >> "$log" 2>&1
    rows+=("$(python3 -c "
import json; m = json.load(open('$out/fit$n/metrics.json'))
print('| $n³ | \`ffvol fit mri\` (default config, %d steps) | %.2f | %.1f |' % (m['steps'], m['psnr'], m['total_seconds']))")")
  fi
done
{
  echo "| volume | method | PSNR (dB) | seconds |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$out/table.md"
