//! Volume I/O for the volume and MRI jobs: .npy round trips and bad headers; NIfTI files of every
//! data type with scaled integers, qform-only and sform-only, corrupt headers; and the bundled
//! volume written back out and opened in nibabel (scripts/check_nifti.py, when nibabel is present).

use std::fs;
use std::path::Path;
use std::process::Command;

use ffvol::io::volume::load_volume;
use ffvol::io::{read_nifti_f32, read_npy, write_nifti_f32, write_npy, NpyData};

mod common;
use common::{check_with_nibabel, reader, scratch};

const BUNDLED: &str = "datasets/mni152_t1_32.nii.gz";

#[test]
fn npy_round_trips_every_type_and_order() {
    let dir = scratch("npy");
    let dims = [4usize, 3, 2];
    // x fastest: value at (x, y, z) = x + 10y + 100z.
    let xf: Vec<f64> = (0..24).map(|i| (i % 4 + 10 * ((i / 4) % 3) + 100 * (i / 12)) as f64).collect();
    let c_order = |v: &[f64]| -> Vec<f64> {
        let mut out = Vec::new();
        for x in 0..4 {
            for y in 0..3 {
                for z in 0..2 {
                    out.push(v[x + 4 * (y + 3 * z)]);
                }
            }
        }
        out
    };
    for fortran in [true, false] {
        let data = if fortran { xf.clone() } else { c_order(&xf) };
        let p = dir.join(format!("f64-{fortran}.npy"));
        write_npy(&p, &data, &dims, fortran).unwrap();
        let (v, d) = read_npy(&p).unwrap().real_volume(&p).unwrap();
        assert_eq!(d, dims);
        assert_eq!(v, xf.iter().map(|&x| x as f32).collect::<Vec<_>>(), "fortran_order={fortran}");

        let p = dir.join(format!("f32-{fortran}.npy"));
        write_npy(&p, &data.iter().map(|&x| x as f32 + 0.25).collect::<Vec<_>>(), &dims, fortran).unwrap();
        let (v, _) = read_npy(&p).unwrap().real_volume(&p).unwrap();
        assert_eq!(v[1 + 4 * (2 + 3)], 121.25);

        let p = dir.join(format!("u8-{fortran}.npy"));
        write_npy(&p, &data.iter().map(|&x| x as u8).collect::<Vec<_>>(), &dims, fortran).unwrap();
        let (v, _) = read_npy(&p).unwrap().real_volume(&p).unwrap();
        assert_eq!(v[3 + 4 * (1 + 3)], 113.0);

        let p = dir.join(format!("i16-{fortran}.npy"));
        write_npy(&p, &data.iter().map(|&x| -(x as i16)).collect::<Vec<_>>(), &dims, fortran).unwrap();
        let (v, _) = read_npy(&p).unwrap().real_volume(&p).unwrap();
        assert_eq!(v[2 + 4 * 2], -22.0);

        let p = dir.join(format!("c64-{fortran}.npy"));
        write_npy(&p, &data.iter().map(|&x| [x as f32, -0.5 * x as f32]).collect::<Vec<_>>(), &dims, fortran)
            .unwrap();
        let arr = read_npy(&p).unwrap();
        assert!(matches!(arr.data, NpyData::C64(_)));
        let (v, _) = arr.complex_volume(&p).unwrap();
        assert_eq!(v[1 + 4 * (1 + 3)], [111.0, -55.5]);
        let err = arr.real_volume(&p).unwrap_err().to_string();
        assert!(err.contains("c64-") && err.contains("complex"), "{err}");
    }
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn npy_files_written_by_numpy_read_back() {
    if !reader("numpy", "reading numpy-written .npy files") {
        return;
    }
    let dir = scratch("numpy");
    let script = format!(
        "import numpy as np\n\
         a = np.arange(24, dtype=np.float64).reshape(2, 3, 4) * 1.5\n\
         np.save(r'{0}/c.npy', a.astype(np.float32))\n\
         np.save(r'{0}/f.npy', np.asfortranarray(a))\n\
         np.save(r'{0}/b.npy', a > 10)\n\
         np.save(r'{0}/k.npy', (a + 1j * a).astype(np.complex64))\n\
         np.save(r'{0}/be.npy', a.astype('>i2'))\n",
        dir.display()
    );
    let ok = Command::new("python3").arg("-c").arg(&script).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "numpy failed to write the test arrays");
    // a[x, y, z] = 1.5·(12x + 4y + z) with dims (2, 3, 4); ours is x fastest.
    let at = |v: &[f32], x: usize, y: usize, z: usize| v[x + 2 * (y + 3 * z)];
    for name in ["c.npy", "f.npy", "be.npy"] {
        let p = dir.join(name);
        let (v, dims) = read_npy(&p).unwrap().real_volume(&p).unwrap();
        assert_eq!(dims, [2, 3, 4]);
        // 1.5·23 = 34.5; the int16 copy truncates it to 34.
        assert_eq!(at(&v, 1, 2, 3), if name == "be.npy" { 34.0 } else { 34.5 }, "{name}");
        assert_eq!(at(&v, 0, 1, 2), 9.0, "{name}");
    }
    let p = dir.join("b.npy");
    let (v, _) = read_npy(&p).unwrap().real_volume(&p).unwrap();
    assert_eq!((at(&v, 0, 1, 2), at(&v, 1, 0, 0)), (0.0, 1.0)); // 1.5·6 = 9 ≤ 10, 1.5·12 = 18 > 10
    let p = dir.join("k.npy");
    let (v, _) = read_npy(&p).unwrap().complex_volume(&p).unwrap();
    assert_eq!(v[1 + 2 * (1 + 3 * 2)], [1.5 * 18.0, 1.5 * 18.0]);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_npy_files_are_errors_naming_the_file() {
    let dir = scratch("badnpy");
    let good = ffvol::io::npy::npy_bytes(&[1.0f32; 8], &[2, 2, 2], false).unwrap();
    let header_end = 10 + u16::from_le_bytes([good[8], good[9]]) as usize;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.npy", vec![], "magic"),
        ("magic.npy", b"NUMPY\x01\x00".to_vec(), "magic"),
        ("truncated-header.npy", good[..40].to_vec(), "truncated"),
        ("short-data.npy", good[..good.len() - 3].to_vec(), "bytes of data"),
        ("dtype.npy", replace(&good, b"<f4", b"<U4"), "not supported"),
        ("shape.npy", replace(&good[..header_end], b"(2, 2, 2)", b"(2, x, 2)"), "shape"),
        ("order.npy", replace(&good[..header_end], b"False", b"Maybe"), "fortran_order"),
    ];
    for (name, bytes, needle) in cases {
        let p = dir.join(name);
        fs::write(&p, &bytes).unwrap();
        let err = read_npy(&p).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(needle), "{name}: {err}");
    }
    // A 2-D array is not a volume.
    let p = dir.join("flat.npy");
    write_npy(&p, &[0.0f32; 6], &[2, 3], false).unwrap();
    let err = load_volume(&p).unwrap_err().to_string();
    assert!(err.contains("flat.npy") && err.contains("3-D"), "{err}");
    // NaN voxels.
    let p = dir.join("nan.npy");
    let mut v = vec![0.5f32; 27];
    v[13] = f32::NAN;
    write_npy(&p, &v, &[3, 3, 3], true).unwrap();
    let err = load_volume(&p).unwrap_err().to_string();
    assert!(err.contains("nan.npy") && err.contains("(1, 1, 1)"), "{err}");
    fs::remove_dir_all(&dir).ok();
}

