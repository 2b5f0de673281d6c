"""Fit the occupancy of a mesh from Python, query it, and hand the surface to trimesh.

    python python/examples/occupancy.py [mesh.ply]
"""
import sys

import numpy as np
import trimesh

import ffvol

mesh = sys.argv[1] if len(sys.argv) > 1 else None  # None: the bundled Stanford bunny
run = ffvol.fit_occupancy(mesh, steps=300)  # any run.toml setting as a keyword
print("IoU uniform", run.metrics["iou_uniform"], "near-surface", run.metrics["iou_surface"])

vertices, faces = run.mesh(resolution=128)
surface = trimesh.Trimesh(vertices, faces)
print("surface:", len(faces), "triangles, watertight:", surface.is_watertight)

# inside probability at arbitrary points, in the mesh's own units
lo, hi = surface.bounds
points = np.random.default_rng(0).uniform(lo, hi, size=(5, 3)).astype(np.float32)
print(np.c_[points, run(points)])
print("run folder:", run.path, "(ffvol export / ffvol fit --resume work on it)")
