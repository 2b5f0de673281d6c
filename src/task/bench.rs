//! `ffvol bench`: throughput of every stage of an occupancy training step, as figures.

use crate::encoding::{Encoding, EncodingConfig};
use crate::model::{Mlp, ModelConfig};
use crate::sample::{uniform_in_box, CounterRng};
use crate::task::occupancy::PreparedMesh;
use crate::train::Loss;
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
    pub device: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(cfg: &BenchConfig) -> crate::Result<()> {
    let rng = CounterRng::new(0, 0);
    let enc_cfg = EncodingConfig::Gaussian { sigma: 10.0, features: cfg.features, normalize: false };
    enc_cfg.validate()?;
    ModelConfig { depth: cfg.depth, width: cfg.width }.validate()?;
    let encoding = Encoding::build(&enc_cfg, 3, &rng);
    let mlp = Mlp::init(Mlp::sizes_for(encoding.n_features(), &ModelConfig { depth: cfg.depth, width: cfg.width }, 1), &rng);
    let n_params = mlp.params.len();
    let chosen = crate::task::device::choose(&cfg.device, encoding.clone(), mlp, cfg.threads)?;
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
    let steps = cfg.steps.max(1);
    let (mut t_enc, mut t_fwd, mut t_bwd, mut t_opt, mut t_step) = (vec![], vec![], vec![], vec![], vec![]);
    let mut feats = vec![0.0; n * encoding.n_features()];
    for _ in 0..steps {
        let t = Instant::now();
        encoding.encode(&pts, &mut feats);
        t_enc.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let out = backend.forward(&pts)?.to_vec();
        t_fwd.push(t.elapsed().as_secs_f64());
        let mut g = vec![0.0; n];
        Loss::Bce.eval(&out, &y, &mut g);
        let t = Instant::now();
        backend.backward(&g)?;
        t_bwd.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        backend.optimizer_step(1e-4)?;
        t_opt.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        backend.train_step(&pts, &y, Loss::Bce, 1e-4)?;
        t_step.push(t.elapsed().as_secs_f64());
    }
    let rate = |v: Vec<f64>| n as f64 / median(v);
    println!("{:<34} {:>14}", "stage (median of steps)", "samples/s");
    println!("{:<34} {:>14.0}", "encode", rate(t_enc));
    println!("{:<34} {:>14.0}", "forward (encode + MLP)", rate(t_fwd));
    println!("{:<34} {:>14.0}", "backward", rate(t_bwd));
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
    println!("{:<34} {:>14.0}", "inference (predict)", m as f64 / t.elapsed().as_secs_f64());

    // labelling
    match PreparedMesh::load(&cfg.mesh) {
        Ok(mesh) => {
            let np = cfg.label_points;
            let mut p = vec![[0.0f32; 3]; np];
            uniform_in_box(&mesh.bbox, &rng, 0, &mut p);
            let mut labels = vec![0.0; np];
            let t = Instant::now();
            mesh.label(&p, &mut labels);
            let dt = t.elapsed().as_secs_f64();
            let inside = labels.iter().filter(|&&l| l > 0.5).count();
            println!(
                "{:<34} {:>14.0}   ({np} uniform points in {:.2} s, {:.1} % inside, {} triangles)",
                "labels (winding numbers)",
                np as f64 / dt,
                dt,
                100.0 * inside as f64 / np as f64,
                mesh.mesh_in_unit.triangles.len()
            );
        }
        Err(e) => println!("labels: skipped ({e})"),
    }
    Ok(())
}
