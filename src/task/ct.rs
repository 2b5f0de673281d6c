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
//! With the GPU projector the grid step is device-resident (unless `FFVOL_CUDA_RESIDENT=0`): the
//! voxel centres are uploaded once, the projector runs on the backend's stream and takes the
//! network's outputs z where the forward left them, applies σ, A, the residual, Aᵀ and the chain
//! factor p(1 − p) there, and hands ∂L/∂z to the backward on the device; the host reads the loss
//! and max |∂L/∂z| (for fp16's loss scale) per step, and the image only when the PSNR curve
//! needs it.

use crate::backend::cuda::GpuProjector;
use crate::backend::Backend;
use crate::encoding::EncodingConfig;
use crate::io::npy::{read_npy_f32, write_npy_f32};
use crate::model::checkpoint::Checkpoint;
use crate::model::ModelConfig;
use crate::operator::ct_geometry::Scan;
use crate::operator::ray::RayProjector;
use crate::sample::rays::{stratified, RaySamples};
use crate::sample::rng::streams;
use crate::sample::CounterRng;
use crate::task::ct_metrics;
use crate::task::ct_phantom::Phantom;
use crate::task::occupancy::{log, FitOptions};
use crate::task::run::{checkpoint_due, diverged, final_loss};
use crate::train::loss::sigmoid;
use crate::train::LrSchedule;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::task::run::{CHECKPOINT, LOSS_CSV, METRICS, RUN_TOML};
pub const RECON: &str = "recon.nii.gz";
/// The scan, written into every run folder.
pub const GEOMETRY: &str = "geometry.toml";

/// Stream for the stratified offsets along rays (ray choice uses `streams::TRAIN_BATCH`).
const STREAM_STRATA: u64 = 0xc7_01;
/// Stream for simulated noise.
const STREAM_NOISE: u64 = 0xc7_02;

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
#[serde(deny_unknown_fields)]
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
    pub output: PathBuf,
    pub seed: u64,
    pub threads: usize,
    pub device: String,
    pub encoding: EncodingConfig,
    pub model: ModelConfig,
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
}

/// Named starting points for `fit ct`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CtPreset {
    /// Small and quick on 2 CPU cores: 4 × 128, m = 128, 300 steps.
    Fast,
    /// The paper's 2D CT protocol: 4 × 256, m = 256, σ_g = 4 (σ_p = 3), 1000 full-batch steps.
    PaperCt,
}

/// The paper's learning rate for a mapping: 1e-3 for Gaussian and positional, 1e-2 otherwise.
pub fn paper_lr(encoding: &EncodingConfig) -> f32 {
    match encoding {
        EncodingConfig::Gaussian { .. } | EncodingConfig::Positional { .. } => 1e-3,
        _ => 1e-2,
    }
}

/// The paper's CT mappings by name: σ_g = 4 with m frequencies, σ_p = 3 with m/2 per axis (2D).
pub fn paper_encoding(name: &str, m: usize) -> Result<EncodingConfig> {
    Ok(match name {
        "none" => EncodingConfig::None,
        "basic" => EncodingConfig::Basic { normalize: false },
        "positional" => EncodingConfig::Positional { sigma: 3.0, features: m / 2, normalize: false },
        "gaussian" => EncodingConfig::Gaussian { sigma: 4.0, features: m, normalize: false },
        other => {
            return Err(Error::Config(format!(
                "unknown encoding {other:?}: none, basic, positional or gaussian"
            )))
        }
    })
}

