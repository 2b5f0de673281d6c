#!/usr/bin/env bash
# Prepares the paper-protocol tables of issues 4 and 5 for calls on a GPU machine, like
# scripts/gpu-check.sh: builds here, fetches the MNI152 T1 and its 96³ resampling, simulates the
# eight seeded 512² Shepp–Logan phantoms of the 2D CT protocol (20 views over [0, π)), and writes
#   gpu-bundle/run-tables.sh     MRI: `ffvol fit mri --preset paper` (96³, 4 × 256, 1000 steps,
#                                lr 2e-3, Gaussian-density mask) for none/basic/positional/Gaussian
#   gpu-bundle/run-ct-table.sh   CT: `ffvol fit ct --preset paper-ct` (512², 4 × 256, 1000 full-batch
#                                steps, the paper's learning rates and σ) for the four mappings on
#                                every phantom, with FBP and SART beside them; mean PSNR per method
# each printing its table last, next to the paper's figures.
#
#   scripts/gpu-tables.sh        # here
#   run tool: command "bash gpu-bundle/run-tables.sh" (or run-ct-table.sh), carry ["gpu-bundle"], timeout_s 560
set -euo pipefail
cd "$(dirname "$0")/.."
B=gpu-bundle
scripts/fetch-datasets.sh > /dev/null
cargo build --release --quiet
FFVOL="${CARGO_TARGET_DIR:-target}/release/ffvol"
mkdir -p "$B/data"
strip -o "$B/ffvol-tables" "$FFVOL"
cp datasets/mni152_t1_96.nii.gz "$B/data/"
git rev-parse --short HEAD > "$B/COMMIT-tables"
rm -rf "$B/ct" && mkdir -p "$B/ct"
for seed in 1 2 3 4 5 6 7 8; do
  "$FFVOL" simulate ct --phantom shepp2d --geometry paper-ct --seed "$seed" \
    --output "$B/ct/phantom-$seed" > /dev/null
  rm -f "$B/ct/phantom-$seed"/*.png
done
# FBP and SART are deterministic host computations: run here, once, for the table
: > "$B/ct/recon-here.txt"
for seed in 1 2 3 4 5 6 7 8; do
  d="$B/ct/phantom-$seed"
  for method in fbp sart; do
    psnr=$("$FFVOL" recon "$method" --projections "$d/projections.npy" --geometry "$d/geometry.toml" \
      --truth "$d/truth.nii.gz" --output "/tmp/ffvol-recon-$seed-$method.nii.gz" 2>&1 | sed -n 's/^PSNR \([0-9.]*\) dB.*/\1/p')
    echo "phantom-$seed $method ${psnr:-nan}" >> "$B/ct/recon-here.txt"
    rm -f "/tmp/ffvol-recon-$seed-$method.nii.gz"
  done
done
cat "$B/ct/recon-here.txt"
cat > "$B/run-ct-table.sh" <<'RUN'
#!/usr/bin/env bash
# On the GPU machine, from the repository root: `ffvol fit ct --preset paper-ct --device cuda` for
# none/basic/positional/Gaussian on every phantom, PAR fits at a time (each step is small for the
# card: one process leaves it mostly idle), each capped so the table always prints. FBP and SART
# are deterministic host computations: RECON=1 runs them here too; by default the table takes
# them from recon-here.txt, measured on the same files on the machine that prepared the bundle.
B=gpu-bundle
OUT="${OUT:-$B/out}"
mkdir -p "$OUT/ct"
BUDGET="${BUDGET:-300}"
PAR="${PAR:-8}"
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) | ffvol $(cat $B/COMMIT-tables)"
: > "$OUT/ct-psnr.txt"
if [ "${RECON:-0}" = 1 ]; then
  for dir in "$B"/ct/phantom-*; do
    p=$(basename "$dir")
    for method in fbp sart; do
      psnr=$("$B/ffvol-tables" recon "$method" --projections "$dir/projections.npy" --geometry "$dir/geometry.toml" \
        --truth "$dir/truth.nii.gz" --output "$OUT/ct/$p-$method.nii.gz" 2>&1 | sed -n 's/^PSNR \([0-9.]*\) dB.*/\1/p')
      echo "$p $method ${psnr:-nan}" >> "$OUT/ct-psnr.txt"
    done
  done
else
  cat "$B/ct/recon-here.txt" >> "$OUT/ct-psnr.txt"
