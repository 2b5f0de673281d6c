#!/usr/bin/env bash
# Table 1's image columns for text images next to the natural one, and the B-distribution table,
# at a CPU budget (issue 11):
#
#   1. text images (`ffvol simulate text`, 512², seeds 1 and 2; random strings at random sizes and
#      colours, as the paper's text set) and the astronaut, each fitted at 128² (trained on the
#      even 64² grid, tested on the odd one), 4 × 64, m = 64, 300 full-batch Adam steps at lr 5e-3,
#      with the four mappings at their default σ (scaled to the side: σ_g = 2.5, σ_p = 4);
#   2. the Gaussian mapping's frequencies drawn from a Gaussian, uniform or Laplace distribution of
#      the same standard deviation, over seeds 0, 1, 2 (which also draw the network's weights),
#      at the sizes of tests/sigma_auto.rs (3 × 32, m = 32, 300 full-batch steps at lr 1e-2, σ =
#      1.2, near both jobs' best): the astronaut at 64², and the bundled 32³ MNI152 volume (a
#      quarter of the voxels trained).
#
#   nice -n 19 scripts/image_tables.sh     # writes benchmarks/image_tables.csv, prints markdown
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${FFVOL_NO_BUILD:-}" ] || cargo build --release --quiet
ffvol=target/release/ffvol
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
csv=benchmarks/image_tables.csv
mkdir -p benchmarks
echo "table,data,encoding,frequencies,seed,psnr_test,psnr_train" > "$csv"
metric() { python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['psnr_test'], m.get('psnr_train', ''), sep=',')" "$1/metrics.json"; }
image=(fit image --size 128 --depth 4 --width 64 --steps 300 --lr 5e-3)
for seed in 1 2; do
  "$ffvol" simulate text --size 512 --seed $seed --out "$tmp/text$seed.png" >/dev/null
done
for data in ${DATA:-text1 text2 astronaut}; do
  if [ $data = astronaut ]; then img=datasets/astronaut.png; else img=$tmp/$data.png; fi
  for enc in none basic positional gaussian; do
    # σ given: `--encoding` alone takes the 512² defaults (σ_g 10, σ_p 6), not scaled to --size
    feat=(); [ $enc = positional ] && feat=(--features 64 --sigma 4); [ $enc = gaussian ] && feat=(--features 64 --sigma 2.5)
    "$ffvol" "${image[@]}" --image "$img" --encoding $enc ${feat[@]+"${feat[@]}"} --output "$tmp/r" --force >/dev/null 2>&1
    echo "mappings,$data,$enc,,0,$(metric "$tmp/r")" | tee -a "$csv"
  done
done
small=(--depth 3 --width 32 --features 32 --steps 300 --lr 1e-2 --sigma 1.2)
volume=(fit volume --volume datasets/mni152_t1_32.nii.gz --train-fraction 0.25 --batch 0 "${small[@]}")
for dist in gaussian uniform laplace; do
  for seed in 0 1 2; do
    "$ffvol" fit image --size 64 "${small[@]}" --encoding gaussian --frequencies $dist --seed $seed --output "$tmp/r" --force >/dev/null 2>&1
    echo "frequencies,astronaut,gaussian,$dist,$seed,$(metric "$tmp/r")" | tee -a "$csv"
    "$ffvol" "${volume[@]}" --encoding gaussian --frequencies $dist --seed $seed --output "$tmp/r" --force >/dev/null 2>&1
    echo "frequencies,mni152_32,gaussian,$dist,$seed,$(metric "$tmp/r")" | tee -a "$csv"
  done
done
python3 - "$csv" <<'PY'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("\n| image | none | basic | positional | Gaussian |\n|---|---|---|---|---|")
for d in ["text1", "text2", "astronaut"]:
    if not any(x["data"] == d and x["table"] == "mappings" for x in rows):
        continue
    r = {x["encoding"]: float(x["psnr_test"]) for x in rows if x["table"] == "mappings" and x["data"] == d}
    print(f"| {d} | " + " | ".join(f"{r[e]:.2f}" for e in ["none", "basic", "positional", "gaussian"]) + " |")
print("\n| task | gaussian | uniform | laplace |\n|---|---|---|---|")
for d in ["astronaut", "mni152_32"]:
    cells = []
    for dist in ["gaussian", "uniform", "laplace"]:
        v = [float(x["psnr_test"]) for x in rows if x["table"] == "frequencies" and x["data"] == d and x["frequencies"] == dist]
        cells.append(f"{st.mean(v):.2f} ± {st.stdev(v):.2f} ({', '.join(f'{x:.2f}' for x in v)})")
    print(f"| {d} | " + " | ".join(cells) + " |")
PY
