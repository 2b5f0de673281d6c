#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/: small VALID inputs of every fuzz target's format, written by
independent writers (numpy, nibabel, scipy, h5py, pydicom's bundled files) and by ffvol itself
(run.toml and checkpoints of tiny runs), so libFuzzer starts from files that reach deep into each
reader rather than from the malformed corpus alone. scripts/fuzz.sh adds the bundled datasets and
tests/corpus/. Run from the repository root with the release binary built:

    python3 -m pip install numpy nibabel scipy h5py pydicom
    python3 scripts/make_fuzz_seeds.py
"""
import gzip, io, os, shutil, struct, subprocess, tempfile

import numpy as np

root = os.path.join("fuzz", "seeds")
def put(target, name, data):
    os.makedirs(os.path.join(root, target), exist_ok=True)
    with open(os.path.join(root, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# --- meshes: a tetrahedron in each flavour ------------------------------------------------------
V = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
F = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
head = lambda fmt, extra="": (f"ply\nformat {fmt} 1.0\ncomment seed\nelement vertex 4\nproperty float x\n"
                              f"property float y\nproperty float z\n{extra}element face 4\n"
                              "property list uchar int vertex_indices\nend_header\n")
put("ply", "tetra-ascii.ply", head("ascii") + "".join("%g %g %g\n" % v for v in V) + "".join("3 %d %d %d\n" % f for f in F))
body = b"".join(struct.pack("<3f", *v) for v in V) + b"".join(struct.pack("<B3i", 3, *f) for f in F)
put("ply", "tetra-binary.ply", head("binary_little_endian").encode() + body)
body = b"".join(struct.pack(">3f", *v) for v in V) + b"".join(struct.pack(">B3i", 3, *f) for f in F)
put("ply", "tetra-big.ply", head("binary_big_endian").encode() + body)
body = b"".join(struct.pack("<3fB", *v, 7) for v in V) + b"".join(struct.pack("<B3i", 3, *f) for f in F)
put("ply", "tetra-extra.ply", head("binary_little_endian", "property uchar red\n").encode() + body)
obj = "# seed\n" + "".join("v %g %g %g\n" % v for v in V) + "vn 0 0 1\nvt 0 0\n"
put("obj", "tetra.obj", obj + "".join("f %d %d %d\n" % tuple(i + 1 for i in f) for f in F))
put("obj", "tetra-slashes.obj", obj + "".join("f %d/1/1 %d/1/1 %d/1/1\n" % tuple(i + 1 for i in f) for f in F))
put("obj", "quad-negative.obj", "o q\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\ng g\nf -4 -3 -2 -1\n")
def normal(f):
    a, b, c = (np.array(V[i], float) for i in f)
    n = np.cross(b - a, c - a)
    return n / np.linalg.norm(n)
text = "solid t\n"
for f in F:
    text += "facet normal %g %g %g\n outer loop\n" % tuple(normal(f))
    text += "".join("  vertex %g %g %g\n" % V[i] for i in f) + " endloop\nendfacet\n"
put("stl", "tetra-ascii.stl", text + "endsolid t\n")
binary = b"seed".ljust(80, b" ") + struct.pack("<I", len(F))
for f in F:
    binary += struct.pack("<3f", *normal(f)) + b"".join(struct.pack("<3f", *V[i]) for i in f) + b"\0\0"
put("stl", "tetra-binary.stl", binary)

# --- volumes -----------------------------------------------------------------------------------
import nibabel as nib
rng = np.random.default_rng(0)
vol = rng.random((5, 4, 3)).astype(np.float32)
tmp = tempfile.mkdtemp()
def nifti_bytes(img, name):
    p = os.path.join(tmp, name)
    nib.save(img, p)
    return open(p, "rb").read()
aff = np.diag([1.0, 1.5, 2.0, 1.0]); aff[:3, 3] = [-10, 5, 2]
put("nifti", "float32.nii", nifti_bytes(nib.Nifti1Image(vol, aff), "a.nii"))
i16 = nib.Nifti1Image((vol * 1000).astype(np.int16), aff); i16.header.set_slope_inter(0.5, -3)
put("nifti", "int16-scaled.nii", nifti_bytes(i16, "b.nii"))
big = nib.Nifti1Image(vol.astype(">f8"), aff)
put("nifti", "float64-big-endian.nii", nifti_bytes(big, "c.nii"))
off = nib.Nifti1Image(vol, aff); off.header.set_data_offset(1024)
put("nifti", "vox-offset-1024.nii", nifti_bytes(off, "d.nii"))
u8 = nib.Nifti1Image((vol * 255).astype(np.uint8), None); u8.set_qform(aff, code=1)
put("nifti", "uint8-qform.nii", nifti_bytes(u8, "e.nii"))
for name in os.listdir(os.path.join(root, "nifti")):
    put("nifti_gz", name + ".gz", gzip.compress(open(os.path.join(root, "nifti", name), "rb").read()))
for name, arr in [("f4.npy", vol), ("f8-fortran.npy", np.asfortranarray(vol.astype(np.float64))),
                  ("u1.npy", (vol * 255).astype(np.uint8)), ("i2-big.npy", (vol * 99).astype(">i2")),
                  ("2d.npy", vol[:, :, 0]), ("proj-3d.npy", rng.random((4, 3, 6)).astype(np.float32))]:
    b = io.BytesIO(); np.save(b, arr); put("npy", name, b.getvalue())
import scipy.io
for name, kw in [("plain.mat", {}), ("compressed.mat", {"do_compression": True})]:
    b = io.BytesIO(); scipy.io.savemat(b, {"vol": vol.astype(np.float64)}, **kw); put("mat", name, b.getvalue())
b = io.BytesIO(); scipy.io.savemat(b, {"img": (vol * 100).astype(np.int16), "note": "seed"}); put("mat", "int16.mat", b.getvalue())
from pydicom.data import get_testdata_file
for name in ["MR_small.dcm", "CT_small.dcm", "MR_small_RLE.dcm", "MR_small_deflate.dcm"]:
    p = get_testdata_file(name)
    if p and os.path.getsize(p) < 200_000:
        put("dicom", name, open(p, "rb").read())

# --- HDF5 Data Exchange ------------------------------------------------------------------------
import h5py
for name, comp in [("exchange.h5", None), ("exchange-deflate.h5", "gzip")]:
    p = os.path.join(tmp, name)
    with h5py.File(p, "w") as f:
        f.create_dataset("exchange/data", data=(rng.random((6, 2, 8)) * 1000).astype(np.uint16), compression=comp)
        f.create_dataset("exchange/data_white", data=np.full((2, 2, 8), 1200, np.uint16), compression=comp)
        f.create_dataset("exchange/data_dark", data=np.full((1, 2, 8), 100, np.uint16), compression=comp)
        f.create_dataset("exchange/theta", data=np.linspace(0, 180, 6, endpoint=False))
    put("hdf5", name, open(p, "rb").read())

# --- geometry ----------------------------------------------------------------------------------
put("geometry", "fan.toml", 'beam = "fan"\ndims = 2\ndso = 60.0\ndsd = 100.0\n[detector]\npixels = [41]\n'
    'pixel_size = [1.5]\noffset = [-0.7]\n[volume]\nvoxels = [22, 26]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = 9\n')
put("geometry", "cone.toml", 'beam = "cone"\ndims = 3\ndso = 50.0\ndsd = 90.0\n[detector]\npixels = [29, 23]\n'
    'pixel_size = [1.2, 1.2]\noffset = [0.4, -0.8]\n[volume]\nvoxels = [14, 16, 12]\nvoxel_size = [1.0, 1.0, 1.0]\n'
    'offset = [0.0, 0.5, 0.3]\n[angles]\ncount = 6\nunit = "degrees"\nspan = 360.0\n')
put("geometry", "parallel-mean.toml", 'beam = "parallel"\ndims = 2\nquantity = "mean"\n[detector]\npixels = [37]\n'
    'pixel_size = [0.9]\noffset = [1.3]\n[volume]\nvoxels = [24, 20]\nvoxel_size = [1.0, 1.2]\noffset = [0.5, -1.0]\n'
    '[angles]\ncount = 7\nfirst = 0.1\n')

# --- run folders: run.toml and checkpoints of tiny runs of ffvol itself -----------------------
binary = os.path.join("target", "release", "ffvol")
small = ["--steps", "2", "--depth", "2", "--width", "8", "--features", "8", "--threads", "1", "--device", "cpu"]
jobs = {
    "occupancy": ["fit", "occupancy", "--batch", "256", "--test-points", "300", "--resolution", "8"],
    "volume": ["fit", "volume"],
    "mri": ["fit", "mri"],
    "hashgrid": ["fit", "occupancy", "--batch", "256", "--test-points", "300", "--resolution", "8",
                 "--encoding", "hashgrid", "--sigma", "4"],
}
for name, args in jobs.items():
    run = os.path.join(tmp, "run-" + name)
    r = subprocess.run([binary] + args + ["--output", run] + small, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"{name}: {r.stderr.strip().splitlines()[-1:]} (skipped)")
        continue
    put("run_toml", name + ".toml", open(os.path.join(run, "run.toml"), "rb").read())
    put("checkpoint", name + ".safetensors", open(os.path.join(run, "checkpoint.safetensors"), "rb").read())
shutil.rmtree(tmp)
print("seeds written to", root)
