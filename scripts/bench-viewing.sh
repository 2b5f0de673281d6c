#!/usr/bin/env bash
# Meshes for viewing (BENCHMARKS.md): triangles, file size and Hausdorff distance at several
# targets for the bunny (an occupancy fit) and a volume iso-surface (the bundled MNI152 crop), and
# the time of a full 512³ export. Usage: scripts/bench-viewing.sh [OUT_DIR] (default target/bench-viewing).
set -euo pipefail
cd "$(dirname "$0")/.."
ffvol=${FFVOL:-target/release/ffvol}
out=${1:-target/bench-viewing}
mkdir -p "$out"
bunny=$out/bunny
[ -f "$bunny/checkpoint.safetensors" ] || $ffvol fit occupancy --output "$bunny" --force --threads 2 --device cpu --resolution 64 > "$out/bunny-fit.log" 2>&1
vol=$out/vol
[ -f "$vol/checkpoint.safetensors" ] || $ffvol fit volume --output "$vol" --force --steps 300 --threads 2 --device cpu > "$out/vol-fit.log" 2>&1
echo "## bunny (fast preset), export at 256³"
/usr/bin/time -f "full export at 256: %e s, %M KB" $ffvol export "$bunny" --resolution 256 --format glb --threads 2 2>&1 | tail -2
ls -l "$bunny/mesh_256.glb" | awk '{print "full GLB bytes", $5}'
for t in 100000 50000 20000 5000; do
  $ffvol export "$bunny" --resolution 256 --triangles $t --format glb --threads 2 > /dev/null
  python3 - "$bunny/mesh_256_t$t.json" "$bunny/mesh_256_t$t.glb" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1])); d = r["distance"]
print(f"target {r['target_triangles']}: {r['triangles_before']} -> {r['triangles_after']} triangles, GLB {os.path.getsize(sys.argv[2])} bytes, Hausdorff {d['hausdorff']:.5f} ({100*d['hausdorff_relative']:.3f} % of diagonal), mean {d['mean']:.6f}, closed {r['closed_manifold_after']}")
PY
done
echo "## volume iso-surface (MNI152 crop 32³, ×4 upsampled, level 0.4)"
for t in 20000 5000 1000; do
  $ffvol export "$vol" --mesh --level 0.4 --upsample 4 --triangles $t --format glb --colors --threads 2 > /dev/null
  python3 - "$vol/iso_0.4_x4_t$t.json" "$vol/iso_0.4_x4_t$t.glb" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1])); d = r["distance"]
print(f"target {r['target_triangles']}: {r['triangles_before']} -> {r['triangles_after']} triangles, GLB {os.path.getsize(sys.argv[2])} bytes, Hausdorff {d['hausdorff']:.4f} mm ({100*d['hausdorff_relative']:.3f} % of diagonal), mean {d['mean']:.5f} mm, closed {r['closed_manifold_after']}")
PY
done
echo "## bunny at 512³"
/usr/bin/time -f "export 512 (field normals): %e s, %M KB" $ffvol export "$bunny" --resolution 512 --format ply --threads 2 2>&1 | tail -3
/usr/bin/time -f "export 512 (facet normals): %e s, %M KB" $ffvol export "$bunny" --resolution 512 --format ply --normals facets --threads 2 2>&1 | tail -3
/usr/bin/time -f "export 512 to 50000 triangles (field normals, Hausdorff): %e s, %M KB" $ffvol export "$bunny" --resolution 512 --triangles 50000 --format glb --threads 2 2>&1 | tail -3
