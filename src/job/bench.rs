//! `ffvol bench`: throughput of every stage of an occupancy training step, as figures.
//!
//! Every timed stage ends with [`crate::backend::Backend::synchronize`], so an asynchronous
//! backend (CUDA) is timed to the end of its work, not of its launches. On CUDA the encode line
//! times the device encoder, and the labelling section adds the GPU labeller and the
//! device-resident occupancy step (sample + label + train, nothing read back but the loss).

use crate::encoding::{Encoding, EncodingConfig};
use crate::geometry::prepared::PreparedMesh;
use crate::model::{Mlp, ModelConfig};
use crate::sample::{uniform_in_box, CounterRng};
use crate::train::Loss;
use glam::Vec3;
use std::path::PathBuf;
use std::time::Instant;

pub struct BenchConfig {
    pub depth: usize,
    pub width: usize,
    pub features: usize,
    pub batch: usize,
    pub steps: usize,
    pub threads: usize,
    pub mesh: PathBuf,
    pub label_points: usize,
    /// Label these points (.npy, N × 3, mesh coordinates) instead of `label_points` uniform ones.
    pub points: Option<PathBuf>,
    /// Write the host labels here (.npy, N float32).
    pub labels_out: Option<PathBuf>,
    /// Skip the network stages.
    pub labels_only: bool,
    pub device: crate::config::DeviceConfig,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(cfg: &BenchConfig) -> crate::Result<()> {
    let limit = |flag: &str, n: usize, max: usize| {
        if (1..=max).contains(&n) {
            Ok(())
        } else {
            Err(crate::Error::Config(format!("{flag} {n}: expected 1..={max}")))
        }
    };
    limit("--batch", cfg.batch, 1 << 24)?;
    limit("--label-points", cfg.label_points, 1 << 28)?;
    crate::config::check_threads(cfg.threads)?;
    if cfg.labels_only {
        return labelling(cfg, None);
    }
    let rng = CounterRng::new(0, 0);
    let enc_cfg = EncodingConfig::Gaussian { sigma: 10.0, features: cfg.features, normalize: false };
    enc_cfg.validate()?;
    ModelConfig { depth: cfg.depth, width: cfg.width }.validate()?;
    let encoding = Encoding::build(&enc_cfg, 3, &rng);
    let mlp = Mlp::init(
        Mlp::sizes_for(encoding.n_features(), &ModelConfig { depth: cfg.depth, width: cfg.width }, 1),
        &rng,
    );
    let n_params = mlp.params.len();
    let chosen = crate::backend::select::choose(
        &cfg.device,
        encoding.clone(),
        mlp,
        crate::train::Adam::default(),
        cfg.threads,
    )?;
    let mut backend = chosen.backend;
    let n = cfg.batch;
    let pts: Vec<f32> = (0..3 * n).map(|i| rng.uniform(i as u64)).collect();
    let y: Vec<f32> = (0..n).map(|i| (pts[3 * i] > 0.5) as u8 as f32).collect();
    println!(
        "ffvol bench: {} | {}x{} MLP, m = {} Gaussian features, batch {n}, {n_params} parameters",
        backend.describe(),
        cfg.depth,
        cfg.width,
        cfg.features
    );
    backend.train_step(&pts, &y, Loss::Bce, 1e-4)?; // warm-up
    let on_device = backend.device_jobs().is_some();
    if let Some(jobs) = backend.device_jobs() {
        jobs.stage_points(&pts)?;
        jobs.encode_staged(n)?; // warm-up
    }
    let steps = cfg.steps.max(1);
    let (mut t_enc, mut t_fwd, mut t_bwd, mut t_opt, mut t_step) = (vec![], vec![], vec![], vec![], vec![]);
    let mut feats = vec![0.0; n * encoding.n_features()];
    for _ in 0..steps {
        backend.synchronize()?;
        let t = Instant::now();
        match backend.device_jobs() {
            Some(jobs) => jobs.encode_staged(n)?, // waits for the device
            None => encoding.encode(&pts, &mut feats),
        }
        t_enc.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let (pass, out) = backend.forward(&pts)?;
        let out = out.to_vec();
        backend.synchronize()?;
        t_fwd.push(t.elapsed().as_secs_f64());
        let mut g = vec![0.0; n];
        Loss::Bce.eval(&out, &y, &mut g);
        let t = Instant::now();
        backend.backward(pass, &g)?;
        backend.synchronize()?;
        t_bwd.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        backend.optimizer_step(1e-4)?;
        backend.synchronize()?;
        t_opt.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        backend.train_step(&pts, &y, Loss::Bce, 1e-4)?;
        backend.synchronize()?;
        t_step.push(t.elapsed().as_secs_f64());
    }
    let rate = |v: Vec<f64>| n as f64 / median(v);
    println!("{:<34} {:>14}", "stage (median of steps)", "samples/s");
    if on_device {
        println!("{:<34} {:>14.0}", "encode (device)", rate(t_enc));
        println!("{:<34} {:>14.0}", "forward (upload+encode+MLP+read)", rate(t_fwd));
        println!("{:<34} {:>14.0}", "backward (upload dL/dz+backward)", rate(t_bwd));
    } else {
        println!("{:<34} {:>14.0}", "encode", rate(t_enc));
        println!("{:<34} {:>14.0}", "forward (encode + MLP)", rate(t_fwd));
        println!("{:<34} {:>14.0}", "backward", rate(t_bwd));
    }
    println!("{:<34} {:>14.0}", "Adam (per step, in samples/s)", rate(t_opt));
    let train = rate(t_step);
    let flops = 6.0 * (n_params as f64) * train;
    println!("{:<34} {:>14.0}   (~{:.0} GFLOP/s)", "training step (fwd + bwd + Adam)", train, flops / 1e9);

    // inference at export sizes
    let m = 1 << 18;
    let qp: Vec<f32> = (0..3 * m).map(|i| rng.uniform(10_000_000 + i as u64)).collect();
    let mut out = vec![0.0; m];
    let t = Instant::now();
    backend.predict(&qp, &mut out)?;
    backend.synchronize()?;
    println!("{:<34} {:>14.0}", "inference (predict)", m as f64 / t.elapsed().as_secs_f64());

    labelling(cfg, Some((backend.as_mut(), n, steps)))
}

/// The labelling benchmark: prepare the mesh (read, orient, winding tree), label points on the
/// host, and on a device backend the GPU labeller and the device occupancy step too. Without
/// `--points`/`--labels-out`/`--labels-only` a mesh that cannot be read skips this section.
fn labelling(
    cfg: &BenchConfig,
    device: Option<(&mut dyn crate::backend::Backend, usize, usize)>,
) -> crate::Result<()> {
    let explicit = cfg.points.is_some() || cfg.labels_out.is_some() || cfg.labels_only;
    let t = Instant::now();
    let mesh = match PreparedMesh::load(&cfg.mesh) {
        Ok(mesh) => mesh,
        Err(e) if !explicit => {
            println!("labels: skipped ({e})");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let prepare_s = t.elapsed().as_secs_f64();
    println!(
        "{:<34} {:>14.2}   s ({} triangles; {})",
        "prepare mesh (read, orient, tree)",
        prepare_s,
        mesh.mesh_in_unit.triangles.len(),
        mesh.orientation.describe()
    );
    let p: Vec<[f32; 3]> = match &cfg.points {
        Some(path) => read_points(path)?
            .iter()
            .map(|&q| mesh.unit_from_mesh.apply(Vec3::from_array(q)).to_array())
            .collect(),
        None => {
            let mut p = vec![[0.0f32; 3]; cfg.label_points];
            uniform_in_box(&mesh.bbox, &CounterRng::new(0, 0), 0, &mut p);
            p
        }
    };
    let np = p.len();
    let mut labels = vec![0.0; np];
    let t = Instant::now();
    mesh.label(&p, &mut labels);
    let dt = t.elapsed().as_secs_f64();
    let inside = labels.iter().filter(|&&l| l > 0.5).count();
    let what = if cfg.points.is_some() { "given" } else { "uniform" };
    println!(
        "{:<34} {:>14.0}   ({np} {what} points in {:.2} s, {:.1} % inside, {} triangles)",
        "labels (winding numbers)",
        np as f64 / dt.max(1e-12),
        dt,
        100.0 * inside as f64 / np.max(1) as f64,
        mesh.mesh_in_unit.triangles.len()
    );
    if let Some(out) = &cfg.labels_out {
        crate::io::npy::write_npy_f32(out, &labels, &[np])?;
    }
    if let Some((backend, batch, steps)) = device {
        if let Some(jobs) = backend.device_jobs() {
            device_labels_and_steps(jobs, &mesh, &p, &labels, batch, steps)?;
        }
    }
    Ok(())
}

/// Points from a .npy file of shape N × 3 (any real type), checked: at least one, all finite.
fn read_points(path: &std::path::Path) -> crate::Result<Vec<[f32; 3]>> {
    let (values, shape) = crate::io::npy::read_npy_f32(path)?;
    if shape.len() != 2 || shape[1] != 3 || shape[0] == 0 {
        return Err(crate::Error::format(
            path,
            format!("points must be an N × 3 array with N ≥ 1, not {shape:?}"),
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(crate::Error::format(path, format!("point {} has a non-finite coordinate", i / 3)));
    }
    Ok(values.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
}

/// The GPU labeller on the same points as the host one, and the device-resident occupancy step
/// (uniform batches of `batch` points, as the paper's protocol).
fn device_labels_and_steps(
    jobs: &mut dyn crate::backend::DeviceJobs,
    mesh: &PreparedMesh,
    points: &[[f32; 3]],
    host_labels: &[f32],
    batch: usize,
    steps: usize,
) -> crate::Result<()> {
    use crate::backend::BatchParams;
    jobs.upload_mesh(&mesh.winding, &mesh.mesh_in_unit, mesh.bbox)?;
    let _ = jobs.label_points(&points[..points.len().min(4096)])?; // warm-up
    let t = Instant::now();
    let (labels, device_s) = jobs.label_points(points)?;
    let wall = t.elapsed().as_secs_f64();
    let differ = labels.iter().zip(host_labels).filter(|(a, b)| a != b).count();
    let np = points.len();
    println!(
        "{:<34} {:>14.0}   ({np} points: {:.3} s on the device, {:.3} s with copies; {differ} differ from the host)",
        "labels (GPU winding numbers)",
        np as f64 / device_s.max(1e-12),
        device_s,
        wall
    );
    let mut params = BatchParams { seed: 0, step: 0, batch, n_surface: 0, surface_sigma: 0.01 };
    jobs.occupancy_step(&params, 1e-4, 0)?; // warm-up
    jobs.read_steps(1)?;
    let steps = steps.max(super::occupancy::DEVICE_READ_EVERY);
    let (mut label_s, mut train_s) = (0.0, 0.0);
    let t = Instant::now();
    let mut slot = 0;
    for step in 0..steps {
        params.step = 1 + step as u64;
        jobs.occupancy_step(&params, 1e-4, slot)?;
        slot += 1;
        if slot == super::occupancy::DEVICE_READ_EVERY || step + 1 == steps {
            let r = jobs.read_steps(slot)?;
            label_s += r.label_seconds;
            train_s += r.train_seconds;
            slot = 0;
        }
    }
    let wall = t.elapsed().as_secs_f64();
    println!(
        "{:<34} {:>14.0}   ({steps} steps of {batch}: {:.2} ms a step; device: sample + label {:.2} ms, train {:.2} ms)",
        "occupancy step on the GPU",
        (steps * batch) as f64 / wall,
        1e3 * wall / steps as f64,
        1e3 * label_s / steps as f64,
        1e3 * train_s / steps as f64
    );
    Ok(())
}
