# Shared by scripts/tune-classical.sh, bench-ct2d.sh and bench-ct3d.sh (sourced, not run).
# recon_row METHOD PROJ_DIR OUT_STEM [FLAGS...]: runs `ffvol recon METHOD` on PROJ_DIR's
# projections.npy / geometry.toml / truth.nii.gz, writes OUT_STEM.nii.gz and OUT_STEM.txt, and
# prints "seconds psnr ssim ssim3" (ssim3: the 3-axis SSIM of a 3-D volume, "-" in 2-D).
recon_row() {
  local m=$1 d=$2 stem=$3
  shift 3
  "$bin" recon "$m" --projections "$d/projections.npy" --geometry "$d/geometry.toml" \
    --truth "$d/truth.nii.gz" --output "$stem.nii.gz" "$@" > "$stem.txt" 2>&1 || {
    cat "$stem.txt" >&2
    return 1
  }
  local secs psnr ssim ssim3
  secs=$(sed -n 's/.* voxels in \([0-9.]*\) s.*/\1/p' "$stem.txt")
  psnr=$(sed -n 's/^PSNR \([-0-9.inf]*\) dB.*/\1/p' "$stem.txt")
  ssim=$(sed -n 's/^PSNR .*SSIM \([-0-9.]*\).*/\1/p' "$stem.txt")
  ssim3=$(sed -n 's/^SSIM over 3 axes \([-0-9.]*\).*/\1/p' "$stem.txt")
  [[ -n $psnr && -n $ssim && -n $secs ]] || { echo "error: no PSNR/SSIM/time in $stem.txt" >&2; return 1; }
  echo "$secs $psnr $ssim ${ssim3:--}"
}

# tuned METHOD FILE: the flags FILE records for METHOD (a line "METHOD FLAGS...").
tuned() {
  local line
  line=$(grep "^$1 " "$2") || { echo "error: no setting for $1 in $2 (run scripts/tune-classical.sh)" >&2; return 1; }
  echo "${line#"$1" }"
}
