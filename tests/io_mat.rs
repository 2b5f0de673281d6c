//! MATLAB v5 `.mat` volumes in (src/io/mat.rs), against scipy.io: small arrays that scipy writes
//! here (compressed and not, float32, float64, uint8, int16; axis order checked against the same
//! array as .npy), files it refuses (several 3-D arrays, none, complex), `simulate ct --phantom`
//! on a .mat phantom (truth and projections the same as from the same array as .npy), and TIGRE's
//! 256³ head phantom when datasets/head256.mat is there (scripts/fetch-head256.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

use ffvol::io::volume::load_volume;

mod common;
use common::{reader_from, scratch};

fn python(code: &str, args: &[&Path]) -> String {
    let o = Command::new("python3").arg("-c").arg(code).args(args).output().expect("run python3");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "python3: {text}");
    text
}

/// Arrays with distinct values along every axis, as .mat (several flavours) and as .npy.
const WRITE: &str = r#"
import sys, numpy as np, scipy.io as sio
d = sys.argv[1]
x, y, z = np.meshgrid(np.arange(5), np.arange(4), np.arange(3), indexing="ij")
a = (x + 10 * y + 100 * z).astype(np.float64) + 0.25
np.save(d + "/a.npy", a)
sio.savemat(d + "/f32z.mat", {"img": a.astype(np.float32)}, do_compression=True)
sio.savemat(d + "/f64.mat", {"vol": a}, do_compression=False)
sio.savemat(d + "/u8z.mat", {"v": np.floor(a).astype(np.uint8), "label": "text", "m": np.eye(3)}, do_compression=True)
sio.savemat(d + "/i16.mat", {"v": -np.floor(a).astype(np.int16)})
sio.savemat(d + "/two.mat", {"a": a, "b": a})
sio.savemat(d + "/flat.mat", {"m": np.eye(3)})
sio.savemat(d + "/cplx.mat", {"c": a * (1 + 1j)})
"#;

#[test]
fn arrays_written_by_scipy_read_in_matlab_axis_order() {
    if !(reader_from("scipy", "scipy numpy", "reading .mat files") && reader_from("numpy", "numpy", "same")) {
        return;
    }
    let dir = scratch("mat");
    python(WRITE, &[&dir]);
    let npy = load_volume(&dir.join("a.npy")).unwrap();
    assert_eq!(npy.dims, [5, 4, 3]);
    // a[x, y, z] = x + 10y + 100z + 0.25, x fastest.
    assert_eq!(npy.data[1 + 5 * (2 + 4 * 1)], 121.25);
    for name in ["f32z.mat", "f64.mat"] {
        let v = load_volume(&dir.join(name)).unwrap();
        assert_eq!(v.dims, [5, 4, 3], "{name}");
        assert_eq!(v.data, npy.data, "{name}");
        assert_eq!(v.world_from_voxel, ffvol::io::volume::identity_affine());
    }
    let floor: Vec<f32> = npy.data.iter().map(|x| x.floor()).collect();
    assert_eq!(load_volume(&dir.join("u8z.mat")).unwrap().data, floor);
    assert_eq!(load_volume(&dir.join("i16.mat")).unwrap().data, floor.iter().map(|x| -x).collect::<Vec<_>>());
    let e = load_volume(&dir.join("two.mat")).unwrap_err().to_string();
    assert!(e.contains("several 3-D arrays (a (double 5×4×3), b (double 5×4×3))"), "{e}");
    let e = load_volume(&dir.join("flat.mat")).unwrap_err().to_string();
    assert!(e.contains("no real numeric 3-D array among the variables: m (double 3×3)"), "{e}");
    let e = load_volume(&dir.join("cplx.mat")).unwrap_err().to_string();
    assert!(e.contains("c (complex double 5×4×3)"), "{e}");
    // Truncated: the variable claims more bytes than the file has.
    let bytes = std::fs::read(dir.join("f64.mat")).unwrap();
    std::fs::write(dir.join("cut.mat"), &bytes[..bytes.len() - 40]).unwrap();
    let e = load_volume(&dir.join("cut.mat")).unwrap_err().to_string();
    assert!(e.contains("cut.mat") && e.contains("claims"), "{e}");
}

