#!/usr/bin/env python3
"""BART's compressed sensing on the k-space files `ffvol fit mri` reads (scripts/bench-mri-bart.sh).

    mri_bart.py RUN TRUTH OUT [--lambdas 0.001,0.01] [--bart bart] [--iterations 30] [--regulariser l1|tv]

RUN is a `fit mri` run folder: its kspace.npy (complex64, centred: numpy.fft.fftshift(fftn(g)),
unnormalised, indexed [x, y, z]) and mask.npy are what the fit trained on; metrics.json holds
ffvol's zero-filled PSNR. TRUTH is the volume; it is mapped to [0, 1] as ffvol's default
(`normalize = minmax`) maps it. OUT receives the .cfl/.hdr files and a CSV line per λ.

Conventions (checked here, and the script stops when a check fails):
- BART's FFT is centred on both sides and, with -u, unitary: k_b = fftshift(fftn(ifftshift(x)))/√N.
  For even sizes, ifftshift of the image multiplies ffvol's centred k-space by (−1)^(cx+cy+cz)
  (the centred index c, times (−1)^(N/2) per axis), so k_b = k_ffvol · (−1)^(cx+cy+cz+Σ N/2) / √N.
- The zero-filled image from `bart fft -i -u 7` (real part, ×√N... scaled back, clipped to [0, 1])
  must give ffvol's zero-filled PSNR (metrics.json) to 0.01 dB, and match numpy's ifftn to 1e-4.
- PSNR is ffvol's: 10·log10(1 / mean((clip(pred, 0, 1) − truth)²)) over the whole volume.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import nibabel as nib
import numpy as np


def write_cfl(stem, arr):
    arr = np.asarray(arr, dtype=np.complex64)
    dims = list(arr.shape) + [1] * (16 - arr.ndim)
    with open(stem + ".hdr", "w") as f:
        f.write("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    arr.ravel(order="F").tofile(stem + ".cfl")


def read_cfl(stem):
    with open(stem + ".hdr") as f:
        f.readline()
        dims = [int(d) for d in f.readline().split()]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return np.fromfile(stem + ".cfl", dtype=np.complex64).reshape(dims, order="F")


def psnr(pred, truth):
    mse = np.mean((np.clip(pred, 0.0, 1.0).astype(np.float64) - truth) ** 2)
    if not mse > 0:
        raise SystemExit("error: PSNR cannot be computed (zero error: the prediction is the truth)")
    return 10.0 * np.log10(1.0 / mse)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("truth")
    ap.add_argument("out")
    ap.add_argument("--lambdas", default="0.0005,0.001,0.002,0.005,0.01,0.02,0.05")
    ap.add_argument("--bart", default="bart")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--regulariser", choices=["l1", "tv"], default="l1",
                    help="l1: l1-wavelet (`pics -l1`); tv: total variation over x, y, z (`pics -R T:7:0:λ`)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    k = np.load(os.path.join(a.run, "kspace.npy"))
    mask = np.load(os.path.join(a.run, "mask.npy")) != 0
    metrics = json.load(open(os.path.join(a.run, "metrics.json")))
    raw = np.asarray(nib.load(a.truth).dataobj).astype(np.float64)
    if raw.shape != k.shape or mask.shape != k.shape:
        raise SystemExit(f"error: shapes differ: truth {raw.shape}, k-space {k.shape}, mask {mask.shape}")
    if any(n % 2 for n in k.shape):
        raise SystemExit(f"error: odd size {k.shape}: the (−1)^c centring rule needs even sizes")
    lo, hi = raw.min(), raw.max()
    truth = np.clip((raw - lo) / (hi - lo), 0.0, 1.0)
    n = k.size

    # numpy's zero-filled image against ffvol's
    zf_np = np.real(np.fft.ifftn(np.fft.ifftshift(k * mask)))
    p_zf_np = psnr(zf_np, truth)
    p_zf_ffvol = metrics["psnr_zero_filled"]
    print(f"zero-filled PSNR: numpy {p_zf_np:.4f} dB, ffvol {p_zf_ffvol:.4f} dB")
    if abs(p_zf_np - p_zf_ffvol) > 0.01:
        raise SystemExit("error: numpy's zero-filled PSNR differs from ffvol's: the file layout is misread")

    # ffvol's centred, unnormalised k-space → BART's centred, unitary k-space
    c = np.indices(k.shape).sum(axis=0) + sum(d // 2 for d in k.shape)
    sign = np.where(c % 2 == 0, 1.0, -1.0)
    kb = (k * mask) * sign / np.sqrt(n)
    write_cfl(os.path.join(a.out, "kspace"), kb)
    write_cfl(os.path.join(a.out, "pattern"), mask.astype(np.complex64))
    write_cfl(os.path.join(a.out, "sens"), np.ones(k.shape, dtype=np.complex64))
    bart = lambda *args: subprocess.run([a.bart, *args], check=True, capture_output=True, text=True)
    bart("fft", "-i", "-u", "7", os.path.join(a.out, "kspace"), os.path.join(a.out, "zf"))
    zf_b = np.real(read_cfl(os.path.join(a.out, "zf"))).astype(np.float64)
    worst = np.abs(zf_b - zf_np).max()
    p_zf_b = psnr(zf_b, truth)
    print(f"zero-filled PSNR: BART's inverse FFT {p_zf_b:.4f} dB (max |BART − numpy| = {worst:.2e})")
    if worst > 1e-4 or abs(p_zf_b - p_zf_ffvol) > 0.01:
        raise SystemExit("error: BART's zero-filled image is not ffvol's: the FFT conventions are wrong")

    rows = []
    for lam in [float(x) for x in a.lambdas.split(",")]:
        stem = os.path.join(a.out, f"pics_{lam:g}")
        t = time.time()
        reg = ["-l1", "-r", f"{lam:g}"] if a.regulariser == "l1" else ["-R", f"T:7:0:{lam:g}"]
        r = bart("pics", "-S", *reg, "-i", str(a.iterations),
                 os.path.join(a.out, "kspace"), os.path.join(a.out, "sens"), stem)
        secs = time.time() - t
        img = np.real(read_cfl(stem)).astype(np.float64)
        p = psnr(img, truth)
        rows.append((lam, p, secs))
        print(f"bart pics -S {' '.join(reg)} -i {a.iterations}: PSNR {p:.2f} dB in {secs:.1f} s", flush=True)
    with open(os.path.join(a.out, "bart.csv"), "w") as f:
        f.write("lambda,psnr_db,seconds\n")
        for lam, p, s in rows:
            f.write(f"{lam:g},{p:.4f},{s:.2f}\n")
    best = max(rows, key=lambda r: r[1])
    print(f"best: lambda {best[0]:g} PSNR {best[1]:.2f} dB in {best[2]:.1f} s")
    print(f"ZERO_FILLED {p_zf_ffvol:.4f} {p_zf_b:.4f}")
    print(f"BEST {best[0]:g} {best[1]:.4f} {best[2]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
