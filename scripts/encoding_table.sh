#!/usr/bin/env bash
# The paper's Table 1 comparison (3D shape column) at the default CPU budget: one run per mapping
# on the same mesh, seed and steps, printing IoU on uniform and near-surface test points.
# Usage: scripts/encoding_table.sh [MESH] [extra ffvol flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
mesh=${1:-datasets/bunny.ply}; shift || true
cargo build --release --quiet
bin=target/release/ffvol
out=$(mktemp -d)
printf "%-11s %12s %17s %9s\n" mapping "IoU uniform" "IoU near-surface" "seconds"
for enc in none basic positional gaussian; do
  case $enc in
    positional) flags=(--encoding positional --sigma 6 --features 85) ;;
    *) flags=(--encoding "$enc") ;;
  esac
  "$bin" fit occupancy --mesh "$mesh" --output "$out/$enc" "${flags[@]}" "$@" > "$out/$enc.log" 2>&1
  python3 - "$out/$enc/metrics.json" "$enc" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<11} {m['iou_uniform']:12.4f} {m['iou_surface']:17.4f} {m['total_seconds']:9.1f}")
PY
done
rm -rf "$out"
