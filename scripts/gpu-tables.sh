#!/usr/bin/env bash
# Prepares the paper-protocol MRI table (issue 4) for one call on a GPU machine, like
# scripts/gpu-check.sh: builds here, fetches the MNI152 T1 and its 96³ resampling, and writes
# gpu-bundle/run-tables.sh, which runs `ffvol fit mri --preset paper` (96³, 4 × 256, 1000 steps,
# lr 2e-3, the paper's Gaussian-density mask) for none, basic, positional and Gaussian on CUDA,
# and prints PSNR and SSIM next to the zero-filled baseline and the paper's figures.
#
#   scripts/gpu-tables.sh                      # here: builds gpu-bundle/ (binary + 96³ volume)
#   run tool: command "bash gpu-bundle/run-tables.sh", carry ["gpu-bundle"], timeout_s 560
set -euo pipefail
cd "$(dirname "$0")/.."
B=gpu-bundle
scripts/fetch-datasets.sh > /dev/null
cargo build --release --quiet
mkdir -p "$B/data"
strip -o "$B/ffvol-tables" target/release/ffvol
cp datasets/mni152_t1_96.nii.gz "$B/data/"
git rev-parse --short HEAD > "$B/COMMIT-tables"
cat > "$B/run-tables.sh" <<'RUN'
#!/usr/bin/env bash
# On the GPU machine, from the repository root. Each run is capped so the table always prints.
B=gpu-bundle
OUT="${OUT:-$B/out}"
mkdir -p "$OUT"
BUDGET="${BUDGET:-520}"
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) | ffvol $(cat $B/COMMIT-tables)"
for enc in gaussian positional basic none; do
  left=$((BUDGET - SECONDS - 10))
  cap=$((left < 150 ? left : 150))
  if [ "$cap" -lt 20 ]; then echo "$enc: skipped, out of time"; continue; fi
  s=$SECONDS
  timeout "$cap" "$B/ffvol-tables" fit mri --preset paper --device cuda --encoding "$enc" \
    --volume "$B/data/mni152_t1_96.nii.gz" --output "$OUT/mri-$enc" > "$OUT/mri-$enc.log" 2>&1
  echo "$enc: rc=$? $((SECONDS - s)) s"
  rm -f "$OUT/mri-$enc"/*.nii.gz "$OUT/mri-$enc"/*.npy "$OUT/mri-$enc"/checkpoint.safetensors
done
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
paper = {"none": 26.14, "basic": 28.58, "positional": 32.23, "gaussian": 34.51}
print("| mapping | PSNR (dB) | SSIM | zero-filled PSNR | seconds | paper PSNR |")
print("|---|---|---|---|---|---|")
for enc in ["none", "basic", "positional", "gaussian"]:
    try:
        m = json.load(open(os.path.join(out, f"mri-{enc}", "metrics.json")))
    except OSError:
        print(f"| {enc} | did not finish (see mri-{enc}.log) | | | | {paper[enc]} |")
        continue
    g = lambda *keys: next((m[k] for k in keys if k in m), float("nan"))
    print(f"| {enc} | {g('psnr', 'psnr_all'):.2f} | {g('ssim', 'ssim_all'):.4f} | "
          f"{g('zero_filled_psnr', 'psnr_zero_filled'):.2f} | {g('total_seconds', 'seconds'):.0f} | {paper[enc]} |")
PY
RUN
chmod +x "$B/run-tables.sh"
du -sh "$B"
echo "ready: run tool command \"bash gpu-bundle/run-tables.sh\", carry [\"gpu-bundle\"], timeout_s 560"
