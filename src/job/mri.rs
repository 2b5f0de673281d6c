//! The MRI job (the paper's 3-D MRI protocol): recover a volume from undersampled k-space.
//!
//! Data: either a volume (NIfTI / .npy), normalised to [0, 1], whose k-space is simulated as
//! `y = M ⊙ F g` under a sampling mask, or measured k-space (`kspace`, complex64 .npy, centred)
//! with its mask (`mask`, .npy, centred, nonzero = sampled; default: where the k-space is nonzero).
//! Files use the centred layout (DC at index n/2, `numpy.fft.fftshift(numpy.fft.fftn(g))`) and are
//! indexed `[x, y, z]` like the volume. Without a truth volume, measured k-space is scaled so the
//! zero-filled image's 99.5th percentile is 1.
//!
//! Per step the field is evaluated on the whole voxel grid, `p = σ(MLP(γ(x)))`, and trained on
//! `L = ½·mean_k |M F p − y|²` (the operator in [`crate::operator::fft`]): ∂L/∂p comes from the
//! adjoint, ∂L/∂z = ∂L/∂p · p(1 − p) is pushed through the network. The classical baseline, the
//! zero-filled inverse FFT, is reported next to the fit; PSNR is over the whole volume with the
//! prediction clipped to [0, 1].
//!
//! With the CUDA backend, the part of the step after the network (σ, the masked FFT, the loss, the
//! adjoint, the chain rule through σ) runs on the device through cuFFT
//! ([`crate::backend::cuda::GpuKspaceOperator`], same conventions and f64 precision as the host);
//! where cuFFT cannot be loaded it runs on the host, and the log says which and why. The
//! zero-filled baseline is computed once, on the host.
//!
//! With cuFFT on the device the step is also device-resident (unless `[device] resident = false`):
//! the grid's points are uploaded once, the network's outputs go straight from its forward to the
//! operator (on the backend's stream), ∂L/∂z straight from the operator to the backward, and the
//! host reads only the loss and max |∂L/∂z| (for fp16's loss scale) per step.

use crate::backend::Backend;
use crate::config::Common;
use crate::export::image::{error_image, write_montage};
use crate::export::volume::write_fit;
use crate::io::mri::prepare;
use crate::io::volume::Normalize;
use crate::job::field::{validate_upsample, FieldExport, FieldMeta, FieldTrain};
use crate::operator::fft::{fftshift, KspaceLoss, C64};
use crate::operator::{choose_grid_loss, GridLoss};
use crate::sample::kspace::Sampling;
use crate::sample::voxels::grid_points;
use crate::train::fit::{Batch, DeviceStep, Objective, Run, RunStats, TrainSettings};
use crate::train::image_metrics::{psnr, ssim};
use crate::train::memory::{bytes, device_grid_plan, grid_step, network_sizes, MemoryPlan};
use crate::train::run::log;
use crate::train::run::FitOptions;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// Everything an MRI fit depends on; written back as the run's `run.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MriConfig {
    /// Always "mri".
    pub job: String,
    /// The true volume: the source of simulated k-space, and the reference for PSNR.
    pub volume: Option<PathBuf>,
    /// Measured k-space (complex64 .npy, centred); simulated from `volume` when absent.
    pub kspace: Option<PathBuf>,
    /// Sampling mask (.npy, centred, nonzero = measured); built from `sampling` when absent.
    pub mask: Option<PathBuf>,
    pub sampling: Sampling,
    #[serde(flatten)]
    pub common: Common,
    pub normalize: Normalize,
    pub train: FieldTrain,
    pub export: FieldExport,
}

crate::job_config!(MriConfig, "mri");

impl MriConfig {
    /// The paper's settings (see [`crate::config::presets`]).
    pub fn paper() -> Self {
        crate::config::presets::mri(crate::config::presets::MriPreset::Paper)
    }

    /// Small and short, for 2 CPU cores (see [`crate::config::presets`]).
    pub fn fast() -> Self {
        crate::config::presets::mri(crate::config::presets::MriPreset::Fast)
    }

    pub fn to_toml(&self) -> Result<String> {
        crate::config::to_toml(self)
    }