fi
export B OUT DEADLINE=$(($(date +%s) + BUDGET - 10))
one() { # phantom encoding
  local dir="$B/ct/$1" left=$((DEADLINE - $(date +%s))) s=$(date +%s)
  [ "$left" -lt 10 ] && { echo "$1 $2 nan (skipped: out of time)"; return; }
  timeout "$left" "$B/ffvol-tables" fit ct --preset paper-ct --device cuda --encoding "$2" --threads 2 \
    --projections "$dir/projections.npy" --geometry "$dir/geometry.toml" --truth "$dir/truth.nii.gz" \
    --output "$OUT/ct/$1-$2" > "$OUT/ct/$1-$2.log" 2>&1
  local psnr=$(sed -n 's/^PSNR \([0-9.]*\) dB.*/\1/p' "$OUT/ct/$1-$2.log")
  rm -f "$OUT/ct/$1-$2"/*.nii.gz "$OUT/ct/$1-$2"/checkpoint.safetensors
  echo "$1 $2 ${psnr:-nan} ($(($(date +%s) - s)) s)"
}
export -f one
for dir in "$B"/ct/phantom-*; do
  for enc in gaussian positional basic none; do echo "$(basename "$dir") $enc"; done
done | xargs -P "$PAR" -L 1 bash -c 'one "$0" "$1"' | tee -a "$OUT/ct-psnr.txt"
python3 - "$OUT/ct-psnr.txt" <<'PY'
import math, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
paper = {"none": 16.75, "basic": 23.31, "positional": 26.89, "gaussian": 28.33}
print("| method | mean PSNR (dB) | phantoms | paper |")
print("|---|---|---|---|")
for m in ["none", "basic", "positional", "gaussian", "fbp", "sart"]:
    v = [float(r[2]) for r in rows if r[1] == m and r[2] != "nan"]
    mean = sum(v) / len(v) if v else math.nan
    print(f"| {m} | {mean:.2f} | {len(v)} | {paper.get(m, '–')} |")
PY
RUN
chmod +x "$B/run-ct-table.sh"
cat > "$B/run-tables.sh" <<'RUN'
#!/usr/bin/env bash
# On the GPU machine, from the repository root: `ffvol fit mri --preset paper --device cuda` for the
# four mappings at once (each step leaves the card mostly idle), each capped so the table prints.
B=gpu-bundle
OUT="${OUT:-$B/out}"
mkdir -p "$OUT"
BUDGET="${BUDGET:-240}"
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) | ffvol $(cat $B/COMMIT-tables)"
for enc in gaussian positional basic none; do
  (
    s=$SECONDS
    timeout $((BUDGET - 10)) "$B/ffvol-tables" fit mri --preset paper --device cuda --encoding "$enc" --threads 4 \
      --volume "$B/data/mni152_t1_96.nii.gz" --output "$OUT/mri-$enc" > "$OUT/mri-$enc.log" 2>&1
    echo "$enc: rc=$? $((SECONDS - s)) s"
    rm -f "$OUT/mri-$enc"/*.nii.gz "$OUT/mri-$enc"/*.npy "$OUT/mri-$enc"/checkpoint.safetensors
  ) &
done
wait
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
cat > "$B/run-ct-steps.sh" <<'RUN'
#!/usr/bin/env bash
# Beyond the paper's 1000 steps: `fit ct --preset paper-ct --steps $STEPS` for the Gaussian and
# positional mappings on every phantom (PAR at a time); the PSNR the fit logs every STEPS/10
# steps gives the mean curve per mapping, next to SART.
B=gpu-bundle
OUT="${OUT:-$B/out}"
mkdir -p "$OUT/steps"
BUDGET="${BUDGET:-200}"; PAR="${PAR:-8}"; STEPS="${STEPS:-4000}"
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) | ffvol $(cat $B/COMMIT-tables)"
export B OUT STEPS DEADLINE=$(($(date +%s) + BUDGET - 10))
one() {
  local dir="$B/ct/$1" left=$((DEADLINE - $(date +%s)))
  [ "$left" -lt 10 ] && return
  timeout "$left" "$B/ffvol-tables" fit ct --preset paper-ct --device cuda --encoding "$2" --steps "$STEPS" \
    --threads 2 --projections "$dir/projections.npy" --geometry "$dir/geometry.toml" --truth "$dir/truth.nii.gz" \
    --output "$OUT/steps/$1-$2" > "$OUT/steps/$1-$2.log" 2>&1
  rm -f "$OUT/steps/$1-$2"/*.nii.gz "$OUT/steps/$1-$2"/checkpoint.safetensors "$OUT/steps/$1-$2"/*.png
}
export -f one
for dir in "$B"/ct/phantom-*; do
  for enc in gaussian positional; do echo "$(basename "$dir") $enc"; done
done | xargs -P "$PAR" -L 1 bash -c 'one "$0" "$1"'
python3 - "$OUT/steps" "$B/ct/recon-here.txt" <<'PY'
import glob, os, re, sys
curves = {}
for log in glob.glob(os.path.join(sys.argv[1], "*.log")):
    enc = os.path.basename(log)[:-4].split("-")[-1]
    pts = [(int(a), float(b)) for a, b in re.findall(r"^step (\d+)/\d+ .*PSNR ([0-9.]+) dB", open(log).read(), re.M)]
    for k, v in pts:
        curves.setdefault(enc, {}).setdefault(k, []).append(v)
sart = [float(l.split()[2]) for l in open(sys.argv[2]) if " sart " in l]
print(f"SART mean over {len(sart)} phantoms: {sum(sart) / len(sart):.2f} dB")
print("| mapping | step | mean PSNR (dB) | phantoms |")
print("|---|---|---|---|")
for enc in sorted(curves):
    for k in sorted(curves[enc]):
        v = curves[enc][k]
        print(f"| {enc} | {k} | {sum(v) / len(v):.2f} | {len(v)} |")
PY
RUN
chmod +x "$B/run-ct-steps.sh"
du -sh "$B"
echo "ready: run tool command \"bash gpu-bundle/run-tables.sh\" (MRI) or \"bash gpu-bundle/run-ct-table.sh\" (CT), carry [\"gpu-bundle\"], timeout_s 560"
