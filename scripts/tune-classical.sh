#!/usr/bin/env bash
# A fair tuning sweep of the classical CT reconstructions on a VALIDATION phantom (never a test
# phantom): each method's main parameter, the sweep recorded as CSV, and each method's best
# setting (highest PSNR) written for the benchmark scripts.
#
#   scripts/tune-classical.sh ct2d [OUT]    the setting of benchmark 1 (bench-ct2d.sh): 256²,
#       20 parallel views, the paper's perturbed Shepp–Logan of seed 1001 (the tests use 1–8)
#   N=128 scripts/tune-classical.sh ct3d [OUT]    the setting of bench-ct3d.sh: an N³ volume of random
#       ellipsoids (scripts/validation_phantom.py, seed 1234; the tests are the 3D Shepp–Logan and
#       TIGRE's head), cone beam, 50 views over 360°, TIGRE's noise (poisson:1e5, gaussian:10)
#
# Swept: SART passes × relaxation λ; ASD-POCS TV weight α (× passes in 2D); CGLS iterations
# (early stopping is its regulariser). FBP/FDK has nothing to tune (ramp filter). Writes
# OUT/sweep.csv and OUT/tuned.txt (one line "METHOD FLAGS" per method); copy them to
# benchmarks/<mode>-classical/ to make them the benchmark's settings (the committed ones are).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:?usage: scripts/tune-classical.sh ct2d|ct3d [OUT]}"
out="${2:-runs/tune-$mode}"
bin=target/release/ffvol
source scripts/ct_lib.sh
cargo build --release --quiet
mkdir -p "$out"
case "$mode" in
  ct2d)
    "$bin" simulate ct --phantom shepp2d --seed 1001 --geometry paper-ct:256:20 --output "$out/val" > /dev/null
    sart=(); for it in 10 20 40 80 160; do for l in 0.5 1.0 1.5; do sart+=("--iterations $it --relaxation $l"); done; done
    asd=(); for it in 20 50; do for a in 0.001 0.002 0.005 0.01 0.02; do asd+=("--iterations $it --alpha $a"); done; done
    cgls=(); for it in 5 10 15 20 30 50 80; do cgls+=("--iterations $it"); done
    ;;
  ct3d)
    python3 scripts/validation_phantom.py "$out/phantom.npy" "${N:-128}" 1234
    python3 scripts/cone_geometry.py "${N:-128}" 50 > "$out/geometry.toml"
    "$bin" simulate ct --phantom "$out/phantom.npy" --geometry "$out/geometry.toml" --noise tigre \
      --seed 1234 --output "$out/val" > /dev/null
    # ordered subsets of 5 views (10 subsets; R²-Gaussian's OS runs use TIGRE blocks of 10 views):
    # a pass costs the same rays as one view a subset, with a tenth of the per-subset overhead
    # (a short sweep: on 2 CPU cores a pass at 64³ takes about 15 s, at 128³ about a minute;
    # bench-ct3d.sh runs FDK, SART and ASD-POCS, so CGLS is not swept here)
    sart=(); for it in 5 10 20; do sart+=("--subsets 10 --iterations $it"); done
    asd=(); for a in 0.002 0.01; do asd+=("--subsets 10 --iterations 10 --alpha $a"); done
    cgls=()
    ;;
  *) echo "error: unknown mode $mode (ct2d or ct3d)" >&2; exit 1 ;;
esac
csv="$out/sweep.csv"
# KEEP=1: keep the rows of an earlier (interrupted) sweep and run only the missing ones
[[ "${KEEP:-0}" == 1 && -f "$csv" ]] || echo "method,flags,psnr_db,ssim,ssim_3axes,seconds" > "$csv"
sweep() { # method settings...
  local m=$1
  shift
  local k=0
  for flags in "$@"; do
    k=$((k + 1))
    grep -qF "$m,$flags," "$csv" && continue
    # shellcheck disable=SC2086
    read -r secs psnr ssim ssim3 < <(recon_row "$m" "$out/val" "$out/$m-$k" $flags)
    echo "$m,$flags,$psnr,$ssim,$ssim3,$secs" | tee -a "$csv"
    rm -f "$out/$m-$k.nii.gz"
  done
}
sweep sart "${sart[@]}"
sweep asd-pocs "${asd[@]}"
[[ ${#cgls[@]} -gt 0 ]] && sweep cgls "${cgls[@]}"
python3 - "$csv" "$out/tuned.txt" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
with open(sys.argv[2], "w") as f:
    for m in ["sart", "asd-pocs", "cgls"]:
        mine = [r for r in rows if r["method"] == m]
        if not mine:
            continue
        best = max(mine, key=lambda r: float(r["psnr_db"]))
        f.write(f"{m} {best['flags']}\n")
        print(f"{m}: {best['flags']}  ({float(best['psnr_db']):.2f} dB on the validation phantom)")
PY
