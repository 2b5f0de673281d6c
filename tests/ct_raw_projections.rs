//! Raw projections in: a simulated scan with a shifted rotation axis, turned into detector counts
//! with per-pixel dark and flat patterns (I = flat·exp(−p) + dark; a flat frame is flat + dark), written as an HDF5 Data
//! Exchange file (by h5py, the independent writer) and as .npy stacks, read back to line
//! integrals; the centre of rotation recovered; errors on bad files. And the real tooth scan.

use ffvol::io::ct::load_ct_input;
use ffvol::io::npy::{write_npy, write_npy_f32};
use ffvol::io::raw_projections::{Center, ProjectionInput};
use ffvol::operator::ct_geometry::Scan;
use ffvol::recon::{self, center};
use ffvol::sim::ct::{PhantomSource, SimulateOptions};
use ffvol::train::image_metrics::psnr_ct;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{ffvol_exe, reader, scratch};

const COLS: usize = 96;
const VIEWS: usize = 90;
/// The true axis: 3.3 px left of the detector's middle.
const SHIFT_PX: f64 = 3.3;

fn geometry_toml(offset: f64) -> String {
    format!(
        "beam = \"parallel\"\ndims = 2\n[detector]\npixels = [{COLS}]\npixel_size = [1.0]\noffset = [{offset}]\n\
         [volume]\nvoxels = [64, 64]\nvoxel_size = [1.25, 1.25]\n[angles]\ncount = {VIEWS}\nspan = 180.0\nunit = \"degrees\"\n"
    )
}

/// The shifted scan and its line integrals.
fn simulated() -> (Scan, Vec<f32>) {
    let scan = common::scan(&geometry_toml(SHIFT_PX));
    let sim = ffvol::sim::ct::simulate(
        &scan,
        &SimulateOptions { phantom: PhantomSource::Shepp2d(None), poisson_i0: None, seed: 0, supersample: 2 },
    )
    .unwrap();
    // as if the phantom's unit density were 0.04 per mm: line integrals up to ~2, as in a real scan
    (scan, sim.projections.iter().map(|x| 0.04 * x).collect())
}

fn true_center() -> f64 {
    (COLS as f64 - 1.0) / 2.0 - SHIFT_PX
}

fn dark(col: usize) -> f64 {
    60.0 + 7.0 * (col % 5) as f64
}
fn flat(row: usize, col: usize) -> f64 {
    30000.0 + 4000.0 * ((col as f64) * 0.21 + row as f64).sin()
}

/// Counts of a 2-row stack: row 0 sees the scan at half attenuation, row 1 at full. Dark frames
/// carry one hot frame and flat frames one dim frame, which the median ignores.
fn counts(p: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut data = vec![0.0f32; VIEWS * 2 * COLS];
    for v in 0..VIEWS {
        for r in 0..2 {
            for c in 0..COLS {
                let pr = p[v * COLS + c] as f64 * if r == 0 { 0.5 } else { 1.0 };
                data[(v * 2 + r) * COLS + c] = (flat(r, c) * (-pr).exp() + dark(c)).round() as f32;
            }
        }
    }
    let frames = |n: usize, odd: usize, f: &dyn Fn(usize, usize) -> f64, bad: f64| -> Vec<f32> {
        (0..n * 2 * COLS)
            .map(|i| {
                let (k, r, c) = (i / (2 * COLS), (i / COLS) % 2, i % COLS);
                (if k == odd { f(r, c) * bad } else { f(r, c) }) as f32
            })
            .collect()
    };
    let darks = frames(5, 2, &|_, c| dark(c), 40.0);
    // a flat frame sees the beam and the dark current
    let flats = frames(3, 0, &|r, c| flat(r, c) + dark(c), 0.5);
    (data, darks, flats)
}

