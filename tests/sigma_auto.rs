//! `--sigma auto` against a dense sweep on the TEST data: the chosen σ lies inside the bracket of
//! σ whose test PSNR is within 0.3 dB of the sweep's best (the bracket's ends interpolated in
//! log σ between the sweep's points), for the image and the volume jobs at small sizes; the
//! search stays within 30 % of the fit's steps and writes its sweep (CSV and PNG) and its choice
//! into the run folder, and a resumed run keeps the choice.

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

/// Known failure (issue 11): measured at 64², the dense sweep's 0.3 dB bracket is σ ∈ [1.03,
/// 1.52] (best 18.39 dB at 1.2) and auto chose 2.83 (17.79 dB, 0.6 dB short). A likely cause:
/// the validation pixels (one coordinate odd) sit between two training pixels, the test pixels
/// (both odd) between four, so validation rewards a larger σ than the test does.
#[test]
#[ignore = "fails: auto σ 2.83 lies outside the 0.3 dB bracket [1.03, 1.52] on the 64² image (issue 11)"]
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

#[test]
fn bracket_interpolates_in_log_sigma() {
    let (lo, hi) = bracket(&[(1.0, 10.0), (2.0, 11.0), (4.0, 11.2), (8.0, 10.6)], 0.3);
    assert!((lo - 2f64.powf(0.9)).abs() < 1e-9, "{lo}");
    assert!((hi - 4.0 * 2f64.powf(0.5)).abs() < 1e-9, "{hi}");
}
