//! CT jobs: simulate projections of a phantom, reconstruct them classically (FBP, FDK, SART),
//! and fit a Fourier-feature field to them (`fit ct`).
//!
//! The neural fit learns f: [0,1]^d → [0,1] (a sigmoid on the MLP's output, applied here on
//! the host: p = σ(z), ∂L/∂z = ∂L/∂p · p(1 − p)) from line integrals, in one of two ways:
//!
//! - `render = "grid"` (the paper's 2D protocol): every step renders the field at every voxel
//!   centre, projects the image with the discrete projector A, and pushes the residual back
//!   through Aᵀ. Full batch.
//! - `render = "rays"`: every step draws a batch of detector rays, stratified samples along each
//!   inside the volume, and the midpoint-rule quadrature of the field along the ray.
//!
//! Loss: ½·mean((A f − y)²) over the measurements of the step.
//!
//! With grid rendering on a CUDA backend, A and Aᵀ run on the GPU too
//! ([`crate::backend::cuda::GpuProjector`], measured projections kept on the device): one upload
//! of the image and one download of its gradient per step. Elsewhere, or when the GPU projector
//! cannot be made (the run log says why), the CPU projector runs on the host's threads. Ray
//! rendering evaluates the field at stratified points along rays and has no projector.
//!
//! With the GPU projector the grid step is device-resident (unless `[device] resident = false`): the
//! voxel centres are uploaded once, the projector runs on the backend's stream and takes the
//! network's outputs z where the forward left them, applies σ, A, the residual, Aᵀ and the chain
//! factor p(1 − p) there, and hands ∂L/∂z to the backward on the device; the host reads the loss
//! and max |∂L/∂z| (for fp16's loss scale) per step, and the image only when the PSNR curve
//! needs it.

use crate::backend::Backend;
use crate::config::Common;
use crate::operator::ct_geometry::Scan;
use crate::operator::ray::{RayLoss, RayProjector};
use crate::operator::{choose_grid_loss, GridLoss};
use crate::sample::rays::{stratified, RaySamples};
use crate::sample::rng::streams;
use crate::sample::CounterRng;
use crate::train::fit::{Batch, DeviceStep, Objective, Run, TrainSettings};
use crate::train::image_metrics::{psnr_ct, ssim_ct};
use crate::train::loss::{sigmoid, through_sigmoid, through_sigmoid_floor};
use crate::train::memory::{
    bytes, device_grid_plan, grid_step, network_bytes_per_point, network_sizes, MemoryPlan,
};
use crate::train::run::{log, FitOptions};
use crate::train::LrSchedule;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::export::grid::{render_volume, upsampled_scan};
use crate::export::surface::{iso_surface, write_iso_meshes};
use crate::export::volume::write_volume;
use crate::io::ct::{load_ct_input, load_geometry, load_truth};
use crate::io::raw_projections::ProjectionInput;
pub use crate::train::run::{CHECKPOINT, LOSS_CSV, METRICS, RUN_TOML};
pub const RECON: &str = "recon.nii.gz";
/// The scan, written into every run folder.
pub const GEOMETRY: &str = "geometry.toml";
/// The PSNR curve so far (`step,psnr`), rewritten at each point, so a resumed run continues it.
pub const PSNR_CSV: &str = "psnr.csv";

/// The σ search's split of the views: every 8th view (7, 15, …) held out for validation, the
/// rest trained on; an error when that leaves no held-out view or fewer than 2 to train on.
pub fn holdout_views(n_views: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    let (held, kept): (Vec<usize>, Vec<usize>) = (0..n_views).partition(|v| v % 8 == 7);
    if held.is_empty() || kept.len() < 2 {
        return Err(Error::Config(format!(
            "--sigma auto holds out every 8th view for validation: {n_views} views are too few (it needs at least 8)"
        )));
    }
    Ok((held, kept))
}

/// `scan` and its measurements restricted to `views` (in that order).
fn scan_views(scan: &Scan, measured: &[f32], views: &[usize]) -> (Scan, Vec<f32>) {
    let rpv = scan.rays_per_view();
    let sub = Scan { angles: views.iter().map(|&v| scan.angles[v]).collect(), ..scan.clone() };
    let y = views.iter().flat_map(|&v| measured[v * rpv..(v + 1) * rpv].iter().copied()).collect();
    (sub, y)
}