/// Writes a Data Exchange file with h5py: uint16 data, darks and flats, theta in degrees.
fn write_h5(dir: &Path, p: &[f32], extra: &str) -> PathBuf {
    let (data, darks, flats) = counts(p);
    let u16s = |v: &[f32]| v.iter().map(|&x| x as u16).collect::<Vec<u16>>();
    write_npy(&dir.join("d.npy"), &u16s(&data), &[VIEWS, 2, COLS], false).unwrap();
    write_npy(&dir.join("k.npy"), &u16s(&darks), &[5, 2, COLS], false).unwrap();
    write_npy(&dir.join("w.npy"), &u16s(&flats), &[3, 2, COLS], false).unwrap();
    let h5 = dir.join("scan.h5");
    let script = format!(
        "import h5py, numpy as np\nd = '{dir}/'\nwith h5py.File(d + 'scan.h5', 'w') as f:\n    g = f.create_group('exchange')\n    \
         g.create_dataset('data', data=np.load(d + 'd.npy'), chunks=(16, 1, {COLS}), compression='gzip')\n    \
         g.create_dataset('data_dark', data=np.load(d + 'k.npy'))\n    g.create_dataset('data_white', data=np.load(d + 'w.npy'))\n    \
         g.create_dataset('theta', data=np.arange({VIEWS}) * 180.0 / {VIEWS})\n{extra}",
        dir = dir.display()
    );
    let o = Command::new("python3").arg("-c").arg(&script).output().expect("python3");
    assert!(o.status.success(), "h5py: {}", String::from_utf8_lossy(&o.stderr));
    h5
}

/// Asserts that recovered line integrals match `p` to what rounding the counts allows:
/// |Δp| ≤ 0.6 counts / (flat · e^−p) (the dimmest flat pixel is 26 000 counts), plus f32 rounding.
fn assert_recovered(got: &[f32], p: &[f32], what: &str) {
    assert_eq!(got.len(), p.len());
    for (i, (&g, &t)) in got.iter().zip(p).enumerate() {
        let tol = 1e-4 + 0.6 / (26000.0 * (-(t as f64)).exp());
        assert!(((g - t) as f64).abs() <= tol, "{what}: value {i} is {g}, expected {t} (± {tol:.1e})");
    }
}

