//! The volume job on the bundled 32³ brain: Gaussian features beat no mapping on held-out voxels;
//! the outputs keep the input's grid and affine (checked in nibabel when present), the upsampled
//! output has the finer grid's affine; the montage is a PNG; `export` re-extracts a volume and an
//! iso-surface mesh from the run alone; a resumed run ends where an uninterrupted one does.

use std::fs;
use std::path::{Path, PathBuf};

use ffvol::encoding::EncodingConfig;
use ffvol::export::grid::upsampled_affine;
use ffvol::io::volume::load_volume;
use ffvol::io::{read_nifti_f32, MeshFormat};
use ffvol::job::field::{export_run, ExportRequest};
use ffvol::job::volume::{self, VolumeConfig, VolumeMetrics, VolumeOutcome};
use ffvol::model::ModelConfig;
use ffvol::train::FitOptions;

mod common;
use common::scratch;

const BUNDLED: &str = "datasets/mni152_t1_32.nii.gz";

fn small(out: PathBuf, encoding: EncodingConfig, steps: u64) -> VolumeConfig {
    let mut c = VolumeConfig::fast();
    c.volume = PathBuf::from(BUNDLED);
    c.common.output = out;
    c.common.encoding = encoding;
    c.common.model = ModelConfig { depth: 3, width: 64 };
    c.train.steps = steps;
    c.train.batch = 0;
    c
}

fn run(c: &VolumeConfig, opts: &FitOptions) -> Option<VolumeMetrics> {
    match volume::fit(c, opts).unwrap_or_else(|e| panic!("{}: {e}", c.common.output.display())) {
        VolumeOutcome::Finished(m) => Some(*m),
        VolumeOutcome::Interrupted { .. } => None,
    }
}

