//! The MRI job: the masked FFT operator (adjoint identity, the loss gradient against finite
//! differences), the sampling masks, and whole fits on the bundled 32³ brain: Gaussian features
//! beat no mapping and the zero-filled baseline; measured k-space read back from .npy gives the
//! same fit; the default hash-grid preset beats zero-filled; bad inputs are errors naming the file.

use std::fs;
use std::path::PathBuf;

use ffvol::encoding::EncodingConfig;
use ffvol::io::write_npy;
use ffvol::job::mri::{self, MriConfig, MriMetrics, MriOutcome};
use ffvol::model::ModelConfig;
use ffvol::operator::fft::{MaskedFft, C64};
use ffvol::sample::kspace::Sampling;
use ffvol::sample::CounterRng;
use ffvol::train::FitOptions;

mod common;
use common::{random_complex, scratch};

fn random_mask(n: usize, seed: u64) -> Vec<bool> {
    let rng = CounterRng::new(seed, 98);
    (0..n).map(|i| rng.uniform(i as u64) < 0.3).collect()
}

fn dot(a: &[C64], b: &[C64]) -> C64 {
    a.iter().zip(b).map(|(x, y)| x * y.conj()).sum()
}

#[test]
fn operator_adjoint_identity() {
    // Odd and even sizes, more lines than one rayon task holds.
    for (dims, seed) in [([16usize, 12, 10], 1u64), ([9, 7, 5], 2), ([32, 32, 32], 3)] {
        let n = dims.iter().product();
        let op = MaskedFft::new(dims, random_mask(n, seed)).unwrap();
        let x = random_complex(n, seed);
        let y = random_complex(n, seed + 100);
        let lhs = dot(&op.apply(&x), &y);
        let rhs = dot(&x, &op.adjoint(&y));
        let rel = (lhs - rhs).norm() / lhs.norm().max(rhs.norm());
        assert!(rel < 1e-13, "{dims:?}: <Ax, y> = {lhs}, <x, A^H y> = {rhs}, relative {rel:e}"); // achieved ≤ 8.4e-15
        eprintln!("{dims:?}: adjoint relative error {rel:.1e}");
    }
}

#[test]
fn loss_gradient_matches_finite_differences() {
    let dims = [6usize, 5, 4];
    let n = 120;
    let op = MaskedFft::new(dims, random_mask(n, 7)).unwrap();
    let rng = CounterRng::new(5, 5);
    let f: Vec<f32> = (0..n).map(|i| rng.uniform(i as u64)).collect();
    let g: Vec<f32> = (0..n).map(|i| rng.uniform(1000 + i as u64)).collect();
    let y = op.apply_real(&g);
    let mut grad = vec![0.0; n];
    let loss = op.loss_and_gradient(&f, &y, &mut grad);
    // The loss by its definition: ½·mean over all N coefficients of |M F f − y|².
    let r = op.apply_real(&f);
    let direct: f64 = 0.5 * r.iter().zip(&y).map(|(a, b)| (a - b).norm_sqr()).sum::<f64>() / n as f64;
    assert!((loss - direct).abs() < 1e-9 * direct, "{loss} vs {direct}");
    let h = 1e-2f32; // the loss is quadratic: central differences are exact up to rounding
    let mut worst = 0.0f64;
    for i in (0..n).step_by(7) {
        let mut fp = f.clone();
        fp[i] += h;
        let mut fm = f.clone();
        fm[i] -= h;
        let mut scratch = vec![0.0; n];
        let fd = (op.loss_and_gradient(&fp, &y, &mut scratch) - op.loss_and_gradient(&fm, &y, &mut scratch))
            / (2.0 * h as f64);
        let err = (fd - grad[i] as f64).abs() / grad.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        worst = worst.max(err);
        assert!(err < 2e-6, "voxel {i}: finite difference {fd}, gradient {}", grad[i]);
        // achieved ≤ 6.1e-7
    }
    eprintln!("gradient vs finite differences: worst relative error {worst:.1e}");
}

