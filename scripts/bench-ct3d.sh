#!/usr/bin/env bash
# Benchmark 3 of issue 14, the CPU half: 3-D cone beam, the R²-Gaussian protocol at 128³ on two
# volumes we can ship: the 3-D Shepp–Logan (`--phantom shepp3d`, projected in closed form) and
# TIGRE's head phantom (datasets/head256.mat via scripts/fetch-head256.sh, block-averaged to 128³
# by scripts/head_phantom.py). R²-Gaussian's scanner scaled to the volume
# (scripts/cone_geometry.py: volume 2 units wide, DSO 5, DSD 7, a 256² detector over 4 units),
# 25 / 50 / 75 views over 360°, TIGRE's noise (`--noise tigre`: Poisson, I0 = 1e5, plus Gaussian
# σ = 10 on the counts). FDK, SART and ASD-POCS with the settings tuned on a validation volume
# (scripts/tune-classical.sh ct3d, recorded in benchmarks/ct3d-classical/tuned.txt).
# Metrics: PSNR on [0, 1] volumes and SSIM averaged over the three axis orders (what `ffvol
# recon` prints as "SSIM over 3 axes"; scripts/ct_metrics.py recomputes both in numpy and the
# table shows the largest difference).
#
#   scripts/bench-ct3d.sh [OUT]              (default runs/bench-ct3d)
#   VIEWS="25 50 75"  PHANTOMS="shepp3d head"  N=128  METHODS="fdk sart asd-pocs"
#   FIT_STEPS=K   also run `ffvol fit ct` (default config) for K steps (off by default: on 2 cores
#                 a 128³ grid step takes tens of seconds; keep K × step time ≤ 15 min)
#   FIT_ARGS="..."  more flags for the fits (e.g. --render grid: the default preset's warm start
#                 and ramp-weighted loss apply to grid rendering; 3D runs render rays by default)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/bench-ct3d}"
views_list="${VIEWS:-25 50 75}"
phantoms="${PHANTOMS:-shepp3d head}"
n="${N:-128}"
methods="${METHODS:-fdk sart asd-pocs}"
tuned_file="${TUNED:-benchmarks/ct3d-classical/tuned.txt}"
bin=target/release/ffvol
source scripts/ct_lib.sh
cargo build --release --quiet
mkdir -p "$out"
if [[ " $phantoms " == *" head "* ]]; then
  scripts/fetch-head256.sh > /dev/null
  [ -f "$out/head$n.npy" ] || python3 scripts/head_phantom.py datasets/head256.mat "$n" "$out/head$n.npy"
fi
csv="$out/results.csv"
echo "phantom,views,method,psnr_db,ssim_3axes,ssim_z,seconds,python_psnr,python_ssim_3axes" > "$csv"
for v in $views_list; do
  python3 scripts/cone_geometry.py "$n" "$v" > "$out/cone$v.toml"
  for ph in $phantoms; do
    src=$ph
    [[ $ph == head ]] && src="$out/head$n.npy"
    d="$out/$ph-$v"
    "$bin" simulate ct --phantom "$src" --geometry "$out/cone$v.toml" --noise tigre --seed 1 --output "$d" > /dev/null
    for m in $methods; do
      flags=""
      [[ $m != fdk ]] && flags=$(tuned "$m" "$tuned_file")
      # shellcheck disable=SC2086
      read -r secs psnr ssim ssim3 < <(recon_row "$m" "$d" "$d/$m" $flags)
      read -r ppsnr _ pssim3 _ < <(python3 scripts/ct_metrics.py "$d/$m.nii.gz" "$d/truth.nii.gz")
      echo "$ph,$v,$m,$psnr,$ssim3,$ssim,$secs,$ppsnr,$pssim3" | tee -a "$csv" >&2
    done
    if [[ -n "${FIT_STEPS:-}" ]]; then
      "$bin" fit ct --projections "$d/projections.npy" --geometry "$d/geometry.toml" --truth "$d/truth.nii.gz" \
        --steps "$FIT_STEPS" ${FIT_ARGS:-} --output "$d/fit" --force > "$d/fit.txt" 2>&1
      read -r ppsnr pssim pssim3 _ < <(python3 scripts/ct_metrics.py "$d/fit/recon.nii.gz" "$d/truth.nii.gz")
      secs=$(python3 -c "import json; print('%.1f' % json.load(open('$d/fit/metrics.json'))['total_seconds'])")
      echo "$ph,$v,fit ct ($FIT_STEPS steps),$ppsnr,$pssim3,$pssim,$secs,$ppsnr,$pssim3" | tee -a "$csv" >&2
    fi
  done
done
python3 - "$csv" <<'PY' | tee "$out/table.md"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| phantom | views | method | PSNR (dB) | SSIM (3 axes) | SSIM (z slices) | seconds |")
print("|---|---|---|---|---|---|---|")
worst = 0.0
for r in rows:
    print(f"| {r['phantom']} | {r['views']} | {r['method']} | {float(r['psnr_db']):.2f} | {float(r['ssim_3axes']):.4f} | {float(r['ssim_z']):.4f} | {float(r['seconds']):.1f} |")
    worst = max(worst, abs(float(r["psnr_db"]) - float(r["python_psnr"])) / 10, abs(float(r["ssim_3axes"]) - float(r["python_ssim_3axes"])))
print(f"\nnumpy cross-check (scripts/ct_metrics.py): largest difference {worst:.1e} (SSIM; PSNR in dB / 10)")
PY