#[test]
fn data_exchange_hdf5_gives_line_integrals_and_the_centre() {
    if !reader("h5py", "the Data Exchange reader") {
        return;
    }
    let dir = scratch("raw-h5");
    let (scan, p) = simulated();
    let h5 = write_h5(&dir, &p, "");
    // row 1 (full attenuation): a 2D scan from the file's theta, centre estimated
    let input = ProjectionInput { rows: Some([1, 2]), ..Default::default() };
    let got = load_ct_input(&h5, &h5, &input).unwrap();
    assert_eq!((got.scan.dims, got.scan.det_pixels, got.scan.n_views()), (2, [COLS, 1], VIEWS));
    for (a, b) in got.scan.angles.iter().zip(&scan.angles) {
        assert!((a - b).abs() < 1e-12);
    }
    // counts rounded to integers: |Δp| ≤ 0.5 / (flat · e^−p) ≈ 1e-4 where the phantom is densest
    assert_recovered(&got.projections, &p, "row 1 of the HDF5 file");
    let notes = got.notes.join("\n");
    assert!(
        notes.contains("median of 5 dark and 3 flat frames") && notes.contains("floored at 1e-4 in 0"),
        "{notes}"
    );
    let c = center::center_of(&got.scan);
    assert!((c - true_center()).abs() <= 0.5, "centre {c}, true {}: {notes}", true_center());
    // row 0 at half attenuation, and the centre given: FBP of it is half the clean FBP
    let input = ProjectionInput {
        rows: Some([0, 1]),
        center: Some(Center::Column(true_center())),
        ..Default::default()
    };
    let half = load_ct_input(&h5, &h5, &input).unwrap();
    assert!((half.scan.det_offset[0] - SHIFT_PX).abs() < 1e-9);
    let half_p: Vec<f32> = p.iter().map(|x| 0.5 * x).collect();
    assert_recovered(&half.projections, &half_p, "row 0 of the HDF5 file");
    // the whole stack: a 3D parallel scan of 2 rows
    let both = load_ct_input(
        &h5,
        &h5,
        &ProjectionInput { center: Some(Center::Column(40.0)), ..Default::default() },
    )
    .unwrap();
    assert_eq!((both.scan.dims, both.scan.det_pixels), (3, [COLS, 2]));
    // a geometry TOML with the file: its angles are checked against theta
    let g = dir.join("g.toml");
    std::fs::write(&g, geometry_toml(0.0)).unwrap();
    let with_toml =
        load_ct_input(&h5, &g, &ProjectionInput { rows: Some([1, 2]), ..Default::default() }).unwrap();
    assert!((center::center_of(&with_toml.scan) - true_center()).abs() <= 0.5);
    std::fs::write(&g, geometry_toml(0.0).replace("span = 180.0", "span = 170.0")).unwrap();
    let e = load_ct_input(&h5, &g, &ProjectionInput { rows: Some([1, 2]), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("g.toml") && e.contains("angle 1") && e.contains("/exchange/theta"), "{e}");
}

#[test]
fn npy_stack_with_darks_flats_and_a_geometry() {
    let dir = scratch("raw-npy");
    let (_, p) = simulated();
    let (data, darks, flats) = counts(&p);
    // row 1 only, as 2-D arrays: [views, cols] data, [frames, cols] darks and flats (float32)
    let row1 = |v: &[f32], n: usize| -> Vec<f32> {
        (0..n).flat_map(|k| v[(k * 2 + 1) * COLS..(k * 2 + 2) * COLS].to_vec()).collect()
    };
    write_npy_f32(&dir.join("data.npy"), &row1(&data, VIEWS), &[VIEWS, COLS]).unwrap();
    write_npy_f32(&dir.join("dark.npy"), &row1(&darks, 5), &[5, COLS]).unwrap();
    write_npy_f32(&dir.join("flat.npy"), &row1(&flats, 3), &[3, COLS]).unwrap();
    let g = dir.join("g.toml");
    std::fs::write(&g, geometry_toml(SHIFT_PX)).unwrap();
    let mut input = ProjectionInput {
        dark: Some(dir.join("dark.npy")),
        flat: Some(dir.join("flat.npy")),
        ..Default::default()
    };
    let got = load_ct_input(&dir.join("data.npy"), &g, &input).unwrap();
    assert_recovered(&got.projections, &p, "the .npy stack");
    assert!(
        (got.scan.det_offset[0] - SHIFT_PX).abs() < 1e-12,
        "the geometry's offset is kept without --center"
    );
    // estimated from a geometry that says the axis is centred
    std::fs::write(&g, geometry_toml(0.0)).unwrap();
    input.center = Some(Center::AUTO);
    let est = load_ct_input(&dir.join("data.npy"), &g, &input).unwrap();
    let c = center::center_of(&est.scan);
    assert!((c - true_center()).abs() <= 0.5, "centre {c}, true {}", true_center());
    // and FBP with the estimated centre matches FBP with the true one
    let (truth_scan, _) = simulated();
    let reference = recon::fbp(&truth_scan, &p);
    let psnr = psnr_ct(&recon::fbp(&est.scan, &est.projections), &reference);
    let wrong = psnr_ct(&recon::fbp(&common::scan(&geometry_toml(0.0)), &p), &reference);
    assert!(
        psnr > 35.0 && psnr > wrong + 8.0,
        "FBP with the estimated centre {psnr:.1} dB, unshifted {wrong:.1} dB"
    );
    // a subset of evenly spaced views
    input.views = Some(30);
    let sub = load_ct_input(&dir.join("data.npy"), &g, &input).unwrap();
    assert_eq!(sub.scan.n_views(), 30);
    assert!((sub.scan.angles[1] - 3.0 * std::f64::consts::PI / 90.0).abs() < 1e-12);
}

#[test]
fn centre_from_line_integrals_on_an_uneven_angle_list() {
    // 37 views at irregular angles over [0, π): the centroid fit needs no opposing views
    let (s0, _) = simulated();
    let mut scan = s0.clone();
    scan.angles = (0..37).map(|k| (k as f64 * 4.9 + 1.7 * ((k * 7) % 5) as f64).to_radians()).collect();
    let sim = ffvol::sim::ct::simulate(
        &scan,
        &SimulateOptions {
            phantom: PhantomSource::Shepp2d(Some(3)),
            poisson_i0: None,
            seed: 0,
            supersample: 2,
        },
    )
    .unwrap();
    let p: Vec<f32> = sim.projections.iter().map(|x| 0.04 * x).collect();
    let est = center::estimate_center(&scan, &p).unwrap();
    assert!((est.center - true_center()).abs() <= 0.5, "{}", est.describe(COLS));
    assert!(!est.refine_ran, "a consistent fit needs no refinement: {}", est.describe(COLS));
    // FBP of the uneven list uses per-view weights that sum to π
    let w = recon::view_weights(&scan);
    assert!((w.iter().sum::<f64>() - std::f64::consts::PI).abs() < 1e-9);
    assert!(w.iter().any(|&x| (x - w[0]).abs() > 1e-3), "uneven angles get uneven weights");
    // a fan beam has no centroid sinusoid
    let fan = common::scan(
        "beam = \"fan\"\ndims = 2\ndso = 500.0\ndsd = 800.0\n[detector]\npixels = [64]\npixel_size = [2.0]\n\
         [volume]\nvoxels = [32, 32]\nvoxel_size = [2.0, 2.0]\n[angles]\ncount = 10\n",
    );
    let e = center::estimate_center(&fan, &vec![1.0; 640]).unwrap_err();
    assert!(e.contains("parallel"), "{e}");
}

#[test]
fn bad_raw_files_are_clear_errors() {
    let dir = scratch("raw-errors");
    let (_, p) = simulated();
    let g = dir.join("g.toml");
    std::fs::write(&g, geometry_toml(0.0)).unwrap();
    write_npy_f32(&dir.join("data.npy"), &vec![1000.0; VIEWS * COLS], &[VIEWS, COLS]).unwrap();
    write_npy_f32(&dir.join("flat0.npy"), &vec![0.0; 2 * COLS], &[2, COLS]).unwrap();
    write_npy_f32(&dir.join("flat_short.npy"), &vec![1.0; 2 * (COLS - 1)], &[2, COLS - 1]).unwrap();
    let raw = |flat: &str| ProjectionInput { flat: Some(dir.join(flat)), ..Default::default() };
    let e = load_ct_input(&dir.join("data.npy"), &g, &raw("flat0.npy")).unwrap_err().to_string();
    assert!(
        e.contains("flat0.npy") && e.contains("not above the dark field") && e.contains("any pixel"),
        "{e}"
    );
    let e = load_ct_input(&dir.join("data.npy"), &g, &raw("flat_short.npy")).unwrap_err().to_string();
    assert!(e.contains("flat_short.npy") && e.contains("95"), "{e}");
    let e = load_ct_input(
        &dir.join("data.npy"),
        &g,
        &ProjectionInput { dark: Some(dir.join("flat0.npy")), ..Default::default() },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("needs input.flat"), "{e}");
    if !reader("h5py", "the Data Exchange errors") {
        return;
    }
    let none = ProjectionInput::default();
    // missing darks; theta of the wrong length; a stack too large to read (unallocated chunks)
    let h5 = write_h5(&dir, &p, "with h5py.File(d + 'nodark.h5', 'w') as f:\n    f['exchange/data'] = np.ones((3, 1, 8), np.float32)\n    f['exchange/data_white'] = np.ones((1, 1, 8), np.float32)\n    f['exchange/theta'] = np.zeros(3)\nwith h5py.File(d + 'theta.h5', 'w') as f:\n    f['exchange/data'] = np.ones((3, 1, 8), np.float32)\n    f['exchange/data_dark'] = np.zeros((1, 1, 8), np.float32)\n    f['exchange/data_white'] = np.ones((1, 1, 8), np.float32)\n    f['exchange/theta'] = np.zeros(4)\nwith h5py.File(d + 'huge.h5', 'w') as f:\n    f.create_dataset('exchange/data', shape=(100000, 2048, 2048), dtype=np.uint16, chunks=(1, 64, 2048))\n");
    let e = load_ct_input(&dir.join("nodark.h5"), &dir.join("nodark.h5"), &none).unwrap_err().to_string();
    assert!(e.contains("nodark.h5") && e.contains("/exchange/data_dark"), "{e}");
    let e = load_ct_input(&dir.join("theta.h5"), &dir.join("theta.h5"), &none).unwrap_err().to_string();
    assert!(e.contains("theta.h5") && e.contains("4 angles") && e.contains("3 views"), "{e}");
    let e = load_ct_input(&dir.join("huge.h5"), &dir.join("huge.h5"), &none).unwrap_err().to_string();
    assert!(e.contains("huge.h5") && e.contains("--rows"), "{e}");
    // an HDF5 file as the geometry of other projections
    let e = load_ct_input(&dir.join("data.npy"), &h5, &none).unwrap_err().to_string();
    assert!(e.contains("scan.h5") && e.contains("only for its own projections"), "{e}");
    let e = load_ct_input(&h5, &h5, &ProjectionInput { rows: Some([1, 5]), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("scan.h5") && e.contains("2 detector rows"), "{e}");
    let e =
        load_ct_input(&h5, &h5, &ProjectionInput { flat: Some(dir.join("flat0.npy")), ..Default::default() })
            .unwrap_err()
            .to_string();
    assert!(e.contains("carries its own"), "{e}");
    // the CLI: recon from the file alone; --geometry needed for .npy
    let o = Command::new(ffvol_exe())
        .args(["recon", "fbp", "--projections"])
        .arg(&h5)
        .args(["--rows", "1", "--output"])
        .arg(dir.join("fbp.nii.gz"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && text.contains("centre of rotation: column"), "{text}");
    // fit ct from the file alone: the [input] table goes into run.toml, the scan beside it
    let run = dir.join("fit");
    let o = Command::new(ffvol_exe())
        .args(["fit", "ct", "--projections"])
        .arg(&h5)
        .args([
            "--rows", "1", "--grid", "24", "--views", "30", "--steps", "3", "--depth", "2", "--width", "16",
        ])
        .arg("--output")
        .arg(&run)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && text.contains("kept 30 of 90 views"), "{text}");
    let toml = std::fs::read_to_string(run.join("run.toml")).unwrap();
    assert!(toml.contains("[input]") && toml.contains("views = 30"), "{toml}");
    let scan = Scan::load(&run.join("geometry.toml")).unwrap();
    assert_eq!((scan.voxels, scan.n_views()), ([24, 24, 1], 30));
    assert!((center::center_of(&scan) - true_center()).abs() <= 0.5);
    let o = Command::new(ffvol_exe())
        .args(["recon", "fbp", "--projections"])
        .arg(dir.join("data.npy"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && text.contains("--geometry is needed"), "{text}");
}

/// The real scan: tomopy's tooth (datasets/tooth.h5), one slice at 128².
#[test]
fn tooth_scan_centre_and_sparse_view_fbp() {
    let h5 = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/tooth.h5");
    let input = ProjectionInput { rows: Some([0, 1]), grid: Some(128), ..Default::default() };
    let full = load_ct_input(&h5, &h5, &input).unwrap();
    assert_eq!((full.scan.n_views(), full.scan.det_pixels[0]), (181, 640));
    // the axis sits ~24 px left of the detector's middle (296 of 0..639; FBP sharpness agrees)
    let c = center::center_of(&full.scan);
    assert!((295.0..297.0).contains(&c), "centre {c}: {:?}", full.notes);
    let reference = recon::fbp(&full.scan, &full.projections);
    let sparse = load_ct_input(
        &h5,
        &h5,
        &ProjectionInput { views: Some(45), center: Some(Center::Column(c)), ..input.clone() },
    )
    .unwrap();
    let p45 = psnr_ct(&recon::fbp(&sparse.scan, &sparse.projections), &reference);
    // and with the axis left at the detector's middle, the same 45 views are far worse
    let mid =
        load_ct_input(&h5, &h5, &ProjectionInput { center: Some(Center::Column(319.5)), ..input.clone() })
            .unwrap();
    let p_mid = psnr_ct(&recon::fbp(&mid.scan, &mid.projections), &reference);
    assert!(
        p45 > 19.0 && p45 > p_mid + 3.0,
        "FBP-45 vs FBP-181: {p45:.2} dB; all views, uncorrected centre: {p_mid:.2} dB"
    );
}

/// HDF5 layouts that rust-hdf5 allocates from before it reads (fuzz findings 2026-12-02, in
/// `tests/corpus/projections/`): chunk dimensions of 10^11 and more values in 8–12 kB files
/// (rust-hdf5 zero-filled a decoded image of that size: the process aborted), and a deflated
/// /exchange/data declaring 286 M uint16 values in a 12 kB file (572 MB filled before its
/// deflate stream failed). Each is refused, naming the file and the dataset, before any read.
#[test]
fn declared_hdf5_layouts_the_file_cannot_hold_are_refused_before_reading() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/projections");
    for (name, want) in [
        ("fuzz-hdf5-chunk-abort-b6fd1a97.h5", "declares chunks of"),
        ("fuzz-hdf5-chunk-abort-1102e9ce.h5", "declares chunks of"),
        ("fuzz-hdf5-shape-572mb-d8c846a2.h5", "-byte file can hold deflated (at most 1032:1)"),
    ] {
        let p = corpus.join(name);
        let e = match ffvol::io::raw_projections::read_data_exchange(&p, None) {
            Ok(_) => panic!("{name} was read"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(name) && e.contains("/exchange/data") && e.contains(want), "{name}: {e}");
    }
}
