#!/usr/bin/env bash
# Prepares one GPU call that checks and measures everything at once (GPU_CHECK.md): builds the
# bundle of scripts/gpu-check.sh and the tables' data of scripts/gpu-tables.sh, then writes
# gpu-bundle/run-session.sh, which runs on the GPU machine, from the repository root:
#   every CUDA test binary (kernels, conformance, fp16, parity, occupancy, MRI, CT) with
#   --include-ignored (the GPU tests are ignored without a GPU) and FFVOL_REQUIRE_CUDA=1;
#   `ffvol bench --device cuda` fp16 and fp32 beside PyTorch bf16 for 4 × 256 and 8 × 256 (2^18);
#   the paper's occupancy protocol in fp16; single MRI, CT and volume runs for their times; a 3D
#   cone-beam CT (64³) against FDK and SART; the MRI table (run-tables.sh) and the CT table
#   (run-ct-table.sh), each with its own budget (TABLES=0 skips them); with MEMORY=1, 256³ MRI and
#   CT grid fits with their memory plans (device-resident or chunked); a summary last.
#
#   scripts/gpu-session.sh      # here
#   run tool: command "bash gpu-bundle/run-session.sh", carry ["gpu-bundle"], timeout_s 600
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/gpu-check.sh
scripts/gpu-tables.sh
cat > gpu-bundle/cone64.toml <<'TOML'
beam = "cone"
dims = 3
dso = 200.0
dsd = 400.0
[detector]
pixels = [96, 96]
pixel_size = [1.6, 1.6]
[volume]
voxels = [64, 64, 64]
voxel_size = [1.0, 1.0, 1.0]
[angles]
count = 60
unit = "degrees"
span = 360.0
TOML
cp benchmarks/geometry/cone256.toml gpu-bundle/cone256.toml
cat > gpu-bundle/run-session.sh <<'RUN'
#!/usr/bin/env bash
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
export OUT="${OUT:-$B/out}"
mkdir -p "$OUT"
export FFVOL_REQUIRE_CUDA=1 FFVOL_CUDA_SOURCES="$B/cuda" FFVOL_CACHE_DIR="$OUT/cache" RUST_BACKTRACE=1
export FFVOL_BUNNY="$(pwd)/datasets/bunny.ply" FFVOL_BIN="$B/ffvol"
W=18
. "$B/gpu-lib.sh"
echo "card: $(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader | head -1) | ffvol $(cat "$B/COMMIT") | $(date -u +%FT%H:%MZ)"
step kernels 40 "$B/tests/cuda_kernels_compile" --nocapture --test-threads=1
step conformance 120 "$B/tests/backend_conformance" --include-ignored cuda_ --nocapture --test-threads=1
for t in cuda_fp16 cuda_mri cuda_ct cuda_occupancy cuda_parity; do
  [ -x "$B/tests/$t" ] && step "$t" 120 "$B/tests/$t" --include-ignored --nocapture --test-threads=1
done
for d in 4 8; do
  for p in fp16 fp32; do
    step "bench_${d}x256_$p" 30 "$B/ffvol" bench --device cuda --precision "$p" --depth "$d" --width 256 \
      --features 256 --batch 262144 --steps 30 --label-points 1 --mesh "$FFVOL_BUNNY"
  done
  step "torch_${d}x256" 40 python3 "$B/bench_torch.py" --depth "$d" --width 256 --features 256 --batch 262144 \
    --steps 30 --precisions bf16
done
s0=$SECONDS
step paper 60 "$B/ffvol" fit occupancy --preset paper --device cuda --mesh "$FFVOL_BUNNY" --output "$OUT/paper"
paper_wall=$((SECONDS - s0))
rm -f "$OUT/paper/mesh.ply" "$OUT/paper/occupancy.nii.gz" "$OUT/paper/checkpoint.safetensors"
# single runs, for their time: MRI and CT paper protocols alone, a volume fit, and a 3D cone-beam
# CT (64³, 60 views over 360°) against FDK and SART
step mri_alone 60 "$B/ffvol" fit mri --preset paper --device cuda --encoding gaussian \
  --volume "$B/data/mni152_t1_96.nii.gz" --output "$OUT/mri_alone"
d="$B/ct/phantom-1"
step ct_alone 60 "$B/ffvol" fit ct --preset paper-ct --device cuda --encoding gaussian \
  --projections "$d/projections.npy" --geometry "$d/geometry.toml" --truth "$d/truth.nii.gz" --output "$OUT/ct_alone"
step volume_alone 60 "$B/ffvol" fit volume --device cuda --volume "$B/data/mni152_t1_96.nii.gz" \
  --train-fraction 0.25 --width 256 --features 256 --steps 2000 --output "$OUT/volume_alone"
