//! The opt-in fast fp16 path (`FFVOL_CUDA_FAST=1`, `CudaBackend::with_fast`) against the default
//! fp16 path and the fp32 CPU reference: forward, gradients of every layer, training curves,
//! odd batch sizes, chunked inference, state round trips, and that it is off by default.
//!
//! Every test first asks for a usable GPU; without one it prints `skipped: <reason>` and passes,
//! unless `FFVOL_REQUIRE_CUDA=1` (set by the GPU check script), where a missing GPU fails.

use ffvol::backend::cuda::{self, CudaBackend, Precision};
use ffvol::backend::{Backend, CpuBackend};
use ffvol::encoding::{Encoding, EncodingConfig};
use ffvol::model::{Mlp, ModelConfig};
use ffvol::sample::CounterRng;
use ffvol::train::{Adam, Loss};

macro_rules! require_cuda {
    () => {
        if let Err(reason) = cuda::runtime() {
            if std::env::var("FFVOL_REQUIRE_CUDA").is_ok_and(|v| v == "1") {
                panic!("FFVOL_REQUIRE_CUDA=1 but CUDA is not usable: {reason}");
            }
            println!("skipped: {reason}");
            return;
        }
    };
}

/// The CPU reference, the default fp16 CUDA path and the fast one (with cuBLASLt's fused
/// epilogues where it loads, and without), on the same weights.
struct Trio {
    cpu: CpuBackend,
    default: CudaBackend,
    fast: CudaBackend,
    fast_nolt: CudaBackend,
    /// fast with the experimental DRELU fusion (FFVOL_CUDA_LT_DRELU=1)
    fast_drelu: CudaBackend,
}

fn trio(enc: EncodingConfig, depth: usize, width: usize) -> (Trio, CounterRng) {
    let rng = CounterRng::new(42, 0);
    let e = Encoding::build(&enc, 3, &rng);
    let sizes = Mlp::sizes_for(e.n_features(), &ModelConfig { depth, width }, 1);
    let mut mlp = Mlp::init(sizes, &rng);
    for l in mlp.layers() {
        for i in 0..l.n_out {
            mlp.params[l.bias + i] = 0.1 * rng.normal(900_000 + (l.bias + i) as u64);
        }
    }
    let cpu = CpuBackend::new(e.clone(), mlp.clone(), Adam::default(), 2).unwrap();
    let default =
        CudaBackend::with_fast(e.clone(), mlp.clone(), Adam::default(), Precision::Fp16, false).unwrap();
    let fast_nolt =
        CudaBackend::with_paths(e.clone(), mlp.clone(), Adam::default(), Precision::Fp16, true, false)
            .unwrap();
    let fast = CudaBackend::with_paths(e.clone(), mlp.clone(), Adam::default(), Precision::Fp16, true, true)
        .unwrap();
    let mut fast_drelu =
        CudaBackend::with_paths(e, mlp, Adam::default(), Precision::Fp16, true, true).unwrap();
    fast_drelu.set_drelu(true);
    assert!(fast.is_fast() && fast_nolt.is_fast() && !default.is_fast() && !fast_nolt.uses_lt());
    (Trio { cpu, default, fast, fast_nolt, fast_drelu }, rng)
}

fn points(rng: &CounterRng, first: u64, n: usize) -> Vec<f32> {
    (0..3 * n).map(|i| rng.uniform(first + i as u64)).collect()
}

fn ball(pts: &[f32]) -> Vec<f32> {
    pts.chunks(3)
        .map(|p| (p.iter().map(|x| (x - 0.5) * (x - 0.5)).sum::<f32>() < 0.09) as u8 as f32)
        .collect()
}