/// `--sigma auto`: short fits on the views less every 8th ([`holdout_views`]), rendered as the
/// fit is (grid or rays) and with its loss (TV, the ramp weight, the warm start scaled to the
/// short fit), each scored by the mean squared error of the held-out views' projections of its
/// reconstruction on the fit's grid (the grid projector) against their measurements. Grid
/// rendering trains them on a coarser grid of the same box
/// ([`crate::train::sigma::SigmaSearch::proxy_grid`], [`coarse_scan`]).
fn search_sigma(
    cfg: &mut CtConfig,
    scan: &Scan,
    measured: &[f32],
    render: Render,
    chunk: Option<usize>,
    opts: &FitOptions,
) -> Result<Option<f64>> {
    let spec = match &cfg.common.sigma_search {
        Some(spec) if spec.chosen.is_none() => spec.clone(),
        // none, or chosen already (a resumed run): nothing to train
        _ => {
            let (steps, dir) = (cfg.train.steps, cfg.common.output.clone());
            return crate::train::sigma::run_auto(
                &mut cfg.common,
                &dir,
                "ct",
                "projection-mse",
                steps,
                1,
                None,
                opts,
                |_, _, _, _| Err(Error::Config("σ search: no trial to run".into())),
            );
        }
    };
    let (held, kept) = holdout_views(scan.n_views())?;
    let (train_scan, train_y) = scan_views(scan, measured, &kept);
    let (val_scan, val_y) = scan_views(scan, measured, &held);
    let val_projector = RayProjector::new(&val_scan, cfg.train.projector_step);
    // grid rendering: the short fits on a coarser grid of the same box, scored on the fit's
    let proxy = match render {
        Render::Grid => Some(spec.proxy_grid(cfg.train.steps, scan.voxels, scan.n_voxels())?),
        _ => None,
    };
    let train_scan = match &proxy {
        Some(p) => coarse_scan(&train_scan, p.grid),
        None => train_scan,
    };
    let train_projector =
        (render == Render::Grid).then(|| RayProjector::new(&train_scan, cfg.train.projector_step));
    let samples = if render == Render::Grid {
        train_scan.n_voxels()
    } else {
        cfg.train.rays_per_batch * cfg.train.samples_per_ray
    };
    let (steps, dir, base) = (cfg.train.steps, cfg.common.output.clone(), cfg.clone());
    // the run's own grid loss: the ramp weight, and the warm start's image (of the kept views
    // only, so nothing of a held-out view is seen), its steps scaled to the short fit
    let ramp = cfg.train.ramp_weight as f64;
    let warm = match &train_projector {
        Some(projector) if cfg.train.warm_steps() > 0 => {
            cfg.train.warm_start_image.reconstruct(&train_scan, projector, &train_y)?.0
        }
        _ => vec![],
    };
    let full_samples = if render == Render::Grid { scan.n_voxels() } else { samples };
    crate::train::sigma::run_auto(
        &mut cfg.common,
        &dir,
        "ct",
        "projection-mse",
        steps,
        full_samples,
        proxy,
        opts,
        |common, short, _, scratch| {
            let c = CtConfig { common: common.clone(), ..base.clone() };
            let mut run = Run::scratch(scratch, &c.common, scan.dims, 1)?;
            let mut stepper = Stepper::new(&train_scan, &c, &train_y, render, None);
            if let Some(projector) = &train_projector {
                stepper.op = Some(Box::new(
                    RayLoss::new(projector, &train_y).with_ramp(train_scan.det_pixels[0], ramp),
                ));
                if !warm.is_empty() {
                    stepper.warm = warm.clone();
                    stepper.warm_steps = short_warm_steps(&base.train, short);
                }
                if let Some((_, steps, warm)) = &mut stepper.ramp {
                    (*steps, *warm) = (short, short_warm_steps(&base.train, short));
                }
            }
            let mut spec = crate::train::fit::LoopSpec::new(short, c.train.lr, c.train.schedule, 0, samples);
            spec.chunk = chunk;
            run.train(&spec, &mut stepper, &FitOptions::default())?;
            let recon = render_volume(run.backend.as_mut(), scan)?;
            let mut y = vec![0.0; val_y.len()];
            val_projector.forward(&recon, &mut y);
            let sum = crate::train::metrics::ordered_sum(y.len(), |i| ((y[i] - val_y[i]) as f64).powi(2));
            Ok(sum / y.len() as f64)
        },
    )
}

/// `scan` on the grid `voxels` (no finer than its own) over the same extent: larger voxels,
/// the detector and views unchanged, so its projections are the same measurements.
pub fn coarse_scan(scan: &Scan, voxels: [usize; 3]) -> Scan {
    let mut c = scan.clone();
    for a in 0..3 {
        let n = voxels[a].clamp(1, scan.voxels[a].max(1));
        c.voxels[a] = n;
        c.voxel_size[a] = scan.voxel_size[a] * scan.voxels[a] as f64 / n as f64;
    }
    c
}

/// The warm start's steps of a σ search's short fit of `short` steps: the full fit's
/// [`CtTrainConfig::warm_steps`] scaled by `short / steps`, rounded up (a warm-started run's
/// short fits are warm-started too), leaving at least one step on the projections.
fn short_warm_steps(train: &CtTrainConfig, short: u64) -> u64 {
    let full = train.warm_steps();
    if full == 0 || train.steps == 0 {
        return 0;
    }
    let scaled = (full as u128 * short as u128).div_ceil(train.steps as u128) as u64;
    scaled.min(short.saturating_sub(1))
}

/// Stream for the stratified offsets along rays (ray choice uses `streams::TRAIN_BATCH`).
const STREAM_STRATA: u64 = 0xc7_01;
/// How the field is turned into predicted measurements each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Render {
    /// Grid for 2D volumes up to 512², rays otherwise.
    Auto,
    /// Render every voxel, project with A (full batch; the paper's 2D protocol).
    Grid,
    /// Batches of rays, stratified samples along each.
    Rays,
}

/// Everything a CT fit depends on. Reproducible from this and nothing else.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CtConfig {
    /// Always "ct".
    pub job: String,
    /// Projections (.npy), shaped [views, nu] (2D) or [views, nv, nu] (3D).
    pub projections: PathBuf,
    /// The scan geometry (TOML).
    pub geometry: PathBuf,
    /// The true volume (.nii.gz), for PSNR and SSIM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<PathBuf>,
    /// How the projections are read (raw stacks, rows, views, centre, grid); not written when empty.
    #[serde(default, skip_serializing_if = "ProjectionInput::is_empty")]
    pub input: ProjectionInput,
    #[serde(flatten)]
    pub common: Common,
    pub train: CtTrainConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtTrainConfig {
    pub steps: u64,
    pub lr: f32,
    pub schedule: LrSchedule,
    pub render: Render,
    /// Rays per step (render = rays).
    pub rays_per_batch: usize,
    /// Stratified samples per ray (render = rays).
    pub samples_per_ray: usize,
    /// Projector step as a fraction of the smallest voxel edge (render = grid).
    pub projector_step: f64,
    /// Compute PSNR against the truth every this many steps (render = grid; 0 = only at the end).
    pub eval_every: u64,
    /// Write a checkpoint every this many steps (0 = only at the end and on Ctrl-C).
    pub checkpoint_every: u64,
    /// Weight λ of the total variation of the field added to the loss (0: none)
    /// ([`crate::train::regularise`]).
    #[serde(default, skip_serializing_if = "crate::train::regularise::is_zero")]
    pub tv: f32,
    /// Anisotropic TV (Σ_a |∂_a p|) instead of isotropic (|∇p|).
    #[serde(default, skip_serializing_if = "crate::train::regularise::is_false")]
    pub tv_anisotropic: bool,
    /// Charbonnier ε of TV's smoothed |·|.
    #[serde(
        default = "crate::train::regularise::default_epsilon",
        skip_serializing_if = "crate::train::regularise::is_default_epsilon"
    )]
    pub tv_epsilon: f32,
    /// Weight β of the ramp-filtered residual in the grid loss, ½·rᵀ(I + β·F)r / m, F FBP's ramp
    /// filter along each detector row: preconditions the projection loss (0: the plain
    /// least-squares loss) ([`crate::operator::ray::RayLoss`]; render = grid, on the host).
    #[serde(default, skip_serializing_if = "crate::train::regularise::is_zero")]
    pub ramp_weight: f32,
    /// Steps that first fit the field to a classical reconstruction of the same projections
    /// ([`CtTrainConfig::warm_start_image`]; an image loss on the grid) before the projection
    /// loss takes over, at most a fifth of `steps` ([`CtTrainConfig::warm_steps`]; 0: none;
    /// render = grid).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub warm_start: u64,
    /// The classical reconstruction the warm start fits ([`WarmImage`]; absent in run files
    /// written before it existed, which warm-started from SART).
    #[serde(default, skip_serializing_if = "WarmImage::is_sart")]
    pub warm_start_image: WarmImage,
    /// The floor of σ′ in the warm start's chain rule through the field's sigmoid, in [0, ¼]
    /// ([`crate::train::loss::through_sigmoid_floor`]): a surrogate gradient that lets voxels
    /// whose logit saturated on the wrong side follow the classical image (0: the exact
    /// gradient). The projection steps after it use the exact gradient, which keeps the empty
    /// background at 0.
    #[serde(default, skip_serializing_if = "crate::train::regularise::is_zero")]
    pub warm_start_floor: f32,
    /// The ramp weight at the last step as a fraction of `ramp_weight`, in [0, 1]: after the warm
    /// start β falls linearly to `ramp_weight · ramp_final` ([`CtTrainConfig::ramp_at`]). The
    /// ramp filter preconditions the early steps but weights the noise of the high frequencies
    /// up; 1: constant.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub ramp_final: f32,
}

