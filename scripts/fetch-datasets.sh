#!/usr/bin/env bash
# Fetches the MNI ICBM152 2009a T1 template (1 mm, 197×233×189) into datasets/ (gitignored) and,
# with python3 + numpy + nibabel present, writes resampled copies for the MRI experiments:
#
#   datasets/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz   the template as shipped by nilearn
#   datasets/mni152_t1_N.nii.gz                                  a 192 mm cube around the brain, block-
#                                                                averaged to N³ (N = 32, 48, 64, 96)
#
# datasets/mni152_t1_32.nii.gz is the committed test volume; running this script rewrites it
# byte-identically (see datasets/README.md). Usage: scripts/fetch-datasets.sh [--no-derive]
set -euo pipefail
cd "$(dirname "$0")/.."

NILEARN_VERSION=0.14.1
WHEEL_SHA256=725206484e9fb3f6691f9c2d20204a068759d5072f12055324702ee0cb2bbe8a
MEMBER=nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
TEMPLATE_SHA256=421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6
OUT=datasets/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz

if [ ! -f "$OUT" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --no-deps --only-binary=:all: "nilearn==$NILEARN_VERSION" -d "$tmp" >&2
  wheel=$(ls "$tmp"/nilearn-"$NILEARN_VERSION"-*.whl)
  echo "$WHEEL_SHA256  $wheel" | sha256sum -c - >&2
  unzip -p "$wheel" "$MEMBER" > "$tmp/t1.nii.gz"
  echo "$TEMPLATE_SHA256  $tmp/t1.nii.gz" | sha256sum -c - >&2
  mv "$tmp/t1.nii.gz" "$OUT"
fi
echo "template: $OUT"

[ "${1:-}" = "--no-derive" ] && exit 0
if ! python3 -c "import numpy, nibabel" 2>/dev/null; then
  echo "python3 with numpy and nibabel not found: skipping the resampled copies" >&2
  exit 0
fi
python3 - "$OUT" <<'PY'
import sys, gzip, numpy as np, nibabel as nib
src = nib.load(sys.argv[1])
data = np.asarray(src.dataobj).astype(np.float64)      # uint8, 0..255, x fastest in the file
A = src.affine
# A 192-voxel (1 mm) cube centred on the brain's bounding box (voxels above 5 % of the maximum),
# zero-padded where it leaves the template.
idx = np.argwhere(data > 0.05 * data.max())
centre = (idx.min(0) + idx.max(0)) // 2
start = centre - 96
pad = [(max(0, -s), max(0, s + 192 - n)) for s, n in zip(start, data.shape)]
padded = np.pad(data, pad)
s = start + np.array([p[0] for p in pad])
cube = padded[s[0]:s[0] + 192, s[1]:s[1] + 192, s[2]:s[2] + 192]
for n in (32, 48, 64, 96):
    f = 192 // n
    small = cube.reshape(n, f, n, f, n, f).mean(axis=(1, 3, 5))
    # Voxel j of the small grid is the mean of old voxels start + f·j … start + f·j + f − 1;
    # its centre sits at old index start + f·j + (f − 1)/2.
    B = A.copy()
    B[:3, :3] = A[:3, :3] * f
    B[:3, 3] = (A @ np.r_[start + (f - 1) / 2.0, 1.0])[:3]
    img = nib.Nifti1Image(np.round(small).astype(np.uint8), B)
    img.set_sform(B, code=2)
    img.set_qform(B, code=2)
    img.header["descrip"] = b"MNI ICBM152 2009a T1, 192mm cube, block mean"
    out = f"datasets/mni152_t1_{n}.nii.gz"
    raw = img.to_bytes()
    with open(out + ".tmp", "wb") as fh:                   # mtime 0: byte-identical reruns
        with gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
            gz.write(raw)
    import os; os.replace(out + ".tmp", out)
    print(f"{out}: {n}^3, {f} mm voxels, cube start (voxels) {start.tolist()}")
PY
