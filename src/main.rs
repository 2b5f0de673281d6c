//! The `ffvol` command line: parse, resolve a run config, call the library.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ffvol::config::{OccupancyConfig, Preset};
use ffvol::encoding::EncodingConfig;
use ffvol::io::MeshFormat;
use ffvol::task::mri::{self, MriConfig, MriOutcome};
use ffvol::task::occupancy::{self, FitOptions, FitOutcome, SavedRun};
use ffvol::task::volume::{self, VolumeConfig, VolumeOutcome};
use ffvol::task::volume_field::{self, parse_normalize, ExportRequest};
use ffvol::task::volume_masks::Sampling;
use ffvol::train::LrSchedule;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "ffvol", version, about = "Fit continuous 3D fields with Fourier-feature MLPs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Number format on CUDA: fp16 (tensor cores, fp32 master weights; the default) or fp32
    /// (for checking against the CPU).
    #[arg(long, global = true, value_parser = ["fp16", "fp32"])]
    precision: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a field: `ffvol fit occupancy`, or `ffvol fit --resume RUN` to continue a run.
    Fit(FitArgs),
    /// Re-extract a mesh (and volume) from a saved run without retraining.
    Export(ExportArgs),
    /// Print training, inference and labelling throughput.
    Bench(BenchArgs),
    /// Simulate measurements: `ffvol simulate ct --phantom shepp2d --geometry G.toml`.
    Simulate(SimulateArgs),
    /// Classical reconstruction from projections: `ffvol recon fbp|fdk|sart`.
    Recon(ReconArgs),
    /// List the compute devices this build can use.
    Info,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct FitArgs {
    #[command(subcommand)]
    job: Option<Job>,
    /// Continue an interrupted run from its last checkpoint.
    #[arg(long, value_name = "RUN")]
    resume: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Job {
    /// Learn the inside/outside of a triangle mesh and export it as a mesh.
    Occupancy(Box<OccupancyArgs>),
    /// Fit a volume (NIfTI or .npy) voxel by voxel; PSNR/SSIM on held-out voxels.
    Volume(Box<VolumeArgs>),
    /// Recover a volume from undersampled k-space (the paper's 3-D MRI protocol).
    Mri(Box<MriArgs>),
    /// Learn an attenuation field from CT projections and write it as a volume.
    Ct(Box<CtArgs>),
}

/// Network, training and device flags shared by every `fit` job (each job maps `--encoding`,
/// `--sigma` and `--features` onto its own defaults).
#[derive(Args)]
struct NetArgs {
    /// Input mapping γ.
    #[arg(long, value_parser = ["none", "basic", "positional", "gaussian"])]
    encoding: Option<String>,
    /// Scale σ of the mapping (Gaussian: std of the frequencies in cycles per unit box;
    /// positional: log2 of the highest frequency).
    #[arg(long)]
    sigma: Option<f32>,
    /// Number of frequencies m (Gaussian) or per axis (positional).
    #[arg(long)]
    features: Option<usize>,
    /// Dense layers including the output layer.
    #[arg(long)]
    depth: Option<usize>,
    /// Width of the hidden layers.
    #[arg(long)]
    width: Option<usize>,
    #[arg(long)]
    steps: Option<u64>,
    /// Base learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// `constant`, `cosine[:WARMUP[:FINAL_FRACTION]]` or `exponential:FACTOR:EVERY`.
    #[arg(long)]
    schedule: Option<String>,
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (0 = all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// `auto`, `cpu` or `cuda`.
    #[arg(long)]
    device: Option<String>,
}

impl NetArgs {
    /// Depth, width, steps, learning rate, schedule, seed, threads and device, each where given.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        model: &mut ffvol::model::ModelConfig,
        steps: &mut u64,
        lr: &mut f32,
        schedule: &mut LrSchedule,
        seed: &mut u64,
        threads: &mut usize,
        device: &mut String,
    ) -> Result<()> {
        model.depth = self.depth.unwrap_or(model.depth);
        model.width = self.width.unwrap_or(model.width);
        *steps = self.steps.unwrap_or(*steps);
        *lr = self.lr.unwrap_or(*lr);
        if let Some(text) = &self.schedule {
            *schedule = parse_schedule(text)?;
        }
        *seed = self.seed.unwrap_or(*seed);
        *threads = self.threads.unwrap_or(*threads);
        if let Some(d) = &self.device {
            *device = d.clone();
        }
        Ok(())
    }
}

/// `--output`, refused when it already holds a run unless `--force`.
fn checked_output(o: &Path, force: bool) -> Result<PathBuf> {
    if o.join(occupancy::RUN_TOML).exists() && !force {
        bail!(
            "{} already holds a run; pass --force to overwrite it or `ffvol fit --resume {}` to continue it",
            o.display(),
            o.display()
        );
    }
    Ok(o.to_path_buf())
}

#[derive(Args)]
struct CtArgs {
    /// Projections (.npy): [views, u] in 2D, [views, v, u] in 3D.
    #[arg(long)]
    projections: PathBuf,
    /// Scan geometry (TOML), or `paper-ct[:N[:VIEWS]]`.
    #[arg(long)]
    geometry: PathBuf,
    /// The true volume (.nii.gz) for PSNR and SSIM.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Starting settings: `fast` (minutes on 2 cores at 128²) or `paper-ct` (the paper's 2D protocol).
    /// Either way `--encoding` gives the paper's mappings (σ_g = 4, σ_p = 3 with m/2 frequencies
    /// per axis, unless --sigma) and learning rates (1e-3 for gaussian and positional, 1e-2 for
    /// basic and none, unless --lr).
    #[arg(long, value_enum, default_value = "fast")]
    preset: ffvol::task::ct::CtPreset,
    /// Run folder (default: runs/ct, numbered if it exists).
    #[arg(long)]
    output: Option<PathBuf>,
    #[arg(long)]
    force: bool,
    // the mappings are the paper's (see --preset), the learning rate too unless --lr
    #[command(flatten)]
    net: NetArgs,
    /// `grid` renders the whole grid each step (full batch), `rays` samples rays.
    #[arg(long, value_enum)]
    render: Option<ffvol::task::ct::Render>,
    #[arg(long)]
    rays_per_batch: Option<usize>,
    #[arg(long)]
    samples_per_ray: Option<usize>,
}

#[derive(Args)]
struct SimulateArgs {
    #[command(subcommand)]
    what: SimulateWhat,
}

#[derive(Subcommand)]
enum SimulateWhat {
    /// Project a phantom: writes projections.npy, geometry.toml and truth.nii.gz (+ PNGs).
    Ct(SimulateCtArgs),
}

#[derive(Args)]
struct SimulateCtArgs {
    /// `shepp2d` (perturbed modified Shepp–Logan), `shepp2d-plain`, `shepp3d`, or a .nii.gz on the grid.
    #[arg(long)]
    phantom: String,
    /// Scan geometry (TOML), or `paper-ct[:N[:VIEWS]]`.
    #[arg(long)]
    geometry: PathBuf,
    /// `poisson:I0`: photon noise with I0 incident photons per ray.
    #[arg(long)]
    noise: Option<String>,
    /// Seeds the phantom's perturbation and the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (default: sim/<phantom>).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Samples per voxel edge when rasterising the phantom.
    #[arg(long, default_value_t = 3)]
    supersample: usize,
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReconMethod {
    /// Ramp-filtered back-projection (parallel beam; fan and cone go through FDK).
    Fbp,
    /// Feldkamp–Davis–Kress for fan and cone beams (flat detector; a short scan gets Parker weights).
    Fdk,
    /// Simultaneous algebraic reconstruction with positivity.
    Sart,
}

#[derive(Args)]
struct ReconArgs {
    #[arg(value_enum)]
    method: ReconMethod,
    #[arg(long)]
    projections: PathBuf,
    /// Scan geometry (TOML), or `paper-ct[:N[:VIEWS]]`.
    #[arg(long)]
    geometry: PathBuf,
    /// The true volume (.nii.gz): prints PSNR and SSIM.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Output volume (default: <method>.nii.gz beside the projections); a PNG goes beside it.
    #[arg(long)]
    output: Option<PathBuf>,
    /// SART passes over all views.
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// SART relaxation λ.
    #[arg(long, default_value_t = 1.0)]
    relaxation: f32,
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Settings shared by `fit volume` and `fit mri`.
#[derive(Args)]
struct FieldArgs {
    /// A run.toml whose settings override the defaults (flags override both).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run folder (default: runs/<volume name>-<job>, numbered if it exists).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write into an existing run folder.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    net: NetArgs,
    /// Intensity normalisation to [0, 1]: `minmax` or `percentile[:LOW:HIGH]`.
    #[arg(long)]
    normalize: Option<String>,
    /// Also write the fit on a grid K times finer (fit_xK.nii.gz).
    #[arg(long, value_name = "K")]
    upsample: Option<usize>,
    /// Write a checkpoint every N steps.
    #[arg(long)]
    checkpoint_every: Option<u64>,
}

#[derive(Args)]
struct VolumeArgs {
    /// Volume to fit (.nii, .nii.gz or .npy). Default: the bundled 32³ MNI152 crop.
    #[arg(long)]
    volume: Option<PathBuf>,
    /// Fraction of voxels trained on; the rest are held out for PSNR/SSIM.
    #[arg(long)]
    train_fraction: Option<f32>,
    /// Training voxels per step (0 = all of them).
    #[arg(long)]
    batch: Option<usize>,
    #[command(flatten)]
    common: FieldArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MriPreset {
    /// 4 × 128, m = 128, 300 steps: minutes on 2 cores at 32³–48³.
    Fast,
    /// The paper's 4 × 256, m = 256, σ_g = 5, lr 2e-3, 1000 steps.
    Paper,
}

#[derive(Args)]
struct MriArgs {
    /// True volume (.nii, .nii.gz, .npy): k-space is simulated from it, PSNR measured against it.
    /// Default (when no --kspace): the bundled 32³ MNI152 crop.
    #[arg(long)]
    volume: Option<PathBuf>,
    /// Measured k-space (complex64 .npy, centred: DC at index n/2).
    #[arg(long)]
    kspace: Option<PathBuf>,
    /// Sampling mask (.npy, centred, nonzero = measured).
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Mask to simulate when no --mask: `gaussian` (the paper's), `cartesian:R`, `radial:N`, `poisson:R`.
    #[arg(long)]
    sampling: Option<String>,
    #[arg(long, value_enum, default_value = "fast")]
    preset: MriPreset,
    #[command(flatten)]
    common: FieldArgs,
}

#[derive(Args)]
struct OccupancyArgs {
    /// Triangle mesh to fit (PLY, OBJ, STL). Default: the bundled bunny.
    #[arg(long)]
    mesh: Option<PathBuf>,
    /// A run.toml whose settings override the preset (flags override both).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Starting settings: `fast` (under two minutes on 2 cores) or `paper` (the paper's protocol).
    #[arg(long, value_enum, default_value = "fast")]
    preset: Preset,
    /// Run folder (default: runs/<mesh name>, numbered if it exists).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write into an existing run folder.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    net: NetArgs,
    /// Divide the features by √m (the paper's occupancy code does).
    #[arg(long)]
    normalize: Option<bool>,
    #[arg(long)]
    batch: Option<usize>,
    /// Fraction of each training batch drawn near the surface.
    #[arg(long)]
    surface_fraction: Option<f32>,
    /// Points in each test set.
    #[arg(long)]
    test_points: Option<usize>,
    /// Grid points per axis for the exported mesh and volume.
    #[arg(long)]
    resolution: Option<usize>,
    /// Mesh formats to export (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    format: Option<Vec<MeshFormat>>,
    /// Write a checkpoint every N steps.
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Drop exported mesh components smaller than this fraction of the largest (0 keeps all).
    #[arg(long)]
    min_component: Option<f64>,
}

#[derive(Args)]
struct ExportArgs {
    /// A run folder written by `ffvol fit`.
    run: PathBuf,
    #[arg(long, default_value_t = 256)]
    resolution: usize,
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ply")]
    format: Vec<MeshFormat>,
    /// Also write the occupancy volume (occupancy_<resolution>.nii.gz).
    #[arg(long)]
    nifti: bool,
    /// Evaluate every grid node instead of refining near the surface only.
    #[arg(long)]
    exact: bool,
    /// Drop mesh components smaller than this fraction of the largest (by enclosed volume).
    #[arg(long, default_value_t = 1e-3)]
    min_component: f64,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Volume, MRI and 3D CT runs: write the iso-surface of the fitted field as a mesh.
    #[arg(long)]
    mesh: bool,
    /// Volume, MRI and CT runs: iso-surface level, as a normalised intensity in [0, 1] (volume,
    /// MRI) or an attenuation in the units of recon.nii.gz (CT).
    #[arg(long, default_value_t = 0.5)]
    level: f32,
    /// Volume, MRI and CT runs: evaluate on a grid K times finer than the input (fit_xK.nii.gz,
    /// recon_xK.nii.gz).
    #[arg(long, default_value_t = 1, value_name = "K")]
    upsample: usize,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, default_value_t = 4)]
    depth: usize,
    #[arg(long, default_value_t = 128)]
    width: usize,
    /// Gaussian frequencies m.
    #[arg(long, default_value_t = 128)]
    features: usize,
    #[arg(long, default_value_t = 8192)]
    batch: usize,
    /// Timed training steps (after one warm-up step).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Mesh for the labelling benchmark.
    #[arg(long, default_value = "datasets/bunny.ply")]
    mesh: PathBuf,
    /// Points to label in the labelling benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    label_points: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() {
    let cli = Cli::parse();
    if let Some(p) = &cli.precision {
        // the value parser allows only the two names
        ffvol::task::device::set_cuda_settings(ffvol::backend::cuda::CudaSettings {
            precision: ffvol::backend::cuda::Precision::parse(p)
                .unwrap_or(ffvol::backend::cuda::Precision::Fp16),
            ..Default::default()
        });
    }
    let result = match cli.command {
        Command::Fit(args) => fit(args),
        Command::Export(args) => export(args),
        Command::Bench(args) => ffvol::task::bench::run(&ffvol::task::bench::BenchConfig {
            depth: args.depth,
            width: args.width,
            features: args.features,
            batch: args.batch,
            steps: args.steps,
            threads: args.threads,
            mesh: args.mesh,
            label_points: args.label_points,
            device: args.device,
        })
        .map_err(anyhow::Error::from),
        Command::Simulate(args) => match args.what {
            SimulateWhat::Ct(a) => simulate_ct(a),
        },
        Command::Recon(args) => recon(args),
        Command::Info => {
            info();
            Ok(())
        }
    };
    if let Err(e) = result {
        if matches!(e.downcast_ref::<ffvol::Error>(), Some(ffvol::Error::Interrupted)) {
            std::process::exit(130); // already reported where it happened
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn info() {
    println!("ffvol {}", env!("CARGO_PKG_VERSION"));
    println!("cpu: {} threads available", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    println!("{}", ffvol::backend::cuda::describe_devices());
}

fn set_threads(threads: usize) {
    if threads > 0 {
        // Fails only if the pool already exists, which is fine.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    }
}

fn parse_schedule(s: &str) -> Result<LrSchedule> {
    let parts: Vec<&str> = s.split(':').collect();
    let num = |i: usize, default: f64| -> Result<f64> {
        parts
            .get(i)
            .map(|p| p.parse::<f64>().with_context(|| format!("--schedule {s}: {p:?} is not a number")))
            .unwrap_or(Ok(default))
    };
    Ok(match parts[0] {
        "constant" => LrSchedule::Constant,
        "cosine" => LrSchedule::Cosine { warmup: num(1, 50.0)? as u64, final_fraction: num(2, 0.02)? as f32 },
        "exponential" => {
            LrSchedule::Exponential { factor: num(1, 0.1)? as f32, every: num(2, 5000.0)? as u64 }
        }
        other => bail!("--schedule: unknown schedule {other:?} (constant, cosine[:W[:F]], exponential:F:N)"),
    })
}

fn resolve(args: &OccupancyArgs) -> Result<OccupancyConfig> {
    let mut c = OccupancyConfig::preset(args.preset);
    if let Some(path) = &args.config {
        c = c.overlay_file(path)?;
    }
    if let Some(m) = &args.mesh {
        c.mesh = m.clone();
    }
    if let Some(name) = &args.net.encoding {
        c.encoding = encoding_by_name(name, c.encoding, (10.0, 128), 6.0);
    }
    match &mut c.encoding {
        EncodingConfig::Gaussian { sigma, features, normalize }
        | EncodingConfig::Positional { sigma, features, normalize } => {
            *sigma = args.net.sigma.unwrap_or(*sigma);
            *features = args.net.features.unwrap_or(*features);
            *normalize = args.normalize.unwrap_or(*normalize);
        }
        EncodingConfig::Basic { normalize } => *normalize = args.normalize.unwrap_or(*normalize),
        EncodingConfig::None => {
            if args.net.sigma.is_some() || args.net.features.is_some() {
                bail!("--sigma and --features do not apply to --encoding none");
            }
        }
    }
    args.net.apply(
        &mut c.model,
        &mut c.train.steps,
        &mut c.train.lr,
        &mut c.train.schedule,
        &mut c.seed,
        &mut c.threads,
        &mut c.device,
    )?;
    c.train.batch = args.batch.unwrap_or(c.train.batch);
    c.train.surface_fraction = args.surface_fraction.unwrap_or(c.train.surface_fraction);
    c.train.checkpoint_every = args.checkpoint_every.unwrap_or(c.train.checkpoint_every);
    c.eval.test_points = args.test_points.unwrap_or(c.eval.test_points);
    c.export.resolution = args.resolution.unwrap_or(c.export.resolution);
    c.export.min_component = args.min_component.unwrap_or(c.export.min_component);
    if let Some(f) = &args.format {
        c.export.formats = f.clone();
    }
    c.output = match &args.output {
        Some(o) => checked_output(o, args.force)?,
        None => fresh_run_dir(&c.mesh),
    };
    c.validate()?;
    Ok(c)
}

/// `--encoding NAME` for the occupancy, volume and MRI jobs: `positional` with `positional_sigma`
/// and 85 frequencies per axis; `gaussian` keeps `current` when it is already Gaussian, else
/// `gaussian` = (σ, m). (CT has the paper's mappings instead: `ct::paper_encoding`.)
fn encoding_by_name(
    name: &str,
    current: EncodingConfig,
    gaussian: (f32, usize),
    positional_sigma: f32,
) -> EncodingConfig {
    match name {
        "none" => EncodingConfig::None,
        "basic" => EncodingConfig::Basic { normalize: false },
        "positional" => {
            EncodingConfig::Positional { sigma: positional_sigma, features: 85, normalize: false }
        }
        _ => match current {
            g @ EncodingConfig::Gaussian { .. } => g,
            _ => EncodingConfig::Gaussian { sigma: gaussian.0, features: gaussian.1, normalize: false },
        },
    }
}

/// runs/<mesh stem>, or runs/<stem>-2, -3, … if taken.
fn fresh_run_dir(mesh: &Path) -> PathBuf {
    let stem = mesh.file_stem().and_then(|s| s.to_str()).unwrap_or("run").to_string();
    let base = PathBuf::from("runs");
    let mut dir = base.join(&stem);
    let mut k = 2;
    while dir.exists() {
        dir = base.join(format!("{stem}-{k}"));
        k += 1;
    }
    dir
}

fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: writing a checkpoint and stopping (press again to quit at once)");
    });
    flag
}

fn fit(args: FitArgs) -> Result<()> {
    let (job, resume_dir) = match (args.job, args.resume) {
        (Some(Job::Volume(a)), None) => return fit_volume(resolve_volume(&a)?, false),
        (Some(Job::Mri(a)), None) => return fit_mri(resolve_mri(&a)?, false),
        (Some(Job::Ct(a)), None) => return fit_ct(resolve_ct(&a)?, false),
        (None, Some(run)) => match volume_field::run_job(&run)?.as_deref() {
            Some("volume") => {
                let mut c = VolumeConfig::load_run(&run)?;
                c.output = run;
                return fit_volume(c, true);
            }
            Some("mri") => {
                let mut c = MriConfig::load_run(&run)?;
                c.output = run;
                return fit_mri(c, true);
            }
            Some("ct") => {
                let mut c = ffvol::task::ct::load_run_config(&run)?;
                c.output = run;
                return fit_ct(c, true);
            }
            _ => (None, Some(run)),
        },
        other => other,
    };
    let (config, resume) = match (job, resume_dir) {
        (Some(Job::Occupancy(a)), None) => (resolve(&a)?, false),
        (Some(_), None) => bail!("unreachable job dispatch"),
        (None, Some(run)) => {
            let mut c = occupancy::load_run_config(&run)?;
            c.output = run;
            (c, true)
        }
        (None, None) => bail!(
            "say what to fit (`ffvol fit occupancy`) or which run to continue (`ffvol fit --resume RUN`)"
        ),
        (Some(_), Some(_)) => bail!("--resume takes its settings from the run; give no job with it"),
    };
    set_threads(config.threads);
    match occupancy::fit(&config, &fit_options(resume))? {
        FitOutcome::Interrupted { step } => interrupted(step, &config.output),
        FitOutcome::Finished(m) => {
            println!("IoU uniform      {:.4}   (accuracy {:.4})", m.iou_uniform, m.accuracy_uniform);
            println!("IoU near-surface {:.4}   (accuracy {:.4})", m.iou_surface, m.accuracy_surface);
            println!(
                "time: {:.1} s total; training {:.1} s at {:.0}k samples/s, labels {:.1} s, test {:.1} s, export {:.1} s",
                m.total_seconds,
                m.train_seconds,
                m.samples_per_second / 1e3,
                m.label_seconds,
                m.eval_seconds,
                m.export_seconds
            );
            println!("mesh: {} vertices, {} triangles", m.mesh_vertices, m.mesh_triangles);
            println!("run folder: {}", config.output.display());
            Ok(())
        }
    }
}

fn export(args: ExportArgs) -> Result<()> {
    set_threads(args.threads);
    let t = std::time::Instant::now();
    let mesh = args.mesh.then(|| (args.level, args.format.clone()));
    let written = match volume_field::run_job(&args.run)?.as_deref() {
        Some("volume") | Some("mri") => {
            let req = ExportRequest { upsample: args.upsample, mesh, threads: args.threads };
            volume_field::export_run(&args.run, &req)?
        }
        Some("ct") => ffvol::task::ct::export_run(&args.run, args.upsample, mesh, args.threads)?,
        _ => return export_occupancy(&args),
    };
    for path in written {
        println!("wrote {}", path.display());
    }
    println!("exported in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn export_occupancy(args: &ExportArgs) -> Result<()> {
    let run = SavedRun::open(&args.run)?;
    let t = std::time::Instant::now();
    let mesh =
        run.export(args.resolution, &args.format, args.nifti, !args.exact, args.min_component, args.threads)?;
    println!(
        "exported {} vertices, {} triangles at resolution {} in {:.1} s into {}",
        mesh.positions.len(),
        mesh.triangles.len(),
        args.resolution,
        t.elapsed().as_secs_f64(),
        args.run.display()
    );
    Ok(())
}

fn resolve_ct(a: &CtArgs) -> Result<ffvol::task::ct::CtConfig> {
    use ffvol::task::ct::{paper_encoding, paper_lr, CtConfig};
    let mut c = CtConfig::preset(a.preset);
    c.projections = a.projections.clone();
    c.geometry = a.geometry.clone();
    c.truth = a.truth.clone();
    let m = a.net.features.unwrap_or(match c.encoding {
        EncodingConfig::Gaussian { features, .. } => features,
        _ => 256,
    });
    if let Some(name) = &a.net.encoding {
        c.encoding = paper_encoding(name, m)?;
    }
    match &mut c.encoding {
        EncodingConfig::Gaussian { sigma, features, .. } => {
            *sigma = a.net.sigma.unwrap_or(*sigma);
            *features = m;
        }
        EncodingConfig::Positional { sigma, .. } => *sigma = a.net.sigma.unwrap_or(*sigma),
        _ => {
            if a.net.sigma.is_some() {
                bail!("--sigma does not apply to --encoding none or basic");
            }
        }
    }
    c.train.lr = paper_lr(&c.encoding);
    a.net.apply(
        &mut c.model,
        &mut c.train.steps,
        &mut c.train.lr,
        &mut c.train.schedule,
        &mut c.seed,
        &mut c.threads,
        &mut c.device,
    )?;
    c.train.render = a.render.unwrap_or(c.train.render);
    c.train.rays_per_batch = a.rays_per_batch.unwrap_or(c.train.rays_per_batch);
    c.train.samples_per_ray = a.samples_per_ray.unwrap_or(c.train.samples_per_ray);
    c.output = match &a.output {
        Some(o) => checked_output(o, a.force)?,
        None => fresh_run_dir(Path::new("ct")),
    };
    c.validate()?;
    Ok(c)
}

fn fit_ct(config: ffvol::task::ct::CtConfig, resume: bool) -> Result<()> {
    use ffvol::task::ct::{fit, CtOutcome};
    set_threads(config.threads);
    eprintln!("run folder: {}", config.output.display());
    match fit(&config, &fit_options(resume))? {
        CtOutcome::Interrupted { step } => interrupted(step, &config.output),
        CtOutcome::Finished(m) => {
            if let (Some(p), Some(s)) = (m.psnr, m.ssim) {
                println!("PSNR {p:.2} dB   SSIM {s:.4}");
            }
            println!(
                "final loss {:.3e}; {} steps in {:.1} s ({:.2} steps/s), {} parameters, {}",
                m.final_loss, m.steps, m.train_seconds, m.steps_per_second, m.n_params, m.device
            );
            println!("volume: {}", config.output.join(ffvol::task::ct::RECON).display());
            Ok(())
        }
    }
}

fn simulate_ct(a: SimulateCtArgs) -> Result<()> {
    use ffvol::task::ct::{load_geometry, simulate, write_simulation, PhantomSource, SimulateOptions};
    set_threads(a.threads);
    let scan = load_geometry(&a.geometry)?;
    let phantom = match a.phantom.as_str() {
        "shepp2d" => PhantomSource::Shepp2d(Some(a.seed)),
        "shepp2d-plain" => PhantomSource::Shepp2d(None),
        "shepp3d" => PhantomSource::Shepp3d,
        path => PhantomSource::File(PathBuf::from(path)),
    };
    let poisson_i0 = match &a.noise {
        None => None,
        Some(n) => match n.strip_prefix("poisson:").map(|v| v.parse::<f64>()) {
            Some(Ok(i0)) => Some(i0),
            _ => bail!("--noise {n:?}: expected poisson:I0, e.g. poisson:1e5"),
        },
    };
    let t = std::time::Instant::now();
    let sim =
        simulate(&scan, &SimulateOptions { phantom, poisson_i0, seed: a.seed, supersample: a.supersample })?;
    let name = Path::new(&a.phantom)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("phantom")
        .trim_end_matches(".nii")
        .to_string();
    let dir = a.output.unwrap_or_else(|| PathBuf::from("sim").join(name));
    write_simulation(&scan, &sim, &dir)?;
    println!(
        "{} projections of {:?} pixels in {:.1} s → {}/projections.npy, geometry.toml, truth.nii.gz",
        scan.n_views(),
        &scan.det_pixels[..scan.dims - 1],
        t.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

fn recon(a: ReconArgs) -> Result<()> {
    use ffvol::operator::ct_geometry::Beam;
    use ffvol::task::ct::{load_geometry, load_projections, load_truth, write_volume};
    use ffvol::task::{ct_metrics, ct_recon};
    set_threads(a.threads);
    let scan = load_geometry(&a.geometry)?;
    let proj = load_projections(&scan, &a.projections, &a.geometry)?;
    let t = std::time::Instant::now();
    let (volume, name) = match a.method {
        ReconMethod::Fbp | ReconMethod::Fdk => {
            if a.method == ReconMethod::Fdk && scan.beam == Beam::Parallel {
                bail!(
                    "FDK is for fan and cone beams; {} is a parallel beam: use `recon fbp`",
                    a.geometry.display()
                );
            }
            if let Some(sh) = ct_recon::short_scan(&scan) {
                let deg = f64::to_degrees;
                if sh.complete() {
                    eprintln!(
                        "short scan over {:.1}°: Parker weights (δ = {:.1}°, fan half-angle {:.1}°)",
                        deg(sh.span),
                        deg(sh.delta),
                        deg(sh.gamma_max)
                    );
                } else {
                    eprintln!(
                        "warning: the views cover {:.1}°, less than 180° + the fan angle ({:.1}°): some lines are \
                         never measured; Parker weights with δ = {:.1}°",
                        deg(sh.span),
                        180.0 + 2.0 * deg(sh.gamma_max),
                        deg(sh.delta)
                    );
                }
            }
            (ct_recon::fbp(&scan, &proj), if a.method == ReconMethod::Fbp { "fbp" } else { "fdk" })
        }
        ReconMethod::Sart => {
            let projector = ffvol::operator::ray::RayProjector::new(&scan, 0.5);
            let opts = ct_recon::SartOptions { iterations: a.iterations, relaxation: a.relaxation };
            (ct_recon::sart(&projector, &proj, opts), "sart")
        }
    };
    let seconds = t.elapsed().as_secs_f64();
    let out = a.output.unwrap_or_else(|| a.projections.with_file_name(format!("{name}.nii.gz")));
    write_volume(&scan, &volume, &out)?;
    println!("{name}: {} voxels in {seconds:.2} s → {}", volume.len(), out.display());
    if let Some(tp) = &a.truth {
        let truth = load_truth(&scan, tp)?;
        println!(
            "PSNR {:.2} dB   SSIM {:.4}",
            ct_metrics::psnr(&volume, &truth),
            ct_metrics::ssim(&volume, &truth, scan.voxels)
        );
    }
    Ok(())
}

/// Applies the flags shared by the volume and MRI jobs. `sigmas` = (Gaussian σ, positional σ)
/// defaults for an encoding switched on by name.
#[allow(clippy::too_many_arguments)]
fn apply_field_args(
    a: &FieldArgs,
    encoding: &mut EncodingConfig,
    model: &mut ffvol::model::ModelConfig,
    train: &mut volume_field::FieldTrain,
    normalize: &mut volume_field::Normalize,
    export: &mut volume_field::FieldExport,
    seed: &mut u64,
    threads: &mut usize,
    device: &mut String,
    sigmas: (f32, f32),
) -> Result<()> {
    if let Some(name) = &a.net.encoding {
        *encoding = encoding_by_name(name, *encoding, (sigmas.0, 256), sigmas.1);
    }
    match encoding {
        EncodingConfig::Gaussian { sigma, features, .. }
        | EncodingConfig::Positional { sigma, features, .. } => {
            *sigma = a.net.sigma.unwrap_or(*sigma);
            *features = a.net.features.unwrap_or(*features);
        }
        _ => {
            if a.net.sigma.is_some() || a.net.features.is_some() {
                bail!("--sigma and --features apply to --encoding gaussian and positional only");
            }
        }
    }
    a.net.apply(model, &mut train.steps, &mut train.lr, &mut train.schedule, seed, threads, device)?;
    train.checkpoint_every = a.checkpoint_every.unwrap_or(train.checkpoint_every);
    if let Some(n) = &a.normalize {
        *normalize = parse_normalize(n).map_err(|e| anyhow::anyhow!("--normalize: {e}"))?;
    }
    export.upsample = a.upsample.unwrap_or(export.upsample);
    Ok(())
}

/// The run folder: `--output` (refusing an existing run without --force) or runs/<stem>-<job>[-k].
fn run_dir(a: &FieldArgs, data: Option<&Path>, job: &str) -> Result<PathBuf> {
    if let Some(o) = &a.output {
        return checked_output(o, a.force);
    }
    let stem = data
        .and_then(|p| p.file_name())
        .and_then(|s| s.to_str())
        .map(|s| s.trim_end_matches(".gz").trim_end_matches(".nii").trim_end_matches(".npy").to_string())
        .unwrap_or_else(|| "run".into());
    Ok(fresh_run_dir(Path::new(&format!("{stem}-{job}"))))
}

fn resolve_volume(a: &VolumeArgs) -> Result<VolumeConfig> {
    let mut c = VolumeConfig::fast();
    if let Some(path) = &a.common.config {
        c = ffvol::config::overlay_toml(&c, path)?;
    }
    if let Some(v) = &a.volume {
        c.volume = v.clone();
    }
    apply_field_args(
        &a.common,
        &mut c.encoding,
        &mut c.model,
        &mut c.train,
        &mut c.normalize,
        &mut c.export,
        &mut c.seed,
        &mut c.threads,
        &mut c.device,
        (8.0, 6.0),
    )?;
    c.train.train_fraction = a.train_fraction.unwrap_or(c.train.train_fraction);
    c.train.batch = a.batch.unwrap_or(c.train.batch);
    c.output = run_dir(&a.common, Some(&c.volume), "volume")?;
    c.validate()?;
    Ok(c)
}

fn resolve_mri(a: &MriArgs) -> Result<MriConfig> {
    let mut c = match a.preset {
        MriPreset::Fast => MriConfig::fast(),
        MriPreset::Paper => MriConfig::paper(),
    };
    if let Some(path) = &a.common.config {
        c = ffvol::config::overlay_toml(&c, path)?;
    }
    if a.kspace.is_some() {
        c.kspace = a.kspace.clone();
        c.volume = None;
    }
    if a.volume.is_some() {
        c.volume = a.volume.clone();
    }
    if a.mask.is_some() {
        c.mask = a.mask.clone();
    }
    if let Some(s) = &a.sampling {
        if c.mask.is_some() {
            bail!("--sampling builds a mask; it cannot be combined with --mask");
        }
        c.sampling = Sampling::parse(s).map_err(|e| anyhow::anyhow!("--sampling: {e}"))?;
    }
    apply_field_args(
        &a.common,
        &mut c.encoding,
        &mut c.model,
        &mut c.train,
        &mut c.normalize,
        &mut c.export,
        &mut c.seed,
        &mut c.threads,
        &mut c.device,
        (5.0, 4.0),
    )?;
    let name = c.volume.clone().or_else(|| c.kspace.clone());
    c.output = run_dir(&a.common, name.as_deref(), "mri")?;
    c.validate()?;
    Ok(c)
}

fn fit_options(resume: bool) -> FitOptions {
    FitOptions { interrupt: Some(interrupt_flag()), progress: true, stop_after: None, resume }
}

fn interrupted(step: u64, dir: &Path) -> Result<()> {
    eprintln!(
        "stopped at step {step}; checkpoint written. Continue with: ffvol fit --resume {}",
        dir.display()
    );
    Err(ffvol::Error::Interrupted.into())
}

fn fit_volume(c: VolumeConfig, resume: bool) -> Result<()> {
    set_threads(c.threads);
    eprintln!("run folder: {}", c.output.display());
    match volume::fit(&c, &fit_options(resume))? {
        VolumeOutcome::Interrupted { step } => interrupted(step, &c.output),
        VolumeOutcome::Finished(m) => {
            println!(
                "PSNR held-out {:.2} dB   training voxels {:.2} dB   whole volume {:.2} dB",
                m.psnr_test, m.psnr_train, m.psnr_all
            );
            println!("SSIM held-out {:.4}      whole volume {:.4}", m.ssim_test, m.ssim_all);
            println!("time: {:.1} s total, {:.3} s/step", m.total_seconds, m.seconds_per_step);
            println!("run folder: {}", c.output.display());
            Ok(())
        }
    }
}

fn fit_mri(c: MriConfig, resume: bool) -> Result<()> {
    set_threads(c.threads);
    eprintln!("run folder: {}", c.output.display());
    match mri::fit(&c, &fit_options(resume))? {
        MriOutcome::Interrupted { step } => interrupted(step, &c.output),
        MriOutcome::Finished(m) => {
            println!("k-space sampled {:.2} %", 100.0 * m.sampled_fraction);
            if m.psnr.is_nan() {
                println!("no truth volume (--volume): no PSNR/SSIM; the fit and the zero-filled image are in the run folder");
            } else {
                println!("PSNR fit {:.2} dB   zero-filled {:.2} dB", m.psnr, m.psnr_zero_filled);
                println!("SSIM fit {:.4}      zero-filled {:.4}", m.ssim, m.ssim_zero_filled);
            }
            println!("time: {:.1} s total, {:.3} s/step", m.total_seconds, m.seconds_per_step);
            println!("run folder: {}", c.output.display());
            Ok(())
        }
    }
}
