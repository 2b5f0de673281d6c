//! `--sigma auto` against a dense sweep on the TEST data: the chosen σ lies inside the bracket of
//! σ whose test PSNR is within 0.3 dB (0.003 IoU for occupancy) of the sweep's best (the
//! bracket's ends interpolated in log σ between the sweep's points), for the image, volume,
//! occupancy, MRI and CT jobs at small sizes; the search stays within 30 % of the fit's network
//! evaluations and writes its sweep (CSV and PNG) and its choice into the run folder, and a
//! resumed run keeps the choice.

use std::path::{Path, PathBuf};

use ffvol::encoding::EncodingConfig;
use ffvol::job::image::{self, ImageConfig, ImageOutcome, ImagePreset};
use ffvol::job::volume::{self, VolumeConfig, VolumeOutcome};
use ffvol::model::ModelConfig;
use ffvol::train::sigma::SigmaSearch;
use ffvol::train::FitOptions;

mod common;
use common::scratch;

/// [lo, hi] of the σ whose PSNR is within `tol` dB of the best of `sweep` (σ ascending), the
/// ends found by linear interpolation in log σ where the curve crosses best − tol.
fn bracket(sweep: &[(f32, f64)], tol: f64) -> (f64, f64) {
    let best = sweep.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let level = best - tol;
    let inside: Vec<usize> = (0..sweep.len()).filter(|&i| sweep[i].1 >= level).collect();
    let (first, last) = (inside[0], *inside.last().unwrap());
    let cross = |a: usize, b: usize| {
        let (la, lb) = ((sweep[a].0 as f64).ln(), (sweep[b].0 as f64).ln());
        let t = (level - sweep[a].1) / (sweep[b].1 - sweep[a].1);
        (la + t * (lb - la)).exp()
    };
    let lo = if first == 0 { sweep[0].0 as f64 } else { cross(first - 1, first) };
    let hi = if last + 1 == sweep.len() { sweep[last].0 as f64 } else { cross(last + 1, last) };
    (lo, hi)
}

fn check_run_folder(dir: &Path, chosen: f32) {
    let csv = std::fs::read_to_string(dir.join("sigma_sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 8, "{csv}");
    let png = ffvol::io::read_png(&dir.join("sigma_sweep.png")).unwrap();
    assert_eq!((png.width, png.height), (720, 460));
    let toml: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("run.toml")).unwrap()).unwrap();
    let s = &toml["sigma_search"];
    assert_eq!(s["chosen"].as_float().unwrap() as f32, chosen);
    assert_eq!(toml["encoding"]["sigma"].as_float().unwrap() as f32, chosen);
    assert!(s["cost_fraction"].as_float().unwrap() <= 0.3);
}

fn image_cfg(out: PathBuf, sigma: f32) -> ImageConfig {
    let mut c = ImageConfig::preset(ImagePreset::Fast);
    c.common.output = out;
    c.common.encoding = EncodingConfig::Gaussian { sigma, features: 32, normalize: false };
    c.common.model = ModelConfig { depth: 3, width: 32 };
    c.train.size = 64;
    c.train.steps = 300;
    c.train.lr = 1e-2;
    c
}

fn image_psnr(c: &ImageConfig) -> image::ImageMetrics {
    match image::fit(c, &FitOptions::default()).unwrap() {
        ImageOutcome::Finished(m) => *m,
        _ => unreachable!(),
    }
}

