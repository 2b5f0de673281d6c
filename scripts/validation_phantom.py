#!/usr/bin/env python3
"""A validation volume for tuning the 3-D reconstructions (scripts/tune-classical.sh ct3d): 12
random ellipsoids of random orientation inside the unit ball, values added and clipped to [0, 1],
on an N³ grid over [-1, 1]³, float32 .npy.  Usage: validation_phantom.py OUT.npy N SEED
It is none of the test volumes (3-D Shepp–Logan, TIGRE's head); the seed fixes it."""
import sys
import numpy as np

out, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
c = (np.arange(n) + 0.5) / n * 2.0 - 1.0
x, y, z = np.meshgrid(c, c, c, indexing="ij")
p = np.stack([x, y, z], axis=-1)
vol = np.zeros((n, n, n))
# a body, then inner structures
for k in range(12):
    if k == 0:
        centre, axes, value = np.zeros(3), np.array([0.8, 0.7, 0.85]), 0.4
    else:
        centre = rng.uniform(-0.45, 0.45, 3)
        axes = rng.uniform(0.05, 0.3, 3)
        value = rng.choice([-1, 1]) * rng.uniform(0.1, 0.4)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    local = (p - centre) @ q
    inside = ((local / axes) ** 2).sum(axis=-1) <= 1.0
    vol[inside] += value
np.save(out, np.clip(vol, 0.0, 1.0).astype(np.float32))
