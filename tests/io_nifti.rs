//! NIfTI-1 volumes: write then read back (values, dims, affine), header fields as other tools read
//! them, and corrupt files (an error naming the file, never a panic).

use std::fs;
use std::io::Read;
use std::path::Path;

use ffvol::io::{read_nifti_f32, write_nifti_f32, write_nifti_u8};

mod common;
use common::scratch;

const DIMS: [usize; 3] = [7, 5, 3];

/// Anisotropic spacing (0.8, 1.5, 3.0) mm, rotated 20° about z, origin at (-91, 12.5, 40.25).
fn affine() -> [[f64; 4]; 4] {
    let (s, c) = 20f64.to_radians().sin_cos();
    let spacing = [0.8, 1.5, 3.0];
    [
        [c * spacing[0], -s * spacing[1], 0.0, -91.0],
        [s * spacing[0], c * spacing[1], 0.0, 12.5],
        [0.0, 0.0, spacing[2], 40.25],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// A value that says where it sits: x + 10 y + 100 z, plus a fraction.
fn voxel(x: usize, y: usize, z: usize) -> f32 {
    (x + 10 * y + 100 * z) as f32 + 0.25
}

fn volume() -> Vec<f32> {
    let [nx, ny, nz] = DIMS;
    let mut data = vec![0.0; nx * ny * nz];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                data[x + nx * (y + ny * z)] = voxel(x, y, z);
            }
        }
    }
    data
}

fn assert_affine_close(a: [[f64; 4]; 4], b: [[f64; 4]; 4]) {
    for i in 0..4 {
        for j in 0..4 {
            assert!((a[i][j] - b[i][j]).abs() < 1e-6, "affine[{i}][{j}]: {} vs {}", a[i][j], b[i][j]);
        }
    }
}

#[test]
fn f32_round_trip_gz_and_plain() {
    let dir = scratch("f32");
    for name in ["vol.nii.gz", "vol.nii"] {
        let path = dir.join(name);
        write_nifti_f32(&path, &volume(), DIMS, affine()).expect("write");
        let (data, dims, world_from_voxel) = read_nifti_f32(&path).expect("read back");
        assert_eq!(dims, DIMS);
        assert_eq!(data, volume(), "{name}: values in x-fastest order");
        assert_eq!(data[3 + 7 * (4 + 5 * 2)], 243.25);
        assert_affine_close(world_from_voxel, affine());
        let bytes = fs::read(&path).expect("read");
        if name.ends_with(".gz") {
            assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
        } else {
            assert_eq!(bytes.len(), 352 + 4 * 7 * 5 * 3);
        }
    }
    assert_eq!(fs::read_dir(&dir).expect("ls").count(), 2, "no temp files left");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn u8_round_trip() {
    let dir = scratch("u8");
    let path = dir.join("mask.nii.gz");
    let data: Vec<u8> = (0..7 * 5 * 3).map(|i| (i * 37 % 256) as u8).collect();
    write_nifti_u8(&path, &data, DIMS, affine()).expect("write");
    let (back, dims, world_from_voxel) = read_nifti_f32(&path).expect("read");
    assert_eq!(dims, DIMS);
    assert_eq!(back, data.iter().map(|&v| f32::from(v)).collect::<Vec<_>>());
    assert_affine_close(world_from_voxel, affine());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn header_fields_as_the_nifti_crate_reads_them() {
    let dir = scratch("header");
    let path = dir.join("vol.nii.gz");
    write_nifti_f32(&path, &volume(), DIMS, affine()).expect("write");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(&path).expect("open")).read_to_end(&mut raw).expect("gunzip");
    assert_eq!(raw.len(), 352 + 4 * 105);
    let h = nifti::NiftiHeader::from_reader(&raw[..]).expect("header parses");
    assert_eq!(h.sizeof_hdr, 348);
    assert_eq!(&h.magic, b"n+1\0");
    assert_eq!(h.dim, [3, 7, 5, 3, 1, 1, 1, 1]);
    assert_eq!((h.datatype, h.bitpix), (16, 32));
    assert_eq!(h.vox_offset, 352.0);
    assert_eq!((h.sform_code, h.qform_code), (1, 1));
    assert_eq!(h.pixdim[0], 1.0, "qfac: proper rotation");
    for (k, s) in [0.8f32, 1.5, 3.0].iter().enumerate() {
        assert!((h.pixdim[k + 1] - s).abs() < 1e-6, "pixdim[{}] = {}", k + 1, h.pixdim[k + 1]);
    }
    // Rotation by 20° about z: quaternion (cos 10°, 0, 0, sin 10°).
    assert!(h.quatern_b.abs() < 1e-6 && h.quatern_c.abs() < 1e-6);
    assert!((f64::from(h.quatern_d) - 10f64.to_radians().sin()).abs() < 1e-6, "quatern_d {}", h.quatern_d);
    assert_eq!([h.quatern_x, h.quatern_y, h.quatern_z], [-91.0, 12.5, 40.25]);
    assert_eq!(h.srow_z, [0.0, 0.0, 3.0, 40.25]);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn qform_is_used_when_sform_is_absent() {
    let dir = scratch("qform");
    let plain = dir.join("vol.nii");
    let mut flipped = affine();
    for row in flipped.iter_mut().take(3) {
        row[2] = -row[2]; // left-handed: qfac = -1
    }
    write_nifti_f32(&plain, &volume(), DIMS, flipped).expect("write");
    let mut bytes = fs::read(&plain).expect("read");
    bytes[254..256].copy_from_slice(&0i16.to_le_bytes()); // sform_code = 0
    let qonly = dir.join("qonly.nii");
    fs::write(&qonly, &bytes).expect("write");
    let (_, _, world_from_voxel) = read_nifti_f32(&qonly).expect("read");
    assert_affine_close(world_from_voxel, flipped);
    let _ = fs::remove_dir_all(&dir);
}

fn expect_error(path: &Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    match read_nifti_f32(path) {
        Ok((_, dims, _)) => panic!("{name}: expected an error, read a {dims:?} volume"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&name), "error does not name {name}: {msg}");
            msg
        }
    }
}

