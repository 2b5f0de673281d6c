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
}

#[derive(Subcommand)]
enum Command {
    /// Train a field: `ffvol fit occupancy`, or `ffvol fit --resume RUN` to continue a run.
    Fit(FitArgs),
    /// Re-extract a mesh (and volume) from a saved run without retraining.
    Export(ExportArgs),
    /// Print training, inference and labelling throughput.
    Bench(BenchArgs),
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
    /// Intensity normalisation to [0, 1]: `minmax` or `percentile[:LOW:HIGH]`.
    #[arg(long)]
    normalize: Option<String>,
    /// Also write the fit on a grid K times finer (fit_xK.nii.gz).
    #[arg(long, value_name = "K")]
    upsample: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (0 = all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// `auto`, `cpu` or `cuda`.
    #[arg(long)]
    device: Option<String>,
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
    /// Divide the features by √m (the paper's occupancy code does).
    #[arg(long)]
    normalize: Option<bool>,
    /// Dense layers including the output layer.
    #[arg(long)]
    depth: Option<usize>,
    /// Width of the hidden layers.
    #[arg(long)]
    width: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    steps: Option<u64>,
    /// Base learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// `constant`, `cosine[:WARMUP[:FINAL_FRACTION]]` or `exponential:FACTOR:EVERY`.
    #[arg(long)]
    schedule: Option<String>,
    /// Fraction of each training batch drawn near the surface.
    #[arg(long)]
    surface_fraction: Option<f32>,
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (0 = all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// `auto`, `cpu` or `cuda`.
    #[arg(long)]
    device: Option<String>,
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
}

#[derive(Args)]
struct ExportArgs {
    /// A run folder written by `ffvol fit`.
    run: PathBuf,
    #[arg(long, default_value_t = 256)]
    resolution: usize,
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ply")]
    format: Vec<MeshFormat>,
    /// Also write the occupancy volume (occupancy.nii.gz).
    #[arg(long)]
    nifti: bool,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Volume and MRI runs: write the iso-surface of the fitted field as a mesh.
    #[arg(long)]
    mesh: bool,
    /// Volume and MRI runs: iso-surface level, as a normalised intensity in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    level: f32,
    /// Volume and MRI runs: evaluate on a grid K times finer than the input (fit_xK.nii.gz).
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
        Command::Info => {
            info();
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(if e.downcast_ref::<ffvol::Error>().is_some_and(|e| matches!(e, ffvol::Error::Interrupted)) { 130 } else { 1 });
    }
}

fn info() {
    println!("ffvol {}", env!("CARGO_PKG_VERSION"));
    println!("cpu: {} threads available", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    println!("cuda: not in this build (the CUDA backend is not written yet)");
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
        parts.get(i).map(|p| p.parse::<f64>().with_context(|| format!("--schedule {s}: {p:?} is not a number"))).unwrap_or(Ok(default))
    };
    Ok(match parts[0] {
        "constant" => LrSchedule::Constant,
        "cosine" => LrSchedule::Cosine { warmup: num(1, 50.0)? as u64, final_fraction: num(2, 0.02)? as f32 },
        "exponential" => LrSchedule::Exponential { factor: num(1, 0.1)? as f32, every: num(2, 5000.0)? as u64 },
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
    if let Some(name) = &args.encoding {
        c.encoding = match name.as_str() {
            "none" => EncodingConfig::None,
            "basic" => EncodingConfig::Basic { normalize: false },
            "positional" => EncodingConfig::Positional { sigma: 6.0, features: 85, normalize: false },
            _ => match c.encoding {
                g @ EncodingConfig::Gaussian { .. } => g,
                _ => EncodingConfig::Gaussian { sigma: 10.0, features: 128, normalize: false },
            },
        };
    }
    match &mut c.encoding {
        EncodingConfig::Gaussian { sigma, features, normalize } | EncodingConfig::Positional { sigma, features, normalize } => {
            *sigma = args.sigma.unwrap_or(*sigma);
            *features = args.features.unwrap_or(*features);
            *normalize = args.normalize.unwrap_or(*normalize);
        }
        EncodingConfig::Basic { normalize } => *normalize = args.normalize.unwrap_or(*normalize),
        EncodingConfig::None => {
            if args.sigma.is_some() || args.features.is_some() {
                bail!("--sigma and --features do not apply to --encoding none");
            }
        }
    }
    c.model.depth = args.depth.unwrap_or(c.model.depth);
    c.model.width = args.width.unwrap_or(c.model.width);
    c.train.batch = args.batch.unwrap_or(c.train.batch);
    c.train.steps = args.steps.unwrap_or(c.train.steps);
    c.train.lr = args.lr.unwrap_or(c.train.lr);
    if let Some(s) = &args.schedule {
        c.train.schedule = parse_schedule(s)?;
    }
    c.train.surface_fraction = args.surface_fraction.unwrap_or(c.train.surface_fraction);
    c.train.checkpoint_every = args.checkpoint_every.unwrap_or(c.train.checkpoint_every);
    c.seed = args.seed.unwrap_or(c.seed);
    c.threads = args.threads.unwrap_or(c.threads);
    if let Some(d) = &args.device {
        c.device = d.clone();
    }
    c.eval.test_points = args.test_points.unwrap_or(c.eval.test_points);
    c.export.resolution = args.resolution.unwrap_or(c.export.resolution);
    if let Some(f) = &args.format {
        c.export.formats = f.clone();
    }
    c.output = match &args.output {
        Some(o) => {
            if o.join(occupancy::RUN_TOML).exists() && !args.force {
                bail!("{} already holds a run; pass --force to overwrite it or `ffvol fit --resume {}` to continue it", o.display(), o.display());
            }
            o.clone()
        }
        None => fresh_run_dir(&c.mesh),
    };
    c.validate()?;
    Ok(c)
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
        (None, None) => bail!("say what to fit (`ffvol fit occupancy`) or which run to continue (`ffvol fit --resume RUN`)"),
        (Some(_), Some(_)) => bail!("--resume takes its settings from the run; give no job with it"),
    };
    set_threads(config.threads);
    let opts = FitOptions { interrupt: Some(interrupt_flag()), progress: true, stop_after: None, resume };
    eprintln!("run folder: {}", config.output.display());
    match occupancy::fit(&config, &opts)? {
        FitOutcome::Interrupted { step } => {
            eprintln!(
                "stopped at step {step}; checkpoint written. Continue with: ffvol fit --resume {}",
                config.output.display()
            );
            Err(ffvol::Error::Interrupted.into())
        }
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
    if matches!(volume_field::run_job(&args.run)?.as_deref(), Some("volume") | Some("mri")) {
        let t = std::time::Instant::now();
        let req = ExportRequest {
            upsample: args.upsample,
            mesh: args.mesh.then(|| (args.level, args.format.clone())),
            threads: args.threads,
        };
        for path in volume_field::export_run(&args.run, &req)? {
            println!("wrote {}", path.display());
        }
        println!("exported in {:.1} s", t.elapsed().as_secs_f64());
        return Ok(());
    }
    let run = SavedRun::open(&args.run)?;
    let t = std::time::Instant::now();
    let mesh = run.export(args.resolution, &args.format, args.nifti, args.threads)?;
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
    if let Some(name) = &a.encoding {
        *encoding = match name.as_str() {
            "none" => EncodingConfig::None,
            "basic" => EncodingConfig::Basic { normalize: false },
            "positional" => EncodingConfig::Positional { sigma: sigmas.1, features: 85, normalize: false },
            _ => match *encoding {
                g @ EncodingConfig::Gaussian { .. } => g,
                _ => EncodingConfig::Gaussian { sigma: sigmas.0, features: 256, normalize: false },
            },
        };
    }
    match encoding {
        EncodingConfig::Gaussian { sigma, features, .. } | EncodingConfig::Positional { sigma, features, .. } => {
            *sigma = a.sigma.unwrap_or(*sigma);
            *features = a.features.unwrap_or(*features);
        }
        _ => {
            if a.sigma.is_some() || a.features.is_some() {
                bail!("--sigma and --features apply to --encoding gaussian and positional only");
            }
        }
    }
    model.depth = a.depth.unwrap_or(model.depth);
    model.width = a.width.unwrap_or(model.width);
    train.steps = a.steps.unwrap_or(train.steps);
    train.lr = a.lr.unwrap_or(train.lr);
    if let Some(s) = &a.schedule {
        train.schedule = parse_schedule(s)?;
    }
    train.checkpoint_every = a.checkpoint_every.unwrap_or(train.checkpoint_every);
    if let Some(n) = &a.normalize {
        *normalize = parse_normalize(n).map_err(|e| anyhow::anyhow!("--normalize: {e}"))?;
    }
    export.upsample = a.upsample.unwrap_or(export.upsample);
    *seed = a.seed.unwrap_or(*seed);
    *threads = a.threads.unwrap_or(*threads);
    if let Some(d) = &a.device {
        *device = d.clone();
    }
    Ok(())
}

/// The run folder: `--output` (refusing an existing run without --force) or runs/<stem>-<job>[-k].
fn run_dir(a: &FieldArgs, data: Option<&Path>, job: &str) -> Result<PathBuf> {
    if let Some(o) = &a.output {
        if o.join(occupancy::RUN_TOML).exists() && !a.force {
            bail!("{} already holds a run; pass --force to overwrite it or `ffvol fit --resume {}` to continue it", o.display(), o.display());
        }
        return Ok(o.clone());
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
        c = volume_field::overlay_toml(&c, path)?;
    }
    if let Some(v) = &a.volume {
        c.volume = v.clone();
    }
    apply_field_args(&a.common, &mut c.encoding, &mut c.model, &mut c.train, &mut c.normalize, &mut c.export, &mut c.seed, &mut c.threads, &mut c.device, (8.0, 6.0))?;
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
        c = volume_field::overlay_toml(&c, path)?;
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
    apply_field_args(&a.common, &mut c.encoding, &mut c.model, &mut c.train, &mut c.normalize, &mut c.export, &mut c.seed, &mut c.threads, &mut c.device, (5.0, 4.0))?;
    let name = c.volume.clone().or_else(|| c.kspace.clone());
    c.output = run_dir(&a.common, name.as_deref(), "mri")?;
    c.validate()?;
    Ok(c)
}

fn fit_options(resume: bool) -> FitOptions {
    FitOptions { interrupt: Some(interrupt_flag()), progress: true, stop_after: None, resume }
}

fn interrupted(step: u64, dir: &Path) -> Result<()> {
    eprintln!("stopped at step {step}; checkpoint written. Continue with: ffvol fit --resume {}", dir.display());
    Err(ffvol::Error::Interrupted.into())
}

fn fit_volume(c: VolumeConfig, resume: bool) -> Result<()> {
    set_threads(c.threads);
    eprintln!("run folder: {}", c.output.display());
    match volume::fit(&c, &fit_options(resume))? {
        VolumeOutcome::Interrupted { step } => interrupted(step, &c.output),
        VolumeOutcome::Finished(m) => {
            println!("PSNR held-out {:.2} dB   training voxels {:.2} dB   whole volume {:.2} dB", m.psnr_test, m.psnr_train, m.psnr_all);
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
