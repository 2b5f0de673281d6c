//! The volume job: fit a scalar volume (NIfTI or .npy) directly, voxel by voxel.
//!
//! Intensities are mapped to [0, 1] (min–max or robust percentiles, recorded in `metrics.json` and
//! the checkpoint). A fixed random `train_fraction` of the voxels is trained on; the rest are held
//! out. Per step: voxel centres of a batch of training voxels → encoding → MLP → sigmoid →
//! ½·mean((p − g)²) → backward → Adam. Batches are a pure function of (seed, step), so a resumed
//! run continues exactly as an uninterrupted one. At the end: PSNR and SSIM on the held-out voxels,
//! the training voxels and the whole volume; the fit as `.nii.gz` on the input grid (in the input's
//! intensity units, with its affine) and, with `export.upsample = K`, on a K-times finer grid; and
//! `montage.png`.

use crate::config::Common;
use crate::export::image::{error_image, write_montage};
use crate::export::volume::write_fit;
use crate::io::volume::{load_volume, Intensity, Normalize};
use crate::job::field::{validate_upsample, FieldExport, FieldMeta, FieldTrain};
use crate::sample::voxels::grid_points;
use crate::sample::voxels::train_split;
use crate::sample::CounterRng;
use crate::train::fit::{Batch, Objective, Run, RunStats, TrainSettings};
use crate::train::image_metrics::{psnr, ssim};
use crate::train::loss::{sigmoid, through_sigmoid};
use crate::train::memory::{bytes, network_bytes_per_point, network_sizes, MemoryPlan};
use crate::train::run::log;
use crate::train::run::FitOptions;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// Stream of the training batches.
const STREAM_BATCH: u64 = 17;

/// Everything a volume fit depends on; written back as the run's `run.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeConfig {
    /// Always "volume".
    pub job: String,
    /// The volume to fit (anything `io::volume::load_volume` reads: NIfTI, .npy, .mat, DICOM).
    pub volume: PathBuf,
    #[serde(flatten)]
    pub common: Common,
    pub normalize: Normalize,
    pub train: FieldTrain,
    pub export: FieldExport,
}

crate::job_config!(VolumeConfig, "volume");

impl VolumeConfig {
    /// The named starting point (see [`crate::config::presets`]).
    pub fn fast() -> Self {
        crate::config::presets::volume()
    }

    pub fn to_toml(&self) -> Result<String> {
        crate::config::to_toml(self)
    }

    pub fn validate(&self) -> Result<()> {
        self.common.validate("volume")?;
        validate_upsample(self.export.upsample)?;
        self.normalize.validate()?;
        if self.train.tv != 0.0 {
            return Err(Error::Config(
                "train.tv: total variation applies to the full-grid fits (mri, ct), not to volume".into(),
            ));
        }
        self.train.validate()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VolumeMetrics {
    pub psnr_test: f64,
    pub psnr_train: f64,
    pub psnr_all: f64,
    pub ssim_test: f64,
    pub ssim_all: f64,
    pub dims: [usize; 3],
    pub train_voxels: usize,
    pub test_voxels: usize,
    /// The intensity map: unit = (raw − lo) / (hi − lo).
    pub intensity_lo: f64,
    pub intensity_hi: f64,
    #[serde(flatten)]
    pub run: RunStats,
    /// Seconds of the σ search (`--sigma auto`), not included in `train_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_search_seconds: Option<f64>,
}

pub enum VolumeOutcome {
    Finished(Box<VolumeMetrics>),
    Interrupted { step: u64 },
}

/// The training voxels of each step: every one (full batch), or `batch` of them drawn from
/// (seed, step); MSE through the sigmoid output.
struct VoxelBatches<'a> {
    train_idx: &'a [usize],
    all_points: &'a [f32],
    truth: &'a [f32],
    full_batch: bool,
    rng: CounterRng,
    points: Vec<f32>,
    targets: Vec<f32>,
}

impl Objective for VoxelBatches<'_> {
    fn batch(&mut self, step: u64) -> Result<Batch<'_>> {
        let batch = self.targets.len();
        for b in 0..batch {
            let i = if self.full_batch {
                self.train_idx[b]
            } else {
                self.train_idx
                    [self.rng.below(step * batch as u64 + b as u64, self.train_idx.len() as u64) as usize]
            };
            self.points[3 * b..3 * b + 3].copy_from_slice(&self.all_points[3 * i..3 * i + 3]);
            self.targets[b] = self.truth[i];
        }
        Ok(Batch { points: &self.points, targets: None })
    }

    fn loss(&mut self, _step: u64, z: &[f32], dz: &mut [f32]) -> Result<f32> {
        let batch = self.targets.len();
        let inv_n = 1.0 / batch as f32;
        z.par_iter().zip(self.targets.par_iter()).zip(dz.par_iter_mut()).for_each(|((&z, &g), d)| {
            let p = sigmoid(z);
            *d = through_sigmoid((p - g) * inv_n, p);
        });
        let targets = &self.targets;
        let loss = crate::train::metrics::ordered_sum(z.len(), |i| {
            let r = (sigmoid(z[i]) - targets[i]) as f64;
            0.5 * r * r
        });
        Ok((loss / batch as f64) as f32)
    }
}