#[test]
fn masks_are_centred_and_of_the_right_density() {
    let frac = |m: &[bool]| m.iter().filter(|&&v| v).count() as f64 / m.len() as f64;
    let g = Sampling::paper().build([32; 3], 0);
    let f = frac(&g);
    // 200,000·(32/96)³ ≈ 7407 draws, std 4.63 voxels: ≈ 12–13 % distinct voxels.
    assert!(f > 0.10 && f < 0.15, "gaussian at 32³: {f}");
    assert!(g[16 + 32 * (16 + 32 * 16)]);
    assert!(!g[0], "the corner of centred k-space is not sampled");
    for s in ["cartesian:4", "poisson:3", "radial:40"] {
        let m = Sampling::parse(s).unwrap().build([32; 3], 0);
        assert!(m[16 + 32 * (16 + 32 * 16)], "{s}: DC not sampled");
        eprintln!("{s}: {:.3} of k-space", frac(&m));
    }
    let err = |t: &str| Sampling::parse(t).err();
    assert_eq!(err("cartesian").as_deref(), Some("sampling \"cartesian\" needs a number after 'cartesian:'"));
    assert_eq!(
        err("cartesian:0.5").as_deref(),
        Some("invalid configuration: cartesian sampling needs acceleration in [1, 1000] and centre in [0, 0.5), got 0.5, 0.04")
    );
    assert_eq!(
        err("spiral:3").as_deref(),
        Some("unknown sampling \"spiral\" (gaussian, cartesian:R, radial:N, poisson:R)")
    );
}

fn small(out: PathBuf, encoding: EncodingConfig, steps: u64) -> MriConfig {
    let mut c = MriConfig::fast();
    c.volume = Some(PathBuf::from("datasets/mni152_t1_32.nii.gz"));
    c.common.output = out;
    c.common.encoding = encoding;
    c.common.model = ModelConfig { depth: 3, width: 64 };
    c.train.steps = steps;
    c.train.lr = 5e-3;
    c.export.montage = false;
    c
}