#[test]
fn corrupt_files_are_errors() {
    let dir = scratch("corrupt");
    let good_plain = dir.join("good.nii");
    write_nifti_f32(&good_plain, &volume(), DIMS, affine()).expect("write");
    let plain = fs::read(&good_plain).expect("read");
    let good_gz = dir.join("good.nii.gz");
    write_nifti_f32(&good_gz, &volume(), DIMS, affine()).expect("write");
    let gz = fs::read(&good_gz).expect("read");

    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        fs::write(&p, bytes).expect("write");
        p
    };
    let mut state = 0x2545F4914F6CDD1Du64;
    let random: Vec<u8> = (0..2000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    expect_error(&write("random.nii", &random));
    expect_error(&write("random.nii.gz", &random));
    expect_error(&write("empty.nii", b""));
    expect_error(&write("empty.nii.gz", b""));
    expect_error(&write("header-only.nii", &plain[..200]));
    expect_error(&write("short-data.nii", &plain[..plain.len() - 10]));
    expect_error(&write("cut.nii.gz", &gz[..gz.len() / 2]));
    let mut bad_magic = plain.clone();
    bad_magic[344..348].copy_from_slice(b"xyz\0");
    expect_error(&write("magic.nii", &bad_magic));
    let mut huge = plain.clone();
    for k in 1..4 {
        huge[40 + 2 * k..42 + 2 * k].copy_from_slice(&30000i16.to_le_bytes());
    }
    expect_error(&write("huge-dims.nii", &huge));
    let mut four_d = plain.clone();
    four_d[40..42].copy_from_slice(&4i16.to_le_bytes());
    four_d[48..50].copy_from_slice(&2i16.to_le_bytes());
    let p = write("four-d.nii", &four_d);
    let want = "expected a 3-D volume, found dimensions [7, 5, 3, 2]";
    assert_eq!(expect_error(&p), format!("{}: {want}", p.display()));
    // datatype and bitpix that disagree (the `nifti` crate panicked on these), an RGB datatype,
    // a vox_offset inside the header, a gzip stream with a bad CRC
    for (name, at, value, want) in [
        ("bitpix0.nii", 72, 0i16, "bitpix 0 does not match datatype float32 (32 bits)"),
        ("bitpix24.nii", 72, 24, "bitpix 24 does not match datatype float32 (32 bits)"),
        ("rgb.nii", 70, 128, "datatype 128 is not a real scalar type this reader takes"),
    ] {
        let mut b = plain.clone();
        b[at..at + 2].copy_from_slice(&value.to_le_bytes());
        let p = write(name, &b);
        assert_eq!(expect_error(&p), format!("{}: {want}", p.display()));
    }
    let mut inside = plain.clone();
    inside[108..112].copy_from_slice(&100f32.to_le_bytes());
    let p = write("offset-inside.nii", &inside);
    assert!(expect_error(&p).contains("vox_offset 100 is not a byte offset at or past the 348-byte header"));
    let mut crc = gz.clone();
    let at = crc.len() - 6;
    crc[at] ^= 0xff;
    let p = write("bad-crc.nii.gz", &crc);
    assert!(expect_error(&p).contains("corrupt gzip stream"), "{}", expect_error(&p));
    // Every truncation and a few hundred single-byte corruptions: errors or data, never a panic.
    let probe = dir.join("probe.nii");
    for cut in (0..plain.len()).step_by(7) {
        fs::write(&probe, &plain[..cut]).expect("write");
        let msg = read_nifti_f32(&probe).map(|_| ()).expect_err(&format!("cut at {cut}")).to_string();
        assert!(msg.starts_with(&format!("{}: ", probe.display())), "cut at {cut}: {msg}");
    }
    let mut corrupt = std::collections::BTreeMap::new();
    for k in 0..300 {
        let mut bytes = plain.clone();
        let at = (k * 7919) % 352;
        bytes[at] = bytes[at].wrapping_add(1 + (k as u8 % 200));
        fs::write(&probe, &bytes).expect("write");
        *corrupt.entry(read_nifti_f32(&probe).is_ok()).or_insert(0) += 1;
    }
    // the same 300 corruptions every run: 16 are refused, 284 still read (they touch fields the
    // reader does not use, or values only); 12 were refused before the header checks of 2026-12-01
    // (bitpix against datatype, vox_offset), which refuse 4 more
    assert_eq!(corrupt, [(false, 16), (true, 284)].into_iter().collect());
    let msg = expect_error(&dir.join("missing.nii.gz"));
    assert!(msg.contains("os error"), "{msg}");
    let _ = fs::remove_dir_all(&dir);
}

