//! What only the fp16 CUDA path has (the default precision; with cuBLASLt's fused epilogues and
//! without), against the fp32 CPU reference and the fp32 CUDA path: the odd-width fallback, loss
//! scaling of host gradients of any magnitude, the benchmark's shape, and the occupancy step's
//! CUDA graph. Forward, gradients, training curves, chunked inference and state round trips in
//! fp16 are in tests/backend_conformance.rs (`cuda_fp16`, `cuda_fp16_nolt`).
//!
//! Every test needs a GPU: ignored without `--include-ignored` (the GPU check passes it, with
//! `FFVOL_REQUIRE_CUDA=1`, where a missing GPU fails them).

use ffvol::backend::cuda::{CudaBackend, Precision};
use ffvol::backend::{Backend, CpuBackend};
use ffvol::encoding::{Encoding, EncodingConfig};
use ffvol::model::{Mlp, ModelConfig};
use ffvol::sample::CounterRng;
use ffvol::train::Loss;

#[macro_use]
mod common;
use common::*;

/// The CPU reference, the fp32 CUDA path and the fp16 one (with cuBLASLt's fused epilogues
/// where it loads, and without), on the same weights.
struct Trio {
    cpu: CpuBackend,
    fp32: CudaBackend,
    fp16: CudaBackend,
    fp16_nolt: CudaBackend,
}

fn trio(enc: EncodingConfig, depth: usize, width: usize) -> (Trio, CounterRng) {
    let (e, mlp, rng) = random_network(enc, depth, width);
    let cpu = cpu_backend(e.clone(), mlp.clone());
    let fp32 = cuda_backend(e.clone(), mlp.clone(), cuda(Precision::Fp32));
    let fp16_nolt = cuda_backend(e.clone(), mlp.clone(), Cuda { lt: false, ..cuda(Precision::Fp16) });
    let fp16 = cuda_backend(e, mlp, cuda(Precision::Fp16));
    assert!(fp16.precision() == Precision::Fp16 && !fp16_nolt.uses_lt(), "{}", fp16.describe());
    (Trio { cpu, fp32, fp16, fp16_nolt }, rng)
}

/// fp16 says in `describe()` whether cuBLASLt is used; an odd hidden width runs fp32 and says why.
#[test]
#[ignore = "needs a CUDA GPU"]
fn fp16_is_described_and_odd_widths_fall_back() {
    require_cuda!();
    let rng = CounterRng::new(1, 0);
    let e =
        Encoding::build(&EncodingConfig::Gaussian { sigma: 4.0, features: 16, normalize: false }, 3, &rng);
    let mlp = Mlp::init(Mlp::sizes_for(e.n_features(), &ModelConfig { depth: 2, width: 32 }, 1), &rng);
    let be = cuda_backend(e.clone(), mlp, cuda(Precision::Fp16));
    assert!(be.precision() == Precision::Fp16 && be.describe().contains("cuBLASLt"), "{}", be.describe());
    println!("{}", be.describe());
    let odd = Mlp::init(Mlp::sizes_for(e.n_features(), &ModelConfig { depth: 2, width: 33 }, 1), &rng);
    let mut be = cuda_backend(e.clone(), odd.clone(), cuda(Precision::Fp16));
    assert!(be.precision() == Precision::Fp32, "{}", be.describe());
    assert!(be.describe().contains("fp16 needs even hidden widths"), "{}", be.describe());
    println!("{}", be.describe());
    // and it trains in fp32: the CPU's loss (cuda fp32's tolerance)
    let pts = points(&rng, 0, 1000);
    let y = ball(&pts);
    let l = be.train_step(&pts, &y, Loss::Bce, 1e-3).unwrap();
    let l_cpu = cpu_backend(e, odd).train_step(&pts, &y, Loss::Bce, 1e-3).unwrap();
    assert!((l - l_cpu).abs() <= 1e-5 * l_cpu, "odd width: loss {l} on the GPU, {l_cpu} on the CPU");
}

