//! The CUDA backend against the CPU reference: encodings, forward, gradients, losses, Adam, a
//! 200-step training run, inference in chunks, state round trips and the device RNG.
//!
//! Every test first asks for a usable GPU; without one it prints `skipped: <reason>` and passes,
//! unless `FFVOL_REQUIRE_CUDA=1` (set by the GPU check script), where a missing GPU fails.

use ffvol::backend::cuda::{self, CudaBackend, CudaSettings, Precision};
use ffvol::backend::{Backend, CpuBackend};
use ffvol::encoding::EncodingConfig;
use ffvol::sample::{uniform_in_box, Aabb, CounterRng};
use ffvol::train::{Adam, Loss};

#[macro_use]
mod common;
use common::*;

/// A CPU and a CUDA backend on the same encoding and the same random, non-zero weights and biases.
fn pair(
    enc: EncodingConfig,
    depth: usize,
    width: usize,
    precision: Precision,
) -> (CpuBackend, CudaBackend, CounterRng) {
    let (e, mlp, rng) = random_network(enc, depth, width);
    let cpu = CpuBackend::new(e.clone(), mlp.clone(), Adam::default(), 2).unwrap();
    let gpu =
        CudaBackend::new(e, mlp, Adam::default(), CudaSettings { precision, ..Default::default() }).unwrap();
    (cpu, gpu, rng)
}

/// `ffvol info`'s CUDA lines: never panic, and name the device when there is one.
#[test]
fn describe_devices_reports() {
    let text = cuda::describe_devices();
    println!("{text}");
    assert!(text.starts_with("cuda: driver library"), "{text}");
    if let Ok(rt) = cuda::runtime() {
        assert!(text.contains(&rt.device_name) && text.contains("usable"), "{text}");
    }
}

#[test]
fn encodings_match() {
    require_cuda!();
    let configs = [
        EncodingConfig::None,
        EncodingConfig::Basic { normalize: false },
        EncodingConfig::Positional { sigma: 6.0, features: 16, normalize: true },
        EncodingConfig::Gaussian { sigma: 10.0, features: 256, normalize: false },
        EncodingConfig::Gaussian { sigma: 3.0, features: 33, normalize: true },
    ];
    for cfg in configs {
        let (cpu, mut gpu, rng) = pair(cfg, 2, 16, Precision::Fp32);
        let pts = points(&rng, 0, 1000);
        let mut want = vec![0.0; 1000 * cpu.encoding().n_features()];
        cpu.encoding().encode(&pts, &mut want);
        let got = gpu.encode(&pts).unwrap();
        let err = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-6, "{}: max abs difference {err}", cfg.name());
    }
}

#[test]
fn forward_matches() {
    require_cuda!();
    for (depth, width) in [(1, 8), (4, 64), (3, 256)] {
        let (mut cpu, mut gpu, rng) = pair(
            EncodingConfig::Gaussian { sigma: 10.0, features: 64, normalize: false },
            depth,
            width,
            Precision::Fp32,
        );
        let pts = points(&rng, 100, 3001);
        let want = cpu.forward(&pts).unwrap().to_vec();
        let got = gpu.forward(&pts).unwrap().to_vec();
        let err = rel_err(&got, &want, 1.0);
        assert!(err < 1e-4, "{depth}×{width}: relative error {err}");
        let mut pred = vec![0.0; want.len()];
        gpu.predict(&pts, &mut pred).unwrap();
        assert_eq!(pred, got, "predict and forward differ on the GPU");
    }
}

#[test]
fn gradients_match_for_both_losses() {
    require_cuda!();
    for loss in [Loss::Bce, Loss::Mse] {
        let (mut cpu, mut gpu, rng) = pair(
            EncodingConfig::Gaussian { sigma: 5.0, features: 48, normalize: false },
            4,
            96,
            Precision::Fp32,
        );
        let n = 5000;
        let pts = points(&rng, 7000, n);
        let y = ball(&pts);
        let out = cpu.forward(&pts).unwrap().to_vec();
        let mut g = vec![0.0; n];
        loss.eval(&out, &y, &mut g);
        cpu.backward(&g).unwrap();
        gpu.forward(&pts).unwrap();
        gpu.backward(&g).unwrap();
        let (want, got) = (cpu.gradients(), gpu.gradients());
        for (l, layer) in cpu.mlp().layers().iter().enumerate() {
            let w = layer.weight..layer.bias;
            let b = layer.bias..layer.bias + layer.n_out;
            let ew = rel_err(&got[w.clone()], &want[w], 1e-12);
            let eb = rel_err(&got[b.clone()], &want[b], 1e-12);
            assert!(ew < 1e-4 && eb < 1e-4, "{loss:?} layer {l}: dW error {ew}, db error {eb}");
        }
    }
}