fn one() -> f32 {
    1.0
}

fn is_one(v: &f32) -> bool {
    *v == 1.0
}

/// The image a CT fit's warm start fits (`train.warm_start_image`, `--warm-start-image`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WarmImage {
    /// SART, [`WARM_START_SART_PASSES`] passes, λ = 1 (about 2 s at 256², 20 views, 2 cores);
    /// every preset's.
    #[default]
    Sart,
    /// ASD-POCS (TIGRE's defaults), [`WARM_START_ASD_POCS_ITERATIONS`] iterations: SART's data
    /// steps with TV between them (about 5 s there). On the four validation phantoms it ended
    /// 0.06–0.31 dB ahead of the SART warm start, on benchmark 1's eight test phantoms 0.17 dB
    /// behind on average (1.6 dB behind on one, below the ASD-POCS image it started from), so it
    /// is not the default (BENCHMARKS.md).
    AsdPocs,
}

impl WarmImage {
    fn is_sart(&self) -> bool {
        *self == WarmImage::Sart
    }

    /// The image of `measured` (on `scan`'s rays, through `projector`) and a line for the log.
    pub fn reconstruct(
        self,
        scan: &Scan,
        projector: &RayProjector,
        measured: &[f32],
    ) -> Result<(Vec<f32>, String)> {
        Ok(match self {
            WarmImage::Sart => {
                let sart =
                    crate::recon::SartOptions { iterations: WARM_START_SART_PASSES, ..Default::default() };
                (
                    crate::recon::sart(projector, measured, sart),
                    format!("a SART image ({WARM_START_SART_PASSES} passes)"),
                )
            }
            WarmImage::AsdPocs => {
                let opts = crate::recon::asd_pocs::AsdPocsOptions {
                    iterations: WARM_START_ASD_POCS_ITERATIONS,
                    ..Default::default()
                };
                let out = crate::recon::asd_pocs::asd_pocs(scan, projector, measured, opts)?;
                (out.volume, format!("an ASD-POCS image ({WARM_START_ASD_POCS_ITERATIONS} iterations)"))
            }
        })
    }
}

/// SART passes of the warm-start image ([`CtTrainConfig::warm_start`]): the classical setting
/// tuned on the validation phantom (`benchmarks/ct2d-classical/tuned.txt`).
pub const WARM_START_SART_PASSES: usize = 20;

/// ASD-POCS iterations of the warm-start image (TIGRE's other defaults): the setting tuned on
/// the validation phantom (`benchmarks/ct2d-classical/tuned.txt`).
pub const WARM_START_ASD_POCS_ITERATIONS: usize = 50;

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

crate::train_settings!(CtTrainConfig);

impl CtTrainConfig {
    /// The warm start's steps: `warm_start`, at most a fifth of `steps` (so a short run, or
    /// `--steps` lowered on a preset, still fits the projections).
    pub fn warm_steps(&self) -> u64 {
        self.warm_start.min(self.steps / 5)
    }

    /// The ramp weight β of step `step` (0-based) of a run of `steps` steps whose first `warm`
    /// steps are the warm start: `ramp_weight` up to the first projection step, then linearly
    /// down to `ramp_weight · ramp_final` at the last step.
    pub fn ramp_at(&self, step: u64, steps: u64, warm: u64) -> f64 {
        let beta = self.ramp_weight as f64;
        let last = steps.saturating_sub(1);
        if self.ramp_final == 1.0 || step <= warm || last <= warm {
            return beta;
        }
        let t = (step.min(last) - warm) as f64 / (last - warm) as f64;
        beta * (1.0 - t * (1.0 - self.ramp_final as f64))
    }

    /// The total-variation term these settings ask for (`None`: λ = 0).
    pub fn total_variation(&self) -> Option<crate::train::regularise::TotalVariation> {
        crate::train::regularise::TotalVariation::new(self.tv, self.tv_anisotropic, self.tv_epsilon)
    }
}

pub use crate::config::presets::CtPreset;

crate::job_config!(CtConfig, "ct");

impl CtConfig {
    /// The named starting point (see [`crate::config::presets`]).
    pub fn preset(preset: CtPreset) -> Self {
        crate::config::presets::ct(preset)
    }