impl CtConfig {
    pub fn preset(preset: CtPreset) -> Self {
        let base = CtConfig {
            job: "ct".into(),
            projections: PathBuf::new(),
            geometry: PathBuf::new(),
            truth: None,
            output: PathBuf::new(),
            seed: 0,
            threads: 0,
            device: "auto".into(),
            encoding: EncodingConfig::Gaussian { sigma: 4.0, features: 128, normalize: false },
            model: ModelConfig { depth: 4, width: 128 },
            train: CtTrainConfig {
                steps: 300,
                lr: 1e-3,
                schedule: LrSchedule::Constant,
                render: Render::Auto,
                rays_per_batch: 1024,
                samples_per_ray: 64,
                projector_step: 0.5,
                eval_every: 50,
                checkpoint_every: 100,
            },
        };
        match preset {
            CtPreset::Fast => base,
            CtPreset::PaperCt => CtConfig {
                encoding: EncodingConfig::Gaussian { sigma: 4.0, features: 256, normalize: false },
                model: ModelConfig { depth: 4, width: 256 },
                train: CtTrainConfig { steps: 1000, render: Render::Grid, eval_every: 100, ..base.train },
                ..base
            },
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        self.encoding.validate()?;
        self.model.validate()?;
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
        if !(t.projector_step > 0.0 && t.projector_step <= 2.0) {
            return bad(format!("train.projector_step must be in (0, 2], got {}", t.projector_step));
        }
        crate::task::run::validate_device(&self.device)
    }
}

/// Reads `RUN/run.toml` as a CT config.
pub fn load_run_config(dir: &Path) -> Result<CtConfig> {
    crate::task::run::load_run_toml(dir)
}

/// A geometry by file, or built in: `paper-ct` (512², 20 views) or `paper-ct:N[:VIEWS]`.
pub fn load_geometry(spec: &Path) -> Result<Scan> {
    let s = spec.to_string_lossy();
    if let Some(rest) = s.strip_prefix("paper-ct") {
        let parts: Vec<&str> = rest.split(':').filter(|p| !p.is_empty()).collect();
        let num = |i: usize, d: usize| -> Result<usize> {
            parts.get(i).map_or(Ok(d), |p| {
                p.parse::<usize>().ok().filter(|n| (1..=8192).contains(n)).ok_or_else(|| {
                    Error::Config(format!("--geometry {s}: {p:?} is not a size (paper-ct[:N[:VIEWS]])"))
                })
            })
        };
        if parts.len() > 2 {
            return Err(Error::Config(format!("--geometry {s}: expected paper-ct[:N[:VIEWS]]")));
        }
        return Ok(Scan::paper_2d(num(0, 512)?, num(1, 20)?));
    }
    Scan::load(spec)
}

/// Loads projections and checks them against the geometry.
pub fn load_projections(scan: &Scan, proj: &Path, geom: &Path) -> Result<Vec<f32>> {
    let (data, shape) = read_npy_f32(proj)?;
    scan.check_projections(&shape, proj, geom)?;
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        let [nu, nv] = scan.det_pixels;
        let (view, v, u) = (i / (nu * nv), (i / nu) % nv, i % nu);
        let at = if scan.dims == 2 {
            format!("view {view}, bin {u}")
        } else {
            format!("view {view}, row {v}, bin {u}")
        };
        return Err(Error::Input(format!(
            "{}: projection at {at} is {} (not finite)",
            proj.display(),
            data[i]
        )));
    }
    Ok(data)
}

/// Loads a truth volume and checks its grid.
pub fn load_truth(scan: &Scan, path: &Path) -> Result<Vec<f32>> {
    let (data, dims, _) = crate::io::read_nifti_f32(path)?;
    if dims != scan.voxels {
        return Err(Error::format(
            path,
            format!("the volume is {dims:?} voxels but the geometry's grid is {:?}", scan.voxels),
        ));
    }
    Ok(data)
}

/// Writes a volume on the scan's grid as .nii.gz, plus a PNG of the (middle) slice beside it.
pub fn write_volume(scan: &Scan, data: &[f32], path: &Path) -> Result<()> {
    crate::io::write_nifti_f32(path, data, scan.voxels, scan.world_from_voxel())?;
    let [nx, ny, nz] = scan.voxels;
    let z = nz / 2;
    let slice = &data[z * nx * ny..(z + 1) * nx * ny];
    let png = path.with_extension("").with_extension("png");
    // images show y up: row 0 is the largest y
    let rows: Vec<f32> = (0..ny).rev().flat_map(|y| slice[y * nx..(y + 1) * nx].iter().copied()).collect();
    write_png_gray(&png, &rows, nx, ny, 0.0, 1.0)
}

