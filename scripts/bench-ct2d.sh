#!/usr/bin/env bash
# Benchmark 1 of issue 14 (CPU budget, 2D): 256², 20 parallel views over [0, π), the paper's
# perturbed Shepp–Logan (`ffvol simulate ct --phantom shepp2d --seed S`, noise-free), test seeds
# 1..N. FBP, SART, ASD-POCS and CGLS with the settings tuned on the validation phantom (seed
# 1001: scripts/tune-classical.sh ct2d, recorded in benchmarks/ct2d-classical/), and `ffvol fit
# ct` with its default config under a 60 s wall budget.
#
#   scripts/bench-ct2d.sh [OUT] [N]          (default runs/bench-ct2d, 8 phantoms)
#   FIT_STEPS=K    steps of `fit ct` (default: measured, see below); FIT=0 skips the fits
#   TUNED=FILE     the classical settings (default benchmarks/ct2d-classical/tuned.txt)
#
# `fit ct` has no wall-clock flag, so the step count that takes about 60 s is measured: a
# 20-step probe fit on the validation phantom gives seconds per step s, and every test fit runs
# floor((60 − setup) / s) steps, setup being the probe's total time less its training time. The
# fits' own total time is reported, so a fit that overran the budget shows it.
# Prints the per-phantom table and the means (PSNR dB, SSIM, seconds; ffvol's CT convention).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/bench-ct2d}"
n="${2:-8}"
tuned_file="${TUNED:-benchmarks/ct2d-classical/tuned.txt}"
geometry=paper-ct:256:20
bin=target/release/ffvol
source scripts/ct_lib.sh
cargo build --release --quiet
mkdir -p "$out"
csv="$out/results.csv"
echo "seed,method,psnr_db,ssim,seconds" > "$csv"

steps="${FIT_STEPS:-}"
if [[ "${FIT:-1}" != 0 && -z "$steps" ]]; then
  "$bin" simulate ct --phantom shepp2d --seed 1001 --geometry "$geometry" --output "$out/val" > /dev/null
  "$bin" fit ct --projections "$out/val/projections.npy" --geometry "$out/val/geometry.toml" \
    --steps 20 --output "$out/probe" --force > "$out/probe.txt" 2>&1
  steps=$(python3 -c "
import json; m = json.load(open('$out/probe/metrics.json'))
setup = m['total_seconds'] - m['train_seconds']
print(max(1, int((60.0 - setup) / (m['train_seconds'] / m['steps']))))")
  echo "fit ct: $steps steps in the 60 s budget (probe: $out/probe/metrics.json)"
fi

for seed in $(seq 1 "$n"); do
  d="$out/s$seed"
  "$bin" simulate ct --phantom shepp2d --seed "$seed" --geometry "$geometry" --output "$d" > /dev/null
  for m in fbp sart asd-pocs cgls; do
    flags=""
    [[ $m != fbp ]] && flags=$(tuned "$m" "$tuned_file")
    # shellcheck disable=SC2086
    read -r secs psnr ssim _ < <(recon_row "$m" "$d" "$d/$m" $flags)
    echo "$seed,$m,$psnr,$ssim,$secs" >> "$csv"
  done
  if [[ "${FIT:-1}" != 0 ]]; then
    "$bin" fit ct --projections "$d/projections.npy" --geometry "$d/geometry.toml" --truth "$d/truth.nii.gz" \
      --steps "$steps" --output "$d/fit" --force > "$d/fit.txt" 2>&1
    python3 -c "
import json; m = json.load(open('$d/fit/metrics.json'))
print('$seed,fit ct (default config: %d steps),%.4f,%.4f,%.2f' % (m['steps'], m['psnr'], m['ssim'], m['total_seconds']))" >> "$csv"
  fi
  echo "phantom $seed done" >&2
done
python3 - "$csv" "$tuned_file" <<'PY' | tee "$out/table.md"
import csv, sys
from collections import OrderedDict
rows = list(csv.DictReader(open(sys.argv[1])))
tuned = dict(l.split(" ", 1) for l in open(sys.argv[2]).read().splitlines() if l.strip())
by = OrderedDict()
for r in rows:
    by.setdefault(r["method"], []).append(r)
print("| method | settings | mean PSNR (dB) | mean SSIM | mean seconds | phantoms |")
print("|---|---|---|---|---|---|")
for m, rs in by.items():
    mean = lambda k: sum(float(r[k]) for r in rs) / len(rs)
    setting = tuned.get(m, "").strip() or ("ramp filter" if m == "fbp" else "")
    print(f"| {m} | {setting} | {mean('psnr_db'):.2f} | {mean('ssim'):.4f} | {mean('seconds'):.2f} | {len(rs)} |")
print()
seeds = sorted({r["seed"] for r in rows}, key=int)
print("| method | " + " | ".join(f"seed {s}" for s in seeds) + " |")
print("|---|" + "---|" * len(seeds))
for m, rs in by.items():
    d = {r["seed"]: float(r["psnr_db"]) for r in rs}
    print(f"| {m} | " + " | ".join(f"{d[s]:.2f}" if s in d else "–" for s in seeds) + " |")
PY