#[test]
fn gaussian_features_beat_no_mapping_on_held_out_voxels() {
    let dir = scratch("compare");
    let mut g = small(
        dir.join("gauss"),
        EncodingConfig::Gaussian { sigma: 3.0, features: 64, normalize: false },
        300,
    );
    g.export.upsample = 2;
    let gauss = run(&g, &FitOptions::default()).unwrap();
    let none = run(&small(dir.join("none"), EncodingConfig::None, 300), &FitOptions::default()).unwrap();
    eprintln!(
        "volume 32³, 3×64, 300 steps, half the voxels held out: gaussian held-out {:.2} dB (all {:.2}, SSIM {:.3}), none held-out {:.2} dB (all {:.2}, SSIM {:.3}); {:.4} s/step",
        gauss.psnr_test, gauss.psnr_all, gauss.ssim_test, none.psnr_test, none.psnr_all, none.ssim_test, gauss.run.seconds_per_step
    );
    // achieved (2 cores, x86-64): held-out gaussian 23.12 dB (SSIM 0.774), none 14.90 dB (0.230)
    assert!(
        gauss.psnr_test > none.psnr_test + 7.5,
        "held-out PSNR: gaussian {:.2} dB vs none {:.2} dB",
        gauss.psnr_test,
        none.psnr_test
    );
    assert!(
        gauss.ssim_test > none.ssim_test + 0.5,
        "held-out SSIM: gaussian {:.3} vs none {:.3}",
        gauss.ssim_test,
        none.ssim_test
    );
    assert!(gauss.psnr_train >= gauss.psnr_test);
    assert_eq!(gauss.train_voxels + gauss.test_voxels, 32 * 32 * 32);
    assert!((gauss.train_voxels as f64 / 32768.0 - 0.5).abs() < 0.02);

    // The fit on the input grid: same dims and affine, raw intensity units.
    let input = load_volume(Path::new(BUNDLED)).unwrap();
    let run_dir = dir.join("gauss");
    let (fit, dims, affine) = read_nifti_f32(&run_dir.join("fit.nii.gz")).unwrap();
    assert_eq!((dims, affine), (input.dims, input.world_from_voxel));
    let max = fit.iter().cloned().fold(f32::MIN, f32::max);
    assert!(max > 100.0 && max <= 255.0, "fit.nii.gz is in the input's units (0–255), max {max}");
    common::check_with_nibabel(&run_dir.join("fit.nii.gz"), Path::new(BUNDLED), &["--geometry-only"]);
    // Twice as fine: 64³, voxel 3 mm, first voxel centre a quarter of an input voxel before.
    let (_, dims2, affine2) = read_nifti_f32(&run_dir.join("fit_x2.nii.gz")).unwrap();
    assert_eq!(dims2, [64; 3]);
    assert_eq!(affine2, upsampled_affine(input.world_from_voxel, 2));
    assert_eq!(affine2[0][0], 3.0);
    assert_eq!(affine2[0][3], input.world_from_voxel[0][3] - 1.5);
    common::check_with_nibabel(
        &run_dir.join("fit_x2.nii.gz"),
        Path::new(BUNDLED),
        &["--geometry-only", "--upsample", "2"],
    );

    // The montage decodes as a PNG of 3 columns × 3 rows of 128-pixel tiles.
    let decoder =
        png::Decoder::new(std::io::BufReader::new(fs::File::open(run_dir.join("montage.png")).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!((info.width, info.height), (3 * 130 + 2, 3 * 130 + 2));

    // Export from the run alone: a 2× volume and the 0.3 iso-surface (the head) as PLY.
    let req = ExportRequest { upsample: 2, mesh: Some((0.3, vec![MeshFormat::Ply])), threads: 0 };
    let written = export_run(&run_dir, &req).unwrap();
    assert_eq!(written.len(), 2, "{written:?}");
    let (again, _, _) = read_nifti_f32(&run_dir.join("fit_x2.nii.gz")).unwrap();
    assert_eq!(again.len(), 64 * 64 * 64);
    let mesh = ffvol::io::read_mesh(&run_dir.join("iso_0.3_x2.ply")).unwrap();
    assert!(mesh.triangles.len() > 1000, "{} triangles", mesh.triangles.len());
    // Inside the volume's world box, and enclosing a head-sized volume (the cube is 192 mm wide).
    let (lo, hi) = mesh.bounds().unwrap();
    let (w0, w1) = (input.world_from_voxel[0][3] as f32 - 3.0, input.world_from_voxel[0][3] as f32 + 189.0);
    assert!(lo.x >= w0 - 1e-3 && hi.x <= w1 + 1e-3, "x bounds {lo} {hi}");
    let volume_ml = mesh.signed_volume() / 1000.0;
    assert!(volume_ml > 500.0 && volume_ml < 5000.0, "enclosed volume {volume_ml} ml");
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn resumed_run_ends_where_an_uninterrupted_one_does() {
    let dir = scratch("resume");
    let mut c =
        small(dir.join("whole"), EncodingConfig::Gaussian { sigma: 3.0, features: 16, normalize: false }, 30);
    c.common.model = ModelConfig { depth: 2, width: 16 };
    c.train.batch = 2048;
    c.export.montage = false;
    let whole = run(&c, &FitOptions::default()).unwrap();
    let mut p = c.clone();
    p.common.output = dir.join("parts");
    assert!(run(&p, &FitOptions { stop_after: Some(12), ..Default::default() }).is_none());
    let resumed = run(&p, &FitOptions { resume: true, ..Default::default() }).unwrap();
    assert_eq!(resumed.psnr_all, whole.psnr_all);
    let a = fs::read_to_string(dir.join("whole/loss.csv")).unwrap();
    let b = fs::read_to_string(dir.join("parts/loss.csv")).unwrap();
    assert_eq!(a, b);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_settings_and_inputs_are_errors() {
    let dir = scratch("bad");
    let mut c = small(dir.join("run"), EncodingConfig::None, 1);
    c.train.train_fraction = 0.0;
    let err = volume::fit(&c, &FitOptions::default()).map(|_| ()).unwrap_err().to_string();
    assert_eq!(err, "invalid configuration: train.train_fraction must be in (0, 1], got 0");
    let mut c = small(dir.join("run"), EncodingConfig::None, 1);
    c.volume = dir.join("missing.nii.gz");
    let err = volume::fit(&c, &FitOptions::default()).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("missing.nii.gz"), "{err}");
    let flat = dir.join("flat.npy");
    ffvol::io::write_npy(&flat, &[3.0f32; 27], &[3, 3, 3], true).unwrap();
    c.volume = flat;
    let err = volume::fit(&c, &FitOptions::default()).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("flat.npy") && err.contains("constant"), "{err}");
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn command_line_fits_exports_resumes_and_reports_bad_input() {
    let dir = scratch("cli");
    let bin = env!("CARGO_BIN_EXE_ffvol");
    let cmd = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("panicked"), "{text}");
        (out.status.code(), text)
    };
    let run = dir.join("v");
    let run_s = run.to_str().unwrap();
    let tiny = ["--steps", "5", "--depth", "2", "--width", "16", "--features", "16", "--threads", "1"];
    let (code, text) = cmd(&[&["fit", "volume", "--output", run_s][..], &tiny[..]].concat());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("PSNR held-out"), "{text}");
    let (code, text) = cmd(&["fit", "--resume", run_s]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = cmd(&["export", run_s, "--mesh", "--level", "0.3", "--format", "ply"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(run.join("iso_0.3_x1.ply").is_file(), "{text}");
    // A second fit into the same folder needs --force.
    let (code, text) = cmd(&[&["fit", "volume", "--output", run_s][..], &tiny[..]].concat());
    assert_eq!(code, Some(1));
    assert!(text.contains("--force"), "{text}");
    // MRI: a mask of the wrong shape names the file; a bad sampling spec is refused.
    let mask = dir.join("mask8.npy");
    ffvol::io::write_npy(&mask, &[1u8; 512], &[8, 8, 8], true).unwrap();
    let mri_run = dir.join("m");
    let (code, text) = cmd(&[
        &["fit", "mri", "--output", mri_run.to_str().unwrap(), "--mask", mask.to_str().unwrap()][..],
        &tiny[..],
    ]
    .concat());
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("mask8.npy") && text.contains("[8, 8, 8]"), "{text}");
    let (code, text) = cmd(&["fit", "mri", "--sampling", "spiral:2"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("spiral"), "{text}");
    let (code, text) = cmd(&[
        &["fit", "mri", "--output", mri_run.to_str().unwrap(), "--force", "--sampling", "radial:20"][..],
        &tiny[..],
    ]
    .concat());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("zero-filled"), "{text}");
    fs::remove_dir_all(&dir).ok();
}

/// `fit volume` and `fit mri` with no `--volume` work from a directory without `datasets/` (as
/// after `cargo install`): the 32³ MNI crop built into the binary is used, with its affine.
#[test]
fn default_volume_runs_work_from_any_directory() {
    let dir = common::scratch("volume-anywhere");
    assert!(!dir.join("datasets").exists());
    let small = ["--steps", "3", "--depth", "2", "--width", "16", "--features", "8", "--force"];
    for job in ["volume", "mri"] {
        let out = std::process::Command::new(common::ffvol_exe())
            .current_dir(&dir)
            .args(["fit", job, "--output", job])
            .args(small)
            .output()
            .unwrap();
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "fit {job}: {log}");
        let fit = ffvol::io::read_nifti_f32(&dir.join(job).join("fit.nii.gz")).unwrap();
        let truth = ffvol::io::read_nifti_f32(std::path::Path::new("datasets/mni152_t1_32.nii.gz")).unwrap();
        assert_eq!((fit.1, fit.2), (truth.1, truth.2), "fit {job}: grid and affine of the bundled volume");
    }
    std::fs::remove_dir_all(&dir).ok();
}
