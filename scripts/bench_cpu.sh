#!/usr/bin/env bash
# CPU training throughput: ffvol against the paper's framework (JAX, CPU) on the same network and
# batch, in one run, printed as a table with the ratio. Needs `pip install "jax[cpu]"`.
# Usage: scripts/bench_cpu.sh   (figures go into BENCHMARKS.md with the machine, date and commit)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name:\s*//p'), $(date -u +%F), commit $(git rev-parse --short HEAD)"
printf "%-22s %10s %14s %14s %7s\n" network batch "ffvol samples/s" "JAX samples/s" ratio
for cfg in "4 128 128 8192" "4 256 256 8192" "8 256 256 32768"; do
  read -r depth width m batch <<< "$cfg"
  steps=$(( batch > 16384 ? 5 : 15 ))
  ours=$(target/release/ffvol bench --device cpu --depth "$depth" --width "$width" --features "$m" --batch "$batch" \
         --steps "$steps" --label-points 1 | awk '/^training step/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) { print $i; exit } }')
  ref=$(python3 scripts/bench_jax_cpu.py --depth "$depth" --width "$width" --features "$m" --batch "$batch" \
         --steps "$steps" | awk '{print $6}')
  printf "%-22s %10s %14s %14s %7.2f\n" "${depth}x${width}, m=$m" "$batch" "$ours" "$ref" "$(echo "$ours / $ref" | bc -l)"
done