/// Known failure (issue 11), two causes measured at 64² (3 × 32, m = 32, 300 steps):
/// 1. the first validation split (the mixed grids, one coordinate odd) put each validation pixel
///    between two training pixels on a training row: after the full 300 steps its best σ was 2.7
///    against the test's 1.2. Now fixed: the search trains on a checkerboard half of the training
///    grid and validates on the other half (each validation pixel the centre of four, as a test
///    pixel is); trained 300 full-batch steps that split's best is σ ≈ 1.2–1.8 (17.66, 17.71 dB).
/// 2. still open: the short fits are too short. Within 30 % each of 7 trials gets 51 steps (of
///    256-pixel mini-batches), and after 51 steps even the TEST pixels rank σ = 2.7 best (18.12
///    dB, against 16.48 at σ = 1.2): an early-stopped network prefers a larger σ. Auto still
///    chooses 2.83 (17.79 dB, 0.6 dB short of the bracket [1.03, 1.52]).
///
/// Measured since (session 5; full-batch fits of this config, test PSNR at σ = 0.8, 1.2, 1.8,
/// 2.7, 4): the test pixels themselves rank σ 2.7 first after 51, 100 and 150 steps (18.12,
/// 18.28, 18.18 dB) and 1.2 only from 200 steps on (18.46 at 200, 18.39 at 300), while the
/// whole search may spend 0.3 · 300 = 90 full-batch steps, so no search of this problem by
/// shorter fits of it can see the 300-step ranking. Scaling the short fits' learning rate by
/// the steps they lack does not either (51 steps at lr 3e-2: 2.7 first, 18.22 dB; at 6e-2: 1.8
/// and 2.7 first, 17.56 and 17.46). Smaller mini-batches (64 pixels × 205 steps, or 32 × 411)
/// move the choice to 1.83 (17.83 dB), still outside the bracket.
#[test]
#[ignore = "fails: auto σ 2.83 outside the 0.3 dB bracket [1.03, 1.52] at 64²: within 30 % no short fit reaches the 200 steps at which even the test pixels rank σ as the full fit does (issue 11)"]
fn image_auto_sigma_is_within_the_dense_sweeps_bracket() {
    let dir = scratch("sigma-image");
    let sweep: Vec<(f32, f64)> = [0.5f32, 0.8, 1.2, 1.8, 2.7, 4.0, 6.0, 9.0]
        .iter()
        .map(|&s| (s, image_psnr(&image_cfg(dir.join(format!("s{s}")), s)).psnr_test))
        .collect();
    let mut auto = image_cfg(dir.join("auto"), 10.0);
    auto.common.sigma_search = Some(SigmaSearch {
        lo: 0.5,
        hi: 16.0,
        ..SigmaSearch::default_for("image", &auto.common.encoding).unwrap()
    });
    let m = image_psnr(&auto);
    let chosen = m.sigma.unwrap();
    let (lo, hi) = bracket(&sweep, 0.3);
    eprintln!("image 64²: dense sweep (σ, test dB) {sweep:?}; bracket [{lo:.3}, {hi:.3}]; auto σ {chosen:.3} → {:.2} dB", m.psnr_test);
    assert!((lo..=hi).contains(&(chosen as f64)), "auto σ {chosen} outside [{lo}, {hi}]");
    check_run_folder(&auto.common.output, chosen);
    // a resumed run keeps the choice and does not search again
    let before = std::fs::read_to_string(auto.common.output.join("sigma_sweep.csv")).unwrap();
    let cfg = match ffvol::config::RunConfig::load_run(&auto.common.output).unwrap() {
        ffvol::config::RunConfig::Image(c) => c,
        _ => unreachable!(),
    };
    let again = match image::fit(&cfg, &FitOptions { resume: true, ..Default::default() }).unwrap() {
        ImageOutcome::Finished(m) => *m,
        _ => unreachable!(),
    };
    assert_eq!(again.sigma, Some(chosen));
    assert_eq!(again.psnr_test, m.psnr_test);
    assert_eq!(before, std::fs::read_to_string(auto.common.output.join("sigma_sweep.csv")).unwrap());
    std::fs::remove_dir_all(&dir).ok();
}

fn volume_cfg(out: PathBuf, sigma: f32) -> VolumeConfig {
    let mut c = VolumeConfig::fast();
    c.volume = PathBuf::from("datasets/mni152_t1_32.nii.gz");
    c.common.output = out;
    c.common.encoding = EncodingConfig::Gaussian { sigma, features: 32, normalize: false };
    c.common.model = ModelConfig { depth: 3, width: 32 };
    c.train.steps = 300;
    c.train.lr = 1e-2;
    c.train.train_fraction = 0.25;
    c.train.batch = 0;
    c.export.montage = false;
    c
}

fn volume_psnr(c: &VolumeConfig) -> volume::VolumeMetrics {
    match volume::fit(c, &FitOptions::default()).unwrap() {
        VolumeOutcome::Finished(m) => *m,
        _ => unreachable!(),
    }
}

