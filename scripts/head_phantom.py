#!/usr/bin/env python3
"""TIGRE's head phantom (datasets/head256.mat, 256³ in [0, 1]; scripts/fetch-head256.sh) block-
averaged to N³ (N dividing 256) as float32 .npy, for bench-ct3d.sh.
Usage: head_phantom.py HEAD.mat N OUT.npy"""
import sys
import numpy as np
import scipy.io

src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
img = np.asarray(scipy.io.loadmat(src)["img"], dtype=np.float64)
if img.shape != (256, 256, 256) or 256 % n:
    raise SystemExit(f"error: {src}: expected 256³ and N dividing 256, got {img.shape}, N = {n}")
f = 256 // n
small = img.reshape(n, f, n, f, n, f).mean(axis=(1, 3, 5))
np.save(out, small.astype(np.float32))
