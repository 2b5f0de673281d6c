#!/usr/bin/env bash
# Prepares the GPU check (GPU_CHECK.md): builds the release binary and the CUDA test binaries
# here (no GPU, no CUDA needed), and puts them with the kernel sources, the PyTorch reference
# benchmark, run.sh and run-occupancy.sh (and gpu-lib.sh, their capped-step helpers) into gpu-bundle/. On the GPU machine, from the
# repository root: `bash gpu-bundle/run.sh` (training step vs PyTorch) or
# `bash gpu-bundle/run-occupancy.sh` (GPU labels and batches, the paper's occupancy protocol).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/target}"
BUNDLE=gpu-bundle
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/tests" "$BUNDLE/cuda"

echo "gpu-check: building the release binary" >&2
cargo build --release --bin ffvol >&2
echo "gpu-check: building the test binaries" >&2
cargo test --release --no-run --message-format=json --lib --test backend_conformance --test cuda_parity --test cuda_kernels_compile --test cuda_occupancy --test cuda_fp16 --test cuda_mri --test cuda_ct \
  > "$BUNDLE/.cargo-test.json"
python3 - "$BUNDLE" <<'PY'
import json, shutil, sys, os
bundle = sys.argv[1]
found = {}
for line in open(os.path.join(bundle, ".cargo-test.json")):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m.get("profile", {}).get("test"):
        continue
    t = m["target"]
    name = "ffvol_lib_tests" if "lib" in t["kind"] else t["name"]
    found[name] = m["executable"]
want = {"ffvol_lib_tests", "backend_conformance", "cuda_parity", "cuda_kernels_compile", "cuda_occupancy", "cuda_fp16", "cuda_mri", "cuda_ct"}
missing = want - set(found)
if missing:
    sys.exit(f"gpu-check: test executables not found: {sorted(missing)}")
for name, path in found.items():
    shutil.copy2(path, os.path.join(bundle, "tests", name))
    print(f"gpu-check: {name} <- {path}", file=sys.stderr)