#[test]
fn volume_auto_sigma_is_within_the_dense_sweeps_bracket() {
    let dir = scratch("sigma-volume");
    let sweep: Vec<(f32, f64)> = [0.5f32, 0.8, 1.2, 1.8, 2.7, 4.0, 6.0, 9.0]
        .iter()
        .map(|&s| (s, volume_psnr(&volume_cfg(dir.join(format!("s{s}")), s)).psnr_test))
        .collect();
    let mut auto = volume_cfg(dir.join("auto"), 4.0);
    auto.common.sigma_search = Some(SigmaSearch {
        lo: 0.5,
        hi: 16.0,
        ..SigmaSearch::default_for("volume", &auto.common.encoding).unwrap()
    });
    let m = volume_psnr(&auto);
    let toml: toml::Value =
        toml::from_str(&std::fs::read_to_string(auto.common.output.join("run.toml")).unwrap()).unwrap();
    let chosen = toml["encoding"]["sigma"].as_float().unwrap() as f32;
    let (lo, hi) = bracket(&sweep, 0.3);
    eprintln!("volume 32³: dense sweep (σ, test dB) {sweep:?}; bracket [{lo:.3}, {hi:.3}]; auto σ {chosen:.3} → {:.2} dB", m.psnr_test);
    assert!((lo..=hi).contains(&(chosen as f64)), "auto σ {chosen} outside [{lo}, {hi}]");
    check_run_folder(&auto.common.output, chosen);
    std::fs::remove_dir_all(&dir).ok();
}

/// The dense sweep's σ values.
const DENSE: [f32; 8] = [0.5, 0.8, 1.2, 1.8, 2.7, 4.0, 6.0, 9.0];

/// σ of the encoding in a run folder's `run.toml`.
fn chosen_sigma(dir: &Path) -> f32 {
    let toml: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("run.toml")).unwrap()).unwrap();
    toml["encoding"]["sigma"].as_float().unwrap() as f32
}

fn auto_search(job: &str, encoding: &EncodingConfig) -> Option<SigmaSearch> {
    Some(SigmaSearch { lo: 0.5, hi: 16.0, ..SigmaSearch::default_for(job, encoding).unwrap() })
}

fn sphere_cluster() -> ffvol::geometry::TriMesh {
    use ffvol::geometry::shapes;
    let mut mesh = ffvol::geometry::TriMesh::default();
    let mut k = 0u32;
    for i in 0..3 {
        for j in 0..3 {
            for l in 0..3 {
                k += 1;
                let c = glam::Vec3::new(i as f32, j as f32, l as f32) * 0.3
                    + glam::Vec3::splat(0.03 * ((k * 7 % 5) as f32));
                let s = shapes::icosphere(c, 0.09 + 0.02 * ((k % 3) as f32), 2);
                let base = mesh.positions.len() as u32;
                mesh.positions.extend(s.positions);
                mesh.triangles.extend(s.triangles.iter().map(|t| t.map(|v| v + base)));
            }
        }
    }
    mesh
}

fn occupancy_cfg(mesh: PathBuf, out: PathBuf, sigma: f32) -> ffvol::config::OccupancyConfig {
    let mut c = ffvol::config::OccupancyConfig::preset(ffvol::config::Preset::Fast);
    c.mesh = mesh;
    c.common.output = out;
    c.common.encoding = EncodingConfig::Gaussian { sigma, features: 32, normalize: false };
    c.common.model = ModelConfig { depth: 3, width: 32 };
    c.train.batch = 2048;
    c.train.steps = 300;
    c.train.lr = 1e-2;
    c.train.checkpoint_every = 0;
    c.eval.test_points = 10_000;
    c.export.resolution = 16;
    c.export.formats = vec![ffvol::io::MeshFormat::Ply];
    c.export.nifti = false;
    c
}

/// Occupancy of a cluster of 27 small spheres: validation points from streams of their own;
/// the bracket on the mean of the two test sets' IoU, within 0.003 of the best.
#[test]
fn occupancy_auto_sigma_is_within_the_dense_sweeps_bracket() {
    use ffvol::job::occupancy::{self, FitOutcome};
    let dir = scratch("sigma-occupancy");
    let mesh = dir.join("cluster.ply");
    ffvol::io::write_mesh(&mesh, &sphere_cluster(), ffvol::io::MeshFormat::Ply).unwrap();
    let iou = |c: &ffvol::config::OccupancyConfig| match occupancy::fit(c, &FitOptions::default()).unwrap() {
        FitOutcome::Finished(m) => 0.5 * (m.iou_uniform + m.iou_surface),
        _ => unreachable!(),
    };
    let sweep: Vec<(f32, f64)> =
        DENSE.iter().map(|&s| (s, iou(&occupancy_cfg(mesh.clone(), dir.join(format!("s{s}")), s)))).collect();
    let mut auto = occupancy_cfg(mesh.clone(), dir.join("auto"), 4.0);
    auto.common.sigma_search = auto_search("occupancy", &auto.common.encoding);
    let got = iou(&auto);
    let chosen = chosen_sigma(&auto.common.output);
    let (lo, hi) = bracket(&sweep, 0.003);
    eprintln!("occupancy: dense sweep (σ, test IoU) {sweep:?}; bracket [{lo:.3}, {hi:.3}]; auto σ {chosen:.3} → {got:.4}");
    assert!((lo..=hi).contains(&(chosen as f64)), "auto σ {chosen} outside [{lo}, {hi}]");
    check_run_folder(&auto.common.output, chosen);
    std::fs::remove_dir_all(&dir).ok();
}