    pub fn validate(&self) -> Result<()> {
        if self.volume.is_none() && self.kspace.is_none() {
            return Err(Error::Config(
                "the MRI job needs a volume (to simulate k-space) or measured k-space".into(),
            ));
        }
        self.common.validate("mri")?;
        validate_upsample(self.export.upsample)?;
        self.normalize.validate()?;
        self.sampling.validate()?;
        self.train.validate()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MriMetrics {
    /// PSNR of the fit over the whole volume, prediction clipped to [0, 1] (NaN without a truth).
    pub psnr: f64,
    pub ssim: f64,
    /// The zero-filled inverse FFT, clipped to [0, 1].
    pub psnr_zero_filled: f64,
    pub ssim_zero_filled: f64,
    pub dims: [usize; 3],
    /// Fraction of k-space measured.
    pub sampled_fraction: f64,
    /// Final k-space loss ½·mean|M F p − y|².
    #[serde(flatten)]
    pub run: RunStats,
    /// Seconds of the σ search (`--sigma auto`), not included in `train_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_search_seconds: Option<f64>,
}

pub enum MriOutcome {
    Finished(Box<MriMetrics>),
    Interrupted { step: u64 },
}

/// The whole grid every step through the masked FFT: σ, A, the k-space residual, Aᵀ and the
/// chain rule through σ, on the host (rustfft) or with cuFFT, or the whole step on the GPU
/// (device-resident).
struct KspaceFit<'a> {
    points: Vec<f32>,
    op: Box<dyn GridLoss + 'a>,
    resident: bool,
    dims: [usize; 3],
    /// Total variation of σ(z) on the grid, with its buffers (σ(z), λ·∂TV/∂σ).
    tv: Option<crate::train::regularise::TotalVariation>,
    tv_p: Vec<f32>,
    tv_dp: Vec<f32>,
}

impl Objective for KspaceFit<'_> {
    fn batch(&mut self, _step: u64) -> Result<Batch<'_>> {
        Ok(Batch { points: &self.points, targets: None })
    }

    fn loss(&mut self, _step: u64, z: &[f32], dz: &mut [f32]) -> Result<f32> {
        let mut loss = self.op.sigmoid_loss_and_gradient(z, dz)?;
        if let Some(tv) = self.tv {
            use crate::train::loss::{sigmoid, through_sigmoid};
            self.tv_p.clear();
            self.tv_p.extend(z.iter().map(|&v| sigmoid(v)));
            self.tv_dp.clear();
            self.tv_dp.resize(z.len(), 0.0);
            loss += tv.add_grid(&self.tv_p, self.dims, &mut self.tv_dp);
            for ((d, &g), &p) in dz.iter_mut().zip(&self.tv_dp).zip(&self.tv_p) {
                *d += through_sigmoid(g, p);
            }
        }
        Ok(loss as f32)
    }

    fn device_step(&mut self, backend: &mut dyn Backend, _step: u64, lr: f32) -> Option<Result<DeviceStep>> {
        if !self.resident {
            return None;
        }
        let loss = match backend.device_jobs()?.resident_step(self.op.as_mut(), &self.points) {
            Ok(loss) => loss as f32,
            Err(e) => return Some(Err(e)),
        };
        Some(backend.optimizer_step(lr).map(|()| DeviceStep::Done(loss)))
    }
}

/// What the fit allocates on the host once its inputs are in: the measurements and the truth,
/// the grid step (chunked when the whole grid's activations would not fit), the host operator
/// (σ(z), the k-space residual and the FFT's transpose buffer) and the export.
fn host_plan(
    cfg: &MriConfig,
    problem: &crate::io::mri::MriProblem,
    sizes: &[usize],
    chunk: Option<usize>,
) -> MemoryPlan {
    let n = problem.kspace.len();
    let mut plan = MemoryPlan::new("fit mri");
    plan.host("measured k-space", bytes(n, 16))
        .host("mask", bytes(n, 1))
        .host("truth", if problem.truth.is_some() { bytes(n, 4) } else { 0 })
        .host("zero-filled image", bytes(n, 4));
    grid_step(&mut plan, n, 3, sizes, chunk);
    plan.host(
        "hash-grid tables (with gradients, Adam moments)",
        crate::train::memory::table_bytes(&cfg.common, 3),
    );
    plan.host("operator (σ(z), residual, FFT scratch)", bytes(n, 4 + 16 + 16));
    let k = cfg.export.upsample;
    plan.host(format!("export (fit, ×{k} grid)"), bytes(n, 12).saturating_mul((k * k * k) as u64));
    plan
}

