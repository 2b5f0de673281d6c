//! The `ffvol` command line: parse, resolve a run config, call the library.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ffvol::config::{OccupancyConfig, Preset};
use ffvol::encoding::EncodingConfig;
use ffvol::io::MeshFormat;
use ffvol::task::occupancy::{self, FitOptions, FitOutcome, SavedRun};
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
    c.export.min_component = args.min_component.unwrap_or(c.export.min_component);
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
    let (config, resume) = match (args.job, args.resume) {
        (Some(Job::Occupancy(a)), None) => (resolve(&a)?, false),
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
    let run = SavedRun::open(&args.run)?;
    let t = std::time::Instant::now();
    let mesh = run.export(args.resolution, &args.format, args.nifti, !args.exact, args.min_component, args.threads)?;
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
