#!/usr/bin/env python3
"""ffvol's CT metrics of a reconstruction (NIfTI) against the truth (NIfTI), in numpy: an
independent implementation of `psnr_ct`, `ssim_ct` and `ssim_ct_3axes` (src/train/image_metrics.rs),
used by bench-ct3d.sh for `fit ct`'s volumes and to cross-check the values `ffvol recon` prints.

    ct_metrics.py PRED.nii.gz TRUTH.nii.gz      → "psnr ssim ssim_3axes ssim_z ssim_y ssim_x"

Convention (NAF / R²-Gaussian): both scaled by the truth's range to [0, 1] (unchanged when the
truth is already in [0, 1]), the prediction clipped to [0, 1]; PSNR over all voxels; SSIM with an
11-tap Gaussian window (σ = 1.5) within 2-D slices, weights renormalised at the borders, averaged
over the voxels whose window lies inside the slice; the 3-axis SSIM is the mean over the slices
along z, y and x in turn (slices whose truth is all zero skipped), the three means averaged."""
import sys

import nibabel as nib
import numpy as np

R, SIGMA = 5, 1.5
W = np.exp(-0.5 * (np.arange(-R, R + 1) / SIGMA) ** 2)


def blur2(a):
    """Normalised Gaussian blur along the first two axes of a (w, h, slices) array."""
    out = a
    for axis in (0, 1):
        n = out.shape[axis]
        num = np.zeros_like(out)
        den = np.zeros(n)
        for k, wk in enumerate(W):
            d = k - R
            lo, hi = max(0, -d), min(n, n - d)
            src = [slice(None)] * 3
            dst = [slice(None)] * 3
            src[axis] = slice(lo + d, hi + d)
            dst[axis] = slice(lo, hi)
            num[tuple(dst)] += wk * out[tuple(src)]
            den[lo:hi] += wk
        shape = [1, 1, 1]
        shape[axis] = n
        out = num / den.reshape(shape)
    return out


def ssim_slices(p, t):
    """Per-slice mean SSIM over the valid region, slices along the last axis; NaN for empty truth."""
    c1, c2 = 0.01**2, 0.03**2
    mp, mt = blur2(p), blur2(t)
    vp = blur2(p * p) - mp * mp
    vt = blur2(t * t) - mt * mt
    cov = blur2(p * t) - mp * mt
    s = ((2 * mp * mt + c1) * (2 * cov + c2)) / ((mp * mp + mt * mt + c1) * (vp + vt + c2))
    return s[R:-R, R:-R, :].mean(axis=(0, 1))


def main():
    pred = np.asarray(nib.load(sys.argv[1]).dataobj, dtype=np.float64)
    truth = np.asarray(nib.load(sys.argv[2]).dataobj, dtype=np.float64)
    if pred.ndim == 2:
        pred, truth = pred[..., None], truth[..., None]
    if pred.shape != truth.shape:
        raise SystemExit(f"error: shapes differ: {pred.shape} against {truth.shape}")
    lo, hi = truth.min(), truth.max()
    if lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    span = max(hi - lo, 1e-12)
    t = (truth - lo) / span
    p = np.clip((pred - lo) / span, 0.0, 1.0)
    mse = np.mean((p - t) ** 2)
    if not mse > 0:
        raise SystemExit("error: PSNR cannot be computed (the reconstruction equals the truth)")
    psnr = 10 * np.log10(1.0 / mse)
    if min(t.shape[:2]) <= 2 * R:
        raise SystemExit(f"error: slices of {t.shape[:2]} are smaller than the SSIM window")
    ssim = ssim_slices(p, t).mean()
    axes = []
    for perm in [(0, 1, 2), (0, 2, 1), (1, 2, 0)]:  # z slices, y slices, x slices
        if t.ndim < 3 or min(t.transpose(perm).shape[:2]) <= 2 * R:
            axes.append(float("nan"))
            continue
        pt, tt = p.transpose(perm), t.transpose(perm)
        keep = tt.max(axis=(0, 1)) > 0
        axes.append(ssim_slices(pt, tt)[keep].mean() if keep.any() else float("nan"))
    print(f"{psnr:.4f} {ssim:.4f} {np.mean(axes):.4f} {axes[0]:.4f} {axes[1]:.4f} {axes[2]:.4f}")


if __name__ == "__main__":
    main()
