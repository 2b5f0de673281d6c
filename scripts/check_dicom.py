#!/usr/bin/env python3
"""Independent checks of ffvol's DICOM reader (pydicom, nibabel, dicom2nifti), and test series.

    check_dicom.py compare OUT.nii[.gz] SOURCE [OUT SOURCE ...]   # SOURCE: a DICOM file or folder
    check_dicom.py make DIR KIND...                    # writes test series DIR/KIND with pydicom
    check_dicom.py testdata                            # prints pydicom's bundled test-file folder

compare: OUT is ffvol's reading of the series written as NIfTI. The reference is computed here
from pydicom's pixel arrays the way dicom2nifti does it: frames sorted by ImagePositionPatient
along the slice normal (row x column cosines), values x RescaleSlope + RescaleIntercept (per
frame from the functional groups; RT Dose x DoseGridScaling), voxel (i, j, k) = column i, row j,
slice k, affine in LPS with columns (row cosine x column spacing, column cosine x row spacing,
(last - first position) / (n - 1)), then x and y negated (RAS). Checks, each printed, exit 1 on the
first failure:
  - values and affine against that reference;
  - the in-plane affine against nibabel.nicom's wrapper of the first slice (nibabel orders axes
    (row, column), so its columns 0 and 1 are ours swapped), and for an enhanced multi-frame file
    the whole affine against nibabel's MultiframeWrapper;
  - with dicom2nifti installed and a series of single-frame files: dicom2nifti's own NIfTI
    (reorient_nifti=False), matched voxel by voxel through the two affines.
make KIND: shuffled | oblique | rescale | missing | unequal | mixed | duplicate | sizes |
multiframe | lying | notdicom (CT_small.dcm's header, a real CT, is the template), or compressed
(pydicom's real CT5N series in JPEG Lossless, via gdcm, and RLE Lossless).
"""
import os
import random
import shutil
import sys

import numpy as np


def testdata():
    import pydicom

    return os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")


def frames_of(path):
    """[(position, orientation, spacing, values2d)] for every frame of one file."""
    import pydicom

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.float64)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if n == 1:
        arr = arr[None]
    out = []
    top_iop = ds.get("ImageOrientationPatient")
    top_ipp = ds.get("ImagePositionPatient")
    top_ps = ds.get("PixelSpacing")
    top_slope = ds.get("RescaleSlope", ds.get("DoseGridScaling", 1.0))
    top_inter = ds.get("RescaleIntercept", 0.0)
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    per = ds.PerFrameFunctionalGroupsSequence if "PerFrameFunctionalGroupsSequence" in ds else None
    offsets = ds.get("GridFrameOffsetVector")

    def grp(k, seq, attr):
        for g in ([per[k]] if per is not None else []) + ([shared] if shared is not None else []):
            if seq in g and attr in g[seq][0]:
                return g[seq][0][attr].value
        return None

    for k in range(n):
        ipp = grp(k, "PlanePositionSequence", "ImagePositionPatient") or top_ipp
        iop = grp(k, "PlaneOrientationSequence", "ImageOrientationPatient") or top_iop
        ps = grp(k, "PixelMeasuresSequence", "PixelSpacing") or top_ps
        slope = grp(k, "PixelValueTransformationSequence", "RescaleSlope")
        inter = grp(k, "PixelValueTransformationSequence", "RescaleIntercept")
        slope = float(top_slope if slope is None else slope)
        inter = float(top_inter if inter is None else inter)
        ipp = np.array([float(x) for x in ipp])
        iop = np.array([float(x) for x in iop])
        if per is None and offsets is not None:
            nrm = np.cross(iop[:3], iop[3:])
            ipp = ipp + (float(offsets[k]) - float(offsets[0])) * nrm
        out.append((ipp, iop, [float(x) for x in ps], arr[k] * slope + inter))
    return out