/// Stream of the σ search's held-out k-space samples.
const STREAM_HOLDOUT: u64 = 0x51_03;

/// The σ search's split of the measured coefficients (unshifted indices): a tenth held out for
/// validation, drawn in conjugate pairs (k and −k: the k-space of a real image is Hermitian, so a
/// sample whose mirror is trained on would not be held out) and never the DC coefficient.
pub fn holdout_mask(mask: &[bool], dims: [usize; 3], seed: u64) -> Vec<bool> {
    let rng = crate::sample::CounterRng::new(seed, STREAM_HOLDOUT);
    let [nx, ny, nz] = dims;
    let mirror = |i: usize| {
        let (x, y, z) = (i % nx, (i / nx) % ny, i / (nx * ny));
        (nx - x) % nx + nx * ((ny - y) % ny + ny * ((nz - z) % nz))
    };
    (0..mask.len()).map(|i| mask[i] && i != 0 && rng.uniform(i.min(mirror(i)) as u64) < 0.1).collect()
}

/// The k-space of the coarse grid `c` cut from that of the grid `dims` (unshifted layouts):
/// the coefficients with |k| < c/2 on each axis (a halved axis's coarse Nyquist plane left out),
/// scaled by c/n and phase-shifted by e^{iπk(1/c − 1/n)} per axis, so that the coarse inverse
/// FFT samples the band-limited image at the coarse voxel centres ((j + ½)/c); and `mask` cut
/// the same way.
pub fn crop_kspace(dims: [usize; 3], c: [usize; 3], values: &[C64], mask: &[bool]) -> (Vec<C64>, Vec<bool>) {
    let n_c: usize = c.iter().product();
    let (mut out, mut keep) = (vec![C64::new(0.0, 0.0); n_c], vec![false; n_c]);
    let axis = |j: usize, a: usize| band_axis(dims[a], c[a], j);
    for z in 0..c[2] {
        let Some((fz, wz)) = axis(z, 2) else { continue };
        for y in 0..c[1] {
            let Some((fy, wy)) = axis(y, 1) else { continue };
            for x in 0..c[0] {
                let Some((fx, wx)) = axis(x, 0) else { continue };
                let (i, f) = (x + c[0] * (y + c[1] * z), fx + dims[0] * (fy + dims[1] * fz));
                if mask[f] {
                    out[i] = values[f] * wx * wy * wz;
                    keep[i] = true;
                }
            }
        }
    }
    (out, keep)
}

/// Coefficient `j` of an axis of `m` coarse samples, cut from one of `n`: its index on the fine
/// axis and its weight (scale m/n, phase e^{iπk(1/m − 1/n)}); `None` for a halved axis's coarse
/// Nyquist plane. An axis not halved keeps every coefficient as it is.
fn band_axis(n: usize, m: usize, j: usize) -> Option<(usize, C64)> {
    if m == n {
        return Some((j, C64::new(1.0, 0.0)));
    }
    let k = if j <= (m - 1) / 2 { j as i64 } else { j as i64 - m as i64 };
    if 2 * k.unsigned_abs() as usize >= m {
        return None; // the coarse Nyquist plane
    }
    let fine = k.rem_euclid(n as i64) as usize;
    let phase = std::f64::consts::PI * k as f64 * (1.0 / m as f64 - 1.0 / n as f64);
    Some((fine, C64::from_polar(m as f64 / n as f64, phase)))
}

/// The coefficients of the grid `dims` (unshifted) inside the band of the coarser grid `c`:
/// those [`crop_kspace`] keeps.
pub fn band_mask(dims: [usize; 3], c: [usize; 3]) -> Vec<bool> {
    let fine = |a: usize| -> Vec<usize> {
        (0..c[a]).filter_map(|j| band_axis(dims[a], c[a], j)).map(|(f, _)| f).collect()
    };
    let (fx, fy, fz) = (fine(0), fine(1), fine(2));
    let mut band = vec![false; dims.iter().product()];
    for &z in &fz {
        for &y in &fy {
            for &x in &fx {
                band[x + dims[0] * (y + dims[1] * z)] = true;
            }
        }
    }
    band
}