#[test]
fn simulate_ct_projects_a_mat_phantom_like_the_same_npy() {
    if !(reader_from("scipy", "scipy numpy", "simulate ct on a .mat phantom")
        && reader_from("numpy", "numpy", "same"))
    {
        return;
    }
    let dir = scratch("sim");
    python(WRITE, &[&dir]);
    let geom = dir.join("cone.toml");
    std::fs::write(
        &geom,
        "beam = \"cone\"\ndims = 3\ndso = 40.0\ndsd = 70.0\n[detector]\npixels = [12, 9]\npixel_size = [1.0, 1.0]\n\
         [volume]\nvoxels = [5, 4, 3]\nvoxel_size = [1.0, 1.0, 1.0]\n[angles]\ncount = 8\n",
    )
    .unwrap();
    let run = |phantom: &str, out: &str| -> (Vec<f32>, Vec<f32>) {
        let o = Command::new(common::ffvol_exe())
            .args(["simulate", "ct", "--phantom", dir.join(phantom).to_str().unwrap()])
            .args(["--geometry", geom.to_str().unwrap(), "--output", dir.join(out).to_str().unwrap()])
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "{text}");
        let (p, shape) = ffvol::io::npy::read_npy_f32(&dir.join(out).join("projections.npy")).unwrap();
        assert_eq!(shape, vec![8, 9, 12]);
        let (t, dims, _) = ffvol::io::read_nifti_f32(&dir.join(out).join("truth.nii.gz")).unwrap();
        assert_eq!(dims, [5, 4, 3]);
        (p, t)
    };
    let (p_mat, t_mat) = run("f32z.mat", "from_mat");
    let (p_npy, t_npy) = run("a.npy", "from_npy");
    assert_eq!(t_mat, t_npy);
    assert_eq!(p_mat, p_npy);
    assert!(p_mat.iter().cloned().fold(0.0f32, f32::max) > 100.0);
    // A phantom off the grid names both sizes.
    std::fs::write(&geom, std::fs::read_to_string(&geom).unwrap().replace("[5, 4, 3]", "[5, 4, 4]")).unwrap();
    let o = Command::new(common::ffvol_exe())
        .args(["simulate", "ct", "--phantom", dir.join("f32z.mat").to_str().unwrap()])
        .args(["--geometry", geom.to_str().unwrap(), "--output", dir.join("bad").to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && text.contains("the phantom is [5, 4, 3] voxels but the geometry's grid is [5, 4, 4]"),
        "{text}"
    );
}

/// datasets/head256.mat, or ../shared/data/head256.mat beside this checkout.
fn head256() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [root.join("datasets/head256.mat"), root.join("../shared/data/head256.mat")]
        .into_iter()
        .find(|p| p.is_file())
}

#[test]
fn tigre_head_phantom_reads_as_scipy_does() {
    let Some(head) = head256() else {
        println!("skipped: no datasets/head256.mat (scripts/fetch-head256.sh)");
        return;
    };
    let v = load_volume(&head).unwrap();
    assert_eq!(v.dims, [256, 256, 256]);
    if !reader_from("scipy", "scipy numpy", "the head phantom's axis order") {
        return;
    }
    // scipy's img[x, y, z] at a few voxels off the axes' symmetry, and the sum.
    let code = r#"
import sys, scipy.io as sio
a = sio.loadmat(sys.argv[1])["img"]
for x, y, z in [(128, 100, 50), (100, 128, 50), (60, 140, 200), (140, 60, 30), (128, 128, 128)]:
    print(repr(float(a[x, y, z])))
print(repr(float(a.astype("float64").sum())))
"#;
    let out = python(code, &[&head]);
    let want: Vec<f64> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
    let at = |x: usize, y: usize, z: usize| v.data[x + 256 * (y + 256 * z)] as f64;
    let got = [at(128, 100, 50), at(100, 128, 50), at(60, 140, 200), at(140, 60, 30), at(128, 128, 128)];
    assert_eq!(&got[..], &want[..5], "voxels");
    assert_ne!(got[0], got[1], "the chosen voxels tell x from y");
    let sum: f64 = v.data.iter().map(|&x| x as f64).sum();
    assert!((sum - want[5]).abs() < 1e-6 * want[5], "sum {sum} vs {}", want[5]);
}
