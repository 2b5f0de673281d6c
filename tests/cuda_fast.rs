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

/// The CPU reference, the default fp16 CUDA path and the fast one, on the same weights.
struct Trio {
    cpu: CpuBackend,
    default: CudaBackend,
    fast: CudaBackend,
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
    let fast = CudaBackend::with_fast(e, mlp, Adam::default(), Precision::Fp16, true).unwrap();
    assert!(fast.is_fast() && !default.is_fast());
    (Trio { cpu, default, fast }, rng)
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

/// Forward and every layer's dW and db: the fast path is as close to the fp32 CPU reference as
/// the default fp16 path (same bounds as cuda_parity's fp16 test), on batch sizes that are not
/// multiples of the column-sum blocks.
#[test]
fn fast_forward_and_gradients_match() {
    require_cuda!();
    for (n, depth, width, features) in [(8192, 4, 128, 64), (5003, 3, 64, 32), (70_001, 2, 256, 128)] {
        let (mut t, rng) =
            trio(EncodingConfig::Gaussian { sigma: 5.0, features, normalize: false }, depth, width);
        let pts = points(&rng, 3, n);
        let y = ball(&pts);
        let want = t.cpu.forward(&pts).unwrap().to_vec();
        let def = t.default.forward(&pts).unwrap().to_vec();
        let got = t.fast.forward(&pts).unwrap().to_vec();
        let (e_fast, e_def) = (rel_err(&got, &want, 1.0), rel_err(&def, &want, 1.0));
        println!("fast: n {n} {depth}x{width}: forward error fast {e_fast:.2e}, default fp16 {e_def:.2e}");
        assert!(e_fast < 1e-2, "fast forward relative error {e_fast}");
        let mut g = vec![0.0; n];
        Loss::Bce.eval(&want, &y, &mut g);
        t.cpu.backward(&g).unwrap();
        t.default.backward(&g).unwrap();
        t.fast.backward(&g).unwrap();
        let (gc, gd, gf) = (t.cpu.gradients(), t.default.gradients(), t.fast.gradients());
        let e_all = rel_err(&gf, &gc, 1e-12);
        println!(
            "fast: n {n} {depth}x{width}: gradient error fast {e_all:.2e}, default fp16 {:.2e}",
            rel_err(&gd, &gc, 1e-12)
        );
        assert!(e_all < 2e-2, "fast gradient relative error {e_all}");
        for (l, layer) in t.cpu.mlp().layers().iter().enumerate() {
            let w = layer.weight..layer.bias;
            let b = layer.bias..layer.bias + layer.n_out;
            let (ew, eb) = (
                rel_err(&gf[w.clone()], &gc[w.clone()], 1e-12),
                rel_err(&gf[b.clone()], &gc[b.clone()], 1e-12),
            );
            let (dw, db) = (rel_err(&gd[w.clone()], &gc[w], 1e-12), rel_err(&gd[b.clone()], &gc[b], 1e-12));
            println!("fast:   layer {l}: dW {ew:.2e} (default {dw:.2e}), db {eb:.2e} (default {db:.2e})");
            assert!(ew < 3e-2 && eb < 3e-2, "layer {l}: fast dW error {ew}, db error {eb}");
        }
    }
}

/// 200 steps on fresh batches: the fast path's loss curve follows the CPU's as the default fp16
/// path's does (1e-2 relative), and gradients are deterministic (two fast runs agree bit for bit).
#[test]
fn fast_training_curve_matches() {
    require_cuda!();
    let (mut t, _) = trio(EncodingConfig::Gaussian { sigma: 6.0, features: 32, normalize: false }, 3, 64);
    let (mut again, _) = trio(EncodingConfig::Gaussian { sigma: 6.0, features: 32, normalize: false }, 3, 64);
    let data = CounterRng::new(9, 3);
    let n = 2048;
    let (mut worst, mut worst_def) = (0.0f32, 0.0f32);
    let mut last = 0.0;
    for step in 0..200u64 {
        let pts = points(&data, step * 3 * n as u64, n);
        let y = ball(&pts);
        let a = t.cpu.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        let b = t.fast.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        let c = t.default.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        let d = again.fast.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        assert_eq!(b.to_bits(), d.to_bits(), "step {step}: two fast runs differ ({b} vs {d})");
        worst = worst.max((a - b).abs() / a.abs());
        worst_def = worst_def.max((a - c).abs() / a.abs());
        last = b;
    }
    println!("fast: worst relative difference of the loss over 200 steps: {worst:.2e} (default fp16 {worst_def:.2e}); last {last:.4}");
    assert!(worst < 1e-2, "fast loss curve differs by {worst:.2e} relative");
    assert_eq!(t.fast.state(), again.fast.state(), "two fast runs end in different states");
}

/// Chunked inference, set_state/state, and a step after set_state on the fast path.
#[test]
fn fast_predict_and_state_round_trip() {
    require_cuda!();
    let (mut t, rng) = trio(EncodingConfig::Gaussian { sigma: 8.0, features: 16, normalize: false }, 2, 32);
    let n = 70_001;
    let pts = points(&rng, 11, n);
    let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
    t.cpu.predict(&pts, &mut a).unwrap();
    t.fast.predict(&pts, &mut b).unwrap();
    let e = rel_err(&b, &a, 1.0);
    assert!(e < 1e-2, "fast predict error {e}");
    let y = ball(&pts[..3 * 1000]);
    for _ in 0..3 {
        t.cpu.train_step(&pts[..3 * 1000], &y, Loss::Bce, 1e-3).unwrap();
    }
    let s = t.cpu.state();
    t.fast.set_state(s.clone()).unwrap();
    assert_eq!(t.fast.state(), s, "set_state then state is not the identity");
    let l_fast = t.fast.train_step(&pts[..3 * 1000], &y, Loss::Bce, 1e-3).unwrap();
    let l_cpu = t.cpu.train_step(&pts[..3 * 1000], &y, Loss::Bce, 1e-3).unwrap();
    assert!((l_fast - l_cpu).abs() < 1e-2 * l_cpu, "{l_fast} vs {l_cpu} after set_state");
    // the encoder check still returns fp32 features on the fast path
    let f_fast = t.fast.encode(&pts[..300]).unwrap();
    let f_def = t.default.encode(&pts[..300]).unwrap();
    assert_eq!(f_fast, f_def);
}

/// The benchmark's shape (4 × 256, m = 256) at batch 2^17: one step on each path, losses and the
/// parameters after Adam close.
#[test]
fn fast_step_at_benchmark_shape() {
    require_cuda!();
    let (mut t, rng) =
        trio(EncodingConfig::Gaussian { sigma: 10.0, features: 256, normalize: false }, 4, 256);
    let n = 1 << 17;
    let pts = points(&rng, 5, n);
    let y = ball(&pts);
    for step in 0..3 {
        let a = t.default.train_step(&pts, &y, Loss::Bce, 1e-3).unwrap();
        let b = t.fast.train_step(&pts, &y, Loss::Bce, 1e-3).unwrap();
        println!("fast: 4x256 m=256 batch 2^17 step {step}: loss default {a:.6} fast {b:.6}");
        assert!((a - b).abs() < 1e-2 * a.abs(), "step {step}: {a} vs {b}");
    }
    let (sd, sf) = (t.default.state(), t.fast.state());
    let e = rel_err(&sf.mlp.params, &sd.mlp.params, 1e-6);
    println!("fast: parameters after 3 steps, relative difference {e:.2e}");
    assert!(e < 1e-2, "parameters differ by {e}");
}
