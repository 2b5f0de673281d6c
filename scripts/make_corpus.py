#!/usr/bin/env python3
"""Writes tests/corpus/<kind>/...: malformed inputs every command that reads that kind must refuse
with a clean error (tests/malformed_corpus.rs). Run from the repository root with the release
binary built (it makes the run folder the checkpoint files are cut from):

    python3 scripts/make_corpus.py
"""
import gzip, json, os, shutil, struct, subprocess, sys, tempfile, zlib

root = os.path.join("tests", "corpus")
def put(kind, name, data):
    os.makedirs(os.path.join(root, kind), exist_ok=True)
    with open(os.path.join(root, kind, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# --- meshes ------------------------------------------------------------------------------------
V3 = "element vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
F1 = "element face 1\nproperty list uchar int vertex_indices\n"
BODY = "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
ply = lambda h, b: f"ply\nformat ascii 1.0\n{h}end_header\n{b}"
put("mesh", "count-2e64.ply", ply(V3.replace(" 3\n", " 18446744073709551616\n") + F1, BODY))
put("mesh", "empty-element.ply", ply(V3 + F1 + "element junk 1000000\n", BODY))
put("mesh", "count-i64max.ply", ply(V3 + F1 + "element junk 9223372036854775807\n", BODY))
put("mesh", "empty-element-binary.ply", "ply\nformat binary_little_endian 1.0\nelement junk 4294967295\n" + V3 + F1 + "end_header\n")
put("mesh", "duplicate-element.ply", ply(V3 + F1 + V3, BODY))
put("mesh", "trailing.ply", ply(V3 + F1, BODY + "1 2 3\n"))
put("mesh", "short-face.ply", ply(V3 + F1, "0 0 0\n1 0 0\n0 1 0\n2 0 1\n"))
put("mesh", "binary-huge-count.ply", "ply\nformat binary_little_endian 1.0\n" + V3.replace(" 3\n", " 4000000000\n") + F1 + "end_header\n" + "\0" * 40)
put("mesh", "header-only.ply", "ply\nformat ascii 1.0\n" + V3)
put("mesh", "empty.ply", b"")
put("mesh", "nan-vertex.ply", ply(V3 + F1, "0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n"))
put("mesh", "huge-list.ply", ply(V3 + "element face 1\nproperty list int int vertex_indices\n", "0 0 0\n1 0 0\n0 1 0\n2147483647 0 1 2\n"))
stl = b"solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\nendloop\nendfacet\nendsolid t\n"
put("mesh", "nul.stl", stl[:40] + b"\0" + stl[41:])
put("mesh", "binary-billion.stl", b"\0" * 80 + struct.pack("<I", 1_000_000_000) + b"\0" * 100)
put("mesh", "ascii-truncated.stl", stl[:60])
put("mesh", "empty.stl", b"")
put("mesh", "index-0.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n")
put("mesh", "huge-index.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99999999999\n")
put("mesh", "binary.obj", b"v 0 0 0\0\x01\x02")
put("mesh", "no-faces.obj", "v 0 0 0\nv 1 0 0\n")

# --- volumes -----------------------------------------------------------------------------------
def nifti(dims, datatype=16, bitpix=32, vox_offset=352.0, data=None):
    h = bytearray(348)
    struct.pack_into("<i", h, 0, 348)
    d = [len(dims)] + list(dims) + [1] * (7 - len(dims))
    struct.pack_into("<8h", h, 40, *d)
    struct.pack_into("<h", h, 70, datatype)
    struct.pack_into("<h", h, 72, bitpix)
    struct.pack_into("<8f", h, 76, 1, 1, 1, 1, 1, 1, 1, 1)
    struct.pack_into("<f", h, 108, vox_offset)
    struct.pack_into("<f", h, 112, 1.0)
    h[344:348] = b"n+1\0"
    body = bytes(h) + b"\0" * 4
    return body + (data if data is not None else b"\0" * 4 * 8)
put("volume", "bitpix0.nii", nifti([2, 2, 2], bitpix=0))
put("volume", "bitpix24-float.nii", nifti([2, 2, 2], bitpix=24))
put("volume", "rgb.nii", nifti([2, 2, 2], datatype=128, bitpix=24))
put("volume", "huge-dims.nii", nifti([32767, 32767, 32767]))
put("volume", "negative-dim.nii", nifti([2, -2, 2]))
put("volume", "vox-offset-huge.nii", nifti([2, 2, 2], vox_offset=1e12))
put("volume", "truncated.nii", nifti([8, 8, 8])[:600])
put("volume", "empty.nii.gz", b"")
put("volume", "EMPTY.NII.GZ", b"")
good = gzip.compress(nifti([2, 2, 2]))
bad = bytearray(good); bad[-8] ^= 0xFF
put("volume", "bad-crc.nii.gz", bytes(bad))
put("volume", "no-trailer.nii.gz", good[:-8])
# a legitimate CT size (1024³ float32, 4 GiB) declared by a header whose data is not there: refused
# as truncated before anything of that size is allocated (the .nii.gz cannot be checked by size)
put("volume", "huge-1024-short.nii", nifti([1024, 1024, 1024], data=b"\0" * 64))
put("volume", "huge-1024-short.nii.gz", gzip.compress(nifti([1024, 1024, 1024], data=b"\0" * 4096)))
def npy(descr, shape, data=b""):
    hdr = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    hdr += " " * (63 - (len(hdr) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + data
put("volume", "huge-shape.npy", npy("<f4", "(100000, 100000, 100000)"))
put("volume", "overflow-shape.npy", npy("<f4", "(4294967296, 4294967296, 4294967296)"))
put("volume", "truncated.npy", npy("<f4", "(4, 4, 4)", b"\0" * 10))
put("volume", "nan.npy", npy("<f4", "(2, 2, 2)", struct.pack("<8f", *([1.0] * 7 + [float("nan")]))))
put("volume", "object.npy", npy("|O", "(2, 2, 2)", b"\0" * 64))
put("volume", "bad-magic.npy", b"\x93NUMPX" + b"\0" * 100)
put("volume", "empty.npy", b"")
put("volume", "header-4g.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFF00) + b"{'descr': '<f4', " + b" " * 100)
put("volume", "garbage.mat", b"MATLAB 5.0 MAT-file" + b"\0" * 97 + b"\x00\x01IM" + b"\xff" * 64)
put("volume", "empty.mat", b"")
put("volume", "garbage.dcm", b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"1.2" * 10)
put("volume", "empty.dcm", b"")
# DICOM from pydicom's MR_small (explicit VR LE) and MR_small_RLE (64 x 64, 16 bits, 2 RLE
# segments) in fuzz/seeds: a Pixel Data length of 3 GiB (dicom-parser zero-filled it before
# reading: 3 GB touched), and RLE fragments the decoder would index out of bounds by
seeds = os.path.join("fuzz", "seeds", "dicom")
mr = bytearray(open(os.path.join(seeds, "MR_small.dcm"), "rb").read())
at = mr.find(b"\xe0\x7f\x10\x00OW")
struct.pack_into("<I", mr, at + 8, 3 << 30)
put("volume", "dicom-pixel-length-3g.dcm", bytes(mr))
rle = open(os.path.join(seeds, "MR_small_RLE.dcm"), "rb").read()
f = rle.find(b"\xe0\x7f\x10\x00OB") + 12 + 12 + 8  # Pixel Data, offset table item, fragment item
frag_len = struct.unpack_from("<I", rle, f - 4)[0]
def rle_edit(edit):
    b = bytearray(rle); edit(b); return bytes(b)
put("volume", "dicom-rle-segments-max.dcm", rle_edit(lambda b: struct.pack_into("<I", b, f, 0xFFFFFFFF)))
put("volume", "dicom-rle-offset-past-end.dcm", rle_edit(lambda b: struct.pack_into("<I", b, f + 8, frag_len + 9)))
def short_segment(b):
    s1 = struct.unpack_from("<I", b, f + 8)[0]
    b[f + s1 + 10:f + frag_len] = b"\x80" * (frag_len - s1 - 10)  # PackBits no-ops
put("volume", "dicom-rle-short-segment.dcm", rle_edit(short_segment))
# a binary VR whose length is not a whole number of its values (fuzz findings, timeouts):
# dicom-parser reads the whole values, counts the full length as read and takes the next header
# from inside the value, whose garbage length it zero-filled (765 MB, 1.7-21 s from 7.8 kB)
def vr_edit(find, vr):
    b = bytearray(rle); at = b.find(find); b[at + 4:at + 6] = vr; return bytes(b)
put("volume", "dicom-fl-length-6.dcm", vr_edit(b"\x08\x00\x13\x00TM", b"FL"))  # Study Time: 6 bytes
put("volume", "dicom-at-length-6.dcm", vr_edit(b"\x18\x00\x50\x00DS", b"AT"))  # Slice Thickness

# --- geometry ----------------------------------------------------------------------------------
G = ('beam = "parallel"\ndims = 2\n[detector]\npixels = [PIX]\npixel_size = [1.0]\noffset = [DOFF]\n'
     '[volume]\nvoxels = [16, 16]\nvoxel_size = [1.0, 1.0]\noffset = [0.0, VOFF]\n[angles]\ncount = COUNT\n')
g = lambda c="10", p="24", d="0.0", v="0.0": G.replace("COUNT", c).replace("PIX", p).replace("DOFF", d).replace("VOFF", v)
put("geometry", "count-i64max.toml", g(c="9223372036854775806"))
put("geometry", "count-1e9.toml", g(c="1000000000"))
put("geometry", "pixels-1e8.toml", g(p="100000000"))
put("geometry", "pixels-2e32.toml", g(p="4294967296"))
put("geometry", "nan-det-offset.toml", g(d="nan"))
put("geometry", "nan-vol-offset.toml", g(v="nan"))
put("geometry", "far-off.toml", g(c="1", v="5.0e5"))
put("geometry", "far-off-big.toml", 'beam = "parallel"\ndims = 3\n[detector]\npixels = [65536, 65536]\npixel_size = [1.0, 1.0]\n'
    '[volume]\nvoxels = [8, 8, 8]\nvoxel_size = [1.0, 1.0, 1.0]\noffset = [0.0, 9.0e5, 0.0]\n[angles]\ncount = 1\n')
put("geometry", "rays.toml", g(c="1048576", p="65536"))
put("geometry", "voxels-wrap.toml", g().replace("voxels = [16, 16]", "voxels = [4294967296, 4294967296]"))
put("geometry", "negative.toml", g(p="-5"))
put("geometry", "not-toml.toml", "beam = = parallel\n[[[\n")
put("geometry", "unknown-key.toml", g() + "colour = 3\n")
put("geometry", "dims-7.toml", g().replace("dims = 2", "dims = 7"))
put("geometry", "empty.toml", b"")

# --- projections -------------------------------------------------------------------------------
put("projections", "wrong-shape.npy", npy("<f4", "(3, 5)", b"\0" * 60))
put("projections", "nan.npy", npy("<f4", "(4, 16)", struct.pack("<64f", *([0.0] * 63 + [float("nan")]))))
put("projections", "huge-shape.npy", npy("<f4", "(100000, 100000)"))
put("projections", "garbage.h5", b"\x89HDF\r\n\x1a\n" + b"\x00\xff" * 200)
put("projections", "empty.h5", b"")

# --- run folders: run.toml and checkpoint variants cut from a small real run -------------------
binary = os.path.join("target", "release", "ffvol")
tmp = tempfile.mkdtemp()
run = os.path.join(tmp, "run")
subprocess.run([binary, "fit", "occupancy", "--output", run, "--steps", "4", "--batch", "256", "--test-points",
                "500", "--resolution", "8", "--depth", "2", "--width", "8", "--features", "8", "--threads", "1",
                "--device", "cpu"], check=True, capture_output=True)
toml = open(os.path.join(run, "run.toml")).read()
class Checked(str):
    def replace(self, a, b):
        assert a in self, f"{a!r} is not in run.toml"
        return str.replace(self, a, b)
toml = Checked(toml)
put("run_toml", "not-toml.toml", toml + "\n[[[\n")
put("run_toml", "unknown-job.toml", toml.replace('job = "occupancy"', 'job = "teleport"'))
put("run_toml", "threads-1e6.toml", toml.replace("threads = 1", "threads = 1000000"))
put("run_toml", "nan-lr.toml", toml.replace("lr = ", "lr = nan #"))
put("run_toml", "width-0.toml", toml.replace("width = 8", "width = 0"))
put("run_toml", "empty.toml", b"")
# a NaN schedule factor trained every weight to NaN after a finite loss
SCHED = 'type = "cosine"\nwarmup = 50\nfinal_fraction = 0.02'
put("run_toml", "nan-factor.toml", toml.replace(SCHED, 'type = "exponential"\nfactor = nan\nevery = 100'))
put("run_toml", "nan-final-fraction.toml", toml.replace(SCHED, 'type = "cosine"\nwarmup = 50\nfinal_fraction = nan'))
put("run_toml", "inf-factor.toml", toml.replace(SCHED, 'type = "exponential"\nfactor = inf\nevery = 100'))
ck = open(os.path.join(run, "checkpoint.safetensors"), "rb").read()
n = struct.unpack("<Q", ck[:8])[0]
header = json.loads(ck[8:8 + n])
def with_header(h, data=ck[8 + n:]):
    text = json.dumps(h).encode()
    return struct.pack("<Q", len(text)) + text + data
put("checkpoint", "truncated.safetensors", ck[: len(ck) // 2])
put("checkpoint", "empty.safetensors", b"")
h = json.loads(json.dumps(header)); h["__metadata__"]["sizes"] = "[100000000, 100000000, 1]"
put("checkpoint", "huge-sizes.safetensors", with_header(h))
h = json.loads(json.dumps(header)); h["__metadata__"]["sizes"] = "[18446744073709551615, 18446744073709551615, 1]"
put("checkpoint", "overflow-sizes.safetensors", with_header(h))
start = header["mlp.0.weight"]["data_offsets"][0]
data = bytearray(ck[8 + n:]); data[start:start + 4] = struct.pack("<f", float("nan"))
put("checkpoint", "nan-weight.safetensors", with_header(header, bytes(data)))
start = header["adam.v"]["data_offsets"][0]
data = bytearray(ck[8 + n:]); data[start:start + 4] = struct.pack("<f", float("inf"))
put("checkpoint", "inf-adam.safetensors", with_header(header, bytes(data)))
h = json.loads(json.dumps(header)); h["mlp.0.weight"]["shape"] = [8, 16000]
put("checkpoint", "shape-beyond-data.safetensors", with_header(h))
wide = os.path.join(tmp, "wide")
subprocess.run([binary, "fit", "occupancy", "--output", wide, "--steps", "2", "--batch", "256", "--test-points",
                "500", "--resolution", "8", "--depth", "2", "--width", "16", "--features", "8", "--threads", "1",
                "--device", "cpu"], check=True, capture_output=True)
put("checkpoint", "wider-network.safetensors", open(os.path.join(wide, "checkpoint.safetensors"), "rb").read())
shutil.rmtree(tmp)
print("corpus written to", root)