/// `bytes` with the first `from` replaced by `to`.
fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).expect("pattern present");
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

/// An uncompressed NIfTI of `dims` written by ffvol, then patched: datatype, bitpix, scaling and
/// the raw voxel bytes.
#[allow(clippy::too_many_arguments)]
fn patched_nifti(
    path: &Path,
    dims: [usize; 3],
    affine: [[f64; 4]; 4],
    datatype: i16,
    bitpix: i16,
    slope: f32,
    inter: f32,
    raw: &[u8],
) {
    let n: usize = dims.iter().product();
    write_nifti_f32(path, &vec![0.0; n], dims, affine).unwrap();
    let mut bytes = fs::read(path).unwrap();
    bytes.truncate(352);
    bytes[70..72].copy_from_slice(&datatype.to_le_bytes());
    bytes[72..74].copy_from_slice(&bitpix.to_le_bytes());
    bytes[112..116].copy_from_slice(&slope.to_le_bytes());
    bytes[116..120].copy_from_slice(&inter.to_le_bytes());
    bytes.extend_from_slice(raw);
    fs::write(path, bytes).unwrap();
}

fn affine() -> [[f64; 4]; 4] {
    [[0.0, -1.5, 0.0, 30.0], [2.0, 0.0, 0.0, -12.0], [0.0, 0.0, 2.5, 7.5], [0.0, 0.0, 0.0, 1.0]]
}