/// Stream of the σ search's validation voxels.
const STREAM_VALIDATION: u64 = 18;

/// `--sigma auto`: short fits on the training voxels less a validation tenth of them (drawn from
/// their own stream; the test voxels are never seen), scored by MSE on that tenth.
fn search_sigma(
    cfg: &mut VolumeConfig,
    train_idx: &[usize],
    all_points: &[f32],
    truth: &[f32],
    batch: usize,
    chunk: Option<usize>,
    opts: &FitOptions,
) -> Result<Option<f64>> {
    if cfg.common.sigma_search.is_none() {
        return Ok(None);
    }
    let rng = CounterRng::new(cfg.common.seed, STREAM_VALIDATION);
    let (val, fit_idx): (Vec<usize>, Vec<usize>) =
        train_idx.iter().partition(|&&i| rng.uniform(i as u64) < 0.1);
    if val.is_empty() || fit_idx.is_empty() {
        return Err(Error::Config(format!(
            "--sigma auto: {} training voxels are too few to hold out a validation tenth",
            train_idx.len()
        )));
    }
    let val_points: Vec<f32> =
        val.iter().flat_map(|&i| all_points[3 * i..3 * i + 3].iter().copied()).collect();
    let val_truth: Vec<f32> = val.iter().map(|&i| truth[i]).collect();
    let (steps, dir, train) = (cfg.train.steps, cfg.common.output.clone(), cfg.train.clone());
    crate::train::sigma::run_auto(
        &mut cfg.common,
        &dir,
        "volume",
        "mse",
        steps,
        batch,
        None,
        opts,
        |common, short, short_batch, scratch| {
            let short_batch = short_batch.min(fit_idx.len());
            let mut run = Run::scratch(scratch, common, 3, 1)?;
            let mut objective = VoxelBatches {
                train_idx: &fit_idx,
                all_points,
                truth,
                full_batch: short_batch == fit_idx.len(),
                rng: CounterRng::new(common.seed, STREAM_VALIDATION + 1),
                points: vec![0.0; 3 * short_batch],
                targets: vec![0.0; short_batch],
            };
            let mut spec = crate::train::fit::LoopSpec::new(short, train.lr, train.schedule, 0, short_batch);
            spec.chunk = chunk;
            run.train(&spec, &mut objective, &FitOptions::default())?;
            let mut z = vec![0.0; val_truth.len()];
            run.backend.predict(&val_points, &mut z)?;
            let sum = crate::train::metrics::ordered_sum(z.len(), |i| {
                ((sigmoid(z[i]) - val_truth[i]) as f64).powi(2)
            });
            Ok(sum / z.len() as f64)
        },
    )
}