c="$OUT/cone"
step cone_sim 30 "$B/ffvol" simulate ct --phantom shepp3d --geometry "$B/cone64.toml" --output "$c"
for m in fdk sart; do
  step "cone_$m" 60 "$B/ffvol" recon "$m" --projections "$c/projections.npy" --geometry "$c/geometry.toml" \
    --truth "$c/truth.nii.gz" --output "$c/$m.nii.gz"
done
step cone_fit 90 "$B/ffvol" fit ct --preset paper-ct --steps 2000 --device cuda --encoding gaussian \
  --projections "$c/projections.npy" --geometry "$c/geometry.toml" --truth "$c/truth.nii.gz" --output "$c/fit"
rm -rf "$OUT"/*_alone/*.nii.gz "$OUT"/*_alone/*.npy "$OUT"/*_alone/*.png "$OUT"/*_alone/checkpoint.safetensors "$c"
# MEMORY=1: full-resolution fits (issue 10) at 256³ on the card, with the memory plan each prints
# (device-resident or chunked) and its time a step; off by default, it takes the tables' budget
if [ "${MEMORY:-0}" = 1 ]; then
  m="$OUT/memory"
  step mem_sim 60 "$B/ffvol" simulate ct --phantom shepp3d --geometry "$B/cone256.toml" --supersample 1 --output "$m/cone256"
  step mem_ct_grid 120 "$B/ffvol" fit ct --preset fast --device cuda --render grid --steps 20 --projections "$m/cone256/projections.npy" \
    --geometry "$m/cone256/geometry.toml" --truth "$m/cone256/truth.nii.gz" --output "$m/ct_grid"
  step mem_mri_256 120 "$B/ffvol" fit mri --preset fast --device cuda --steps 20 --volume "$m/cone256/truth.nii.gz" --output "$m/mri_256"
  step mem_mri_256_chunked 120 "$B/ffvol" fit mri --preset fast --device cuda --steps 20 --chunk 262144 \
    --volume "$m/cone256/truth.nii.gz" --output "$m/mri_256_chunked"
  for r in mem_ct_grid mem_mri_256 mem_mri_256_chunked; do
    grep -hE "^memory plan|^  (host|gpu) |device-resident step off|s/step|^time:" "$OUT/$r.log" | head -8
  done
  rm -rf "$m"
fi
if [ "${TABLES:-1}" = 1 ]; then
  left=$((560 - SECONDS))
  export BUDGET=$((left / 2 - 5))
  step mri_table $((left / 2)) bash "$B/run-tables.sh"
  left=$((570 - SECONDS))
  export BUDGET=$((left - 10))
  step ct_table "$left" bash "$B/run-ct-table.sh"
fi

echo "== tests"
for t in kernels conformance cuda_fp16 cuda_mri cuda_ct cuda_occupancy cuda_parity; do
  printf '%-16s %s\n' "$t" "$(grep -E '^test result' "$OUT/$t.log" 2>/dev/null | tail -1)"
  grep -E "^test .*FAILED|panicked at" "$OUT/$t.log" 2>/dev/null | head -4
done
grep -hE "worst relative difference|gradient error .*×|label mismatches|200 steps:" "$OUT"/cuda_*.log "$OUT"/conformance.log | head -14
echo "== bench (M samples/s: training step | device-resident train part)"
for d in 4 8; do
  for p in fp16 fp32; do
    l="$OUT/bench_${d}x256_$p.log"
    a=$(sed -n 's/^training step (fwd + bwd + Adam) *\([0-9]*\).*/\1/p' "$l")
    t=$(sed -n 's/^occupancy step on the GPU.*train \([0-9.]*\) ms.*/\1/p' "$l")
    echo "${d}x256 ffvol $p: ${a:-?} | ${t:+$(python3 -c "print(round(262144/$t/1e3,1))") M/s (${t} ms)}"
  done
  tail -1 "$OUT/torch_${d}x256.log"
done
echo "== paper occupancy protocol (wall ${paper_wall} s)"
grep -E "^(device|IoU|time:)" "$OUT/paper.log"
echo "== single runs"
for n in mri_alone ct_alone volume_alone; do
  echo "-- $n"; grep -E "^(device|k-space|projector|PSNR|SSIM|time:|final loss)|resident" "$OUT/$n.log" | tail -7
done
for n in cone_fdk cone_sart cone_fit; do
  echo "-- $n"; grep -E "^(projector|PSNR|final loss|fdk|sart)" "$OUT/$n.log" | tail -3
done
if [ "${TABLES:-1}" = 1 ]; then
  echo "== MRI table"; tail -7 "$OUT/mri_table.log"
  echo "== CT table"; tail -8 "$OUT/ct_table.log"
fi
echo "== steps"; printf '%s\n' "${status[@]}"
RUN
chmod +x gpu-bundle/run-session.sh
du -sh gpu-bundle
echo "ready: run tool command \"bash gpu-bundle/run-session.sh\", carry [\"gpu-bundle\"], timeout_s 600"