    /// The named starting point for a scan of `dims` dimensions (the `hashgrid` preset has 3D
    /// settings of its own; [`crate::config::presets::ct_for`]).
    pub fn preset_for(preset: CtPreset, dims: usize) -> Self {
        crate::config::presets::ct_for(preset, dims)
    }

    pub fn to_toml(&self) -> Result<String> {
        crate::config::to_toml(self)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        self.common.validate("ct")?;
        let t = &self.train;
        if t.steps == 0 {
            return bad("train.steps must be at least 1".into());
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad(format!("train.lr must be positive, got {}", t.lr));
        }
        if t.rays_per_batch == 0 || t.samples_per_ray == 0 || t.rays_per_batch * t.samples_per_ray > 1 << 24 {
            return bad("train.rays_per_batch × train.samples_per_ray must be in 1..=2^24".into());
        }
        crate::train::regularise::TotalVariation::validate(t.tv, t.tv_epsilon, "train")?;
        if !(t.ramp_weight.is_finite() && (0.0..=1e6).contains(&t.ramp_weight)) {
            return bad(format!("train.ramp_weight must be in [0, 1e6], got {}", t.ramp_weight));
        }
        if t.warm_start > crate::recon::sart::MAX_ITERATIONS as u64 * 100 {
            return bad(format!("train.warm_start must be at most 10^7 steps, got {}", t.warm_start));
        }
        if !(t.ramp_final.is_finite() && (0.0..=1.0).contains(&t.ramp_final)) {
            return bad(format!("train.ramp_final must be in [0, 1], got {}", t.ramp_final));
        }
        if !(t.warm_start_floor.is_finite() && (0.0..=0.25).contains(&t.warm_start_floor)) {
            return bad(format!("train.warm_start_floor must be in [0, 0.25], got {}", t.warm_start_floor));
        }
        if !(t.projector_step > 0.0 && t.projector_step <= 2.0) {
            return bad(format!("train.projector_step must be in (0, 2], got {}", t.projector_step));
        }
        Ok(())
    }
}

/// Reads `RUN/run.toml` as a CT config.
pub fn load_run_config(dir: &Path) -> Result<CtConfig> {
    crate::train::run::load_run_toml(dir)
}

// ---------------------------------------------------------------------------------------------
// simulate

// ---------------------------------------------------------------------------------------------
// fit

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CtMetrics {
    pub psnr: Option<f64>,
    pub ssim: Option<f64>,
    /// (step, PSNR) during training (grid rendering with a truth volume).
    pub psnr_curve: Vec<(u64, f64)>,
    /// Mean loss over the last 1 % of steps.
    pub final_loss: f64,
    pub steps: u64,
    pub render: Option<Render>,
    /// Where A and Aᵀ ran (grid rendering): "gpu (…)" or "cpu (N threads)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projector: Option<String>,
    pub n_params: usize,
    pub device: String,
    pub train_seconds: f64,
    pub steps_per_second: f64,
    pub total_seconds: f64,
    /// Seconds of the σ search (`--sigma auto`), not included in `train_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_search_seconds: Option<f64>,
}

pub enum CtOutcome {
    Finished(Box<CtMetrics>),
    Interrupted { step: u64 },
}

/// The resolved rendering mode for a scan.
pub fn resolve_render(render: Render, scan: &Scan) -> Render {
    match render {
        Render::Auto if scan.dims == 2 && scan.n_voxels() <= 512 * 512 => Render::Grid,
        Render::Auto => Render::Rays,
        r => r,
    }
}

/// What the fit allocates on the host once its inputs are in: the projections and the truth,
/// and either the grid step (chunked when the whole grid's activations would not fit) with the
/// host projector's buffers, or a batch of rays; then the rendered volume.
fn host_plan(
    cfg: &CtConfig,
    scan: &Scan,
    render: Render,
    truth: bool,
    sizes: &[usize],
    chunk: Option<usize>,
) -> MemoryPlan {
    let (n, rays, d) = (scan.n_voxels(), scan.n_rays(), scan.dims);
    let mut plan = MemoryPlan::new("fit ct");
    plan.host("projections", bytes(rays, 4)).host("truth", if truth { bytes(n, 4) } else { 0 });
    plan.host(
        "hash-grid tables (with gradients, Adam moments)",
        crate::train::memory::table_bytes(&cfg.common, d),
    );
    if render == Render::Grid {
        plan.host("ray segments", bytes(rays, 32));
        grid_step(&mut plan, n, d, sizes, chunk);
        // σ(z), the image copy for the PSNR curve, Aᵀ's result and its scatter buffers, A's result
        plan.host(
            "projector (σ(z), Aᵀ and its scatter buffers, A)",
            bytes(n, 4 * 7).saturating_add(bytes(rays, 4)),
        );
    } else {
        let points = cfg.train.rays_per_batch.saturating_mul(cfg.train.samples_per_ray);
        plan.host("rays meeting the volume", bytes(rays, 8))
            .host("ray samples", bytes(points, 4 * d + 8))
            .host(
                "network (a batch of ray samples)",
                bytes(points, 1).saturating_mul(network_bytes_per_point(sizes)),
            );
    }
    plan.host("rendered volume", bytes(n, 4).saturating_add(bytes(n.min(1 << 20), 4 * d)));
    plan
}

