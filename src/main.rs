//! The `ffvol` command line: parse the flags, resolve a run config, call the library.

mod cli;

use anyhow::{bail, Result};
use clap::Parser;
use cli::args::*;
use ffvol::config::{DeviceConfig, OccupancyConfig, RunConfig};
use ffvol::export::normals::Normals;
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
    ffvol::io::firewall::install_quiet_hook();
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
            SimulateWhat::Text(a) => ffvol::sim::text::text_image(a.size, a.seed)
                .and_then(|img| ffvol::io::png::write_png_image(&a.out, &img))
                .map(|()| println!("wrote {}", a.out.display()))
                .map_err(anyhow::Error::from),
        },
        Command::Recon(args) => recon(args),
        Command::Ntk(args) => ntk(args),
        Command::Info => {
            info();
            Ok(())
        }
        Command::Report(args) => report(args),
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

fn set_threads(threads: usize) -> Result<()> {
    ffvol::config::check_threads(threads).map_err(|e| anyhow::anyhow!("--threads: {e}"))?;
    if threads > 0 {
        // Fails only if the pool already exists, which is fine.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    }
    Ok(())
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

/// `ffvol report RUN [RUN …]`: each run's report.html, and with several runs a comparison page.
fn report(args: ReportArgs) -> Result<()> {
    set_threads(args.threads)?;
    if args.output.is_some() && args.runs.len() < 2 {
        bail!("--output names the comparison page of several runs; give two or more runs");
    }
    for run in &args.runs {
        let path = ffvol::report::write_run_report(run)?;
        println!("wrote {}", path.display());
    }
    if args.runs.len() > 1 {
        let out = args.output.clone().unwrap_or_else(|| PathBuf::from("comparison.html"));
        ffvol::report::write_comparison(&args.runs, &out)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

fn run_fit(config: RunConfig, opts: FitOptions) -> Result<()> {
    let dir = config.common().output.clone();
    run_fit_job(config, opts)?;
    // the run is finished and saved: a report that cannot be written is said, not a failed fit
    match ffvol::report::write_run_report(&dir) {
        Ok(path) => eprintln!("report: {}", path.display()),
        Err(e) => eprintln!("warning: report.html not written: {e:#} (try `ffvol report {}`)", dir.display()),
    }
    Ok(())
}

fn run_fit_job(config: RunConfig, opts: FitOptions) -> Result<()> {
    match config {
        RunConfig::Occupancy(c) => fit_occupancy(c, opts),
        RunConfig::Volume(c) => fit_volume(c, opts),
        RunConfig::Mri(c) => fit_mri(c, opts),
        RunConfig::Ct(c) => fit_ct(c, opts),
        RunConfig::Image(c) => fit_image(c, opts),
    }
}

fn fit_occupancy(config: OccupancyConfig, opts: FitOptions) -> Result<()> {
    set_threads(config.common.threads)?;
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
        ("--normals field", args.normals == Some(Normals::Field), job != "ct"),
        ("--normals", args.normals.is_some(), job == "occupancy" || args.mesh),
        ("--triangles", args.triangles.is_some(), job != "ct" && (job == "occupancy" || args.mesh)),
        ("--max-error", args.max_error.is_some(), job != "ct" && (job == "occupancy" || args.mesh)),
        ("--colors", args.colors, (job == "volume" || job == "mri") && args.mesh),
    ];
    given.iter().filter(|(_, set, applies)| *set && !applies).map(|(name, ..)| *name).collect()
}

/// How `ffvol export` makes its mesh for viewing.
fn mesh_view(args: &ExportArgs) -> Result<ffvol::export::surface::MeshView> {
    Ok(ffvol::export::surface::MeshView {
        normals: args.normals.unwrap_or_default(),
        simplify: ffvol::export::simplify::SimplifyTarget::from_flags(args.triangles, args.max_error)?,
        colors: args.colors,
    })
}

fn export(args: ExportArgs) -> Result<()> {
    set_threads(args.threads)?;
    ffvol::train::memory::set_max_memory(args.max_memory);
    let t = std::time::Instant::now();
    // the whole run.toml read and checked first (an unknown job or a bad setting names the file)
    let job = RunConfig::load_run(&args.run)?.job().to_string();
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
            volume_field::export_run_view(&args.run, &req, &mesh_view(&args)?)?
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
    if !(0.0..=1.0).contains(&min_component) {
        bail!("--min-component {min_component}: a fraction of the largest component's size, in [0, 1]");
    }
    let view = mesh_view(args)?;
    let exported =
        run.export_view(resolution, &formats, args.nifti, !args.exact, min_component, args.threads, &view)?;
    if let Some(r) = &exported.simplified {
        println!(
            "simplified {} → {} triangles: Hausdorff distance {:.4} ({:.3} % of the diagonal), mean {:.4}",
            r.triangles_before,
            r.triangles_after,
            r.distance.hausdorff,
            100.0 * r.distance.hausdorff_relative,
            r.distance.mean
        );
        if r.target_triangles.is_some_and(|t| r.triangles_after > t) {
            println!(
                "note: {} triangles is above the target: vertices around edges that collapsing would \
                 make non-manifold were kept",
                r.triangles_after
            );
        }
    }
    if let Some(n) = &exported.field_normals {
        if n.fell_back > 0 {
            println!(
                "field normals: {} vertices had a zero gradient and took the facets' normal",
                n.fell_back
            );
        }
    }
    for path in &exported.files {
        println!("wrote {}", path.display());
    }
    let mesh = exported.mesh;
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
    set_threads(config.common.threads)?;
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
    set_threads(a.threads)?;
    let scan = load_geometry(&a.geometry)?;
    let phantom = match a.phantom.as_str() {
        "shepp2d" => PhantomSource::Shepp2d(Some(a.seed)),
        "shepp2d-plain" => PhantomSource::Shepp2d(None),
        "shepp3d" => PhantomSource::Shepp3d(None),
        "shepp3d-perturbed" => PhantomSource::Shepp3d(Some(a.seed)),
        path => PhantomSource::File(PathBuf::from(path)),
    };
    let noise = a.noise.as_deref().map(ffvol::sim::ct::Noise::parse).transpose()?;
    let poisson_i0 = match noise {
        Some(ffvol::sim::ct::Noise::Poisson { i0 }) => Some(i0),
        _ => None,
    };
    check_supersample(&scan, a.supersample)?;
    let t = std::time::Instant::now();
    let mut sim =
        simulate(&scan, &SimulateOptions { phantom, poisson_i0, seed: a.seed, supersample: a.supersample })?;
    if let Some(n @ ffvol::sim::ct::Noise::PoissonGaussian { .. }) = &noise {
        ffvol::sim::ct::add_noise(&mut sim.projections, n, a.seed)?;
    }
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

/// The most samples per voxel edge `simulate --supersample` takes.
const MAX_SUPERSAMPLE: usize = 16;
/// The most phantom samples (voxels × supersample^dims) a simulation may rasterise.
const MAX_PHANTOM_SAMPLES: u64 = 1 << 36;

/// `--supersample` in 1..=16, and the phantom samples it makes within a bound.
fn check_supersample(scan: &ffvol::operator::ct_geometry::Scan, s: usize) -> Result<()> {
    if !(1..=MAX_SUPERSAMPLE).contains(&s) {
        bail!("--supersample {s}: expected 1..={MAX_SUPERSAMPLE} samples per voxel edge");
    }
    let samples =
        (s as u64).checked_pow(scan.dims as u32).and_then(|k| k.checked_mul(scan.n_voxels() as u64));
    match samples {
        Some(n) if n <= MAX_PHANTOM_SAMPLES => Ok(()),
        _ => bail!(
            "--supersample {s}: {} voxels × {s}^{} samples is more than the {MAX_PHANTOM_SAMPLES} a simulation rasterises; use a lower --supersample",
            scan.n_voxels(),
            scan.dims
        ),
    }
}

/// The most ray-samples (iterations × rays × samples a ray) `recon sart` runs: about an hour of
/// one core at 10⁸ samples a second, per 10¹¹·3.6.
const MAX_SART_WORK: f64 = 4e13;

/// The work of `iterations` SART passes (iterations × rays × samples along a ray, two
/// projections a pass) within [`MAX_SART_WORK`]; the flags' own ranges are
/// [`ct_recon::SartOptions::validate`]'s.
fn check_sart_work(scan: &ffvol::operator::ct_geometry::Scan, iterations: usize) -> Result<()> {
    // samples along a ray at half-voxel steps across the volume's diagonal
    let diagonal = scan.voxels[..scan.dims].iter().map(|&n| (n * n) as f64).sum::<f64>().sqrt();
    let work = iterations as f64 * scan.n_rays() as f64 * 2.0 * (2.0 * diagonal) * 2.0;
    if work > MAX_SART_WORK {
        bail!(
            "--iterations {iterations}: {iterations} passes × {} rays × ~{:.0} samples a ray is {work:.2e} ray samples, more than the {MAX_SART_WORK:e} (hours) recon sart runs; use fewer --iterations",
            scan.n_rays(),
            4.0 * diagonal
        );
    }
    Ok(())
}

fn recon(a: ReconArgs) -> Result<()> {
    use ffvol::export::volume::write_volume;
    use ffvol::io::ct::{load_ct_input, load_truth};
    use ffvol::operator::ct_geometry::Beam;
    use ffvol::recon as ct_recon;
    use ffvol::train::image_metrics::{psnr_ct, ssim_ct};
    set_threads(a.threads)?;
    let geometry = cli::args::geometry_or_hdf5(&a.geometry, &a.projections)?;
    let mut input = ffvol::io::raw_projections::ProjectionInput::default();
    a.input.apply(&mut input);
    if let Some(out) = &a.output {
        let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
        if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) || name.starts_with(".nii") {
            bail!("--output {}: the volume is written as NIfTI; name a .nii or .nii.gz file (its PNG preview goes beside it)", out.display());
        }
    }
    let loaded = load_ct_input(&a.projections, &geometry, &input)?;
    loaded.notes.iter().for_each(|n| eprintln!("{n}"));
    let (scan, proj) = (loaded.scan, loaded.projections);
    check_recon_flags(&a)?;
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
            let opts = ct_recon::SartOptions {
                iterations: a.iterations.unwrap_or(20),
                relaxation: a.relaxation.unwrap_or(1.0),
                subsets: a.subsets.unwrap_or(0),
                relaxation_decay: a.relaxation_decay.unwrap_or(1.0),
            };
            opts.validate(scan.n_views())?;
            check_sart_work(&scan, opts.iterations)?;
            let projector = ffvol::operator::ray::RayProjector::new(&scan, 0.5);
            (ct_recon::sart(&projector, &proj, opts), "sart")
        }
        ReconMethod::AsdPocs => {
            let d = ct_recon::AsdPocsOptions::default();
            let opts = ct_recon::AsdPocsOptions {
                iterations: a.iterations.unwrap_or(d.iterations),
                tv_iterations: a.tv_iterations.unwrap_or(d.tv_iterations),
                alpha: a.alpha.unwrap_or(d.alpha),
                alpha_red: a.alpha_red.unwrap_or(d.alpha_red),
                ratio: a.ratio.unwrap_or(d.ratio),
                relaxation: a.relaxation.unwrap_or(d.relaxation),
                relaxation_decay: a.relaxation_decay.unwrap_or(d.relaxation_decay),
                subsets: a.subsets.unwrap_or(d.subsets),
                max_l2_err: a.max_l2_err,
            };
            opts.validate(scan.n_views())?;
            let projector = ffvol::operator::ray::RayProjector::new(&scan, 0.5);
            let out = ct_recon::asd_pocs(&scan, &projector, &proj, opts)?;
            let last = out.history.last().map_or(f64::NAN, |h| h.residual);
            eprintln!(
                "asd-pocs: {} iterations (stopped: {}), ‖Ax − b‖ = {last:.4e}, ε = {:.4e}",
                out.history.len(),
                out.stop,
                out.epsilon
            );
            (out.volume, "asd-pocs")
        }
        ReconMethod::Cgls => {
            let opts = ct_recon::CglsOptions { iterations: a.iterations.unwrap_or(20) };
            let projector = ffvol::operator::ray::RayProjector::new(&scan, 0.5);
            let out = ct_recon::cgls(&projector, &proj, opts)?;
            eprintln!(
                "cgls: {} iterations, ‖Ax − b‖ {:.4e} → {:.4e}",
                out.iterations,
                out.residuals[0],
                out.residuals.last().copied().unwrap_or(f64::NAN)
            );
            (out.volume, "cgls")
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
        if scan.dims == 3 {
            let (s, [z, y, x]) = ffvol::train::image_metrics::ssim_ct_3axes(&volume, truth, scan.voxels);
            if s.is_finite() {
                println!("SSIM over 3 axes {s:.4} (z {z:.4}, y {y:.4}, x {x:.4})");
            } else {
                println!("SSIM over 3 axes: cannot be computed (a side of {:?} is under 11 voxels, or the truth is empty)", scan.voxels);
            }
        }
    }
    Ok(())
}

/// Refuses a `recon` flag that the method does not use (it would be silently ignored).
fn check_recon_flags(a: &ReconArgs) -> Result<()> {
    let m = a.method;
    let iterative = matches!(m, ReconMethod::Sart | ReconMethod::AsdPocs | ReconMethod::Cgls);
    let relaxed = matches!(m, ReconMethod::Sart | ReconMethod::AsdPocs);
    let tv = m == ReconMethod::AsdPocs;
    let flags: [(&str, bool, bool); 9] = [
        ("--iterations", a.iterations.is_some(), iterative),
        ("--relaxation", a.relaxation.is_some(), relaxed),
        ("--relaxation-decay", a.relaxation_decay.is_some(), relaxed),
        ("--subsets", a.subsets.is_some(), relaxed),
        ("--alpha", a.alpha.is_some(), tv),
        ("--alpha-red", a.alpha_red.is_some(), tv),
        ("--tv-iterations", a.tv_iterations.is_some(), tv),
        ("--ratio", a.ratio.is_some(), tv),
        ("--max-l2-err", a.max_l2_err.is_some(), tv),
    ];
    for (flag, given, applies) in flags {
        if given && !applies {
            let name =
                clap::ValueEnum::to_possible_value(&m).map(|v| v.get_name().to_string()).unwrap_or_default();
            bail!("{flag} does not apply to `recon {name}`");
        }
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
        on_step: None,
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
    set_threads(c.common.threads)?;
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
    set_threads(c.common.threads)?;
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
    set_threads(c.common.threads)?;
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
    set_threads(a.threads)?;
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