fn mri_cfg(out: PathBuf, sigma: f32) -> ffvol::job::mri::MriConfig {
    let mut c = ffvol::job::mri::MriConfig::fast();
    c.volume = Some(PathBuf::from("datasets/mni152_t1_32.nii.gz"));
    c.common.output = out;
    c.common.encoding = EncodingConfig::Gaussian { sigma, features: 32, normalize: false };
    c.common.model = ModelConfig { depth: 3, width: 32 };
    c.train.steps = 200;
    c.train.lr = 1e-2;
    c.train.checkpoint_every = 0;
    c.export.montage = false;
    c
}

/// MRI from simulated k-space of the 32³ MNI head: a tenth of the measured samples (in
/// conjugate pairs) held out; the bracket on the PSNR against the true volume.
///
/// Measured (session 6): the dense sweep's 0.3 dB bracket is σ ∈ [1.04, 1.88] (23.47, 24.49,
/// 25.34, 25.22, 23.63, 20.22, 13.00, 9.34 dB at σ = 0.5 … 9); auto chooses 1.19 (25.32 dB).
/// The short fits train on the 16³ grid of the same box (the exact k-space of the coarse image)
/// and are scored on the held-out samples inside that band only. Scored on every held-out
/// sample (session 5), the out-of-band ones, which no trial is trained on, ranked σ by how quiet
/// each trial's extrapolation stayed and pulled the choice to 0.89 (24.73 dB). With another mask
/// and initialisation (`--seed 3`, by hand) auto still lands low: σ 1.0 (25.51 dB) where the
/// sweep's best is 1.8 (26.47 dB); seeds 1 and 2 choose 1.41 (26.08, 26.21 dB).
#[test]
fn mri_auto_sigma_is_within_the_dense_sweeps_bracket() {
    use ffvol::job::mri::{self, MriOutcome};
    let dir = scratch("sigma-mri");
    let psnr = |c: &mri::MriConfig| match mri::fit(c, &FitOptions::default()).unwrap() {
        MriOutcome::Finished(m) => m.psnr,
        _ => unreachable!(),
    };
    let sweep: Vec<(f32, f64)> =
        DENSE.iter().map(|&s| (s, psnr(&mri_cfg(dir.join(format!("s{s}")), s)))).collect();
    let mut auto = mri_cfg(dir.join("auto"), 4.0);
    auto.common.sigma_search = auto_search("mri", &auto.common.encoding);
    let got = psnr(&auto);
    let chosen = chosen_sigma(&auto.common.output);
    let (lo, hi) = bracket(&sweep, 0.3);
    eprintln!("mri 32³: dense sweep (σ, PSNR) {sweep:?}; bracket [{lo:.3}, {hi:.3}]; auto σ {chosen:.3} → {got:.2} dB");
    assert!((lo..=hi).contains(&(chosen as f64)), "auto σ {chosen} outside [{lo}, {hi}]");
    check_run_folder(&auto.common.output, chosen);
    std::fs::remove_dir_all(&dir).ok();
}

/// The held-out k-space samples come in conjugate pairs and never include DC.
#[test]
fn mri_holdout_is_conjugate_symmetric() {
    let dims = [6, 5, 4];
    let n = 120;
    let mask: Vec<bool> = (0..n).map(|i| i % 3 != 1).collect();
    let held = ffvol::job::mri::holdout_mask(&mask, dims, 7);
    assert!(!held[0]);
    let count = held.iter().filter(|&&h| h).count();
    assert!(count > 0 && count < n / 3, "{count}");
    for i in 0..n {
        let (x, y, z) = (i % 6, (i / 6) % 5, i / 30);
        let j = (6 - x) % 6 + 6 * ((5 - y) % 5 + 5 * ((4 - z) % 4));
        if held[i] {
            assert!(mask[i]);
            assert!(held[j] || !mask[j], "{i} held, its mirror {j} trained on");
        }
    }
}