/// Trains (or resumes) the run in `cfg.common.output`; writes recon.nii.gz/.png and metrics.json.
pub fn fit(cfg: &CtConfig, opts: &FitOptions) -> Result<CtOutcome> {
    cfg.validate()?;
    let started = Instant::now();
    let input = load_ct_input(&cfg.projections, &cfg.geometry, &cfg.input)?;
    input.notes.iter().for_each(|n| log(opts, n));
    let (scan, measured) = (input.scan, input.projections);
    let truth = cfg.truth.as_ref().map(|t| load_truth(&scan, t)).transpose()?;
    let render = resolve_render(cfg.train.render, &scan);
    let sizes = network_sizes(&cfg.common, scan.dims);
    let n = scan.n_voxels();
    let mut chunk = if render == Render::Grid { opts.grid_chunk(n, &sizes) } else { None };
    let plan = host_plan(cfg, &scan, render, truth.is_some(), &sizes, chunk);
    log(opts, &plan.describe());
    plan.check(&opts.memory_limits(None))?;
    // the inputs are good: only now the run folder, with the scan beside the run (for export)
    let dir = cfg.common.output.clone();
    let mut cfg = cfg.clone();
    cfg.train.render = render;
    let search_seconds = search_sigma(&mut cfg, &scan, &measured, render, chunk, opts)?;
    // the network, the device and a resumed checkpoint checked before anything is written
    let extra = [("ct".to_string(), format!("{{\"dims\":{}}}", scan.dims))].into();
    let mut run = Run::start(&dir, &cfg.to_toml()?, &cfg.common, scan.dims, extra, opts)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    crate::io::write_bytes_atomic(&dir.join(GEOMETRY), scan.to_toml()?.as_bytes())?;
    log(
        opts,
        &format!(
            "ct: {:?} beam, {}D, {} views, grid {:?}, render {render:?}",
            scan.beam,
            scan.dims,
            scan.n_views(),
            &scan.voxels[..scan.dims],
        )
        .to_lowercase(),
    );
    let start_step = run.step();
    if render == Render::Rays && (cfg.train.ramp_weight > 0.0 || cfg.train.warm_start > 0) {
        log(
            opts,
            "train.ramp_weight and train.warm_start apply to grid rendering: off for this ray-rendered run",
        );
    }
    // the PSNR curve so far: a resume continues the points up to its checkpoint's step
    let curve_path = dir.join(PSNR_CSV);
    let keeps_curve = truth.is_some() && cfg.train.eval_every > 0 && render == Render::Grid;
    let curve = if start_step > 0 { read_psnr_curve(&curve_path, start_step)? } else { vec![] };
    if keeps_curve && start_step > 0 && !curve_path.exists() {
        let p = curve_path.display();
        log(
            opts,
            &format!("warning: no {p} (a run of an older ffvol): the PSNR curve starts at this resume"),
        );
    }
    if keeps_curve {
        write_psnr_curve(&curve_path, &curve)?;
    } else if curve_path.exists() {
        std::fs::remove_file(&curve_path).map_err(|e| Error::io(&curve_path, e))?;
    }

    let projector = (render == Render::Grid).then(|| RayProjector::new(&scan, cfg.train.projector_step));
    let mut stepper = Stepper::new(&scan, &cfg, &measured, render, truth.as_deref());
    (stepper.psnr_curve, stepper.curve_path) = (curve, keeps_curve.then_some(curve_path));
    let mut metrics = CtMetrics { render: Some(render), ..Default::default() };
    if let Some(projector) = &projector {
        let mut device = cfg.common.device.clone();
        if let Some(free) = run.backend.device_memory_free() {
            let operator =
                ("projector (projections, A, Aᵀ, σ(z))", bytes(scan.n_rays(), 8).saturating_add(bytes(n, 8)));
            (device.resident, chunk) =
                device_grid_plan("fit ct", (n, scan.dims, &sizes), operator, &device, chunk, free, opts)?;
        }
        // the TV term and the warm start's image loss are added on the host, to ∂L/∂z
        let warm_left = cfg.train.warm_steps() > start_step;
        let host_term = match (stepper.tv.is_some(), warm_left) {
            (true, _) => Some("train.tv is computed on the host"),
            (false, true) => Some("the warm start's image loss is computed on the host"),
            (false, false) => None,
        };
        if let Some(why) = host_term.filter(|_| device.resident && run.backend.device_jobs().is_some()) {
            log(opts, &format!("step: not device-resident ({why})"));
            device.resident = false;
        }
        if warm_left {
            let t = Instant::now();
            let (image, what) = cfg.train.warm_start_image.reconstruct(&scan, projector, &measured)?;
            stepper.warm = image;
            stepper.warm_steps = cfg.train.warm_steps();
            log(
                opts,
                &format!(
                    "warm start: steps 1–{} fit {what}, {:.2} s",
                    cfg.train.warm_steps(),
                    t.elapsed().as_secs_f64()
                ),
            );
        }
        let ramp = cfg.train.ramp_weight as f64;
        let (op, resident, what) = choose_grid_loss(
            run.backend.as_mut(),
            &device,
            |jobs, resident| {
                if ramp > 0.0 {
                    return Err(Error::Config(
                        "the ramp-weighted loss has no kernel; it runs on the host".into(),
                    ));
                }
                jobs.ray_operator(&scan, projector, &measured, resident)
            },
            || Box::new(RayLoss::new(projector, &measured).with_ramp(scan.det_pixels[0], ramp)),
        );
        log(opts, &format!("projector: {what}"));
        if resident {
            log(opts, "step: device-resident (grid uploaded once; outputs and ∂L/∂z stay on the GPU)");
        }
        metrics.projector = Some(what.split(':').next().unwrap_or_default().to_string());
        (stepper.op, stepper.resident) = (Some(op), resident);
    }
    let steps = cfg.train.steps;
    let samples = if render == Render::Grid {
        scan.n_voxels()
    } else {
        cfg.train.rays_per_batch * cfg.train.samples_per_ray
    };
    let mut spec = cfg.train.loop_spec(samples);
    spec.chunk = if stepper.resident { None } else { chunk };
    let trained = run.train(&spec, &mut stepper, opts)?;
    if let Some(step) = trained.interrupted {
        return Ok(CtOutcome::Interrupted { step });
    }
    metrics.psnr_curve = std::mem::take(&mut stepper.psnr_curve);

    let recon = render_volume(run.backend.as_mut(), &scan)?;
    write_volume(&scan, &recon, &dir.join(RECON))?;
    if let Some(t) = &truth {
        metrics.psnr = Some(psnr_ct(&recon, t));
        metrics.ssim = Some(ssim_ct(&recon, t, scan.voxels));
    }
    let train_s = trained.train_seconds + trained.sample_seconds;
    metrics.final_loss = run.final_loss();
    metrics.steps = steps;
    metrics.n_params = run.n_params;
    metrics.device = run.backend.describe();
    metrics.train_seconds = train_s;
    metrics.steps_per_second = (steps - start_step) as f64 / train_s.max(1e-9);
    metrics.total_seconds = started.elapsed().as_secs_f64();
    metrics.sigma_search_seconds = search_seconds;
    crate::train::run::write_metrics(&dir, &metrics)?;
    Ok(CtOutcome::Finished(Box::new(metrics)))
}

