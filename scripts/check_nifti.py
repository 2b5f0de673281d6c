#!/usr/bin/env python3
"""Opens a NIfTI file written by ffvol in nibabel and compares it with a reference.

    check_nifti.py OUT REF [--tol 1e-6] [--geometry-only] [--upsample K]

Checks that OUT loads, has REF's shape (times K per axis with --upsample K) and REF's affine (for
--upsample K: the affine of the K-times finer grid over the same box, fine voxel i' at input voxel
(i' + 1/2)/K - 1/2), and, unless --geometry-only, REF's values to --tol (relative to REF's range).
Prints one line per check and exits 1 on the first failure. Needs numpy and nibabel.
"""
import argparse
import sys

import nibabel as nib
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("ref")
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--geometry-only", action="store_true")
    ap.add_argument("--upsample", type=int, default=1)
    a = ap.parse_args()
    out, ref = nib.load(a.out), nib.load(a.ref)
    k = a.upsample
    want_shape = tuple(s * k for s in ref.shape[:3])
    if out.shape[:3] != want_shape:
        sys.exit(f"FAIL shape: {out.shape} vs {want_shape}")
    print(f"ok shape {out.shape}")
    want = ref.affine.copy()
    if k > 1:
        lin = ref.affine[:3, :3]
        want[:3, :3] = lin / k
        want[:3, 3] = ref.affine[:3, 3] + lin @ np.full(3, (1.0 / k - 1.0) / 2.0)
    err = np.abs(out.affine - want).max()
    if err > a.tol * max(1.0, np.abs(want).max()):
        sys.exit(f"FAIL affine: max difference {err}\n{out.affine}\n{want}")
    print(f"ok affine (max difference {err:.2e})")
    if not a.geometry_only:
        x, y = out.get_fdata(), ref.get_fdata()
        span = max(float(y.max() - y.min()), 1e-30)
        err = float(np.abs(x - y).max())
        if err > a.tol * span:
            sys.exit(f"FAIL values: max difference {err} (range {span})")
        print(f"ok values (max difference {err:.2e} of range {span})")


if __name__ == "__main__":
    main()