def reference(paths):
    frames = [f for p in paths for f in frames_of(p)]
    iop = frames[0][1]
    r, c = iop[:3], iop[3:]
    nrm = np.cross(r, c)
    frames.sort(key=lambda f: float(f[0] @ nrm))
    vol = np.stack([f[3] for f in frames])  # (slice, row, column)
    data = vol.transpose(2, 1, 0)  # (column, row, slice) = (x, y, z)
    dr, dc = frames[0][2]
    p0 = frames[0][0]
    if len(frames) > 1:
        step = (frames[-1][0] - p0) / (len(frames) - 1)
    else:
        # One slice: nibabel's rule (SpacingBetweenSlices, else SliceThickness, else 1 mm).
        import pydicom

        ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
        t = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0
        step = nrm * float(t)
    lps = np.eye(4)
    lps[:3, 0] = r * dc
    lps[:3, 1] = c * dr
    lps[:3, 2] = step
    lps[:3, 3] = p0
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return data, ras, frames


def expand(sources):
    paths = []
    for s in sources:
        if os.path.isdir(s):
            paths += sorted(
                os.path.join(s, n)
                for n in os.listdir(s)
                if not n.startswith(".") and n.upper() != "DICOMDIR" and os.path.isfile(os.path.join(s, n))
            )
        else:
            paths.append(s)
    return paths


def compare(out_path, sources):
    import nibabel as nib

    paths = expand(sources)
    out = nib.load(out_path)
    got = np.asarray(out.dataobj, dtype=np.float64)
    want, ras, frames = reference(paths)
    if got.shape != want.shape:
        sys.exit(f"FAIL shape: ffvol {got.shape}, pydicom {want.shape}")
    err = np.abs(got - want).max()
    if err > 1e-4 * max(1.0, np.abs(want).max()):
        sys.exit(f"FAIL values: max difference {err}")
    print(f"ok values {got.shape} (max difference {err:.2e}, range {want.min():.4g}..{want.max():.4g})")
    aerr = np.abs(out.affine - ras).max()
    if aerr > 1e-4 * max(1.0, np.abs(ras).max()):
        sys.exit(f"FAIL affine: max difference {aerr}\nffvol\n{out.affine}\nreference\n{ras}")
    print(f"ok affine (max difference {aerr:.2e})")

    # nibabel.nicom: the in-plane affine of the first (sorted) slice's file.
    import warnings

    warnings.simplefilter("ignore")
    from nibabel.nicom import dicomwrappers as dw
    import pydicom

    first = None
    p0 = frames[0][0]
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        if int(ds.get("NumberOfFrames", 1) or 1) == 1 and np.allclose(
            [float(x) for x in ds.get("ImagePositionPatient", [np.nan] * 3)], p0, atol=1e-6
        ):
            first = ds
            break
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ out.affine
    if first is not None:
        w = dw.wrapper_from_data(first)
        naff = np.asarray(w.affine)
        inplane = np.abs(lps[:3, [1, 0, 3]] - naff[:3, [0, 1, 3]]).max()
        if inplane > 1e-4 * max(1.0, np.abs(naff).max()):
            sys.exit(f"FAIL nibabel in-plane affine: {inplane}\nnibabel (row, col)\n{naff}\nffvol LPS\n{lps}")
        print(f"ok in-plane affine = nibabel.nicom's (max difference {inplane:.2e})")
    if len(paths) == 1:
        ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
        if "PerFrameFunctionalGroupsSequence" in ds:
            w = dw.MultiframeWrapper(ds)
            naff = np.asarray(w.affine)
            # nibabel orders (row, column, frame) and its frames by their dimension indices, so
            # its slice axis is ours or ours reversed (then it starts at our last slice).
            nz = got.shape[2]
            e = np.abs(lps[:3, [1, 0]] - naff[:3, :2]).max()
            same = np.abs(lps[:3, 2] - naff[:3, 2]).max()
            flipped = np.abs(lps[:3, 2] + naff[:3, 2]).max()
            start = lps[:3, 3] if same <= flipped else lps[:3, 3] + (nz - 1) * lps[:3, 2]
            e = max(e, min(same, flipped), np.abs(start - naff[:3, 3]).max())
            if e > 1e-3 * max(1.0, np.abs(naff).max()):
                sys.exit(f"FAIL nibabel MultiframeWrapper affine: {e}\nnibabel\n{naff}\nffvol LPS\n{lps}")
            print(f"ok affine = nibabel MultiframeWrapper's (max difference {e:.2e})")

    single = all(
        int(pydicom.dcmread(p, stop_before_pixels=True).get("NumberOfFrames", 1) or 1) == 1 for p in paths
    )
    if single and len(paths) >= 3:
        try:
            import dicom2nifti.convert_dicom as cd
        except ImportError:
            print("skipped dicom2nifti (not installed)")
            return
        import logging
        import tempfile

        logging.disable(logging.CRITICAL)
        dsets = [pydicom.dcmread(p) for p in paths]
        with tempfile.TemporaryDirectory() as tmp:
            res = cd.dicom_array_to_nifti(dsets, os.path.join(tmp, "d2n.nii.gz"), reorient_nifti=False)
            img = res["NII"]
            theirs = np.asarray(img.dataobj, dtype=np.float64)
            taff = img.affine
        # Map every one of their voxels into our index space through the two affines.
        idx = np.indices(theirs.shape).reshape(3, -1)
        world = taff[:3, :3] @ idx + taff[:3, 3:4]
        ours = np.linalg.solve(out.affine[:3, :3], world - out.affine[:3, 3:4])
        rounded = np.rint(ours)
        off = np.abs(ours - rounded).max()
        if off > 1e-3:
            sys.exit(f"FAIL dicom2nifti: its voxel centres are {off} voxels off ours\n{taff}\n{out.affine}")
        ri = rounded.astype(int)
        if (ri < 0).any() or any((ri[a] >= got.shape[a]).any() for a in range(3)):
            sys.exit(f"FAIL dicom2nifti: its grid is not ours\n{taff}\n{out.affine}")
        derr = np.abs(got[ri[0], ri[1], ri[2]] - theirs.reshape(-1)).max()
        if derr > 1e-3 * max(1.0, np.abs(theirs).max()) or theirs.size != got.size:
            sys.exit(f"FAIL dicom2nifti values: max difference {derr}")
        print(f"ok dicom2nifti: same voxels at the same places (max difference {derr:.2e})")