/// The scan of a run folder: its own `geometry.toml` (written by [`fit`]), else the file the run
/// was configured with.
pub fn run_scan(dir: &Path, cfg: &CtConfig) -> Result<Scan> {
    let own = dir.join(GEOMETRY);
    if own.is_file() {
        Scan::load(&own)
    } else if cfg.input.is_empty() {
        load_geometry(&cfg.geometry)
    } else {
        Ok(load_ct_input(&cfg.projections, &cfg.geometry, &cfg.input)?.scan)
    }
}

/// Re-renders a saved CT run: `recon_xK.nii.gz` on the grid `upsample` times finer (when
/// `upsample` > 1 or no mesh is asked for), and with `mesh = Some((level, formats))` the
/// `level` iso-surface of the attenuation (the units of `recon.nii.gz`) in world millimetres,
/// for 3D scans. Returns the paths written.
pub fn export_run(
    dir: &Path,
    upsample: usize,
    mesh: Option<(f32, Vec<crate::io::MeshFormat>)>,
    threads: usize,
) -> Result<Vec<PathBuf>> {
    let cfg = load_run_config(dir)?;
    let scan = run_scan(dir, &cfg)?;
    if !(1..=8).contains(&upsample) {
        return Err(Error::Config(format!("--upsample must be in 1..=8, got {upsample}")));
    }
    if mesh.is_some() && scan.dims != 3 {
        return Err(Error::Config(format!(
            "{}: a 2D reconstruction has no surface; --mesh needs a 3D scan (export writes the image \
             without --mesh)",
            dir.display()
        )));
    }
    let fine = upsampled_scan(&scan, upsample);
    let n = fine.n_voxels() as u64;
    crate::train::memory::check_export(
        &format!("export ×{upsample} (use a lower --upsample)"),
        &[("volume", n.saturating_mul(4)), ("NIfTI data", n.saturating_mul(4))],
    )?;
    let ck = crate::train::run::load_checkpoint(dir, &cfg.common, scan.dims)?;
    let mut backend = crate::train::run::saved_backend(&ck, &cfg.common.device, threads)?;
    let values = render_volume(backend.as_mut(), &fine)?;
    let mut written = vec![];
    if upsample > 1 || mesh.is_none() {
        let path = dir.join(format!("recon_x{upsample}.nii.gz"));
        write_volume(&fine, &values, &path)?;
        written.push(path);
    }
    if let Some((level, formats)) = mesh {
        if !(level > 0.0 && level < 1.0) {
            return Err(Error::Config(format!(
                "--level is an attenuation between the fit's 0 and 1 (recon.nii.gz), got {level}"
            )));
        }
        let surface = iso_surface(&values, fine.voxels, fine.world_from_voxel(), level);
        if surface.triangles.is_empty() {
            return Err(Error::Config(format!(
                "{}: nothing in the reconstruction crosses --level {level}; try a level between its \
                 background and its structures (see recon.nii.gz)",
                dir.display()
            )));
        }
        written.extend(write_iso_meshes(dir, &surface, level, upsample, &formats)?);
    }
    Ok(written)
}

/// One training step of either rendering mode, with its scratch buffers.
struct Stepper<'a> {
    scan: &'a Scan,
    measured: &'a [f32],
    /// The true volume, for the PSNR curve (grid rendering), every `eval_every` steps.
    truth: Option<&'a [f32]>,
    eval_every: u64,
    psnr_curve: Vec<(u64, f64)>,
    /// Where the curve is kept after each point (`psnr.csv`), for a resume.
    curve_path: Option<PathBuf>,
    render: Render,
    seed: u64,
    // grid
    /// σ, A, the residual, Aᵀ and the chain rule, on the host or the device
    /// ([`crate::operator::choose_grid_loss`]).
    op: Option<Box<dyn GridLoss + 'a>>,
    /// The grid step runs device-resident (`op` lives on the backend's device and stream).
    resident: bool,
    grid_points: Vec<f32>,
    image: Vec<f32>,
    /// Total variation of σ(z): on the grid, or along each ray's samples.
    tv: Option<crate::train::regularise::TotalVariation>,
    /// σ(z) and λ·∂TV/∂σ of the step, for the TV term.
    tv_p: Vec<f32>,
    tv_dp: Vec<f32>,
    /// σ′'s floor in the warm start's chain rule through σ (`train.warm_start_floor`).
    warm_floor: f32,
    /// The ramp weight's schedule: settings, steps of the run and of its warm start (from the
    /// settings, not `warm_steps`, which a resume past the warm start leaves at 0); `None`:
    /// constant β.
    ramp: Option<(CtTrainConfig, u64, u64)>,
    /// The warm start's steps and its target image (a classical reconstruction; empty when done or
    /// off), and whether the last step was one of them (its image is then `image`).
    warm_steps: u64,
    warm: Vec<f32>,
    last_warm: bool,
    // rays
    valid_rays: Vec<usize>,
    rays_per_batch: usize,
    samples_per_ray: usize,
    ids: Vec<usize>,
    samples: RaySamples,
}

impl<'a> Stepper<'a> {
    fn new(
        scan: &'a Scan,
        cfg: &CtConfig,
        measured: &'a [f32],
        render: Render,
        truth: Option<&'a [f32]>,
    ) -> Self {
        let mut s = Stepper {
            scan,
            measured,
            truth,
            eval_every: cfg.train.eval_every,
            psnr_curve: vec![],
            curve_path: None,
            render,
            seed: cfg.common.seed,
            op: None,
            resident: false,
            grid_points: vec![],
            image: vec![],
            tv: cfg.train.total_variation(),
            tv_p: vec![],
            tv_dp: vec![],
            warm_floor: cfg.train.warm_start_floor,
            ramp: (cfg.train.ramp_final != 1.0 && cfg.train.ramp_weight > 0.0)
                .then(|| (cfg.train.clone(), cfg.train.steps, cfg.train.warm_steps())),
            warm_steps: 0,
            warm: vec![],
            last_warm: false,
            valid_rays: vec![],
            rays_per_batch: cfg.train.rays_per_batch,
            samples_per_ray: cfg.train.samples_per_ray,
            ids: vec![],
            samples: RaySamples::default(),
        };
        if render == Render::Grid {
            s.grid_points = scan.voxel_centres_unit();
        } else {
            s.valid_rays = (0..scan.n_rays()).filter(|&i| scan.clip(&scan.ray(i)).is_some()).collect();
        }
        s
    }