/// Writes an 8-bit grey PNG of a row-major `w`×`h` image, mapping [lo, hi] to [0, 255].
pub fn write_png_gray(path: &Path, img: &[f32], w: usize, h: usize, lo: f32, hi: f32) -> Result<()> {
    let span = (hi - lo).max(1e-12);
    let bytes: Vec<u8> =
        img.iter().map(|&v| (((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    crate::io::write_atomic(path, |out| {
        let mut enc = png::Encoder::new(out, w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(&bytes).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
}

// ---------------------------------------------------------------------------------------------
// simulate

/// What to project.
#[derive(Clone, Debug)]
pub enum PhantomSource {
    /// The modified Shepp–Logan phantom, perturbed from this seed (or not, with `None`).
    Shepp2d(Option<u64>),
    Shepp3d,
    /// A volume on the geometry's grid, projected with the discrete projector.
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct SimulateOptions {
    pub phantom: PhantomSource,
    /// Poisson noise with this many incident photons per ray, on exp(−measurement).
    pub poisson_i0: Option<f64>,
    pub seed: u64,
    /// Samples per voxel edge when rasterising an analytic phantom.
    pub supersample: usize,
}

/// Simulated measurements and the true volume on the grid.
pub struct Simulated {
    pub projections: Vec<f32>,
    pub truth: Vec<f32>,
}

/// Projects the phantom (closed form for Shepp–Logan, the discrete projector for a file).
pub fn simulate(scan: &Scan, opts: &SimulateOptions) -> Result<Simulated> {
    let projector = RayProjector::new(scan, 0.5);
    let (mut projections, truth) = match &opts.phantom {
        PhantomSource::File(path) => {
            let truth = load_truth(scan, path)?;
            let mut p = vec![0.0; scan.n_rays()];
            projector.forward(&truth, &mut p);
            (p, truth)
        }
        source => {
            let ph = match source {
                PhantomSource::Shepp2d(seed) => Phantom::shepp_2d(*seed),
                _ => Phantom::shepp_3d(),
            };
            if ph.dims != scan.dims {
                return Err(Error::Config(format!(
                    "a {}D phantom does not fit a {}D geometry",
                    ph.dims, scan.dims
                )));
            }
            let sub = opts.supersample.max(1);
            ph.project_and_rasterize(scan, &projector, sub)
        }
    };
    if let Some(i0) = opts.poisson_i0 {
        if !(i0.is_finite() && i0 > 0.0) {
            return Err(Error::Config(format!("--noise poisson:I0 needs I0 > 0, got {i0}")));
        }
        let rng = CounterRng::new(opts.seed, STREAM_NOISE);
        projections.par_iter_mut().enumerate().for_each(|(i, y)| {
            let lambda = i0 * (-(*y as f64)).exp();
            let counts = poisson(&rng, i as u64, lambda).max(1.0);
            *y = -(counts / i0).ln() as f32;
        });
    }
    Ok(Simulated { projections, truth })
}

/// A Poisson draw: Knuth's product of uniforms below 30, a rounded normal above.
fn poisson(rng: &CounterRng, i: u64, lambda: f64) -> f64 {
    let base = i * 256;
    if lambda < 30.0 {
        let limit = (-lambda).exp();
        let mut p = 1.0;
        for k in 0..255u64 {
            p *= rng.uniform_f64(base + k);
            if p <= limit {
                return k as f64;
            }
        }
        lambda
    } else {
        (lambda + lambda.sqrt() * rng.normal(base) as f64).round().max(0.0)
    }
}

/// Writes projections.npy, geometry.toml, truth.nii.gz (+ PNGs) into `dir`.
pub fn write_simulation(scan: &Scan, sim: &Simulated, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_npy_f32(&dir.join("projections.npy"), &sim.projections, &scan.projection_shape())?;
    crate::io::write_bytes_atomic(&dir.join("geometry.toml"), scan.to_toml().as_bytes())?;
    write_volume(scan, &sim.truth, &dir.join("truth.nii.gz"))?;
    if scan.dims == 2 {
        let hi = sim.projections.iter().cloned().fold(0.0f32, f32::max);
        write_png_gray(
            &dir.join("sinogram.png"),
            &sim.projections,
            scan.det_pixels[0],
            scan.n_views(),
            0.0,
            hi,
        )?;
    }
    Ok(())
}

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

/// Trains (or resumes) the run in `cfg.output`; writes recon.nii.gz/.png and metrics.json.
pub fn fit(cfg: &CtConfig, opts: &FitOptions) -> Result<CtOutcome> {
    cfg.validate()?;
    let started = Instant::now();
    let scan = load_geometry(&cfg.geometry)?;
    let measured = load_projections(&scan, &cfg.projections, &cfg.geometry)?;
    let truth = cfg.truth.as_ref().map(|t| load_truth(&scan, t)).transpose()?;
    // the inputs are good: only now the run folder, with the scan beside the run (for export)
    let dir = cfg.output.clone();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    crate::io::write_bytes_atomic(&dir.join(GEOMETRY), scan.to_toml().as_bytes())?;
    let render = resolve_render(cfg.train.render, &scan);
    let mut cfg = cfg.clone();
    cfg.train.render = render;
    crate::io::write_bytes_atomic(&dir.join(RUN_TOML), cfg.to_toml().as_bytes())?;

    let net = crate::task::run::build_network(
        &cfg.encoding,
        scan.dims,
        &cfg.model,
        cfg.seed,
        &cfg.device,
        cfg.threads,
    )?;
    let (mut backend, n_params) = (net.backend, net.n_params);
    log(opts, &format!("device: {} ({})", backend.describe(), net.reason));
    log(
        opts,
        &format!(
            "ct: {:?} beam, {}D, {} views, grid {:?}; {} encoding → {}×{} MLP ({n_params} parameters), render {render:?}",
            scan.beam,
            scan.dims,
            scan.n_views(),
            &scan.voxels[..scan.dims],
            cfg.encoding.name(),
            cfg.model.depth,
            cfg.model.width
        )
        .to_lowercase(),
    );

    let mut loss_log: Vec<(u64, f32, f32)> = Vec::new();
    if opts.resume {
        loss_log = crate::task::run::resume(backend.as_mut(), &dir)?;
    }
    let start_step = backend.state().adam.step;
    let save = |backend: &dyn Backend, loss_log: &[(u64, f32, f32)]| {
        let extra = [("ct".to_string(), format!("{{\"dims\":{}}}", scan.dims))].into();
        crate::task::run::save(&dir, backend, extra, loss_log)
    };

    let mut stepper = Stepper::new(&scan, &cfg, &measured, render);
    let mut metrics = CtMetrics { render: Some(render), ..Default::default() };
    if render == Render::Grid {
        let projector = stepper.choose_projector(backend.as_mut());
        log(opts, &format!("projector: {projector}"));
        if stepper.resident {
            log(opts, "step: device-resident (grid uploaded once; outputs and ∂L/∂z stay on the GPU)");
        }
        metrics.projector = Some(projector.split(':').next().unwrap_or_default().to_string());
    }
    let steps = cfg.train.steps;
    let mut train_s = 0.0;
    for step in start_step..steps {
        if opts.should_stop(step) {
            save(backend.as_ref(), &loss_log)?;
            return Ok(CtOutcome::Interrupted { step });
        }
        let t0 = Instant::now();
        let lr = cfg.train.schedule.lr(cfg.train.lr, step, steps);
        let loss = stepper.step(backend.as_mut(), step, lr)?;
        train_s += t0.elapsed().as_secs_f64();
        if !loss.is_finite() {
            save(backend.as_ref(), &loss_log)?;
            return Err(diverged(step, loss));
        }
        let done = step + 1;
        loss_log.push((done, loss, lr));
        if let Some(t) = &truth {
            if cfg.train.eval_every > 0 && done % cfg.train.eval_every == 0 {
                if let Some(img) = stepper.image()? {
                    metrics.psnr_curve.push((done, ct_metrics::psnr(img, t)));
                }
            }
        }
        if opts.progress && done % (steps / 10).max(1) == 0 {
            let psnr = metrics
                .psnr_curve
                .last()
                .filter(|p| p.0 == done)
                .map(|p| format!("  PSNR {:.2} dB", p.1))
                .unwrap_or_default();
            eprintln!(
                "step {done}/{steps}  loss {loss:.3e}{psnr}  {:.1} steps/s",
                (done - start_step) as f64 / train_s.max(1e-9)
            );
        }
        if checkpoint_due(cfg.train.checkpoint_every, done, steps) {
            save(backend.as_ref(), &loss_log)?;
        }
    }
    save(backend.as_ref(), &loss_log)?;

    let recon = render_volume(backend.as_mut(), &scan)?;
    write_volume(&scan, &recon, &dir.join(RECON))?;
    if let Some(t) = &truth {
        metrics.psnr = Some(ct_metrics::psnr(&recon, t));
        metrics.ssim = Some(ct_metrics::ssim(&recon, t, scan.voxels));
    }
    metrics.final_loss = final_loss(&loss_log);
    metrics.steps = steps;
    metrics.n_params = n_params;
    metrics.device = backend.describe();
    metrics.train_seconds = train_s;
    metrics.steps_per_second = (steps - start_step) as f64 / train_s.max(1e-9);
    metrics.total_seconds = started.elapsed().as_secs_f64();
    crate::task::run::write_metrics(&dir, &metrics)?;
    Ok(CtOutcome::Finished(Box::new(metrics)))
}

/// The scan of a run folder: its own `geometry.toml` (written by [`fit`]), else the file the run
/// was configured with.
pub fn run_scan(dir: &Path, cfg: &CtConfig) -> Result<Scan> {
    let own = dir.join(GEOMETRY);
    if own.is_file() {
        Scan::load(&own)
    } else {
        load_geometry(&cfg.geometry)
    }
}

/// The scan's grid `k` times finer along each reconstructed axis (the same box).
pub fn upsampled_scan(scan: &Scan, k: usize) -> Scan {
    let mut fine = scan.clone();
    for a in 0..scan.dims {
        fine.voxels[a] *= k;
        fine.voxel_size[a] /= k as f64;
    }
    fine
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
    let ck = Checkpoint::load(&dir.join(CHECKPOINT))?;
    let mut backend = crate::task::run::saved_backend(&ck, &cfg.device, threads)?;
    let fine = upsampled_scan(&scan, upsample);
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
        let surface =
            crate::task::volume_field::iso_surface(&values, fine.voxels, fine.world_from_voxel(), level);
        if surface.triangles.is_empty() {
            return Err(Error::Config(format!(
                "{}: nothing in the reconstruction crosses --level {level}; try a level between its \
                 background and its structures (see recon.nii.gz)",
                dir.display()
            )));
        }
        written
            .extend(crate::task::volume_field::write_iso_meshes(dir, &surface, level, upsample, &formats)?);
    }
    Ok(written)
}

/// The field σ(MLP(γ(x))) at every voxel centre.
pub fn render_volume(backend: &mut dyn Backend, scan: &Scan) -> Result<Vec<f32>> {
    let pts = scan.voxel_centres_unit();
    let mut z = vec![0.0; scan.n_voxels()];
    backend.predict(&pts, &mut z)?;
    z.iter_mut().for_each(|v| *v = sigmoid(*v));
    Ok(z)
}

/// One training step of either rendering mode, with its scratch buffers.
struct Stepper<'a> {
    scan: &'a Scan,
    measured: &'a [f32],
    render: Render,
    seed: u64,
    // grid
    projector: Option<RayProjector>,
    /// A and Aᵀ on the GPU, when the backend is CUDA (then `projector` only made its rays).
    gpu: Option<GpuProjector>,
    /// The grid step is device-resident (`gpu` is on the backend's stream).
    resident: bool,
    /// `image` is older than the device's (resident steps leave it there).
    image_stale: bool,
    grid_points: Vec<f32>,
    image: Vec<f32>,
    predicted: Vec<f32>,
    back: Vec<f32>,
    // rays
    valid_rays: Vec<usize>,
    rays_per_batch: usize,
    samples_per_ray: usize,
    ids: Vec<usize>,
    samples: RaySamples,
    d_out: Vec<f32>,
}

impl<'a> Stepper<'a> {
    fn new(scan: &'a Scan, cfg: &CtConfig, measured: &'a [f32], render: Render) -> Self {
        let mut s = Stepper {
            scan,
            measured,
            render,
            seed: cfg.seed,
            projector: None,
            gpu: None,
            resident: false,
            image_stale: false,
            grid_points: vec![],
            image: vec![],
            predicted: vec![],
            back: vec![],
            valid_rays: vec![],
            rays_per_batch: cfg.train.rays_per_batch,
            samples_per_ray: cfg.train.samples_per_ray,
            ids: vec![],
            samples: RaySamples::default(),
            d_out: vec![],
        };
        if render == Render::Grid {
            let p = RayProjector::new(scan, cfg.train.projector_step);
            s.predicted = vec![0.0; p.n_rays()];
            s.back = vec![0.0; p.n_voxels()];
            s.projector = Some(p);
            s.grid_points = scan.voxel_centres_unit();
        } else {
            s.valid_rays = (0..scan.n_rays()).filter(|&i| scan.clip(&scan.ray(i)).is_some()).collect();
        }
        s
    }

    /// Moves the grid projector onto the GPU when the network runs there. Returns what runs A
    /// and Aᵀ, for the log: "gpu (…)", "cpu (N threads)", or the CPU with the reason the GPU
    /// projector could not be made.
    fn choose_projector(&mut self, backend: &mut dyn Backend) -> String {
        let cpu = format!("cpu ({} threads)", rayon::current_num_threads());
        let Some(projector) = &self.projector else { return cpu };
        let Some(cuda) = backend.as_cuda_mut() else { return cpu };
        let resident = crate::backend::cuda::resident_from_env();
        let made = if resident {
            GpuProjector::on_stream(self.scan, projector, cuda.stream())
        } else {
            GpuProjector::new(self.scan, projector)
        };
        let made = made.and_then(|mut g| {
            g.set_measured(self.measured)?;
            Ok(g)
        });
        match made {
            Ok(g) => {
                let what = g.describe();
                self.gpu = Some(g);
                self.resident = resident;
                what
            }
            Err(e) => format!("{cpu}: the GPU projector could not be made ({e})"),
        }
    }

    /// The image rendered by the last grid step (copied from the device after a resident step).
    fn image(&mut self) -> Result<Option<&[f32]>> {
        if self.image_stale {
            if let Some(gpu) = &mut self.gpu {
                self.image.resize(gpu.n_voxels(), 0.0);
                gpu.image(&mut self.image)?;
            }
            self.image_stale = false;
        }
        Ok((self.render == Render::Grid && !self.image.is_empty()).then_some(self.image.as_slice()))
    }

    fn step(&mut self, backend: &mut dyn Backend, step: u64, lr: f32) -> Result<f32> {
        let loss = if self.render == Render::Grid {
            self.grid_step(backend)?
        } else {
            self.ray_step(backend, step)?
        };
        backend.optimizer_step(lr)?;
        Ok(loss)
    }

    fn grid_step(&mut self, backend: &mut dyn Backend) -> Result<f32> {
        let Some(projector) = &self.projector else {
            return Err(Error::Config("grid rendering without a projector".into()));
        };
        if self.resident {
            if let (Some(gpu), Some(cuda)) = (&mut self.gpu, backend.as_cuda_mut()) {
                if !cuda.has_resident_points() {
                    cuda.set_resident_points(&self.grid_points)?;
                }
                let z = cuda.forward_resident()?;
                let (loss, max_abs) = gpu.sigmoid_loss_and_gradient_device(&z)?;
                cuda.backward_device_grad(&gpu.gradient(), max_abs)?;
                self.image_stale = true;
                return Ok(loss);
            }
        }
        let z = backend.forward(&self.grid_points)?;
        self.image.clear();
        self.image.extend(z.iter().map(|&v| sigmoid(v)));
        if let Some(gpu) = &mut self.gpu {
            let loss = gpu.loss_and_gradient(&self.image, &mut self.back)?;
            self.d_out.clear();
            self.d_out.extend(self.back.iter().zip(&self.image).map(|(&g, &p)| g * p * (1.0 - p)));
            backend.backward(&self.d_out)?;
            return Ok(loss);
        }
        projector.forward(&self.image, &mut self.predicted);
        let m = self.predicted.len() as f32;
        let mut total = 0.0f64;
        for (p, &y) in self.predicted.iter_mut().zip(self.measured) {
            let r = *p - y;
            total += 0.5 * (r as f64) * (r as f64);
            *p = r / m;
        }
        projector.adjoint(&self.predicted, &mut self.back);
        self.d_out.clear();
        self.d_out.extend(self.back.iter().zip(&self.image).map(|(&g, &p)| g * p * (1.0 - p)));
        backend.backward(&self.d_out)?;
        Ok((total / m as f64) as f32)
    }

    fn ray_step(&mut self, backend: &mut dyn Backend, step: u64) -> Result<f32> {
        let b = self.rays_per_batch;
        let s = self.samples_per_ray;
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
        let z = backend.forward(&self.samples.points)?;
        self.d_out.resize(b * s, 0.0);
        let mut total = 0.0f64;
        for (j, (zr, dr)) in z.chunks_exact(s).zip(self.d_out.chunks_exact_mut(s)).enumerate() {
            let w = self.samples.weights[j];
            let pred: f32 = zr.iter().map(|&v| sigmoid(v)).sum::<f32>() * w;
            let r = pred - self.measured[self.ids[j]];
            total += 0.5 * (r as f64) * (r as f64);
            let g = r / b as f32 * w;
            for (d, &v) in dr.iter_mut().zip(zr) {
                let p = sigmoid(v);
                *d = g * p * (1.0 - p);
            }
        }
        backend.backward(&self.d_out)?;
        Ok((total / b as f64) as f32)
    }
}
