#!/usr/bin/env python3
"""ffvol's inside labelling against libigl's fast winding number, on the same meshes and points.

    python3 -m pip install libigl trimesh numpy
    cargo build --release
    python3 scripts/bench_winding.py [--points 1000000] [--threads 2] [--quick]

Meshes: the bundled bunny (3,674 faces), the bunny subdivided (each face into 4: 58,784,
235,136 and 940,544 faces, the same surface) and an icosphere of 1,310,720 faces. Points:
uniform in each mesh's bounding box (padded by 1 %), float32, written once and given to both.

For each mesh it runs `ffvol bench --labels-only --points P --labels-out L` (which prints the
time to prepare the mesh -- read, orient, build the tree -- and the labelling rate) and
`igl.fast_winding_number(V, F, Q)`, whose tree is built inside the call: the build is timed
separately on one query point and subtracted, so both rates are queries only. Labels are
compared (libigl: w > 0.5). libigl uses every core (std::thread); ffvol is given --threads.
Prints one table; paste it into BENCHMARKS.md with the machine, date and commit.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import igl
    import trimesh
except ImportError as e:  # pragma: no cover
    sys.exit(f"bench_winding: {e} (python3 -m pip install libigl trimesh numpy)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def meshes(tmp, quick):
    bunny = trimesh.load(os.path.join(ROOT, "datasets", "bunny.ply"), process=False)
    out = [("bunny", os.path.join(ROOT, "datasets", "bunny.ply"), bunny)]
    m = bunny
    for k in range(1, 3 if quick else 5):
        m = m.subdivide()
        if k >= 2:
            path = os.path.join(tmp, f"bunny_x{4 ** k}.ply")
            m.export(path)
            out.append((f"bunny x{4 ** k}", path, m))
    if not quick:
        sphere = trimesh.creation.icosphere(subdivisions=8)
        path = os.path.join(tmp, "icosphere8.ply")
        sphere.export(path)
        out.append(("icosphere 8", path, sphere))
    return out


def run_ffvol(binary, mesh_path, points_path, labels_path, threads):
    cmd = [binary, "bench", "--labels-only", "--threads", str(threads), "--mesh", mesh_path,
           "--points", points_path, "--labels-out", labels_path]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t
    prepare = float(re.search(r"prepare mesh \(read, orient, tree\)\s+([0-9.]+)", out).group(1))
    rate = float(re.search(r"labels \(winding numbers\)\s+([0-9.]+)", out).group(1))
    return prepare, rate, wall, np.load(labels_path) > 0.5


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ffvol", default=os.path.join(ROOT, "target", "release", "ffvol"))
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="bunny and bunny x16 only, for a smoke test")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, mesh in meshes(tmp, args.quick):
            V = np.asarray(mesh.vertices, dtype=np.float64)
            F = np.asarray(mesh.faces, dtype=np.int64)
            lo, hi = V.min(0), V.max(0)
            pad = 0.01 * (hi - lo)
            rng = np.random.default_rng(0)
            Q = (lo - pad + (hi - lo + 2 * pad) * rng.random((args.points, 3))).astype(np.float32)
            points_path = os.path.join(tmp, "points.npy")
            labels_path = os.path.join(tmp, "labels.npy")
            np.save(points_path, Q)
            prepare, rate, _, ours = run_ffvol(args.ffvol, path, points_path, labels_path, args.threads)
            Qd = Q.astype(np.float64)
            t = time.perf_counter()
            igl.fast_winding_number(V, F, Qd[:1])
            igl_build = time.perf_counter() - t
            t = time.perf_counter()
            w = igl.fast_winding_number(V, F, Qd)
            igl_total = time.perf_counter() - t
            igl_rate = len(Q) / max(igl_total - igl_build, 1e-9)
            theirs = w > 0.5
            differ = int(np.count_nonzero(ours != theirs))
            rows.append((name, len(F), prepare, rate, igl_build, igl_rate, rate / igl_rate, differ, ours.mean()))
            print(f"  {name}: done", file=sys.stderr)
    print(f"{args.points} uniform points per mesh; ffvol --threads {args.threads}; libigl on every core "
          f"({os.cpu_count()})")
    print("| mesh | faces | ffvol prepare (s) | ffvol labels (points/s) | libigl tree (s) | "
          "libigl labels (points/s) | ffvol / libigl | labels differing | inside |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, nf, prep, rate, build, irate, ratio, differ, inside in rows:
        print(f"| {name} | {nf:,} | {prep:.2f} | {rate:,.0f} | {build:.2f} | {irate:,.0f} | {ratio:.2f}x | "
              f"{differ} | {inside:.3f} |")


if __name__ == "__main__":
    main()
