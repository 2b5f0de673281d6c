//! The `ffvol` command line: parse the flags, resolve a run config, call the library.

mod cli;

use anyhow::{bail, Result};
use clap::Parser;
use cli::args::*;
use ffvol::config::{DeviceConfig, OccupancyConfig, RunConfig};
use ffvol::job::ct::CtConfig;
use ffvol::job::field::{self as volume_field, ExportRequest};
use ffvol::job::mri::{self, MriConfig, MriOutcome};
use ffvol::job::occupancy::{self, FitOutcome, SavedRun};
use ffvol::job::volume::{self, VolumeConfig, VolumeOutcome};
use ffvol::train::FitOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fit(args) => fit(args),
        Command::Export(args) => export(args),
        Command::Bench(args) => ffvol::job::bench::run(&ffvol::job::bench::BenchConfig {
            depth: args.depth,
            width: args.width,
            features: args.features,
            batch: args.batch,
            steps: args.steps,
            threads: args.threads,
            mesh: args.mesh,
            label_points: args.label_points,
            points: args.points,
            labels_out: args.labels_out,
            labels_only: args.labels_only,
            device: DeviceConfig {
                kind: args.device,
                precision: args.precision,
                cublaslt: args.cublaslt,
                ..Default::default()
            },
        })
        .map_err(anyhow::Error::from),
        Command::Simulate(args) => match args.what {
            SimulateWhat::Ct(a) => simulate_ct(a),
        },
        Command::Recon(args) => recon(args),
        Command::Ntk(args) => ntk(args),
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

/// `ffvol fit JOB …` resolves the job's config from its preset, `--config` and flags; `ffvol fit
/// --resume RUN` takes every setting from the run's own `run.toml`.
fn fit(args: FitArgs) -> Result<()> {
    let memory = match &args.job {
        Some(Job::Occupancy(a)) => a.run.memory.clone(),
        Some(Job::Volume(a)) => a.common.run.memory.clone(),
        Some(Job::Mri(a)) => a.common.run.memory.clone(),
        Some(Job::Ct(a)) => a.run.memory.clone(),
        Some(Job::Image(a)) => a.run.memory.clone(),
        None => args.memory.clone(),
    };
    let config = match (args.job, args.resume) {
        (Some(Job::Occupancy(a)), None) => RunConfig::Occupancy(cli::resolve::occupancy(&a)?),
        (Some(Job::Volume(a)), None) => RunConfig::Volume(cli::resolve::volume(&a)?),
        (Some(Job::Mri(a)), None) => RunConfig::Mri(cli::resolve::mri(&a)?),
        (Some(Job::Ct(a)), None) => RunConfig::Ct(cli::resolve::ct(&a)?),
        (Some(Job::Image(a)), None) => RunConfig::Image(cli::resolve::image(&a)?),
        (None, Some(run)) => return run_fit(RunConfig::load_run(&run)?, fit_options(true, &memory)),
        (None, None) => {
            bail!("name a job (`ffvol fit occupancy`) or a run to continue (`ffvol fit --resume RUN`)")
        }
        (Some(_), Some(_)) => bail!("--resume takes its settings from the run; give no job with it"),
    };
    run_fit(config, fit_options(false, &memory))
}

fn run_fit(config: RunConfig, opts: FitOptions) -> Result<()> {
    match config {
        RunConfig::Occupancy(c) => fit_occupancy(c, opts),
        RunConfig::Volume(c) => fit_volume(c, opts),
        RunConfig::Mri(c) => fit_mri(c, opts),
        RunConfig::Ct(c) => fit_ct(c, opts),
        RunConfig::Image(c) => fit_image(c, opts),
    }
}

fn fit_occupancy(config: OccupancyConfig, opts: FitOptions) -> Result<()> {
    set_threads(config.common.threads);
    match occupancy::fit(&config, &opts)? {
        FitOutcome::Interrupted { step } => interrupted(step, &config.common.output),
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
            println!("run folder: {}", config.common.output.display());
            Ok(())
        }
    }
}

/// The flags of `ffvol export` that were given and do not apply to a `job` run.
fn inapplicable_export_flags(args: &ExportArgs, job: &str) -> Vec<&'static str> {
    let given = [
        ("--resolution", args.resolution.is_some(), job == "occupancy"),
        ("--nifti", args.nifti, job == "occupancy"),
        ("--exact", args.exact, job == "occupancy"),
        ("--min-component", args.min_component.is_some(), job == "occupancy"),
        ("--mesh", args.mesh, job != "occupancy" && job != "image"),
        ("--upsample", args.upsample.is_some(), job != "occupancy"),
        ("--level", args.level.is_some(), job != "occupancy" && args.mesh),
        ("--format", args.format.is_some(), job == "occupancy" || args.mesh),
    ];
    given.iter().filter(|(_, set, applies)| *set && !applies).map(|(name, ..)| *name).collect()
}