/// Files nibabel writes in the variants it can produce — data past a large `vox_offset` (a
/// header extension before it),
/// big-endian, scaled integers, every real datatype, compressed or not — read as nibabel reads
/// them (`get_fdata`, float32).
#[test]
fn nibabel_variants_read_as_nibabel_reads_them() {
    if !common::reader("nibabel", "NIfTI variants") {
        return;
    }
    let dir = scratch("nibabel-variants");
    let script = r#"
import sys, numpy as np, nibabel as nib
out = sys.argv[1]
rng = np.random.default_rng(3)
base = rng.uniform(-50, 200, size=(6, 5, 4))
variants = [
    ("offset.nii", np.float32, ">", 1024, False),
    ("offset.nii.gz", np.float32, "<", 4096, False),
    ("big-int16-scaled.nii", np.int16, ">", None, True),
    ("uint16-scaled.nii.gz", np.uint16, "<", None, True),
    ("uint8.nii", np.uint8, "<", None, False),
    ("float64.nii", np.float64, ">", None, False),
    ("int32.nii.gz", np.int32, "<", None, False),
    ("int8.nii", np.int8, "<", None, False),
]
for name, dtype, order, offset, scaled in variants:
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    # scaled: float data stored as integers, nibabel choosing scl_slope and scl_inter
    data = base if scaled or info is None else np.clip(np.round(base), info.min, info.max).astype(dtype)
    hdr = nib.Nifti1Header() if order == "<" else nib.Nifti1Header().as_byteswapped(">")
    img = nib.Nifti1Image(data, np.diag([1.5, 2.0, 2.5, 1.0]), hdr)
    img.set_data_dtype(np.dtype(dtype).newbyteorder(order))
    if offset is not None:
        # a comment extension (code 6) of about `offset` bytes: the data starts past it
        img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"ffvol test " * (offset // 11)))
    nib.save(img, f"{out}/{name}")
    back = nib.load(f"{out}/{name}")
    assert offset is None or back.dataobj.offset >= offset, (name, back.dataobj.offset)
    assert not scaled or back.dataobj.slope != 1.0, (name, back.dataobj.slope)
    np.asarray(back.get_fdata(), dtype=np.float32).flatten(order="F").tofile(f"{out}/{name}.f32")
    print(name, back.header.endianness, back.dataobj.offset, back.dataobj.slope, back.dataobj.inter)
"#;
    let o = std::process::Command::new("python3").arg("-c").arg(script).arg(&dir).output().expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    println!("{}", String::from_utf8_lossy(&o.stdout));
    let names = ["offset.nii", "offset.nii.gz", "big-int16-scaled.nii", "uint16-scaled.nii.gz"];
    for name in names.iter().chain(&["uint8.nii", "float64.nii", "int32.nii.gz", "int8.nii"]) {
        let (data, dims, m) = read_nifti_f32(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want: Vec<f32> = fs::read(dir.join(format!("{name}.f32")))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(dims, [6, 5, 4], "{name}");
        assert_eq!(data, want, "{name}: values differ from nibabel's");
        assert_eq!([m[0][0], m[1][1], m[2][2]], [1.5, 2.0, 2.5], "{name}: affine");
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_write_nothing() {
    let dir = scratch("args");
    let path = dir.join("v.nii.gz");
    let m = |r: ffvol::Result<()>| r.unwrap_err().to_string();
    let want = |what: &str| format!("invalid input: cannot write {}: {what}", path.display());
    assert_eq!(
        m(write_nifti_f32(&path, &[0.0; 10], DIMS, affine())),
        want("10 values for a [7, 5, 3] volume")
    );
    let dims = |d: &str| want(&format!("volume dimensions {d} must each be in 1..=32767"));
    assert_eq!(m(write_nifti_f32(&path, &[], [0, 1, 1], affine())), dims("[0, 1, 1]"));
    assert_eq!(m(write_nifti_u8(&path, &vec![0; 40000], [40000, 1, 1], affine())), dims("[40000, 1, 1]"));
    let mut nan = affine();
    nan[1][1] = f64::NAN;
    assert_eq!(m(write_nifti_f32(&path, &volume(), DIMS, nan)), want("the affine has a non-finite entry"));
    assert!(!path.exists());
    let _ = fs::remove_dir_all(&dir);
}
