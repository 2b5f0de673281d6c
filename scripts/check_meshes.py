#!/usr/bin/env python3
"""Opens ffvol's mesh exports with an independent reader (trimesh) and checks what a user relies on.

    python3 scripts/check_meshes.py EXPECTED_VERTICES EXPECTED_TRIANGLES mesh.ply mesh.obj mesh.stl mesh.glb

For each file: it loads, has the expected triangle count (and vertex count, except STL, which
stores no shared vertices and is welded on load), is watertight and winding-consistent, encloses a
positive volume, and (PLY, GLB) carries unit vertex normals. Prints one line per file; exits 1 on
the first failure.
"""
import sys

import numpy as np
import trimesh


def main():
    n_vertices, n_triangles = int(sys.argv[1]), int(sys.argv[2])
    volumes = []
    for path in sys.argv[3:]:
        loaded = trimesh.load(path, process=path.endswith(".stl"))
        mesh = loaded.to_geometry() if isinstance(loaded, trimesh.Scene) else loaded
        problems = []
        if len(mesh.faces) != n_triangles:
            problems.append(f"{len(mesh.faces)} triangles, expected {n_triangles}")
        if not path.endswith(".stl") and len(mesh.vertices) != n_vertices:
            problems.append(f"{len(mesh.vertices)} vertices, expected {n_vertices}")
        if not mesh.is_watertight:
            problems.append("not watertight")
        if not mesh.is_winding_consistent:
            problems.append("winding not consistent")
        if not mesh.volume > 0:
            problems.append(f"volume {mesh.volume} not positive (normals point in?)")
        if path.endswith((".ply", ".glb")):
            normals = mesh.vertex_normals  # from the file when present
            lengths = np.linalg.norm(normals, axis=1)
            if not np.allclose(lengths, 1.0, atol=1e-3):
                problems.append("vertex normals are not unit length")
        volumes.append(mesh.volume)
        status = "ok" if not problems else "FAIL: " + "; ".join(problems)
        print(f"{path}: {len(mesh.vertices)} vertices, {len(mesh.faces)} triangles, volume {mesh.volume:.6g}: {status}")
        if problems:
            sys.exit(1)
    if max(volumes) - min(volumes) > 1e-4 * max(abs(v) for v in volumes):
        print(f"FAIL: the formats disagree on the volume: {volumes}")
        sys.exit(1)


if __name__ == "__main__":
    main()