def make_compressed(out):
    """pydicom's real 5-slice CT series (CT5N), slices 0, 2, 4 as JPEG Lossless (gdcm, process 14
    SV1) and 1, 3 as RLE Lossless (pydicom)."""
    import gdcm
    import pydicom
    from pydicom.uid import RLELossless

    src = os.path.join(testdata(), "dicomdirtests", "98892001", "CT5N")
    for i, name in enumerate(sorted(os.listdir(src))):
        path, dst = os.path.join(src, name), os.path.join(out, name)
        if i % 2 == 0:
            r = gdcm.ImageReader()
            r.SetFileName(path)
            assert r.Read()
            ch = gdcm.ImageChangeTransferSyntax()
            ch.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
            ch.SetInput(r.GetImage())
            assert ch.Change()
            w = gdcm.ImageWriter()
            w.SetFileName(dst)
            w.SetFile(r.GetFile())
            w.SetImage(ch.GetOutput())
            assert w.Write()
        else:
            ds = pydicom.dcmread(path)
            ds.compress(RLELossless)
            ds.save_as(dst)
        ts = pydicom.dcmread(dst, stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert ts == ("1.2.840.10008.1.2.4.70" if i % 2 == 0 else RLELossless), ts


def make(kind, out):
    """A test series from CT_small.dcm's header with known pixel values."""
    import pydicom
    from pydicom.uid import generate_uid

    os.makedirs(out, exist_ok=True)
    if kind == "compressed":
        return make_compressed(out)
    tmpl = pydicom.dcmread(os.path.join(testdata(), "CT_small.dcm"))
    rng = np.random.default_rng(sum(map(ord, kind)))
    rows, cols, n = 12, 10, 7
    iop = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    spacing = [0.7, 0.6]
    if kind == "oblique":
        a, b = 0.5, 0.3  # rotate about z then about x
        ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
        rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
        rx = np.array([[1, 0, 0], [0, cb, -sb], [0, sb, cb]])
        m = rx @ rz
        iop = list(m[:, 0]) + list(m[:, 1])
    r, c = np.array(iop[:3]), np.array(iop[3:])
    nrm = np.cross(r, c)
    origin = np.array([-30.5, 12.25, 40.0])
    dz = 2.5
    ks = list(range(n))
    if kind == "missing":
        ks.remove(3)
    positions = [origin + k * dz * nrm for k in ks]
    if kind == "unequal":
        positions[4] = positions[4] + 0.6 * nrm
    if kind == "duplicate":
        positions[2] = positions[3]
    series = generate_uid()
    other = generate_uid()

    def slice_ds(i, pos, values, slope=1.0, inter=-1024.0):
        ds = tmpl.copy()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = other if (kind == "mixed" and i % 3 == 2) else series
        ds.SeriesDescription = "ffvol test " + kind
        ds.InstanceNumber = i + 1
        ds.Rows, ds.Columns = rows, cols
        ds.ImageOrientationPatient = [f"{x:.8f}" for x in iop]
        ds.ImagePositionPatient = [f"{x:.6f}" for x in pos]
        ds.PixelSpacing = spacing
        ds.RescaleSlope, ds.RescaleIntercept = slope, inter
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = values.astype("<i2").tobytes()
        if kind == "sizes" and i == 4:
            ds.Rows = rows - 2
            ds.PixelData = values[:-2].astype("<i2").tobytes()
        if kind == "lying" and i == 0:
            ds.Rows = 4000
        return ds

    if kind == "multiframe":
        # An enhanced-CT-like multi-frame file: per-frame positions (frames stored out of order)
        # and per-frame rescale; spacing and orientation shared.
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        ds = slice_ds(0, positions[0], np.zeros((rows, cols)))
        del ds.ImagePositionPatient
        del ds.ImageOrientationPatient
        del ds.PixelSpacing
        del ds.RescaleSlope
        del ds.RescaleIntercept
        order = list(range(n))
        random.Random(7).shuffle(order)
        ds.NumberOfFrames = n
        shared = Dataset()
        pm = Dataset()
        pm.PixelSpacing = spacing
        pm.SliceThickness = dz
        po = Dataset()
        po.ImageOrientationPatient = iop
        shared.PixelMeasuresSequence = Sequence([pm])
        shared.PlaneOrientationSequence = Sequence([po])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        per = []
        pix = []
        for f, k in enumerate(order):
            g = Dataset()
            pp = Dataset()
            pp.ImagePositionPatient = [f"{x:.6f}" for x in positions[k]]
            g.PlanePositionSequence = Sequence([pp])
            pv = Dataset()
            pv.RescaleSlope = 0.5 + 0.25 * k
            pv.RescaleIntercept = -1000 + 10 * k
            g.PixelValueTransformationSequence = Sequence([pv])
            per.append(g)
            pix.append(rng.integers(-200, 3000, size=(rows, cols)))
        ds.PerFrameFunctionalGroupsSequence = Sequence(per)
        ds.PixelData = np.stack(pix).astype("<i2").tobytes()
        ds.save_as(os.path.join(out, "enhanced.dcm"), enforce_file_format=True)
        return
    names = [f"IM{i:04d}" for i in range(len(positions))]
    if kind == "shuffled":
        random.Random(3).shuffle(names)
    for i, pos in enumerate(positions):
        values = rng.integers(-1000, 3000, size=(rows, cols))
        slope, inter = (1.0, -1024.0)
        if kind == "rescale":
            slope, inter = (0.5 + 0.1 * i, -1000.0 + 7 * i)  # per-file rescale
        ds = slice_ds(i, pos, values, slope, inter)
        ds.save_as(os.path.join(out, names[i]), enforce_file_format=True)
    if kind == "notdicom":
        with open(os.path.join(out, "notes.txt"), "w") as f:
            f.write("scanner notes\n")


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "testdata":
        print(testdata())
    elif len(sys.argv) >= 4 and len(sys.argv) % 2 == 0 and sys.argv[1] == "compare":
        for out, src in zip(sys.argv[2::2], sys.argv[3::2]):
            print(f"{out}:")
            compare(out, [src])
    elif len(sys.argv) >= 4 and sys.argv[1] == "make":
        for kind in sys.argv[3:]:
            make(kind, os.path.join(sys.argv[2], kind))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