#[test]
fn nifti_data_types_and_scaling() {
    let dir = scratch("types");
    let dims = [3, 2, 2];
    let ints: Vec<i64> = (0..12).map(|i| i * 7 - 20).collect();
    let cases: Vec<(&str, i16, i16, Vec<u8>)> = vec![
        ("u8", 2, 8, ints.iter().map(|&v| (v + 20) as u8).collect()),
        ("i16", 4, 16, ints.iter().flat_map(|&v| (v as i16).to_le_bytes()).collect()),
        ("i32", 8, 32, ints.iter().flat_map(|&v| (v as i32 * 1000).to_le_bytes()).collect()),
        ("f32", 16, 32, ints.iter().flat_map(|&v| (v as f32 + 0.5).to_le_bytes()).collect()),
        ("f64", 64, 64, ints.iter().flat_map(|&v| (v as f64 + 0.25).to_le_bytes()).collect()),
    ];
    for (name, dt, bp, raw) in cases {
        for (slope, inter) in [(1.0f32, 0.0f32), (0.5, -3.0)] {
            let p = dir.join(format!("{name}-{slope}.nii"));
            patched_nifti(&p, dims, affine(), dt, bp, slope, inter, &raw);
            let (v, d, a) = read_nifti_f32(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(d, dims);
            assert_eq!(a, affine());
            for (i, &x) in v.iter().enumerate() {
                let stored = match name {
                    "u8" => (ints[i] + 20) as f64,
                    "i32" => (ints[i] * 1000) as f64,
                    "f32" => ints[i] as f64 + 0.5,
                    "f64" => ints[i] as f64 + 0.25,
                    _ => ints[i] as f64,
                };
                let want = stored * slope as f64 + inter as f64;
                assert!(
                    (x as f64 - want).abs() < 1e-6 * want.abs().max(1.0),
                    "{name} slope {slope}: voxel {i} = {x}, want {want}"
                );
            }
        }
    }
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn sform_only_and_qform_only() {
    let dir = scratch("forms");
    let dims = [2, 2, 2];
    let raw: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    // sform only: qform_code 0 and a nonsense quaternion that must be ignored.
    let p = dir.join("sform.nii");
    patched_nifti(&p, dims, affine(), 16, 32, 1.0, 0.0, &raw);
    let mut b = fs::read(&p).unwrap();
    b[252..254].copy_from_slice(&0i16.to_le_bytes());
    b[256..260].copy_from_slice(&0.9f32.to_le_bytes());
    fs::write(&p, &b).unwrap();
    assert_eq!(read_nifti_f32(&p).unwrap().2, affine());
    // qform only: sform_code 0 and garbage srows.
    let p = dir.join("qform.nii");
    patched_nifti(&p, dims, affine(), 16, 32, 1.0, 0.0, &raw);
    let mut b = fs::read(&p).unwrap();
    b[254..256].copy_from_slice(&0i16.to_le_bytes());
    b[280..284].copy_from_slice(&99f32.to_le_bytes());
    fs::write(&p, &b).unwrap();
    let a = read_nifti_f32(&p).unwrap().2;
    for (i, row) in a.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            assert!((v - affine()[i][j]).abs() < 1e-6, "qform [{i}][{j}]: {} vs {}", a[i][j], affine()[i][j]);
        }
    }
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn corrupt_nifti_headers_are_errors() {
    let dir = scratch("corrupt");
    let dims = [2, 2, 2];
    let raw: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let base = dir.join("base.nii");
    patched_nifti(&base, dims, affine(), 16, 32, 1.0, 0.0, &raw);
    let good = fs::read(&base).unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut b = good.clone();
    b[70..72].copy_from_slice(&999i16.to_le_bytes()); // unknown datatype
    cases.push(("datatype.nii", b));
    let mut b = good.clone();
    b[42..44].copy_from_slice(&(-4i16).to_le_bytes()); // negative dimension
    cases.push(("negdim.nii", b));
    let mut b = good.clone();
    b[42..44].copy_from_slice(&30000i16.to_le_bytes()); // far more voxels than bytes
    cases.push(("short.nii", b));
    let mut b = good.clone();
    b[0..4].copy_from_slice(&7i32.to_le_bytes()); // sizeof_hdr
    cases.push(("sizeof.nii", b));
    cases.push(("cut.nii", good[..200].to_vec()));
    let mut b = good.clone();
    b[344..348].copy_from_slice(b"abc\0"); // magic
    cases.push(("magic.nii", b));
    for (name, bytes) in cases {
        let p = dir.join(name);
        fs::write(&p, &bytes).unwrap();
        // The `nifti` crate itself does not check sizeof_hdr; load_volume does.
        if name != "sizeof.nii" {
            let err = match read_nifti_f32(&p) {
                Ok((v, d, _)) => panic!("{name}: read as {d:?} with {} values", v.len()),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(name), "{name}: {err}");
        }
        let err = load_volume(&p).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
    }
    // A NaN voxel in a valid file.
    let mut raw = raw.clone();
    raw[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    let p = dir.join("nan.nii");
    patched_nifti(&p, dims, affine(), 16, 32, 1.0, 0.0, &raw);
    let err = load_volume(&p).unwrap_err().to_string();
    assert!(err.contains("nan.nii") && err.contains("(1, 0, 0)"), "{err}");
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn bundled_volume_written_back_opens_in_nibabel_unchanged() {
    let dir = scratch("nibabel");
    let src = Path::new(BUNDLED);
    let v = load_volume(src).unwrap();
    assert_eq!(v.dims, [32, 32, 32]);
    assert_eq!(
        (v.world_from_voxel[0][0], v.world_from_voxel[1][1], v.world_from_voxel[2][2]),
        (6.0, 6.0, 6.0)
    );
    for name in ["copy.nii.gz", "copy.nii"] {
        let out = dir.join(name);
        write_nifti_f32(&out, &v.data, v.dims, v.world_from_voxel).unwrap();
        let (back, dims, a) = read_nifti_f32(&out).unwrap();
        assert_eq!((back, dims, a), (v.data.clone(), v.dims, v.world_from_voxel));
        check_with_nibabel(&out, src, &[]);
    }
    fs::remove_dir_all(&dir).ok();
}
