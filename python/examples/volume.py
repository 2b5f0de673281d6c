"""Fit a volume given as a numpy array with its affine, then write the fit with nibabel.

    python python/examples/volume.py [brain.nii.gz]
"""
import sys

import nibabel as nib
import numpy as np

import ffvol

if len(sys.argv) > 1:
    img = nib.load(sys.argv[1])
    data, affine = np.asarray(img.dataobj, dtype=np.float32), img.affine
else:  # a synthetic ball in a 32³ box of 2 mm voxels
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, 32),) * 3, indexing="ij")
    data = (x**2 + y**2 + z**2 < 0.5).astype(np.float32) * 1000
    affine = np.diag([2.0, 2.0, 2.0, 1.0])

run = ffvol.fit_volume(data, affine, steps=300)
print({k: v for k, v in run.metrics.items() if "psnr" in k or "ssim" in k})
fit = run.grid(upsample=2)  # twice as fine along each axis, same box
nib.save(nib.Nifti1Image(fit, run.affine(upsample=2)), "fit_x2.nii.gz")
print("wrote fit_x2.nii.gz", fit.shape)