/// max |a − b| / max(max |b|, floor).
fn rel_err(a: &[f32], b: &[f32], floor: f32) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(floor, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Off unless asked for; asked for, it needs fp16 and says so in `describe()`.
#[test]
fn fast_path_is_opt_in_and_described() {
    require_cuda!();
    let rng = CounterRng::new(1, 0);
    let e =
        Encoding::build(&EncodingConfig::Gaussian { sigma: 4.0, features: 16, normalize: false }, 3, &rng);
    let mlp = Mlp::init(Mlp::sizes_for(e.n_features(), &ModelConfig { depth: 2, width: 32 }, 1), &rng);
    if std::env::var_os("FFVOL_CUDA_FAST").is_none() {
        let be = CudaBackend::new(e.clone(), mlp.clone(), Adam::default(), Precision::Fp16).unwrap();
        assert!(!be.is_fast(), "fast path on without FFVOL_CUDA_FAST");
        assert!(!be.describe().contains("fast"), "{}", be.describe());
    }
    let be = CudaBackend::with_fast(e.clone(), mlp.clone(), Adam::default(), Precision::Fp16, true).unwrap();
    assert!(be.is_fast() && be.describe().contains("fast path"), "{}", be.describe());
    println!("{}", be.describe());
    let be = CudaBackend::with_fast(e, mlp, Adam::default(), Precision::Fp32, true).unwrap();
    assert!(!be.is_fast() && be.describe().contains("ignored"), "{}", be.describe());
    println!("{}", be.describe());
}

/// The two fast variants of a trio, by name.
fn variants(t: &mut Trio) -> [(&'static str, &mut CudaBackend); 2] {
    [("fast+lt", &mut t.fast), ("fast-lt", &mut t.fast_nolt)]
}

/// Forward and every layer's dW and db: the fast path (with and without cuBLASLt) is as close to
/// the fp32 CPU reference as the default fp16 path (same bounds as cuda_parity's fp16 test), on
/// batch sizes that are not multiples of the column-sum blocks.
#[test]
fn fast_forward_and_gradients_match() {
    require_cuda!();
    for (n, depth, width, features) in [(8192, 4, 128, 64), (5003, 3, 64, 32), (70_001, 2, 256, 128)] {
        let (mut t, rng) =
            trio(EncodingConfig::Gaussian { sigma: 5.0, features, normalize: false }, depth, width);
        println!("fast: {}", t.fast.describe());
        let pts = points(&rng, 3, n);
        let y = ball(&pts);
        let want = t.cpu.forward(&pts).unwrap().to_vec();
        let def = t.default.forward(&pts).unwrap().to_vec();
        let mut g = vec![0.0; n];
        Loss::Bce.eval(&want, &y, &mut g);
        t.cpu.backward(&g).unwrap();
        t.default.backward(&g).unwrap();
        let (gc, gd) = (t.cpu.gradients(), t.default.gradients());
        let layers = t.cpu.mlp().layers();
        println!(
            "fast: n {n} {depth}x{width}: default fp16: forward error {:.2e}, gradient error {:.2e}",
            rel_err(&def, &want, 1.0),
            rel_err(&gd, &gc, 1e-12)
        );
        for (name, be) in variants(&mut t) {
            let got = be.forward(&pts).unwrap().to_vec();
            let e_fwd = rel_err(&got, &want, 1.0);
            be.backward(&g).unwrap();
            let gf = be.gradients();
            let e_all = rel_err(&gf, &gc, 1e-12);
            println!(
                "fast: n {n} {depth}x{width}: {name}: forward error {e_fwd:.2e}, gradient error {e_all:.2e}"
            );
            assert!(e_fwd < 1e-2, "{name}: forward relative error {e_fwd}");
            assert!(e_all < 2e-2, "{name}: gradient relative error {e_all}");
            for (l, layer) in layers.iter().enumerate() {
                let w = layer.weight..layer.bias;
                let b = layer.bias..layer.bias + layer.n_out;
                let ew = rel_err(&gf[w.clone()], &gc[w.clone()], 1e-12);
                let eb = rel_err(&gf[b.clone()], &gc[b.clone()], 1e-12);
                let (dw, db) =
                    (rel_err(&gd[w.clone()], &gc[w], 1e-12), rel_err(&gd[b.clone()], &gc[b], 1e-12));
                println!("fast:   {name} layer {l}: dW {ew:.2e} (default {dw:.2e}), db {eb:.2e} (default {db:.2e})");
                assert!(ew < 3e-2 && eb < 3e-2, "{name} layer {l}: dW error {ew}, db error {eb}");
            }
        }
    }
}

/// 200 steps on fresh batches: the fast paths' loss curves follow the CPU's as the default fp16
/// path's does (1e-2 relative), and are deterministic (two runs agree bit for bit).
#[test]
fn fast_training_curve_matches() {
    require_cuda!();
    let enc = EncodingConfig::Gaussian { sigma: 6.0, features: 32, normalize: false };
    let (mut t, _) = trio(enc, 3, 64);
    let (mut again, _) = trio(enc, 3, 64);
    let data = CounterRng::new(9, 3);
    let n = 2048;
    let (mut worst, mut worst_nolt, mut worst_def) = (0.0f32, 0.0f32, 0.0f32);
    let mut last = 0.0;
    for step in 0..200u64 {
        let pts = points(&data, step * 3 * n as u64, n);
        let y = ball(&pts);
        let a = t.cpu.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        let b = t.fast.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        let c = t.default.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        let d = again.fast.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        let e = t.fast_nolt.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        let f = again.fast_nolt.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        assert_eq!(b.to_bits(), d.to_bits(), "step {step}: two fast+lt runs differ ({b} vs {d})");
        assert_eq!(e.to_bits(), f.to_bits(), "step {step}: two fast-lt runs differ ({e} vs {f})");
        worst = worst.max((a - b).abs() / a.abs());
        worst_nolt = worst_nolt.max((a - e).abs() / a.abs());
        worst_def = worst_def.max((a - c).abs() / a.abs());
        last = b;
    }
    println!(
        "fast: worst relative difference of the loss over 200 steps: fast+lt {worst:.2e}, fast-lt {worst_nolt:.2e}, \
         default fp16 {worst_def:.2e}; last {last:.4}"
    );
    assert!(
        worst < 1e-2 && worst_nolt < 1e-2,
        "fast loss curves differ by {worst:.2e} / {worst_nolt:.2e} relative"
    );
    assert_eq!(t.fast.state(), again.fast.state(), "two fast runs end in different states");
}

/// Chunked inference, set_state/state, and a step after set_state on the fast path.
#[test]
fn fast_predict_and_state_round_trip() {
    require_cuda!();
    let (mut t, rng) = trio(EncodingConfig::Gaussian { sigma: 8.0, features: 16, normalize: false }, 2, 32);
    let n = 70_001;
    let pts = points(&rng, 11, n);
    let mut a = vec![0.0; n];
    t.cpu.predict(&pts, &mut a).unwrap();
    let y = ball(&pts[..3 * 1000]);
    for _ in 0..3 {
        t.cpu.train_step(&pts[..3 * 1000], &y, Loss::Bce, 1e-3).unwrap();
    }
    let s = t.cpu.state();
    let l_cpu = t.cpu.train_step(&pts[..3 * 1000], &y, Loss::Bce, 1e-3).unwrap();
    let f_def = t.default.encode(&pts[..300]).unwrap();
    for (name, be) in variants(&mut t) {
        let mut b = vec![0.0; n];
        be.predict(&pts, &mut b).unwrap();
        let e = rel_err(&b, &a, 1.0);
        assert!(e < 1e-2, "{name}: predict error {e}");
        be.set_state(s.clone()).unwrap();
        assert_eq!(be.state(), s, "{name}: set_state then state is not the identity");
        let l_fast = be.train_step(&pts[..3 * 1000], &y, Loss::Bce, 1e-3).unwrap();
        assert!((l_fast - l_cpu).abs() < 1e-2 * l_cpu, "{name}: {l_fast} vs {l_cpu} after set_state");
        // the encoder check still returns fp32 features on the fast path
        assert_eq!(be.encode(&pts[..300]).unwrap(), f_def, "{name}: encode differs");
    }
}

/// The benchmark's shape (4 × 256, m = 256) at batch 2^17: gradients against the default fp16
/// path's, then three steps on each path: losses close, and Adam moves the parameters alike.
#[test]
fn fast_step_at_benchmark_shape() {
    require_cuda!();
    let (mut t, rng) =
        trio(EncodingConfig::Gaussian { sigma: 10.0, features: 256, normalize: false }, 4, 256);
    let n = 1 << 17;
    let pts = points(&rng, 5, n);
    let y = ball(&pts);
    let before = t.default.state().mlp.params;
    let out = t.default.forward(&pts).unwrap().to_vec();
    let mut g = vec![0.0; n];
    Loss::Bce.eval(&out, &y, &mut g);
    t.default.backward(&g).unwrap();
    let gd = t.default.gradients();
    let lr = 1e-3;
    let mut want = vec![];
    for _ in 0..3 {
        want.push(t.default.train_step(&pts, &y, Loss::Bce, lr).unwrap());
    }
    let sd = t.default.state();
    for (name, be) in variants(&mut t) {
        let got = be.forward(&pts).unwrap().to_vec();
        let e_fwd = rel_err(&got, &out, 1.0);
        be.backward(&g).unwrap();
        let e_grad = rel_err(&be.gradients(), &gd, 1e-12);
        println!("fast: 4x256 m=256 batch 2^17 {name} vs default fp16: forward {e_fwd:.2e}, gradients {e_grad:.2e}");
        assert!(
            e_fwd < 1e-2 && e_grad < 2e-2,
            "{name}: forward {e_fwd}, gradients {e_grad} against the default path"
        );
        for (step, a) in want.iter().enumerate() {
            let b = be.train_step(&pts, &y, Loss::Bce, lr).unwrap();
            println!("fast: 4x256 m=256 batch 2^17 step {step}: loss default {a:.6} {name} {b:.6}");
            assert!((a - b).abs() < 1e-2 * a.abs(), "{name} step {step}: {a} vs {b}");
        }
        // Adam's first steps are ≈ lr·sign(g): count parameters that moved differently by more
        // than lr in all (gradients at rounding level may flip sign between paths)
        let p = be.state().mlp.params;
        let apart = p
            .iter()
            .zip(&sd.mlp.params)
            .zip(&before)
            .filter(|((x, y), p0)| ((*x - *p0) - (*y - *p0)).abs() > lr)
            .count();
        println!(
            "fast: {name}: {apart} of {} parameters moved differently from the default path over 3 steps; {}",
            p.len(),
            be.describe()
        );
        assert!(apart * 20 <= p.len(), "{name}: {apart} of {} parameters moved differently", p.len());
    }
}

/// datasets/bunny.ply: `$FFVOL_BUNNY`, else from the working directory (the GPU check runs in
/// the repository root), else from this checkout.
fn bunny_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("FFVOL_BUNNY") {
        return p.into();
    }
    let here = std::path::PathBuf::from("datasets/bunny.ply");
    if here.is_file() {
        return here;
    }
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/bunny.ply")
}

/// The device-resident occupancy step on the fast path replayed from a CUDA graph equals the same
/// steps launched one by one, bit for bit (losses and final state), and follows the default path.
#[test]
fn fast_occupancy_steps_from_a_graph_match() {
    use ffvol::backend::cuda::BatchParams;
    require_cuda!();
    let mesh = ffvol::task::occupancy::PreparedMesh::load(&bunny_path()).expect("datasets/bunny.ply");
    let rng = CounterRng::new(42, 0);
    let e =
        Encoding::build(&EncodingConfig::Gaussian { sigma: 10.0, features: 64, normalize: false }, 3, &rng);
    let mlp = Mlp::init(Mlp::sizes_for(e.n_features(), &ModelConfig { depth: 4, width: 128 }, 1), &rng);
    let make = |fast: bool| {
        CudaBackend::with_fast(e.clone(), mlp.clone(), Adam::default(), Precision::Fp16, fast).unwrap()
    };
    let mut runs = vec![];
    for (name, mut be) in
        [("graph", make(true)), ("no graph", make(true).without_graph()), ("default", make(false))]
    {
        let dm = be.upload_mesh(&mesh.winding, &mesh.mesh_in_unit, mesh.bbox).unwrap();
        let mut losses = vec![];
        let (steps, every) = (40u64, 8usize);
        for step in 0..steps {
            let p = BatchParams { seed: 3, step, batch: 8192, n_surface: 2048, surface_sigma: 0.01 };
            let slot = step as usize % every;
            be.occupancy_step(&dm, &p, 2e-3, slot).unwrap();
            if slot + 1 == every {
                losses.extend(be.read_steps(every).unwrap().losses);
            }
        }
        let (on, replays) = be.graph_replays();
        println!(
            "fast: occupancy {name}: graph {on}, {replays} replays, last loss {:.5}; {}",
            losses[losses.len() - 1],
            be.describe()
        );
        if name == "graph" && std::env::var("FFVOL_CUDA_GRAPH").map_or(true, |v| v != "0") {
            assert!(on && replays == steps - 1, "{name}: graph {on}, {replays} replays of {steps} steps");
        }
        runs.push((losses, be.state()));
    }
    let (g, ng, d) = (&runs[0], &runs[1], &runs[2]);
    for (i, (a, b)) in g.0.iter().zip(&ng.0).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "step {i}: graph loss {a}, without graph {b}");
    }
    assert_eq!(g.1, ng.1, "graph and no-graph runs end in different states");
    let worst = g.0.iter().zip(&d.0).map(|(a, b)| (a - b).abs() / b.abs()).fold(0.0f32, f32::max);
    println!(
        "fast: occupancy, fast vs default fp16 loss over 40 steps: worst relative difference {worst:.2e}"
    );
    assert!(worst < 2e-2, "fast occupancy losses differ from the default path's by {worst:.2e}");
}

