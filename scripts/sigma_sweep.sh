#!/usr/bin/env bash
# The paper's σ sweep at a CPU budget: test PSNR against the Gaussian mapping's σ for the image
# job (the astronaut at 128², 4 × 64, m = 64, 300 steps) and the volume job (the bundled 32³
# MNI152 crop, 3 × 64, m = 64, 300 steps), each with `--sigma auto`'s choice marked, drawn in one
# figure (benchmarks/sigma_sweep.png, matplotlib) from benchmarks/sigma_sweep.csv.
#
#   scripts/sigma_sweep.sh            # writes benchmarks/sigma_sweep.{csv,png}
#
# The occupancy, MRI and CT jobs do not have `--sigma auto` yet (issue 11): they are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
ffvol=target/release/ffvol
out=benchmarks
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
csv=$out/sigma_sweep.csv
echo "job,sigma,psnr_test,auto" > "$csv"
image=(fit image --size 128 --width 64 --features 64 --steps 300 --lr 5e-3)
volume=(fit volume --depth 3 --width 64 --features 64 --steps 300 --batch 0 --lr 1e-2)
metric() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['psnr_test'])" "$1/metrics.json"; }
chosen() { python3 -c "import tomllib,sys; print(tomllib.load(open(sys.argv[1],'rb'))['encoding']['sigma'])" "$1/run.toml"; }
for job in image volume; do
  if [ $job = image ]; then args=("${image[@]}"); else args=("${volume[@]}"); fi
  for s in 0.5 1 1.5 2 3 4.5 7 10 15; do
    "$ffvol" "${args[@]}" --encoding gaussian --sigma $s --output "$tmp/$job-$s" --force >/dev/null 2>&1
    echo "$job,$s,$(metric "$tmp/$job-$s"),0" | tee -a "$csv"
  done
  "$ffvol" "${args[@]}" --encoding gaussian --sigma auto --output "$tmp/$job-auto" --force >/dev/null 2>&1
  echo "$job,$(chosen "$tmp/$job-auto"),$(metric "$tmp/$job-auto"),1" | tee -a "$csv"
done
python3 - "$csv" "$out/sigma_sweep.png" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = list(csv.DictReader(open(sys.argv[1])))
fig, ax = plt.subplots(figsize=(7, 4.2))
for job, colour in [("image", "tab:blue"), ("volume", "tab:red")]:
    sweep = sorted((float(r["sigma"]), float(r["psnr_test"])) for r in rows if r["job"] == job and r["auto"] == "0")
    auto = [(float(r["sigma"]), float(r["psnr_test"])) for r in rows if r["job"] == job and r["auto"] == "1"]
    if not sweep:
        continue
    ax.plot(*zip(*sweep), "-o", color=colour, label=f"{job}: test PSNR")
    for s, p in auto:
        ax.axvline(s, color=colour, ls="--", lw=1)
        ax.plot([s], [p], "*", ms=14, color=colour, label=f"{job}: --sigma auto ({s:.2f})")
ax.set_xscale("log")
ax.set_xlabel("Gaussian σ (cycles per unit box)")
ax.set_ylabel("test PSNR (dB)")
ax.set_title("σ sweep at a CPU budget (300 steps); ★ = --sigma auto")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
PY
echo "wrote $csv and $out/sigma_sweep.png"