/// `--sigma auto`: short fits on the measured k-space less a held-out tenth ([`holdout_mask`]),
/// on a coarser grid of the same box ([`crate::train::sigma::SigmaSearch::proxy_grid`]: the
/// k-space inside the coarse grid's band, [`crop_kspace`]), each scored on the fit's own grid by
/// ½·mean over the held-out coefficients inside that band ([`band_mask`]) of |F σ(z) − y|²
/// (divided by the voxel count as the training loss is).
fn search_sigma(
    cfg: &mut MriConfig,
    problem: &crate::io::mri::MriProblem,
    chunk: Option<usize>,
    opts: &FitOptions,
) -> Result<Option<f64>> {
    let (steps, dir, train) = (cfg.train.steps, cfg.common.output.clone(), cfg.train.clone());
    let dims = problem.dims;
    let n: usize = dims.iter().product();
    let spec = match &cfg.common.sigma_search {
        Some(spec) if spec.chosen.is_none() => spec.clone(),
        // none, or chosen already (a resumed run): nothing to train
        _ => {
            return crate::train::sigma::run_auto(
                &mut cfg.common,
                &dir,
                "mri",
                "kspace-mse",
                steps,
                n,
                None,
                opts,
                |_, _, _, _| Err(Error::Config("σ search: no trial to run".into())),
            )
        }
    };
    let held = holdout_mask(&problem.operator.mask, dims, cfg.common.seed);
    let train_mask: Vec<bool> = problem.operator.mask.iter().zip(&held).map(|(&m, &h)| m && !h).collect();
    let n_held = held.iter().filter(|&&h| h).count();
    if n_held == 0 || !train_mask.iter().any(|&m| m) {
        return Err(Error::Config(format!(
            "--sigma auto: the {} measured k-space samples are too few to hold out a tenth",
            problem.operator.mask.iter().filter(|&&m| m).count()
        )));
    }
    // each trial is scored on the fit's grid (n points), which the cost counts
    let proxy = spec.proxy_grid(steps, dims, n)?;
    let cdims = proxy.grid;
    let (train_y, train_mask) = crop_kspace(dims, cdims, &problem.kspace, &train_mask);
    if !train_mask.iter().any(|&m| m) {
        return Err(Error::Config(format!(
            "--sigma auto: no measured k-space sample inside the short fits' {cdims:?} grid"
        )));
    }
    let train_op = crate::operator::fft::MaskedFft::new(cdims, train_mask)?;
    // scored inside the band the short fits train on: outside it a trial's field is not
    // constrained at all, and its extrapolation there ranks σ by how quiet it stays, not by how
    // well it fits (at 32³ with 16³ trials that pulled the choice below the test's bracket)
    let in_band = band_mask(dims, cdims);
    let held_c: Vec<bool> = held.iter().zip(&in_band).map(|(&h, &b)| h && b).collect();
    let n_held_c = held_c.iter().filter(|&&h| h).count();
    if n_held_c == 0 {
        return Err(Error::Config(format!(
            "--sigma auto: no held-out k-space sample inside the short fits' {cdims:?} grid"
        )));
    }
    let points = grid_points(cdims, 1);
    let n_c = points.len() / 3;
    let fine_points = grid_points(dims, 1);
    crate::train::sigma::run_auto(
        &mut cfg.common,
        &dir,
        "mri",
        "kspace-mse",
        steps,
        n,
        Some(proxy),
        opts,
        |common, short, _, scratch| {
            let mut run = Run::scratch(scratch, common, 3, 1)?;
            let op = Box::new(KspaceLoss::new(&train_op, &train_y));
            let mut objective = KspaceFit {
                points: points.clone(),
                op,
                resident: false,
                dims: cdims,
                tv: train.total_variation(),
                tv_p: vec![],
                tv_dp: vec![],
            };
            let mut spec = crate::train::fit::LoopSpec::new(short, train.lr, train.schedule, 0, n_c);
            spec.chunk = chunk;
            run.train(&spec, &mut objective, &FitOptions::default())?;
            let mut z = vec![0.0; n];
            run.backend.predict(&fine_points, &mut z)?;
            let mut f: Vec<C64> =
                z.iter().map(|&v| C64::new(crate::train::loss::sigmoid(v) as f64, 0.0)).collect();
            problem.operator.fft.forward(&mut f);
            let sum = crate::train::metrics::ordered_sum(n, |i| {
                if held_c[i] {
                    (f[i] - problem.kspace[i]).norm_sqr()
                } else {
                    0.0
                }
            });
            Ok(0.5 * sum / n_held_c as f64 / n as f64)
        },
    )
}

