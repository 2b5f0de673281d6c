"""Reconstruct a 2D slice from CT projections held in a numpy array.

    ffvol simulate ct --phantom shepp2d --geometry paper-ct:128:20 --output sim
    python python/examples/ct.py sim
"""
import sys
from pathlib import Path

import numpy as np

import ffvol

sim = Path(sys.argv[1] if len(sys.argv) > 1 else "sim")
projections = np.load(sim / "projections.npy")  # line integrals [views, cols]
run = ffvol.fit_ct(projections, sim / "geometry.toml", truth=sim / "truth.nii.gz", steps=300)
print("PSNR", run.metrics.get("psnr"), "SSIM", run.metrics.get("ssim"))
image = run.grid()  # [x, y] attenuation, as recon.nii.gz
print(image.shape, float(image.min()), float(image.max()))