    /// The image rendered by the last grid step.
    fn image(&mut self) -> Result<Option<&[f32]>> {
        let Some(op) = &mut self.op else { return Ok(None) };
        if !self.last_warm {
            op.image(&mut self.image)?;
        }
        Ok((!self.image.is_empty()).then_some(self.image.as_slice()))
    }
}

impl Objective for Stepper<'_> {
    fn batch(&mut self, step: u64) -> Result<Batch<'_>> {
        if self.render == Render::Grid {
            return Ok(Batch { points: &self.grid_points, targets: None });
        }
        let (b, s) = (self.rays_per_batch, self.samples_per_ray);
        if self.valid_rays.is_empty() {
            return Err(Error::Config("no ray meets the volume".into()));
        }
        let pick = CounterRng::new(self.seed, streams::TRAIN_BATCH);
        let n_valid = self.valid_rays.len() as u64;
        self.ids.clear();
        self.ids.extend(
            (0..b as u64).map(|j| self.valid_rays[pick.below(step * b as u64 + j, n_valid) as usize]),
        );
        let strata = CounterRng::new(self.seed, STREAM_STRATA);
        stratified(self.scan, &self.ids, s, Some(&strata), step * (b * s) as u64, &mut self.samples);
        Ok(Batch { points: &self.samples.points, targets: None })
    }

    fn loss(&mut self, step: u64, z: &[f32], dz: &mut [f32]) -> Result<f32> {
        self.last_warm = step < self.warm_steps && !self.warm.is_empty();
        if self.last_warm {
            return Ok(self.warm_loss(z, dz));
        }
        if let (Some((train, steps, warm)), Some(op)) = (&self.ramp, self.op.as_mut()) {
            op.set_ramp_weight(train.ramp_at(step, *steps, *warm))?;
        }
        let data = if self.render == Render::Grid { self.grid_loss(z, dz)? } else { self.ray_loss(z, dz) };
        Ok(data + self.add_tv(z, dz) as f32)
    }

    fn device_step(&mut self, backend: &mut dyn Backend, _step: u64, lr: f32) -> Option<Result<DeviceStep>> {
        if !self.resident {
            return None;
        }
        let op = self.op.as_mut()?;
        let loss = match backend.device_jobs()?.resident_step(op.as_mut(), &self.grid_points) {
            Ok(loss) => loss as f32,
            Err(e) => return Some(Err(e)),
        };
        Some(backend.optimizer_step(lr).map(|()| DeviceStep::Done(loss)))
    }

    fn after_step(&mut self, _backend: &mut dyn Backend, done: u64) -> Result<Option<String>> {
        let Some(truth) = self.truth else { return Ok(None) };
        if self.eval_every == 0 || done % self.eval_every != 0 {
            return Ok(None);
        }
        let Some(img) = self.image()? else { return Ok(None) };
        let psnr = psnr_ct(img, truth);
        self.psnr_curve.push((done, psnr));
        if let Some(path) = &self.curve_path {
            // before the checkpoint of this step, so a checkpoint never has points missing
            write_psnr_curve(path, &self.psnr_curve)?;
        }
        Ok(Some(format!("PSNR {psnr:.2} dB")))
    }
}

impl Stepper<'_> {
    /// λ·TV of σ(z) (on the grid, or along the rays of the batch), its gradient added to `dz`
    /// through σ; 0 without TV.
    fn add_tv(&mut self, z: &[f32], dz: &mut [f32]) -> f64 {
        let Some(tv) = self.tv else { return 0.0 };
        self.tv_p.clear();
        self.tv_p.extend(z.iter().map(|&v| sigmoid(v)));
        self.tv_dp.clear();
        self.tv_dp.resize(z.len(), 0.0);
        let value = if self.render == Render::Grid {
            tv.add_grid(&self.tv_p, self.scan.voxels, &mut self.tv_dp)
        } else {
            tv.add_along_rays(&self.tv_p, self.samples_per_ray, &mut self.tv_dp)
        };
        for ((d, &g), &p) in dz.iter_mut().zip(&self.tv_dp).zip(&self.tv_p) {
            *d += through_sigmoid(g, p);
        }
        value
    }

    /// The warm start's image loss ½·mean((σ(z) − x_SART)²) on the grid, its image kept for the
    /// PSNR curve.
    fn warm_loss(&mut self, z: &[f32], dz: &mut [f32]) -> f32 {
        let n = z.len() as f64;
        self.image.clear();
        self.image.extend(z.iter().map(|&v| sigmoid(v)));
        let mut total = 0.0f64;
        for ((d, &p), &w) in dz.iter_mut().zip(&self.image).zip(&self.warm) {
            let r = p - w;
            total += 0.5 * (r as f64) * (r as f64);
            *d = through_sigmoid_floor((r as f64 / n) as f32, p, self.warm_floor);
        }
        (total / n) as f32
    }

    /// Grid rendering: the grid loss (σ, A, the residual, Aᵀ and the chain rule through σ).
    fn grid_loss(&mut self, z: &[f32], dz: &mut [f32]) -> Result<f32> {
        let op =
            self.op.as_mut().ok_or_else(|| Error::Config("grid rendering without a projector".into()))?;
        Ok(op.sigmoid_loss_and_gradient(z, dz)? as f32)
    }

    /// Ray rendering: each ray's integral is the weighted sum of σ at its samples.
    fn ray_loss(&mut self, z: &[f32], dz: &mut [f32]) -> f32 {
        let (b, s) = (self.rays_per_batch, self.samples_per_ray);
        let mut total = 0.0f64;
        for (j, (zr, dr)) in z.chunks_exact(s).zip(dz.chunks_exact_mut(s)).enumerate() {
            let w = self.samples.weights[j];
            let pred: f32 = zr.iter().map(|&v| sigmoid(v)).sum::<f32>() * w;
            let r = pred - self.measured[self.ids[j]];
            total += 0.5 * (r as f64) * (r as f64);
            let g = r / b as f32 * w;
            for (d, &v) in dr.iter_mut().zip(zr) {
                *d = through_sigmoid(g, sigmoid(v));
            }
        }
        (total / b as f64) as f32
    }
}