fn export(args: ExportArgs) -> Result<()> {
    set_threads(args.threads);
    ffvol::train::memory::set_max_memory(args.max_memory);
    let t = std::time::Instant::now();
    let job = volume_field::run_job(&args.run)?.unwrap_or_else(|| "occupancy".into());
    let bad = inapplicable_export_flags(&args, &job);
    if !bad.is_empty() {
        bail!(
            "{} is {} {job} run: {} do{} not apply to it (see `ffvol export --help`)",
            args.run.display(),
            if job.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" },
            bad.join(", "),
            if bad.len() == 1 { "es" } else { "" }
        );
    }
    let formats = args.format.clone().unwrap_or_else(|| vec![ffvol::io::MeshFormat::Ply]);
    let mesh = args.mesh.then(|| (args.level.unwrap_or(0.5), formats));
    let upsample = args.upsample.unwrap_or(1);
    let written = match job.as_str() {
        "volume" | "mri" => {
            let req = ExportRequest { upsample, mesh, threads: args.threads };
            volume_field::export_run(&args.run, &req)?
        }
        "ct" => ffvol::job::ct::export_run(&args.run, upsample, mesh, args.threads)?,
        "image" => ffvol::job::image::export_run(&args.run, upsample, args.threads)?,
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
    let resolution = args.resolution.unwrap_or(256);
    let formats = args.format.clone().unwrap_or_else(|| vec![ffvol::io::MeshFormat::Ply]);
    let min_component = args.min_component.unwrap_or(1e-3);
    let mesh = run.export(resolution, &formats, args.nifti, !args.exact, min_component, args.threads)?;
    println!(
        "exported {} vertices, {} triangles at resolution {} in {:.1} s into {}",
        mesh.positions.len(),
        mesh.triangles.len(),
        resolution,
        t.elapsed().as_secs_f64(),
        args.run.display()
    );
    Ok(())
}

fn fit_ct(config: CtConfig, opts: FitOptions) -> Result<()> {
    use ffvol::job::ct::{fit, CtOutcome};
    set_threads(config.common.threads);
    eprintln!("run folder: {}", config.common.output.display());
    match fit(&config, &opts)? {
        CtOutcome::Interrupted { step } => interrupted(step, &config.common.output),
        CtOutcome::Finished(m) => {
            if let (Some(p), Some(s)) = (m.psnr, m.ssim) {
                println!("PSNR {p:.2} dB   SSIM {s:.4}");
            }
            println!(
                "final loss {:.3e}; {} steps in {:.1} s ({:.2} steps/s), {} parameters, {}",
                m.final_loss, m.steps, m.train_seconds, m.steps_per_second, m.n_params, m.device
            );
            println!("volume: {}", config.common.output.join(ffvol::job::ct::RECON).display());
            Ok(())
        }
    }
}

fn simulate_ct(a: SimulateCtArgs) -> Result<()> {
    use ffvol::io::ct::load_geometry;
    use ffvol::sim::ct::{simulate, write_simulation, PhantomSource, SimulateOptions};
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
    use ffvol::export::volume::write_volume;
    use ffvol::io::ct::{load_ct_input, load_truth};
    use ffvol::operator::ct_geometry::Beam;
    use ffvol::recon as ct_recon;
    use ffvol::train::image_metrics::{psnr_ct, ssim_ct};
    set_threads(a.threads);
    let geometry = cli::args::geometry_or_hdf5(&a.geometry, &a.projections)?;
    let mut input = ffvol::io::raw_projections::ProjectionInput::default();
    a.input.apply(&mut input);
    let loaded = load_ct_input(&a.projections, &geometry, &input)?;
    loaded.notes.iter().for_each(|n| eprintln!("{n}"));
    let (scan, proj) = (loaded.scan, loaded.projections);
    let t = std::time::Instant::now();
    let (volume, name) = match a.method {
        ReconMethod::Fbp | ReconMethod::Fdk => {
            if a.method == ReconMethod::Fdk && scan.beam == Beam::Parallel {
                bail!(
                    "FDK is for fan and cone beams; {} is a parallel beam: use `recon fbp`",
                    geometry.display()
                );
            }
            if let Some(sh) = ct_recon::short_scan(&scan) {
                eprintln!("{}", sh.describe());
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
    // the truth before the output, so a bad truth file leaves nothing written
    let truth = a.truth.as_ref().map(|tp| load_truth(&scan, tp)).transpose()?;
    write_volume(&scan, &volume, &out)?;
    println!("{name}: {} voxels in {seconds:.2} s → {}", volume.len(), out.display());
    if let Some(truth) = &truth {
        println!(
            "PSNR {:.2} dB   SSIM {:.4}",
            psnr_ct(&volume, &truth),
            ssim_ct(&volume, &truth, scan.voxels)
        );
    }
    Ok(())
}

fn fit_options(resume: bool, memory: &cli::args::MemoryArgs) -> FitOptions {
    FitOptions {
        interrupt: Some(interrupt_flag()),
        progress: true,
        stop_after: None,
        resume,
        max_memory: memory.max_memory,
        chunk: memory.chunk.map(|c| c as usize),
    }
}

fn interrupted(step: u64, dir: &Path) -> Result<()> {
    eprintln!(
        "stopped at step {step}; checkpoint written. Continue with: ffvol fit --resume {}",
        dir.display()
    );
    Err(ffvol::Error::Interrupted.into())
}

fn fit_volume(c: VolumeConfig, opts: FitOptions) -> Result<()> {
    set_threads(c.common.threads);
    eprintln!("run folder: {}", c.common.output.display());
    match volume::fit(&c, &opts)? {
        VolumeOutcome::Interrupted { step } => interrupted(step, &c.common.output),
        VolumeOutcome::Finished(m) => {
            println!(
                "PSNR held-out {:.2} dB   training voxels {:.2} dB   whole volume {:.2} dB",
                m.psnr_test, m.psnr_train, m.psnr_all
            );
            println!("SSIM held-out {:.4}      whole volume {:.4}", m.ssim_test, m.ssim_all);
            println!("time: {:.1} s total, {:.3} s/step", m.run.total_seconds, m.run.seconds_per_step);
            println!("run folder: {}", c.common.output.display());
            Ok(())
        }
    }
}

fn fit_mri(c: MriConfig, opts: FitOptions) -> Result<()> {
    set_threads(c.common.threads);
    eprintln!("run folder: {}", c.common.output.display());
    match mri::fit(&c, &opts)? {
        MriOutcome::Interrupted { step } => interrupted(step, &c.common.output),
        MriOutcome::Finished(m) => {
            println!("k-space sampled {:.2} %", 100.0 * m.sampled_fraction);
            if m.psnr.is_nan() {
                println!("no truth volume (--volume): no PSNR/SSIM; the fit and the zero-filled image are in the run folder");
            } else {
                println!("PSNR fit {:.2} dB   zero-filled {:.2} dB", m.psnr, m.psnr_zero_filled);
                println!("SSIM fit {:.4}      zero-filled {:.4}", m.ssim, m.ssim_zero_filled);
            }
            println!("time: {:.1} s total, {:.3} s/step", m.run.total_seconds, m.run.seconds_per_step);
            println!("run folder: {}", c.common.output.display());
            Ok(())
        }
    }
}

fn fit_image(c: ffvol::job::image::ImageConfig, opts: FitOptions) -> Result<()> {
    use ffvol::job::image::{fit, ImageOutcome};
    set_threads(c.common.threads);
    eprintln!("run folder: {}", c.common.output.display());
    match fit(&c, &opts)? {
        ImageOutcome::Interrupted { step } => interrupted(step, &c.common.output),
        ImageOutcome::Finished(m) => {
            let sigma = m.sigma.map(|s| format!(", σ = {s}")).unwrap_or_default();
            println!(
                "PSNR test (odd grid) {:.2} dB   train (even grid) {:.2} dB   whole image {:.2} dB   ({}{sigma})",
                m.psnr_test, m.psnr_train, m.psnr_all, m.encoding
            );
            if let Some(s) = m.sigma_search_seconds {
                println!("σ search: {s:.1} s (sigma_sweep.csv, sigma_sweep.png)");
            }
            println!("time: {:.1} s total, {:.3} s/step", m.run.total_seconds, m.run.seconds_per_step);
            println!("run folder: {}", c.common.output.display());
            Ok(())
        }
    }
}

fn ntk(a: NtkArgs) -> Result<()> {
    use ffvol::encoding::EncodingConfig;
    set_threads(a.threads);
    let encoding = match a.encoding.as_str() {
        "none" => EncodingConfig::None,
        "basic" => EncodingConfig::Basic { normalize: false },
        "positional" => EncodingConfig::Positional { sigma: a.sigma, features: a.features, normalize: false },
        _ => EncodingConfig::Gaussian { sigma: a.sigma, features: a.features, normalize: false },
    };
    let output = ffvol::job::ntk::output_dir(a.output.as_deref(), &a.encoding);
    let cfg = ffvol::job::ntk::NtkConfig {
        encoding,
        frequencies: a.frequencies,
        model: ffvol::model::ModelConfig { depth: a.depth, width: a.width },
        dim: a.dim,
        per_axis: a.points,
        seed: a.seed,
        steps: a.steps,
        lr: a.lr,
        output: output.clone(),
        threads: a.threads,
    };
    let s = ffvol::job::ntk::run(&cfg)?;
    println!(
        "NTK of {} ({} parameters) on {} points: λ_max {:.4e}, λ_min/λ_max {:.2e}, stationarity {:.4}, asymmetry {:.1e}",
        s.encoding,
        s.params,
        s.points,
        s.lambda_max,
        s.lambda_min / s.lambda_max,
        s.stationarity,
        s.asymmetry
    );
    if let (Some(a), Some(b), Some(c), Some(d)) =
        (s.train_mse_ntk, s.train_mse_network, s.test_mse_ntk, s.test_mse_network)
    {
        println!("after {} steps of gradient descent (η {:.3e}): train MSE NTK {a:.4e} network {b:.4e}; test MSE NTK {c:.4e} network {d:.4e}", s.steps.unwrap_or(0), s.eta.unwrap_or(0.0));
    }
    println!(
        "wrote profile, spectrum, frequency{} (.csv, .png) and ntk.json in {}",
        if cfg.dim == 1 { ", training" } else { "" },
        output.display()
    );
    Ok(())
}