/// Trains (or resumes) the run in `cfg.common.output`, then evaluates and exports.
pub fn fit(cfg: &MriConfig, opts: &FitOptions) -> Result<MriOutcome> {
    cfg.validate()?;
    let started = Instant::now();
    let problem = prepare(cfg)?;
    let dims = problem.dims;
    let mut resolved = cfg.clone();
    resolved.common.encoding.fit_finest_to_grid(dims);
    let cfg = &resolved;
    let n: usize = dims.iter().product();
    let sizes = network_sizes(&cfg.common, 3);
    let mut chunk = opts.grid_chunk(n, &sizes);
    let plan = host_plan(cfg, &problem, &sizes, chunk);
    log(opts, &plan.describe());
    plan.check(&opts.memory_limits(None))?;
    let mut searched = cfg.clone();
    let search_seconds = search_sigma(&mut searched, &problem, chunk, opts)?;
    let cfg = &searched;
    let dir = cfg.common.output.clone();
    // the network, the device and a resumed checkpoint checked before anything is written
    let meta = FieldMeta {
        job: "mri".into(),
        dims,
        world_from_voxel: problem.world_from_voxel,
        intensity: problem.intensity,
    };
    let mut run = Run::start(&dir, &cfg.to_toml()?, &cfg.common, 3, meta.to_extra()?, opts)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    log(
        opts,
        &format!(
            "MRI: {dims:?} grid, {:.2} % of k-space measured ({})",
            100.0 * problem.operator.sampled_fraction(),
            if cfg.mask.is_some() { "mask from file".to_string() } else { format!("{:?}", cfg.sampling) }
        ),
    );
    // The measurements as files, centred, so a run can be repeated from them (`--kspace --mask`).
    let centred_mask: Vec<u8> = fftshift(&problem.operator.mask, dims).iter().map(|&m| u8::from(m)).collect();
    crate::io::write_npy(&dir.join("mask.npy"), &centred_mask, &dims, true)?;
    let centred_y: Vec<[f32; 2]> =
        fftshift(&problem.kspace, dims).iter().map(|c| [c.re as f32, c.im as f32]).collect();
    crate::io::write_npy(&dir.join("kspace.npy"), &centred_y, &dims, true)?;
    let zero_filled: Vec<f32> =
        problem.operator.zero_filled(&problem.kspace).iter().map(|v| v.clamp(0.0, 1.0)).collect();
    crate::io::write_nifti_f32(
        &dir.join("zero_filled.nii.gz"),
        &problem.intensity.to_raw(&zero_filled),
        dims,
        problem.world_from_voxel,
    )?;

    let mut device = cfg.common.device.clone();
    if let Some(free) = run.backend.device_memory_free() {
        let operator = ("cuFFT operator (k-space, mask, residual, work)", bytes(n, 16 + 1 + 16 + 16));
        (device.resident, chunk) =
            device_grid_plan("fit mri", (n, 3, &sizes), operator, &device, chunk, free, opts)?;
    }
    let tv = cfg.train.total_variation();
    if tv.is_some() && device.resident && run.backend.device_jobs().is_some() {
        // the TV term is added on the host, to the operator's ∂L/∂z
        log(opts, "step: not device-resident (train.tv is computed on the host)");
        device.resident = false;
    }
    let (op, resident, what) = choose_grid_loss(
        run.backend.as_mut(),
        &device,
        |jobs, resident| jobs.kspace_operator(&problem.operator, &problem.kspace, resident),
        || Box::new(KspaceLoss::new(&problem.operator, &problem.kspace)),
    );
    log(opts, &format!("k-space operator: {what}"));
    if resident {
        log(opts, "step: device-resident (grid uploaded once; outputs and ∂L/∂z stay on the GPU)");
    }
    let points = grid_points(dims, 1);
    let n = points.len() / 3;
    let mut objective = KspaceFit { points, op, resident, dims, tv, tv_p: vec![], tv_dp: vec![] };
    let mut spec = cfg.train.loop_spec(n);
    spec.chunk = if resident { None } else { chunk };
    let trained = run.train(&spec, &mut objective, opts)?;
    if let Some(step) = trained.interrupted {
        return Ok(MriOutcome::Interrupted { step });
    }

    // sigmoid outputs: already in [0, 1]
    let fit = write_fit(
        run.backend.as_mut(),
        &dir,
        dims,
        problem.world_from_voxel,
        &problem.intensity,
        cfg.export.upsample,
    )?;
    let nan = f64::NAN;
    let (psnr_fit, ssim_fit, psnr_zf, ssim_zf) = match &problem.truth {
        Some(g) => (
            psnr(&fit, g, None),
            ssim(&fit, g, dims, None),
            psnr(&zero_filled, g, None),
            ssim(&zero_filled, g, dims, None),
        ),
        None => (nan, nan, nan, nan),
    };
    if cfg.export.montage {
        let path = dir.join("montage.png");
        match &problem.truth {
            Some(g) => write_montage(&path, dims, &[g, &fit, &error_image(&fit, g), &zero_filled])?,
            None => write_montage(&path, dims, &[&zero_filled, &fit])?,
        }
    }
    let metrics = MriMetrics {
        psnr: psnr_fit,
        ssim: ssim_fit,
        psnr_zero_filled: psnr_zf,
        ssim_zero_filled: ssim_zf,
        dims,
        sampled_fraction: problem.operator.sampled_fraction(),
        run: run.stats(&trained, cfg.train.steps, started),
        sigma_search_seconds: search_seconds,
    };
    // serde_json writes NaN as null, which is what a reader should see for "no truth".
    crate::train::run::write_metrics(&dir, &metrics)?;
    Ok(MriOutcome::Finished(Box::new(metrics)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inverse FFT of the cropped k-space of a band-limited volume samples it at the coarse
    /// voxel centres ((j + ½)/c), in value as well as phase.
    /// band_mask marks exactly the coefficients crop_kspace keeps (a halved axis's coarse
    /// Nyquist plane left out, an axis not halved kept whole).
    #[test]
    fn band_mask_is_what_crop_kspace_keeps() {
        for (dims, c) in [([12, 10, 4], [6, 5, 4]), ([9, 8, 7], [4, 8, 3])] {
            let n: usize = dims.iter().product();
            let band = band_mask(dims, c);
            for i in 0..n {
                let mut one = vec![false; n];
                one[i] = true;
                let (_, keep) = crop_kspace(dims, c, &vec![C64::new(1.0, 0.0); n], &one);
                assert_eq!(band[i], keep.iter().any(|&k| k), "{dims:?} → {c:?}: coefficient {i}");
            }
            assert!(band.iter().any(|&b| b) && !band.iter().all(|&b| b));
        }
    }

    #[test]
    fn crop_kspace_samples_the_band_limited_volume() {
        let (dims, c) = ([12, 10, 1], [6, 5, 1]);
        let f = |x: f64, y: f64| {
            let t = std::f64::consts::TAU;
            0.3 + 0.2 * (t * 2.0 * x + 0.4).cos()
                + 0.1 * (t * (x - y) - 1.1).sin()
                + 0.05 * (t * 2.0 * y).cos()
        };
        let at = |d: [usize; 3]| -> Vec<C64> {
            let mut v = vec![];
            for y in 0..d[1] {
                for x in 0..d[0] {
                    v.push(C64::new(f((x as f64 + 0.5) / d[0] as f64, (y as f64 + 0.5) / d[1] as f64), 0.0));
                }
            }
            v
        };
        let mut k = at(dims);
        crate::operator::fft::Fft3::new(dims).forward(&mut k);
        let mask = vec![true; k.len()];
        let (mut kc, keep) = crop_kspace(dims, c, &k, &mask);
        // the coarse Nyquist column (x frequency −3) is left out; y has no Nyquist (5 is odd)
        assert_eq!(keep.iter().filter(|&&m| !m).count(), 5);
        crate::operator::fft::Fft3::new(c).inverse(&mut kc);
        for (got, want) in kc.iter().zip(at(c)) {
            assert!((got - want).norm() < 1e-12, "{got} against {want}");
        }
        // the mask is cut with the values
        let none = vec![false; k.len()];
        assert!(!crop_kspace(dims, c, &k, &none).1.iter().any(|&m| m));
    }
}