/// Writes the PSNR curve as `step,psnr` rows, atomically (values in Rust's shortest round-trip
/// form, so a resumed run reads back the same numbers).
fn write_psnr_curve(path: &Path, curve: &[(u64, f64)]) -> Result<()> {
    let mut s = String::from("step,psnr\n");
    for (step, psnr) in curve {
        s.push_str(&format!("{step},{psnr}\n"));
    }
    crate::io::write_bytes_atomic(path, s.as_bytes())
}

/// The points of a run's PSNR curve up to step `up_to` (a kill between the curve and the
/// checkpoint leaves points past it); none when the file is missing (a run from before the
/// curve was kept). A row that does not parse is an error naming the file and the line.
fn read_psnr_curve(path: &Path, up_to: u64) -> Result<Vec<(u64, f64)>> {
    if !path.exists() {
        return Ok(vec![]);
    }
    let text = crate::io::read_text(path)?;
    let mut curve = vec![];
    for (i, line) in text.lines().enumerate().skip(1) {
        let row =
            line.split_once(',').and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<f64>().ok()?)));
        match row {
            Some((step, psnr)) if step <= up_to => curve.push((step, psnr)),
            Some(_) => {}
            None => {
                return Err(Error::format(path, format!("line {}: {line:?} is not a step,psnr row", i + 1)))
            }
        }
    }
    Ok(curve)
}

#[cfg(test)]
mod curve_tests {
    use super::*;

    /// A warm-started run's short fits are warm-started for the same fraction of their steps.
    #[test]
    fn short_fits_scale_the_warm_start() {
        let mut t = CtConfig::preset(CtPreset::Fast).train;
        (t.steps, t.warm_start) = (250, 50);
        assert_eq!(short_warm_steps(&t, 137), 28);
        assert_eq!(short_warm_steps(&t, 2), 1);
        assert_eq!(short_warm_steps(&t, 1), 0);
        t.warm_start = 0;
        assert_eq!(short_warm_steps(&t, 137), 0);
        let scan = Scan::paper_2d(64, 8);
        let c = coarse_scan(&scan, [16, 16, 1]);
        assert_eq!(c.voxels, [16, 16, 1]);
        assert_eq!(c.vol_min(), scan.vol_min());
        assert!((c.voxel_size[0] - 4.0 * scan.voxel_size[0]).abs() < 1e-12);
    }

    /// `train.ramp_final`'s schedule: β through the warm start and its first projection step,
    /// then linear to β · ramp_final at the last step; 1 is constant; out of [0, 1] refused.
    #[test]
    fn the_ramp_weight_falls_linearly_after_the_warm_start() {
        let mut t = CtConfig::preset(CtPreset::HashGrid).train;
        (t.ramp_weight, t.ramp_final) = (100.0, 0.1);
        let at = |step| t.ramp_at(step, 150, 30);
        assert_eq!((at(0), at(29), at(30)), (100.0, 100.0, 100.0));
        assert!((at(149) - 10.0).abs() < 1e-5 && (at(200) - 10.0).abs() < 1e-5);
        assert!((at(89) - 55.378151260504).abs() < 1e-6, "{}", at(89));
        assert!((31..149).all(|s| at(s) < at(s - 1)));
        t.ramp_final = 1.0;
        assert!((0..150).all(|s| t.ramp_at(s, 150, 30) == 100.0));
        let mut c = CtConfig::preset(CtPreset::HashGrid);
        c.train.ramp_final = 1.5;
        assert!(c.validate().unwrap_err().to_string().contains("train.ramp_final must be in [0, 1]"));
    }

    /// `train.warm_start_floor`: [0, ¼] accepted (0.05 in the default preset, 0 in the others),
    /// written to run.toml only when set, read back; a value outside (or NaN) refused naming the
    /// key.
    #[test]
    fn the_warm_start_floor_is_range_checked_and_round_trips() {
        assert_eq!(CtConfig::preset(CtPreset::HashGrid).train.warm_start_floor, 0.05);
        let mut c = CtConfig::preset(CtPreset::Fast);
        c.validate().unwrap();
        assert!(!c.to_toml().unwrap().contains("warm_start_floor"));
        c.train.warm_start_floor = 0.05;
        c.validate().unwrap();
        let text = c.to_toml().unwrap();
        assert!(text.contains("warm_start_floor = 0.05"), "{text}");
        let back: CtConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.train.warm_start_floor, 0.05);
        for bad in [0.3, -0.01, f32::NAN] {
            c.train.warm_start_floor = bad;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("train.warm_start_floor must be in [0, 0.25]"), "{bad}: {e}");
        }
    }

    #[test]
    fn psnr_curve_round_trip_and_truncation() {
        let dir = std::env::temp_dir().join(format!("ffvol-psnr-curve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(PSNR_CSV);
        let curve = vec![(5, 12.345678901234567), (10, 17.0), (15, 1.0 / 3.0)];
        write_psnr_curve(&path, &curve).unwrap();
        assert_eq!(read_psnr_curve(&path, 15).unwrap(), curve);
        assert_eq!(read_psnr_curve(&path, 14).unwrap(), curve[..2].to_vec());
        assert!(read_psnr_curve(&dir.join("missing.csv"), 9).unwrap().is_empty());
        std::fs::write(&path, "step,psnr\n5,12.5\n10\n").unwrap();
        let err = read_psnr_curve(&path, 99).unwrap_err().to_string();
        assert!(err.contains(PSNR_CSV) && err.contains("line 3"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