PY
rm -f "$BUNDLE/.cargo-test.json"
cp "$CARGO_TARGET_DIR/release/ffvol" "$BUNDLE/ffvol"
# debug info only makes the bundle big (the run tool carries 64 MiB at most)
for f in "$BUNDLE/ffvol" "$BUNDLE"/tests/*; do
  objcopy --strip-debug "$f" 2>/dev/null || strip --strip-debug "$f" 2>/dev/null || true
done
cp cuda/*.cu cuda/*.cuh "$BUNDLE/cuda/"
cp scripts/bench_torch.py scripts/gpu-lib.sh "$BUNDLE/"
{
  git rev-parse --short HEAD 2>/dev/null || echo unknown
  git diff --quiet 2>/dev/null || echo "(with uncommitted changes)"
} | paste -sd' ' > "$BUNDLE/COMMIT"

cat > "$BUNDLE/run.sh" <<'RUN'
#!/usr/bin/env bash
# The GPU check, in one call: the card; the NVRTC compile test on this machine's toolkit; the
# CUDA-vs-CPU parity tests; the fp16 tests (fp16 with and without cuBLASLt against the CPU and
# CUDA fp32); `ffvol bench --device cuda` (fp32, fp16, fp16 without cuBLASLt) beside PyTorch (fp32, tf32, bf16) for 4×256 and 8×256, m = 256, batch 2^18. Full logs
# under $OUT; a table last, also written to $OUT/results.md.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-$B/out}"
mkdir -p "$OUT"
# the GPU tests are #[ignore = "needs a CUDA GPU"]: they run with --include-ignored, and fail
# without a GPU under FFVOL_REQUIRE_CUDA=1; FFVOL_BIN is the ffvol the tests' fits run
export FFVOL_REQUIRE_CUDA=1 FFVOL_CUDA_SOURCES="$B/cuda" FFVOL_CACHE_DIR="$OUT/cache" RUST_BACKTRACE=1
export FFVOL_BIN="$B/ffvol"
BATCH=262144
STEPS=30
# with a mesh, `ffvol bench` also times the device-resident occupancy step (no host copies): its
# device "train" time is the cleanest A/B figure. Run from the repository root to find the bunny.
MESH="$(pwd)/datasets/bunny.ply"
[ -f "$MESH" ] || MESH="$B/none.ply"
# Every step gets at most its own cap and never more than what is left of BUDGET seconds, so the
# table at the end always prints inside the run tool's timeout (GPU_CHECK.md: timeout_s 420).
BUDGET="${BUDGET:-380}" MARGIN=10 W=28
. "$B/gpu-lib.sh"

card="$(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
echo "card: ${card:-nvidia-smi failed} | ffvol $(cat "$B/COMMIT") | $(date -u +%Y-%m-%dT%H:%MZ)"
nvidia-smi > "$OUT/nvidia-smi.log" 2>&1

run kernels_compile 60 "$B/tests/cuda_kernels_compile" --nocapture --test-threads=1
run device_choice 30 "$B/tests/ffvol_lib_tests" backend::select backend::cuda --nocapture
run fp16_tests 90 "$B/tests/cuda_fp16" --include-ignored --nocapture --test-threads=1
grep -E "^(test |skipped|fp16:|panicked|thread)" "$OUT/fp16_tests.log" | head -60

for net in "4 256" "8 256"; do
  set -- $net
  d=$1 w=$2
  for p in fp32 fp16; do
    run "ffvol_${d}x${w}_${p}" 60 "$B/ffvol" bench --device cuda --precision "$p" --depth "$d" --width "$w" \
      --features 256 --batch $BATCH --steps $STEPS --label-points 1 --mesh "$MESH"
  done
  # fp16 without cuBLASLt's fused epilogues (the fallback when the library is missing)
  run "ffvol_${d}x${w}_nolt" 60 "$B/ffvol" bench \
    --device cuda --precision fp16 --cublaslt false --depth "$d" --width "$w" --features 256 --batch $BATCH --steps $STEPS --label-points 1 \
    --mesh "$MESH"
  run "torch_${d}x${w}" 90 python3 "$B/bench_torch.py" --depth "$d" --width "$w" --features 256 --batch $BATCH \
    --steps $STEPS --precisions fp32,tf32,bf16
done

# the CUDA-vs-CPU parity tests last, with what is left of the budget, so that the benchmark table always fills
run conformance 120 "$B/tests/backend_conformance" --include-ignored cuda_ --nocapture --test-threads=1
run parity 60 "$B/tests/cuda_parity" --include-ignored --nocapture --test-threads=1
grep -E "^(test |skipped|cuda)" "$OUT/parity.log" | head -20
grep -E "^(test .*FAILED|cuda fp|test result)" "$OUT/conformance.log" | head -40

echo
echo "== steps (name, exit status, seconds) =="
printf '%s\n' "${status[@]}"
python3 - "$OUT" "$card" "$(cat "$B/COMMIT")" <<'PY' | tee "$OUT/results.md"
import re, sys, os, datetime
out, card, commit = sys.argv[1], sys.argv[2], sys.argv[3]
def read(name):
    try:
        return open(os.path.join(out, name + ".log")).read()
    except OSError:
        return ""
rows = []
for net in ["4x256", "8x256"]:
    for p, label in [("fp32", "fp32"), ("fp16", "fp16"), ("nolt", "fp16 --cublaslt false")]:
        log = read(f"ffvol_{net}_{p}")
        m = re.search(r"training step \(fwd \+ bwd \+ Adam\)\s+(\d+)", log)
        d = re.search(r"occupancy step on the GPU .*train ([0-9.]+) ms", log)
        dev = f"{262144 / float(d.group(1)) / 1e3:.1f}" if d and float(d.group(1)) > 0 else "—"
        rows.append((net, f"ffvol cuda {label}", int(m.group(1)) / 1e6 if m else None, dev))
    for p in ["fp32", "tf32", "bf16"]:
        m = re.search(rf"torch {p} \S+ .*samples/s=(\d+)", read(f"torch_{net}"))
        rows.append((net, f"torch {p}", int(m.group(1)) / 1e6 if m else None, "—"))
parity = read("parity")
m = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed", parity)
print(f"## GPU check {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC")
print(f"card: {card}; commit {commit}; batch 2^18, m = 256, median of 30 steps")
print(f"parity tests: {m.group(1) + ', ' + m.group(2) + ' passed, ' + m.group(3) + ' failed' if m else 'did not finish (see parity.log)'}")
m = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed", read("fp16_tests"))
print(f"fp16 tests: {m.group(1) + ', ' + m.group(2) + ' passed, ' + m.group(3) + ' failed' if m else 'did not finish (see fp16_tests.log)'}")
for line in read("fp16_tests").splitlines():
    if ("worst relative difference" in line or "parameters moved differently" in line or "replays" in line
            or line.startswith("test ") and "FAILED" in line):
        print("  " + line.strip())
m = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed", read("conformance"))
print(f"conformance (cuda): {m.group(1) + ', ' + m.group(2) + ' passed, ' + m.group(3) + ' failed' if m else 'did not finish (see conformance.log)'}")
w = re.search(r"cuda fp32: worst relative difference of the loss over 200 steps (\S+)", read("conformance"))
if w:
    print(f"fp32 200-step loss curve, worst relative difference to the CPU: {w.group(1)}")
print()
print("| network | implementation | M samples/s (training step) | M samples/s (device-resident step, device train time) |")
print("|---|---|---|---|")
for net, impl, rate, dev in rows:
    print(f"| {net.replace('x', ' × ')} | {impl} | {'%.1f' % rate if rate is not None else 'failed (see log)'} | {dev} |")
print()
for net in ["4x256", "8x256"]:
    for p in ["fp16", "nolt"]:
        log = read(f"ffvol_{net}_{p}")
        head = next((l for l in log.splitlines() if l.startswith("ffvol bench:")), "no header (see log)")
        print(f"{net} {p}: {head}")
        for key in ["forward (upload+encode+MLP+read)", "backward (upload dL/dz+backward)", "Adam (per step"]:
            mm = re.search(re.escape(key) + r".*?\s(\d+)\s*$", log, re.M)
            if mm:
                print(f"    {key}: {int(mm.group(1)) / 1e6:.1f} M/s")
PY
RUN
chmod +x "$BUNDLE/run.sh"

cat > "$BUNDLE/run-occupancy.sh" <<'RUN'
#!/usr/bin/env bash
# The occupancy GPU check, in one call from the repository root (datasets/bunny.ply is read
# from there): the card; the NVRTC compile test; the device-resident occupancy tests (GPU labels
# vs the host's, GPU batches vs the host's, device steps vs the CPU's training curve, a short fit
# on both); the paper's protocol `ffvol fit occupancy --preset paper --device cuda` in fp16;
# `ffvol bench --device cuda` 8×256, m = 256, batch 32,768; the older CUDA-vs-CPU parity tests.
# Full logs under $OUT; a table last (also $OUT/results-occupancy.md). Every step is capped so the
# whole script ends within BUDGET (190 s); big outputs of the paper run are deleted.
set -uo pipefail
B="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-$B/out}"
mkdir -p "$OUT"
export FFVOL_REQUIRE_CUDA=1 FFVOL_CUDA_SOURCES="$B/cuda" FFVOL_CACHE_DIR="$OUT/cache" RUST_BACKTRACE=1
export FFVOL_BUNNY="${FFVOL_BUNNY:-$(pwd)/datasets/bunny.ply}" FFVOL_BIN="$B/ffvol"
BUDGET="${BUDGET:-190}" MARGIN=8 W=22 SHOW_CAP=1
. "$B/gpu-lib.sh"

card="$(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
echo "card: ${card:-nvidia-smi failed} | ffvol $(cat "$B/COMMIT") | $(date -u +%Y-%m-%dT%H:%MZ)"
if [ ! -f "$FFVOL_BUNNY" ]; then echo "no bunny at $FFVOL_BUNNY: run from the repository root"; fi

run kernels_compile 30 "$B/tests/cuda_kernels_compile" --nocapture --test-threads=1
run occupancy_tests 60 "$B/tests/cuda_occupancy" --include-ignored --nocapture --test-threads=1
s0=$SECONDS
run paper 90 "$B/ffvol" fit occupancy --preset paper --device cuda \
  --mesh "$FFVOL_BUNNY" --output "$OUT/paper"
paper_wall=$((SECONDS - s0))
rm -f "$OUT/paper/mesh.ply" "$OUT/paper/occupancy.nii.gz" "$OUT/paper/checkpoint.safetensors"
run bench_8x256 30 "$B/ffvol" bench --device cuda --depth 8 --width 256 \
  --features 256 --batch 32768 --mesh "$FFVOL_BUNNY"
run parity 60 "$B/tests/cuda_parity" --include-ignored --nocapture --test-threads=1

echo
grep -E "^(test |skipped|bunny|label mismatches|batch |device steps|200 steps|winding numbers|[0-9]+ labels)" \
  "$OUT/occupancy_tests.log" | head -40
echo "-- paper run (fp16, wall ${paper_wall} s including start-up) --"
grep -E "^(device|training batches|IoU|time:)" "$OUT/paper.log"
echo "-- bench 8x256 fp16, batch 32768 --"
grep -E "^(ffvol bench|stage|encode|forward|backward|Adam|training step|inference|labels|occupancy step)" "$OUT/bench_8x256.log"
echo
echo "== steps (name, exit status, seconds) =="
printf '%s\n' "${status[@]}"
python3 - "$OUT" "$card" "$(cat "$B/COMMIT")" "$paper_wall" <<'PY' | tee "$OUT/results-occupancy.md"
import json, re, sys, os, datetime
out, card, commit, paper_wall = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def read(name):
    try:
        return open(os.path.join(out, name + ".log")).read()
    except OSError:
        return ""
def result(name):
    m = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed", read(name))
    return f"{m.group(1)}, {m.group(2)} passed, {m.group(3)} failed" if m else "did not finish (see log)"
print(f"## Occupancy GPU check {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC")
print(f"card: {card}; commit {commit}")
print(f"kernel compile: {result('kernels_compile')}; occupancy tests: {result('occupancy_tests')}; parity: {result('parity')}")
occ = read("occupancy_tests")
for pat in [r"label mismatches: \d+", r"winding numbers: worst .*", r"worst relative difference [0-9.e+-]+", r"200 steps: .*"]:
    m = re.search(pat, occ)
    if m:
        print("  " + m.group(0))
try:
    m = json.load(open(os.path.join(out, "paper", "metrics.json")))
    print()
    print("| paper protocol (fp16, 8×256, 32,768 × 10,000) | value |")
    print("|---|---|")
    print(f"| IoU uniform / near-surface | {m['iou_uniform']:.4f} / {m['iou_surface']:.4f} |")
    print(f"| wall (process) / total in fit | {paper_wall} s / {m['total_seconds']:.1f} s |")
    print(f"| batches on | {m.get('batches_on', '?')} |")
    print(f"| labels (sample + label) | {m['label_seconds']:.1f} s |")
    print(f"| training | {m['train_seconds']:.1f} s ({m['samples_per_second'] / 1e6:.1f} M samples/s) |")
    print(f"| test / export | {m['eval_seconds']:.1f} s / {m['export_seconds']:.1f} s |")
except Exception as e:
    print(f"paper run: no metrics ({e}); see paper.log")
b = read("bench_8x256")
for key in ["encode (device)", "training step (fwd + bwd + Adam)", "labels (GPU winding numbers)", "occupancy step on the GPU"]:
    m = re.search(re.escape(key) + r"\s+(\d+)(.*)", b)
    print(f"bench {key}: {int(m.group(1)) / 1e6:.1f} M/s{m.group(2)}" if m else f"bench {key}: missing")
PY
RUN
chmod +x "$BUNDLE/run-occupancy.sh"
du -sh "$BUNDLE" >&2
du -sh "$BUNDLE"/* "$BUNDLE"/tests/* >&2
echo "gpu-check: ready. On a GPU machine, from the repository root: bash $BUNDLE/run.sh or bash $BUNDLE/run-occupancy.sh   (run tool: carry [\"$BUNDLE\"], see GPU_CHECK.md)" >&2