/// The loss a fused GPU step reports equals the CPU loss of the same outputs, and one Adam step
/// moves the parameters the same way.
#[test]
fn losses_and_one_adam_step_match() {
    require_cuda!();
    for loss in [Loss::Bce, Loss::Mse] {
        let (mut cpu, mut gpu, rng) = pair(
            EncodingConfig::Gaussian { sigma: 4.0, features: 32, normalize: true },
            3,
            64,
            Precision::Fp32,
        );
        let n = 4096;
        let pts = points(&rng, 1, n);
        let y: Vec<f32> = match loss {
            Loss::Bce => ball(&pts),
            Loss::Mse => (0..n).map(|i| rng.normal(50_000 + i as u64)).collect(),
        };
        let lr = 1e-3;
        let before = cpu.state().mlp.params;
        let l_cpu = cpu.train_step(&pts, &y, loss, lr).unwrap();
        let l_gpu = gpu.train_step(&pts, &y, loss, lr).unwrap();
        assert!(
            (l_cpu - l_gpu).abs() <= 1e-5 * l_cpu.abs(),
            "{loss:?}: loss {l_gpu} on the GPU, {l_cpu} on the CPU"
        );
        let (a, b) = (cpu.state(), gpu.state());
        assert_eq!(a.adam.step, b.adam.step);
        // Adam's first step is ≈ lr·sign(g): compare moves, allowing a handful of entries whose
        // gradient is at rounding level to go the other way.
        let moved_apart = a
            .mlp
            .params
            .iter()
            .zip(&b.mlp.params)
            .zip(&before)
            .filter(|((x, y), p0)| ((*x - *p0) - (*y - *p0)).abs() > 1e-3 * lr)
            .count();
        assert!(
            moved_apart * 1000 <= before.len(),
            "{loss:?}: {moved_apart} of {} parameters moved differently",
            before.len()
        );
        assert!(rel_err(&b.adam.m, &a.adam.m, 1e-12) < 1e-4, "{loss:?}: first moments differ");
        assert!(rel_err(&b.adam.v, &a.adam.v, 1e-20) < 1e-4, "{loss:?}: second moments differ");
    }
}

/// 200 steps on fresh batches: the loss curves agree to 1e-4 relative in fp32.
#[test]
fn training_curves_match_fp32() {
    require_cuda!();
    let (mut cpu, mut gpu, _) =
        pair(EncodingConfig::Gaussian { sigma: 6.0, features: 32, normalize: false }, 3, 64, Precision::Fp32);
    let data = CounterRng::new(9, 3);
    let n = 2048;
    let mut worst = 0.0f32;
    for step in 0..200u64 {
        let pts = points(&data, step * 3 * n as u64, n);
        let y = ball(&pts);
        let a = cpu.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        let b = gpu.train_step(&pts, &y, Loss::Bce, 2e-3).unwrap();
        worst = worst.max((a - b).abs() / a.abs());
        if step % 50 == 0 || step == 199 {
            println!("step {step:>3}: cpu {a:.6} cuda {b:.6}");
        }
    }
    println!("worst relative difference of the loss over 200 steps: {worst:.2e}");
    assert!(worst < 1e-4, "loss curves differ by {worst:.2e} relative");
}

// fp16 against the CPU: tests/cuda_fp16.rs.

/// Inference over more points than one chunk, and state round trips, are exact.
#[test]
fn predict_in_chunks_and_state_round_trip() {
    require_cuda!();
    let (mut cpu, mut gpu, rng) =
        pair(EncodingConfig::Gaussian { sigma: 8.0, features: 16, normalize: false }, 2, 32, Precision::Fp32);
    let n = 70_001; // more than one 65,536-point chunk
    let pts = points(&rng, 11, n);
    let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
    cpu.predict(&pts, &mut a).unwrap();
    gpu.predict(&pts, &mut b).unwrap();
    assert!(rel_err(&b, &a, 1.0) < 1e-4);
    let y = ball(&pts[..3 * 1000]);
    for _ in 0..3 {
        cpu.train_step(&pts[..3 * 1000], &y, Loss::Bce, 1e-3).unwrap();
    }
    let s = cpu.state();
    gpu.set_state(s.clone()).unwrap();
    assert_eq!(gpu.state(), s, "set_state then state is not the identity");
    // a CUDA state continues on the CPU
    let l_gpu = gpu.train_step(&pts[..3 * 1000], &y, Loss::Bce, 1e-3).unwrap();
    let l_cpu = cpu.train_step(&pts[..3 * 1000], &y, Loss::Bce, 1e-3).unwrap();
    assert!((l_gpu - l_cpu).abs() < 1e-5 * l_cpu, "{l_gpu} vs {l_cpu} after set_state");
}

/// The device RNG is the host's counter RNG, bit for bit, and so are uniform points in a box.
#[test]
fn device_rng_matches_host() {
    require_cuda!();
    let (_, gpu, _) = pair(EncodingConfig::None, 1, 1, Precision::Fp32);
    let (seed, stream) = (1234, 3);
    let host = CounterRng::new(seed, stream);
    let key = cuda::rng_key(seed, stream);
    let got = gpu.rng_uniform(key, 5_000_000_000, 100_000).unwrap();
    for (i, g) in got.iter().enumerate() {
        assert_eq!(*g, host.uniform(5_000_000_000 + i as u64), "uniform {i}");
    }
    let bbox = Aabb { min: [-0.1, 0.05, 0.2], max: [1.1, 0.9, 0.75] };
    let n = 10_000;
    let mut want = vec![[0.0f32; 3]; n];
    uniform_in_box(&bbox, &host, 77, &mut want);
    let got = gpu.sample_uniform_box(&bbox, key, 77, n).unwrap();
    assert_eq!(got, want.iter().flatten().copied().collect::<Vec<_>>());
}
