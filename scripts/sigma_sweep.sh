#!/usr/bin/env bash
# The paper's σ sweep at a CPU budget, for every job: the test error against the Gaussian
# mapping's σ, with `--sigma auto`'s choice marked, one panel per job in one figure
# (benchmarks/sigma_sweep.png, matplotlib) from benchmarks/sigma_sweep.csv. The budget (3 × 32,
# m = 32, the sizes of tests/sigma_auto.rs):
#   image      the astronaut at 64² (trained on the even 32² grid, PSNR on the odd one), 300 steps
#   volume     the bundled 32³ MNI152 crop, a quarter of the voxels trained, 300 full-batch steps
#   occupancy  the bunny, 2048 fresh points a step, 300 steps; mean IoU of the two test sets
#   mri        the 32³ MNI152 crop from simulated k-space (the paper's sampling), 200 steps
#   ct         the perturbed Shepp–Logan at 64², 32 parallel views, 200 grid steps
#
#   nice -n 19 scripts/sigma_sweep.sh [JOB...]    # default: all five
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${FFVOL_NO_BUILD:-}" ] || cargo build --release --quiet
ffvol=target/release/ffvol
out=benchmarks
mkdir -p $out
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
jobs=("$@"); [ ${#jobs[@]} -gt 0 ] || jobs=(image volume occupancy mri ct)
csv=$out/sigma_sweep.csv
[ -f "$csv" ] || echo "job,sigma,test,metric,auto" > "$csv"
net=(--depth 3 --width 32 --features 32 --encoding gaussian)
"$ffvol" simulate ct --phantom shepp2d --geometry paper-ct:64:32 --seed 31 --supersample 2 --output "$tmp/ct" >/dev/null
metric() { # run folder, job → "value,metric name"
  python3 - "$1/metrics.json" "$2" <<'PY'
import json, sys
m, job = json.load(open(sys.argv[1])), sys.argv[2]
if job == "occupancy": print(f"{(m['iou_uniform'] + m['iou_surface']) / 2},iou")
elif job in ("mri", "ct"): print(f"{m['psnr']},psnr")
else: print(f"{m['psnr_test']},psnr")
PY
}
chosen() { python3 -c "import tomllib,sys; print(tomllib.load(open(sys.argv[1],'rb'))['encoding']['sigma'])" "$1/run.toml"; }
for job in "${jobs[@]}"; do
  case $job in
    image) args=(fit image --size 64 --steps 300 --lr 1e-2) ;;
    volume) args=(fit volume --volume datasets/mni152_t1_32.nii.gz --train-fraction 0.25 --steps 300 --batch 0 --lr 1e-2) ;;
    occupancy) args=(fit occupancy --mesh datasets/bunny.ply --batch 2048 --steps 300 --lr 1e-2 --test-points 20000 --resolution 32 --checkpoint-every 0) ;;
    mri) args=(fit mri --volume datasets/mni152_t1_32.nii.gz --steps 200 --lr 1e-2) ;;
    ct) args=(fit ct --projections "$tmp/ct/projections.npy" --geometry "$tmp/ct/geometry.toml" --truth "$tmp/ct/truth.nii.gz" --steps 200 --lr 5e-3) ;;
    *) echo "unknown job $job" >&2; exit 2 ;;
  esac
  sed -i "/^$job,/d" "$csv"
  for s in 0.5 0.8 1.2 1.8 2.7 4 6 9 13.5; do
    "$ffvol" "${args[@]}" "${net[@]}" --sigma $s --output "$tmp/$job-$s" --force >/dev/null 2>&1
    echo "$job,$s,$(metric "$tmp/$job-$s" $job),0" | tee -a "$csv"
  done
  "$ffvol" "${args[@]}" "${net[@]}" --sigma auto --output "$tmp/$job-auto" --force >/dev/null 2>&1
  echo "$job,$(chosen "$tmp/$job-auto"),$(metric "$tmp/$job-auto" $job),1" | tee -a "$csv"
done
python3 - "$csv" "$out/sigma_sweep.png" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
jobs = [j for j in ["image", "volume", "occupancy", "mri", "ct"] if any(r["job"] == j for r in rows)]
fig, axes = plt.subplots(1, len(jobs), figsize=(3.2 * len(jobs), 3.2), squeeze=False)
for ax, job in zip(axes[0], jobs):
    sweep = sorted((float(r["sigma"]), float(r["test"])) for r in rows if r["job"] == job and r["auto"] == "0")
    auto = [(float(r["sigma"]), float(r["test"])) for r in rows if r["job"] == job and r["auto"] == "1"]
    name = next(r["metric"] for r in rows if r["job"] == job)
    ax.plot(*zip(*sweep), "-o", ms=4, color="tab:blue")
    for s, p in auto:
        ax.axvline(s, color="tab:red", ls="--", lw=1)
        ax.plot([s], [p], "*", ms=13, color="tab:red", label=f"auto σ = {s:.2f}")
    ax.set_xscale("log")
    ax.set_title(job)
    ax.set_xlabel("Gaussian σ")
    ax.set_ylabel("test IoU" if name == "iou" else "test PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
fig.suptitle("test error against σ at a CPU budget (3 × 32, m = 32); ★ = --sigma auto", fontsize=10)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=80)
PY
echo "wrote $csv and $out/sigma_sweep.png"