/// The two fp16 variants of a trio, by name.
fn variants(t: &mut Trio) -> [(&'static str, &mut CudaBackend); 2] {
    [("fp16+lt", &mut t.fp16), ("fp16-lt", &mut t.fp16_nolt)]
}

/// Host gradients of any magnitude (a sum loss over k-space gives |g| ~ 1e3 per point; a mean
/// over a 96³ grid gives ~1e-9) are scaled into fp16's range by a power of two and the scale is
/// undone exactly: the parameter gradients scale with the input (bit for bit under power-of-two
/// factors, where fp16 alone would overflow or flush to zero) and stay at fp16's distance from
/// the CPU's (the
/// MRI job's first GPU run diverged here before loss scaling). Random-sign output gradients
/// cancel in every sum, so that distance (1.9e-2 on an H200) is larger than for a real loss's.
#[test]
#[ignore = "needs a CUDA GPU"]
fn fp16_host_gradients_of_any_magnitude() {
    require_cuda!();
    let (mut t, rng) = trio(EncodingConfig::Gaussian { sigma: 5.0, features: 64, normalize: false }, 3, 128);
    let n = 20_000;
    let pts = points(&rng, 7, n);
    let base: Vec<f32> = (0..n).map(|i| rng.normal(50_000 + i as u64)).collect();
    let pass = t.cpu.forward(&pts).unwrap().0;
    t.cpu.backward(pass, &base).unwrap();
    let gc = t.cpu.gradients().unwrap();
    for (name, be) in variants(&mut t) {
        let pass = be.forward(&pts).unwrap().0;
        be.backward(pass, &base).unwrap();
        let at_one = be.gradients().unwrap();
        let e_cpu = rel_err(&at_one, &gc, 1e-30);
        println!("fp16: {name}: random output gradients: gradient error {e_cpu:.2e} against the CPU");
        assert!(e_cpu < 4e-2, "{name}: gradient error {e_cpu} against the CPU");
        // a power-of-two factor changes only the exponent of the scale: the same bits
        for factor in [2f32.powi(-30), 2f32.powi(-13), 2f32.powi(10), 2f32.powi(20)] {
            let g: Vec<f32> = base.iter().map(|x| x * factor).collect();
            let pass = be.forward(&pts).unwrap().0;
            be.backward(pass, &g).unwrap();
            let got: Vec<f32> = be.gradients().unwrap().iter().map(|x| x / factor).collect();
            assert_eq!(got, at_one, "{name}: gradients at ×{factor:e} are not those at ×1 scaled");
        }
        // any other factor: the fp16 values round differently, at fp16's distance from the CPU
        for factor in [1e-9f32, 1e6] {
            let g: Vec<f32> = base.iter().map(|x| x * factor).collect();
            let pass = be.forward(&pts).unwrap().0;
            be.backward(pass, &g).unwrap();
            let got: Vec<f32> = be.gradients().unwrap().iter().map(|x| x / factor).collect();
            assert!(got.iter().all(|x| x.is_finite()), "{name}: non-finite gradients at ×{factor:e}");
            let e = rel_err(&got, &gc, 1e-30);
            println!("fp16: {name}: output gradients ×{factor:e}: gradient error {e:.2e} against the CPU");
            assert!(e < 4e-2, "{name}: gradient error {e} against the CPU at ×{factor:e}");
        }
    }
    let mut bad = base.clone();
    bad[17] = f32::NAN;
    let pass = t.fp16.forward(&pts).unwrap().0;
    let err = t.fp16.backward(pass, &bad).unwrap_err().to_string();
    assert_eq!(err, "invalid input: backward: the output gradient is not finite (NaN); the loss diverged");
}

/// The benchmark's shape (4 × 256, m = 256) at batch 2^17: gradients against the fp32 CUDA
/// path's, then three steps on each: losses close, and Adam moves the parameters alike.
#[test]
#[ignore = "needs a CUDA GPU"]
fn fp16_step_at_benchmark_shape() {
    require_cuda!();
    let (mut t, rng) =
        trio(EncodingConfig::Gaussian { sigma: 10.0, features: 256, normalize: false }, 4, 256);
    let n = 1 << 17;
    let pts = points(&rng, 5, n);
    let y = ball(&pts);
    let before = t.fp32.state().unwrap().mlp.params;
    let (pass, out) = t.fp32.forward(&pts).unwrap();
    let out = out.to_vec();
    let mut g = vec![0.0; n];
    Loss::Bce.eval(&out, &y, &mut g);
    t.fp32.backward(pass, &g).unwrap();
    let g32 = t.fp32.gradients().unwrap();
    let lr = 1e-3;
    let mut want = vec![];
    for _ in 0..3 {
        want.push(t.fp32.train_step(&pts, &y, Loss::Bce, lr).unwrap());
    }
    let s32 = t.fp32.state().unwrap();
    for (name, be) in variants(&mut t) {
        let (pass, got) = be.forward(&pts).unwrap();
        let got = got.to_vec();
        let e_fwd = rel_err(&got, &out, 1.0);
        be.backward(pass, &g).unwrap();
        let e_grad = rel_err(&be.gradients().unwrap(), &g32, 1e-12);
        println!(
            "fp16: 4x256 m=256 batch 2^17 {name} vs cuda fp32: forward {e_fwd:.2e}, gradients {e_grad:.2e}"
        );
        assert!(e_fwd < 1e-2 && e_grad < 2e-2, "{name}: forward {e_fwd}, gradients {e_grad} against fp32");
        for (step, a) in want.iter().enumerate() {
            let b = be.train_step(&pts, &y, Loss::Bce, lr).unwrap();
            println!("fp16: 4x256 m=256 batch 2^17 step {step}: loss fp32 {a:.6} {name} {b:.6}");
            assert!((a - b).abs() < 1e-2 * a.abs(), "{name} step {step}: {a} vs {b}");
        }
        // Adam's first steps are ≈ lr·sign(g): count parameters that moved differently by more
        // than lr in all (gradients at rounding level may flip sign between precisions)
        let p = be.state().unwrap().mlp.params;
        let apart = p
            .iter()
            .zip(&s32.mlp.params)
            .zip(&before)
            .filter(|((x, y), p0)| ((*x - *p0) - (*y - *p0)).abs() > lr)
            .count();
        println!(
            "fp16: {name}: {apart} of {} parameters moved differently from fp32 over 3 steps; {}",
            p.len(),
            be.describe()
        );
        assert!(apart * 20 <= p.len(), "{name}: {apart} of {} parameters moved differently", p.len());
    }
}

/// The device-resident occupancy step in fp16 replayed from a CUDA graph equals the same steps
/// launched one by one, bit for bit (losses and final state), and follows the fp32 path.
#[test]
#[ignore = "needs a CUDA GPU"]
fn fp16_occupancy_steps_from_a_graph_match() {
    use ffvol::backend::cuda::BatchParams;
    require_cuda!();
    let mesh = ffvol::geometry::prepared::PreparedMesh::load(&bunny_path()).expect("datasets/bunny.ply");
    let enc = EncodingConfig::Gaussian { sigma: 10.0, features: 64, normalize: false };
    let (e, mlp) = network(&enc, 3, 4, 128, &CounterRng::new(42, 0));
    let make = |s: Cuda| cuda_backend(e.clone(), mlp.clone(), s);
    let mut runs = vec![];
    for (name, mut be) in [
        ("graph", make(cuda(Precision::Fp16))),
        ("no graph", make(Cuda { graph: false, ..cuda(Precision::Fp16) })),
        ("fp32", make(cuda(Precision::Fp32))),
    ] {
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
            "fp16: occupancy {name}: graph {on}, {replays} replays, last loss {:.5}; {}",
            losses[losses.len() - 1],
            be.describe()
        );
        if name == "graph" {
            assert!(on && replays == steps - 1, "{name}: graph {on}, {replays} replays of {steps} steps");
        }
        runs.push((losses, be.state().unwrap()));
    }
    let (g, ng, d) = (&runs[0], &runs[1], &runs[2]);
    for (i, (a, b)) in g.0.iter().zip(&ng.0).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "step {i}: graph loss {a}, without graph {b}");
    }
    assert_eq!(g.1, ng.1, "graph and no-graph runs end in different states");
    let worst = g.0.iter().zip(&d.0).map(|(a, b)| (a - b).abs() / b.abs()).fold(0.0f32, f32::max);
    println!("fp16: occupancy, fp16 vs fp32 loss over 40 steps: worst relative difference {worst:.2e}");
    assert!(worst < 2e-2, "fp16 occupancy losses differ from fp32's by {worst:.2e}");
}