/// The experimental DRELU fusion (FFVOL_CUDA_LT_DRELU=1 on top of the fast path): every layer's
/// gradients against the CPU, the benchmark shape's gradients against the default fp16 path, and
/// a deterministic 200-step curve. Kept apart so that its failure does not hide the fast path's.
#[test]
fn fast_drelu_experiment_matches() {
    require_cuda!();
    for (n, depth, width, features) in [(5003, 3, 64, 32), (8192, 4, 128, 64)] {
        let (mut t, rng) =
            trio(EncodingConfig::Gaussian { sigma: 5.0, features, normalize: false }, depth, width);
        let pts = points(&rng, 3, n);
        let y = ball(&pts);
        let want = t.cpu.forward(&pts).unwrap().to_vec();
        let mut g = vec![0.0; n];
        Loss::Bce.eval(&want, &y, &mut g);
        t.cpu.backward(&g).unwrap();
        let gc = t.cpu.gradients();
        let be = &mut t.fast_drelu;
        let got = be.forward(&pts).unwrap().to_vec();
        be.backward(&g).unwrap();
        let gf = be.gradients();
        let (e_fwd, e_all) = (rel_err(&got, &want, 1.0), rel_err(&gf, &gc, 1e-12));
        println!(
            "fast: drelu n {n} {depth}x{width}: forward {e_fwd:.2e}, gradients {e_all:.2e}; drelu on: {}; {}",
            be.uses_drelu(),
            be.describe()
        );
        assert!(be.uses_drelu(), "DRELU was not used: {}", be.describe());
        assert!(e_fwd < 1e-2 && e_all < 2e-2, "drelu: forward {e_fwd}, gradients {e_all}");
        for (l, layer) in t.cpu.mlp().layers().iter().enumerate() {
            let w = layer.weight..layer.bias;
            let b = layer.bias..layer.bias + layer.n_out;
            let (ew, eb) = (rel_err(&gf[w.clone()], &gc[w], 1e-12), rel_err(&gf[b.clone()], &gc[b], 1e-12));
            println!("fast:   drelu layer {l}: dW {ew:.2e}, db {eb:.2e}");
            assert!(ew < 3e-2 && eb < 3e-2, "drelu layer {l}: dW error {ew}, db error {eb}");
        }
    }
    let enc = EncodingConfig::Gaussian { sigma: 6.0, features: 32, normalize: false };
    let (mut t, _) = trio(enc, 3, 64);
    let (mut again, _) = trio(enc, 3, 64);
    let data = CounterRng::new(9, 3);
    let n = 2048;
    let mut worst = 0.0f32;
    for step in 0..200u64 {
        let pts = points(&data, step * 3 * n as u64, n);
        let y = ball(&pts);
        let a = t.cpu.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        let b = t.fast_drelu.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        let d = again.fast_drelu.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        assert_eq!(b.to_bits(), d.to_bits(), "step {step}: two drelu runs differ ({b} vs {d})");
        worst = worst.max((a - b).abs() / a.abs());
    }
    println!("fast: drelu: worst relative difference of the loss over 200 steps: {worst:.2e}");
    assert!(worst < 1e-2, "drelu loss curve differs by {worst:.2e} relative");
}
