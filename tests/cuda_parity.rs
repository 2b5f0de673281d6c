//! What only the CUDA backend has, against the CPU reference: `ffvol info`'s lines, the encodings
//! (`CudaBackend::encode`) and the device RNG. Forward, gradients, Adam, training curves,
//! inference in chunks and state round trips are properties of every backend:
//! tests/backend_conformance.rs.
//!
//! The GPU tests are ignored without `--include-ignored` (the GPU check passes it, with
//! `FFVOL_REQUIRE_CUDA=1`, where a missing GPU fails them).

use ffvol::backend::cuda::{self, CudaBackend, Precision};
use ffvol::backend::{Backend, CpuBackend};
use ffvol::encoding::EncodingConfig;
use ffvol::sample::{uniform_in_box, Aabb, CounterRng};

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
    (cpu_backend(e.clone(), mlp.clone()), cuda_backend(e, mlp, cuda(precision)), rng)
}

/// `ffvol info`'s CUDA lines: never panic; the libraries line first; the device and "usable"
/// where CUDA is usable, else the reason it is not (the same reason `runtime()` gives).
#[test]
fn describe_devices_reports() {
    let text = cuda::describe_devices();
    println!("{text}");
    let first = text.lines().next().unwrap_or_default();
    let yes_no = |what: &str| first.contains(&format!("{what} yes")) || first.contains(&format!("{what} no"));
    assert!(
        first.starts_with("cuda: driver library ")
            && ["NVRTC", "cuBLAS", "cuBLASLt"].iter().all(|w| yes_no(w))
            && first.ends_with("(fit mri)"),
        "{first}"
    );
    let driver = first.starts_with("cuda: driver library yes");
    match cuda::runtime() {
        Ok(rt) => {
            let usable =
                format!("cuda: usable: kernels {} for {} on {}", rt.ptx_origin, rt.arch, rt.device_name);
            assert!(text.lines().any(|l| l == usable), "{text}");
        }
        Err(reason) if driver => {
            assert!(text.lines().any(|l| l == format!("cuda: not usable: {reason}")), "{text}")
        }
        Err(_) => assert_eq!(text.lines().nth(1), Some("cuda: no devices (no driver)"), "{text}"),
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
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

/// The device RNG is the host's counter RNG, bit for bit, and so are uniform points in a box.
#[test]
#[ignore = "needs a CUDA GPU"]
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