/// Trains (or resumes) the run in `cfg.common.output`, then evaluates and exports.
pub fn fit(cfg: &VolumeConfig, opts: &FitOptions) -> Result<VolumeOutcome> {
    cfg.validate()?;
    let started = Instant::now();
    let volume = load_volume(&cfg.volume)?;
    let intensity: Intensity = cfg.normalize.fit(&volume.data, &cfg.volume)?;
    let truth = intensity.to_unit(&volume.data);
    let dims = volume.dims;
    let mut resolved = cfg.clone();
    resolved.common.encoding.fit_finest_to_grid(dims);
    let cfg = &resolved;
    log(
        opts,
        &format!(
            "volume {}: {dims:?}, intensities [{:.4}, {:.4}] → [0, 1] ({:?})",
            cfg.volume.display(),
            intensity.lo,
            intensity.hi,
            cfg.normalize
        ),
    );
    let n = truth.len();
    let split = train_split(cfg.common.seed, n, cfg.train.train_fraction);
    let train_idx: Vec<usize> = (0..n).filter(|&i| split[i]).collect();
    if train_idx.is_empty() {
        return Err(Error::Config(format!(
            "train.train_fraction {} leaves no training voxel",
            cfg.train.train_fraction
        )));
    }
    let batch = if cfg.train.batch == 0 { train_idx.len() } else { cfg.train.batch.min(train_idx.len()) };
    let sizes = network_sizes(&cfg.common, 3);
    let chunk = opts.grid_chunk(batch, &sizes);
    let mut plan = MemoryPlan::new("fit volume");
    let k = cfg.export.upsample;
    plan.host("volume, truth, split", bytes(n, 4 + 4 + 2))
        .host("training voxels", bytes(train_idx.len(), 8))
        .host("grid points", bytes(n, 12))
        .host("batch points and targets", bytes(batch, 16 + 8));
    let what = match chunk {
        Some(c) => format!("network ({c}-point chunks)"),
        None => format!("network (batch of {batch})"),
    };
    plan.host(what, bytes(chunk.unwrap_or(batch), 1).saturating_mul(network_bytes_per_point(&sizes)))
        .host(format!("export (fit, ×{k} grid)"), bytes(n, 12).saturating_mul((k * k * k) as u64));
    log(opts, &plan.describe());
    plan.check(&opts.memory_limits(None))?;
    let test: Vec<bool> = split.iter().map(|s| !s).collect();
    let n_test = n - train_idx.len();
    log(opts, &format!("{} training voxels, {n_test} held out", train_idx.len()));
    let all_points = grid_points(dims, 1);

    let mut searched = cfg.clone();
    let search_seconds = search_sigma(&mut searched, &train_idx, &all_points, &truth, batch, chunk, opts)?;
    let cfg = &searched;
    let meta = FieldMeta { job: "volume".into(), dims, world_from_voxel: volume.world_from_voxel, intensity };
    let mut run = Run::start(&cfg.common.output, &cfg.to_toml()?, &cfg.common, 3, meta.to_extra()?, opts)?;

    let mut objective = VoxelBatches {
        train_idx: &train_idx,
        all_points: &all_points,
        truth: &truth,
        full_batch: batch == train_idx.len(),
        rng: CounterRng::new(cfg.common.seed, STREAM_BATCH),
        points: vec![0.0; 3 * batch],
        targets: vec![0.0; batch],
    };
    let mut spec = cfg.train.loop_spec(batch);
    spec.chunk = chunk;
    let trained = run.train(&spec, &mut objective, opts)?;
    if let Some(step) = trained.interrupted {
        return Ok(VolumeOutcome::Interrupted { step });
    }

    let dir = &cfg.common.output;
    let fit =
        write_fit(run.backend.as_mut(), dir, dims, volume.world_from_voxel, &intensity, cfg.export.upsample)?;
    if cfg.export.montage {
        write_montage(&dir.join("montage.png"), dims, &[&truth, &fit, &error_image(&fit, &truth)])?;
    }
    let metrics = VolumeMetrics {
        psnr_test: psnr(&fit, &truth, Some(&test)),
        psnr_train: psnr(&fit, &truth, Some(&split)),
        psnr_all: psnr(&fit, &truth, None),
        ssim_test: ssim(&fit, &truth, dims, Some(&test)),
        ssim_all: ssim(&fit, &truth, dims, None),
        dims,
        train_voxels: train_idx.len(),
        test_voxels: n_test,
        intensity_lo: intensity.lo,
        intensity_hi: intensity.hi,
        run: run.stats(&trained, cfg.train.steps, started),
        sigma_search_seconds: search_seconds,
    };
    crate::train::run::write_metrics(dir, &metrics)?;
    Ok(VolumeOutcome::Finished(Box::new(metrics)))
}