fn ct_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use ffvol::sim::ct::{PhantomSource, SimulateOptions};
    let scan = ffvol::operator::ct_geometry::Scan::paper_2d(64, 32);
    let sim = ffvol::sim::ct::simulate(
        &scan,
        &SimulateOptions {
            phantom: PhantomSource::Shepp2d(Some(31)),
            poisson_i0: None,
            seed: 0,
            supersample: 2,
        },
    )
    .unwrap();
    ffvol::sim::ct::write_simulation(&scan, &sim, dir).unwrap();
    (dir.join("projections.npy"), dir.join("geometry.toml"), dir.join("truth.nii.gz"))
}

fn ct_cfg(files: &(PathBuf, PathBuf, PathBuf), out: PathBuf, sigma: f32) -> ffvol::job::ct::CtConfig {
    let mut c = ffvol::job::ct::CtConfig::preset(ffvol::job::ct::CtPreset::Fast);
    c.projections = files.0.clone();
    c.geometry = files.1.clone();
    c.truth = Some(files.2.clone());
    c.common.output = out;
    c.common.encoding = EncodingConfig::Gaussian { sigma, features: 32, normalize: false };
    c.common.model = ModelConfig { depth: 3, width: 32 };
    c.common.device = ffvol::config::DeviceConfig::on(ffvol::config::DeviceKind::Cpu);
    c.train.lr = 5e-3;
    c.train.steps = 200;
    c.train.eval_every = 0;
    c.train.checkpoint_every = 0;
    c
}

/// CT of a perturbed Shepp–Logan at 64², 32 views: every 8th view held out; the bracket on the
/// PSNR against the phantom. The dense sweep's 0.3 dB bracket is σ ∈ [2.09, 4.12] (18.87, 17.11,
/// 18.06, 19.97, 20.44, 20.31, 17.91, 14.61 dB at σ = 0.5 … 9). On the fit's 64² grid each of 7
/// short fits got 8 of the 200 steps, every σ's held-out-view error was about the same
/// (0.0169–0.0216), and the search chose 0.5 (18.87 dB). The short fits now train on a 16² grid
/// of the same box (121 steps each, the validation's 64² evaluation counted in the budget) and
/// score their field on the 64² grid: measured, auto 2.83 (20.42 dB). 154 s for this test on 2
/// cores shared with three other builds (nine 200-step fits).
#[test]
fn ct_auto_sigma_is_within_the_dense_sweeps_bracket() {
    use ffvol::job::ct::{self, CtOutcome};
    let dir = scratch("sigma-ct");
    let files = ct_files(&dir.join("sim"));
    let psnr = |c: &ct::CtConfig| match ct::fit(c, &FitOptions::default()).unwrap() {
        CtOutcome::Finished(m) => m.psnr.unwrap(),
        _ => unreachable!(),
    };
    let sweep: Vec<(f32, f64)> =
        DENSE.iter().map(|&s| (s, psnr(&ct_cfg(&files, dir.join(format!("s{s}")), s)))).collect();
    let mut auto = ct_cfg(&files, dir.join("auto"), 4.0);
    auto.common.sigma_search = auto_search("ct", &auto.common.encoding);
    let got = psnr(&auto);
    let chosen = chosen_sigma(&auto.common.output);
    let (lo, hi) = bracket(&sweep, 0.3);
    eprintln!("ct 64², 32 views: dense sweep (σ, PSNR) {sweep:?}; bracket [{lo:.3}, {hi:.3}]; auto σ {chosen:.3} → {got:.2} dB");
    assert!((lo..=hi).contains(&(chosen as f64)), "auto σ {chosen} outside [{lo}, {hi}]");
    check_run_folder(&auto.common.output, chosen);
    assert!(ct::holdout_views(7).is_err());
    assert_eq!(ct::holdout_views(16).unwrap().0, vec![7, 15]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bracket_interpolates_in_log_sigma() {
    let (lo, hi) = bracket(&[(1.0, 10.0), (2.0, 11.0), (4.0, 11.2), (8.0, 10.6)], 0.3);
    assert!((lo - 2f64.powf(0.9)).abs() < 1e-9, "{lo}");
    assert!((hi - 4.0 * 2f64.powf(0.5)).abs() < 1e-9, "{hi}");
}