fn run(c: &MriConfig) -> MriMetrics {
    match mri::fit(c, &FitOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", c.common.output.display()))
    {
        MriOutcome::Finished(m) => *m,
        MriOutcome::Interrupted { .. } => panic!("interrupted"),
    }
}

#[test]
fn gaussian_features_beat_no_mapping_and_zero_filling() {
    let dir = scratch("fit");
    let gauss = run(&small(
        dir.join("gauss"),
        EncodingConfig::Gaussian { sigma: 2.5, features: 64, normalize: false },
        300,
    ));
    let none = run(&small(dir.join("none"), EncodingConfig::None, 300));
    eprintln!(
        "MRI 32³, 3×64, 300 steps: gaussian {:.2} dB, none {:.2} dB, zero-filled {:.2} dB ({:.1} % sampled; {:.3} s/step gaussian)",
        gauss.psnr, none.psnr, gauss.psnr_zero_filled, 100.0 * gauss.sampled_fraction, gauss.run.seconds_per_step
    );
    assert!((gauss.psnr_zero_filled - none.psnr_zero_filled).abs() < 1e-9, "same mask, same baseline");
    // achieved (2 cores, x86-64): gaussian 28.75 dB, none 20.55 dB, zero-filled 25.23 dB
    assert!(gauss.psnr > none.psnr + 7.5, "gaussian {:.2} dB vs none {:.2} dB", gauss.psnr, none.psnr);
    assert!(
        gauss.psnr > gauss.psnr_zero_filled + 3.0,
        "gaussian {:.2} dB vs zero-filled {:.2} dB",
        gauss.psnr,
        gauss.psnr_zero_filled
    );
    assert!(
        gauss.ssim > gauss.ssim_zero_filled,
        "SSIM {:.4} vs zero-filled {:.4}",
        gauss.ssim,
        gauss.ssim_zero_filled
    );
    for f in [
        "fit.nii.gz",
        "zero_filled.nii.gz",
        "mask.npy",
        "kspace.npy",
        "metrics.json",
        "checkpoint.safetensors",
        "run.toml",
    ] {
        assert!(dir.join("gauss").join(f).is_file(), "{f} missing");
    }
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn measured_kspace_from_npy_gives_the_same_fit() {
    let dir = scratch("measured");
    let enc = EncodingConfig::Gaussian { sigma: 2.5, features: 16, normalize: false };
    let mut a = small(dir.join("sim"), enc, 15);
    a.sampling = Sampling::Cartesian { acceleration: 3.0, center: 0.04 };
    a.common.model = ModelConfig { depth: 2, width: 16 };
    let sim = run(&a);
    let mut b = a.clone();
    b.common.output = dir.join("measured");
    b.kspace = Some(dir.join("sim/kspace.npy"));
    b.mask = Some(dir.join("sim/mask.npy"));
    let measured = run(&b);
    assert_eq!(measured.sampled_fraction, sim.sampled_fraction);
    assert!(
        (measured.psnr_zero_filled - sim.psnr_zero_filled).abs() < 1e-3,
        "{} vs {}",
        measured.psnr_zero_filled,
        sim.psnr_zero_filled
    );
    assert!((measured.psnr - sim.psnr).abs() < 1e-2, "{} vs {}", measured.psnr, sim.psnr);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_inputs_are_errors_naming_the_file() {
    let dir = scratch("bad");
    let base = small(dir.join("run"), EncodingConfig::None, 1);
    let err_of = |c: &MriConfig| match mri::fit(c, &FitOptions::default()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    // A mask of the wrong shape.
    let mask = dir.join("mask16.npy");
    write_npy(&mask, &[1u8; 16 * 32 * 32], &[16, 32, 32], false).unwrap();
    let mut c = base.clone();
    c.mask = Some(mask);
    let err = err_of(&c);
    assert!(err.contains("mask16.npy") && err.contains("[16, 32, 32]"), "{err}");
    // k-space of the wrong shape.
    let ks = dir.join("k.npy");
    write_npy(&ks, &[[0.0f32, 0.0]; 8], &[2, 2, 2], false).unwrap();
    let mut c = base.clone();
    c.kspace = Some(ks);
    let err = err_of(&c);
    assert!(err.contains("k.npy") && err.contains("does not match"), "{err}");
    // A real array where k-space should be complex is accepted; an integer one is not.
    let ks = dir.join("int.npy");
    write_npy(&ks, &[1i16; 27], &[3, 3, 3], false).unwrap();
    let mut c = base.clone();
    c.volume = None;
    c.kspace = Some(ks);
    let err = err_of(&c);
    assert!(err.contains("int.npy") && err.contains("complex64"), "{err}");
    // A NaN in the volume.
    let vol = dir.join("nan.npy");
    let mut v = vec![0.5f32; 27];
    v[5] = f32::NAN;
    write_npy(&vol, &v, &[3, 3, 3], true).unwrap();
    let mut c = base.clone();
    c.volume = Some(vol);
    let err = err_of(&c);
    assert!(err.contains("nan.npy") && err.contains("finite"), "{err}");
    // A bad header.
    let vol = dir.join("garbage.npy");
    fs::write(&vol, b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'shape': (3,3,3)}").unwrap();
    let mut c = base.clone();
    c.volume = Some(vol);
    let err = err_of(&c);
    assert!(err.contains("garbage.npy"), "{err}");
    fs::remove_dir_all(&dir).ok();
}

/// The loss log of a finished run: (step, loss) rows of `loss.csv`.
fn losses(dir: &std::path::Path) -> Vec<(u64, f64)> {
    let text = fs::read_to_string(dir.join("loss.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect()
}

/// A chunked fit (the field evaluated and back-propagated 4096 voxels at a time, gradients
/// accumulated) follows the whole-grid fit's loss curve to rounding: only the order of the
/// gradient sums differs.
#[test]
fn chunked_fit_follows_the_whole_grid_fit() {
    let dir = scratch("chunked");
    let enc = EncodingConfig::Gaussian { sigma: 2.5, features: 32, normalize: false };
    let fit = |name: &str, chunk: Option<usize>| {
        let c = small(dir.join(name), enc, 40);
        let opts = FitOptions { chunk, ..Default::default() };
        match mri::fit(&c, &opts).unwrap() {
            MriOutcome::Finished(m) => (*m, losses(&c.common.output)),
            MriOutcome::Interrupted { .. } => panic!("interrupted"),
        }
    };
    let (whole, whole_log) = fit("whole", None);
    // 32³ = 32768 voxels: 8 chunks, and a chunk that does not divide the grid
    for chunk in [4096, 5000] {
        let (chunked, log) = fit(&format!("chunk{chunk}"), Some(chunk));
        assert_eq!(log.len(), 40);
        let worst = whole_log.iter().zip(&log).map(|(a, b)| (a.1 - b.1).abs() / a.1).fold(0.0, f64::max);
        eprintln!(
            "chunk {chunk}: worst relative loss difference {worst:.2e}; PSNR {:.4} vs {:.4} dB",
            chunked.psnr, whole.psnr
        );
        assert!(worst < 1e-4, "chunk {chunk}: loss curves differ by {worst:e}");
        assert!((chunked.psnr - whole.psnr).abs() < 0.01, "{} vs {}", chunked.psnr, whole.psnr);
    }
}

/// A fit whose memory plan does not fit the limit stops before it writes anything, saying what
/// it needs.
#[test]
fn a_fit_over_the_memory_limit_stops_before_writing() {
    let dir = scratch("over-limit");
    let c =
        small(dir.join("run"), EncodingConfig::Gaussian { sigma: 2.5, features: 32, normalize: false }, 5);
    let opts = FitOptions { max_memory: Some(1 << 20), ..Default::default() };
    let e = match mri::fit(&c, &opts) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a 1 MiB limit was accepted"),
    };
    assert!(
        e.starts_with("not enough memory: fit mri: needs ")
            && e.contains("of host memory but 1.00 MiB is available (--max-memory)"),
        "{e}"
    );
    assert!(!c.common.output.exists(), "the run folder was created");
}

/// A non-finite schedule factor (from a run.toml) stops the fit before its first step, rather
/// than training every weight to NaN after a finite loss.
#[test]
fn a_nan_schedule_factor_is_an_error() {
    let dir = scratch("nan-schedule");
    let mut c =
        small(dir.join("run"), EncodingConfig::Gaussian { sigma: 2.5, features: 16, normalize: false }, 5);
    c.train.schedule = ffvol::train::LrSchedule::Exponential { factor: f32::NAN, every: 10 };
    let e = match mri::fit(&c, &FitOptions::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a NaN factor was accepted"),
    };
    assert!(e.contains("the exponential schedule's factor must be finite and > 0, got NaN"), "{e}");
    assert!(!c.common.output.join("checkpoint.safetensors").exists(), "a checkpoint was written");
}

/// The default preset (hash grid to the voxel grid's side, TV) on the bundled 32³ brain at a
/// reduced budget: well over the zero-filled baseline, and its run.toml holds the resolved
/// finest resolution (32), so `export` and `--resume` rebuild the same grid.
#[test]
fn hashgrid_default_beats_zero_filled_and_records_the_grid_side() {
    let dir = scratch("hashgrid-default");
    let mut c = ffvol::config::presets::mri(ffvol::config::presets::MriPreset::HashGrid);
    c.volume = Some(PathBuf::from("datasets/mni152_t1_32.nii.gz"));
    c.common.output = dir.join("run");
    c.common.threads = 2;
    c.train.steps = 300;
    c.export.montage = false;
    let m = run(&c);
    eprintln!(
        "MRI 32³ default preset, 300 steps: {:.2} dB (zero-filled {:.2}), {:.3} s/step",
        m.psnr, m.psnr_zero_filled, m.run.seconds_per_step
    );
    // achieved (2 cores, x86-64): 28.25 dB against zero-filled 25.23 (the full 800 steps: 31.65)
    assert!(
        m.psnr > m.psnr_zero_filled + 2.5,
        "{:.2} dB vs zero-filled {:.2} dB",
        m.psnr,
        m.psnr_zero_filled
    );
    let toml = fs::read_to_string(dir.join("run/run.toml")).unwrap();
    assert!(toml.contains("finest_resolution = 32"), "{toml}");
    fs::remove_dir_all(&dir).ok();
}
