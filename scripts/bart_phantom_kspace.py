#!/usr/bin/env python3
"""An MRI test case whose k-space is exact: BART's analytic 3-D Shepp–Logan k-space.

    bart_phantom_kspace.py N OUT_DIR [--bart bart]

Writes OUT_DIR/truth.nii.gz (`bart phantom -3 -x N`, the voxelised phantom, scaled to [0, 1]) and
OUT_DIR/kspace_full.npy: `bart phantom -3 -k -x N`, the phantom's continuous Fourier transform at
the grid's frequencies (no voxel grid behind it, so it is not the FFT of truth.nii.gz: a fit that
recovers the truth from it solves the inverse-crime-free problem), converted to ffvol's
convention (centred, unnormalised FFT of the image with its voxel 0 at the corner, same scale as
the truth). The conversion is checked: at low frequencies, where the two agree, the analytic
k-space must match the FFT of the voxelised truth to 5 %.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mri_bart import read_cfl  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--bart", default="bart")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([a.bart, "phantom", "-3", "-x", str(a.n), os.path.join(tmp, "img")], check=True)
        subprocess.run([a.bart, "phantom", "-3", "-k", "-x", str(a.n), os.path.join(tmp, "ksp")], check=True)
        img = np.real(read_cfl(os.path.join(tmp, "img"))).astype(np.float64)
        k = read_cfl(os.path.join(tmp, "ksp")).astype(np.complex128)
    hi = img.max()
    if not hi > 0:
        raise SystemExit("error: BART's phantom is empty")
    truth = img / hi
    n_vox = truth.size
    # BART's k-space is the transform of the object centred at the origin, normalised by the
    # voxel count; ffvol's is fftshift(fftn(g)) of the array: ifftshift's phase is (−1)^(Σ c_a)
    # per centred index c (N even), so k_ffvol = N · k_bart · (−1)^(Σ c_a) / max.
    c = np.indices(k.shape).sum(axis=0)
    k_ffvol = k * n_vox * np.where(c % 2 == 0, 1.0, -1.0) / hi
    ref = np.fft.fftshift(np.fft.fftn(truth))
    centre = tuple(s // 2 for s in k.shape)
    low = tuple(slice(m - 3, m + 4) for m in centre)
    err = np.abs(k_ffvol[low] - ref[low]).max() / np.abs(ref[centre])
    print(f"analytic against the voxelised phantom's FFT, |k| ≤ 3: max difference {err:.3%} of DC")
    if err > 0.05:
        raise SystemExit("error: the analytic k-space does not match the phantom's FFT: conventions wrong")
    nib.save(nib.Nifti1Image(truth.astype(np.float32), np.eye(4)), os.path.join(a.out, "truth.nii.gz"))
    np.save(os.path.join(a.out, "kspace_full.npy"), k_ffvol.astype(np.complex64))


if __name__ == "__main__":
    sys.exit(main())
