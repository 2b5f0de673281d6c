#!/usr/bin/env bash
# Benchmark 4 of issue 14, the CPU side: BART's compressed sensing (`bart pics`, one coil,
# sensitivities of one; l1-wavelet and total variation) against the zero-filled inverse FFT and
# `ffvol fit mri` (its default preset), on the SAME k-space and mask files: the MNI152 T1
# (scripts/fetch-datasets.sh) under the paper's Gaussian mask (200,000 draws at 96³, scaled by
# the voxel count).
#
#   scripts/bench-mri-bart.sh [OUT]            (default runs/bench-mri-bart)
#   SIZES="48"      test sizes (default 48; 96 adds the paper's size: BART in minutes, the fit
#                   about 8× the 48³ one on 2 cores)
#   LAMBDAS=...     BART's regularisation weights swept on the validation k-space
#   ITERS=...       BART's iteration counts swept with them (default 30 100 300 1000: fewer
#                   iterations regularise too, so the count is tuned like λ)
#   FIT_ARGS=...    extra flags for `fit mri` (default none: the default preset)
#   VAL_FIT=1       also fit the validation k-space (the figure the preset was tuned on)
#
# 1. Each volume's k-space and mask come from `ffvol fit mri --volume V --steps 1`, which writes
#    the k-space it trains on (kspace.npy, centred) and its mask (mask.npy) into the run folder.
# 2. Validation: the same volume under a mask of another seed (--seed 7; the test mask is the
#    default seed). There is one brain here, so validation differs from test in its mask only;
#    BART's (regulariser, iterations, λ) and ffvol's preset were both chosen on it (the mask's
#    density sets BART's best λ, so the validation is at the test size).
# 3. scripts/mri_bart.py converts the files to BART's .cfl/.hdr (centred unitary FFT), checks that
#    BART's zero-filled inverse FFT gives ffvol's zero-filled PSNR to 0.01 dB, and runs pics.
# 4. `ffvol fit mri --volume V --kspace K --mask M` fits the same files.
# PSNR is ffvol's (whole volume, [0, 1] by min-max, prediction clipped); times are wall seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/bench-mri-bart}"
sizes="${SIZES:-48}"
lambdas="${LAMBDAS:-0.001,0.002,0.003,0.005,0.01,0.02}"
iters="${ITERS:-30 100 300 1000}"
bin=target/release/ffvol
command -v bart >/dev/null || { echo "error: bart not found (apt-get install -y bart)" >&2; exit 1; }
python3 -c "import numpy, nibabel" || { echo "error: python3 needs numpy and nibabel" >&2; exit 1; }
cargo build --release --quiet
for n in $sizes; do
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
fit() { # volume k-space-folder out: the fit's "PSNR seconds steps"
  # shellcheck disable=SC2086
  "$bin" fit mri --volume "$1" --kspace "$2/kspace.npy" --mask "$2/mask.npy" --output "$3" --force \
    ${FIT_ARGS:-} >> "$log" 2>&1
  python3 -c "import json; m = json.load(open('$3/metrics.json')); print('%.2f %.1f %d' % (m['psnr'], m['total_seconds'], m['steps']))"
}

rows=()
for n in $sizes; do
  v="datasets/mni152_t1_$n.nii.gz"
  kspace "$v" "$out/val$n" --seed 7
  kspace "$v" "$out/k$n"
  for reg in l1 tv; do
    # validation: every (iterations, λ); the best is used on the test mask
    best_p=-1
    for it in $iters; do
      python3 scripts/mri_bart.py "$out/val$n" "$v" "$out/val$n-bart-$reg-$it" --lambdas "$lambdas" \
        --regulariser "$reg" --iterations "$it" | tee -a "$log" > "$out/val$n-bart-$reg-$it.txt"
      read -r _ lam p _ < <(grep '^BEST' "$out/val$n-bart-$reg-$it.txt")
      if python3 -c "import sys; sys.exit(0 if $p > $best_p else 1)"; then best_p=$p best_it=$it best_lam=$lam; fi
    done
    echo "$n³ $reg: chosen -i $best_it, λ $best_lam (validation $(printf %.2f "$best_p") dB)" | tee -a "$log"
    python3 scripts/mri_bart.py "$out/k$n" "$v" "$out/bart$n-$reg" --lambdas "$best_lam" --regulariser "$reg" \
      --iterations "$best_it" | tee -a "$log" > "$out/bart$n-$reg.txt"
    read -r _ zf_ffvol zf_bart < <(grep '^ZERO_FILLED' "$out/bart$n-$reg.txt")
    read -r _ lam bart_psnr bart_s < <(grep '^BEST' "$out/bart$n-$reg.txt")
    flag=$([ "$reg" = l1 ] && echo "-l1 -r $lam" || echo "-R T:7:0:$lam")
    [ "$reg" = l1 ] && {
      rows+=("| $n³ | zero-filled inverse FFT (ffvol) | $(printf %.2f "$zf_ffvol") | – | – |")
      rows+=("| $n³ | zero-filled inverse FFT (BART \`fft -i -u\`) | $(printf %.2f "$zf_bart") | – | – |")
    }
    rows+=("| $n³ | \`bart pics -S $flag -i $best_it\` | $(printf %.2f "$bart_psnr") | $(printf %.2f "$best_p") | $bart_s |")
  done
  val="–"
  if [ "${VAL_FIT:-0}" = 1 ]; then read -r val _ < <(fit "$v" "$out/val$n" "$out/fit$n-val"); fi
  read -r p s steps < <(fit "$v" "$out/k$n" "$out/fit$n")
  rows+=("| $n³ | \`ffvol fit mri\` (default preset${FIT_ARGS:+ $FIT_ARGS}, $steps steps) | $p | $val | $s |")
done
{
  echo "| volume | method | test PSNR (dB) | validation PSNR (dB) | seconds |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$out/table.md"
