#!/usr/bin/env bash
# The tooth table (BENCHMARKS.md): tomopy's real synchrotron scan (datasets/tooth.h5), detector
# row 0 as a 2D parallel beam on datasets/tooth_geometry.toml's 256² grid. The reference is FBP
# from all 181 views (as the R²-Gaussian FIPS protocol takes a full-view reconstruction as the
# truth); FBP, SART and `fit ct` from 20 and 45 evenly spaced views (--views N), and SART from
# all 181, are scored against it with ffvol's CT PSNR/SSIM (psnr_ct, ssim_ct). The centre of
# rotation is estimated once from all 181 views and given to every run (--center).
# ASD-POCS and CGLS run with their defaults (TIGRE's ASD-POCS settings, 20 passes; CGLS 20
# iterations): there is no second real scan here to tune them on.
#   scripts/tooth_table.sh [OUT_DIR] [FIT_STEPS]     (default runs/tooth, the default preset's steps; FIT=0: no fits)
#   PRESET=NAME  the fit ct preset (default: the default, hashgrid)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/tooth}"
steps="${2:-}"
preset="${PRESET:-hashgrid}"
bin=target/release/ffvol
h5=datasets/tooth.h5
geom=datasets/tooth_geometry.toml
mkdir -p "$out"
cargo build --release --quiet
common=(--projections "$h5" --geometry "$geom" --rows 0)
log="$out/log.txt"
: > "$log"
"$bin" recon fbp "${common[@]}" --output "$out/fbp181.nii.gz" > "$out/fbp181.txt" 2>&1
cat "$out/fbp181.txt" >> "$log"
center=$(sed -n 's/.*centre of rotation: column \([0-9.]*\) .*/\1/p' "$out/fbp181.txt")
echo "centre of rotation (181 views): column $center" | tee -a "$log"
ref="$out/fbp181.nii.gz"
row() { # name views seconds psnr ssim
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5"
}
recon() { # method views
  local m=$1 v=$2 f="$out/$1$2"
  local extra=()
  [[ $v != 181 ]] && extra=(--views "$v")
  "$bin" recon "$m" "${common[@]}" "${extra[@]}" --center "$center" --truth "$ref" --output "$f.nii.gz" > "$f.txt" 2>&1
  cat "$f.txt" >> "$log"
  local secs psnr ssim
  secs=$(sed -n 's/.* voxels in \([0-9.]*\) s.*/\1/p' "$f.txt")
  psnr=$(sed -n 's/^PSNR \([0-9.]*\) dB.*/\1/p' "$f.txt")
  ssim=$(sed -n 's/.*SSIM \([0-9.]*\).*/\1/p' "$f.txt")
  row "$(echo "$m" | tr a-z A-Z)" "$v" "$secs" "$psnr" "$ssim"
}
fit() { # views
  local v=$1 d="$out/fit$1"
  local extra=()
  [[ -n $steps ]] && extra=(--steps "$steps")
  "$bin" fit ct "${common[@]}" --views "$v" --center "$center" --truth "$ref" --preset "$preset" "${extra[@]}" \
    --output "$d" --force > "$d.txt" 2>&1
  cat "$d.txt" >> "$log"
  python3 -c "
import json,sys; m=json.load(open('$d/metrics.json'))
print('| fit ct, preset $preset (%d steps) | $v | %.1f | %.2f | %.4f |' % (m['steps'], m['total_seconds'], m['psnr'], m['ssim']))"
}
{
  echo "| method | views | seconds | PSNR (dB) | SSIM |"
  echo "|---|---|---|---|---|"
  row "FBP (the reference)" 181 "$(sed -n 's/.* voxels in \([0-9.]*\) s.*/\1/p' "$out/fbp181.txt")" "—" "—"
  recon sart 181
  for v in 45 20; do
    recon fbp "$v"
    recon sart "$v"
    recon asd-pocs "$v"
    recon cgls "$v"
    if [[ "${FIT:-1}" != 0 ]]; then fit "$v" | tail -1; fi
  done
} | tee "$out/table.md"
