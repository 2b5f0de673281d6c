"""Reconstruct a volume from undersampled k-space held in numpy arrays.

    python python/examples/mri.py
"""
import numpy as np

import ffvol

n = 32
x, y, z = np.meshgrid(*(np.linspace(-1, 1, n),) * 3, indexing="ij")
truth = ((x**2 + y**2 + z**2) < 0.6).astype(np.float32) + 0.5 * (np.abs(x) < 0.2)
kspace = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(truth)))  # centred, as ffvol reads it
mask = np.random.default_rng(0).random(truth.shape) < 0.25
mask[n // 2 - 2 : n // 2 + 2, n // 2 - 2 : n // 2 + 2, n // 2 - 2 : n // 2 + 2] = True

run = ffvol.fit_mri(truth, kspace=kspace * mask, mask=mask, steps=300)
print({k: v for k, v in run.metrics.items() if "psnr" in k})
recon = run.grid()
print("reconstruction", recon.shape, recon.dtype)
