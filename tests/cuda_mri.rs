//! The MRI job's k-space operator on the GPU (`GpuKspaceOperator`, cuFFT) against the host's
//! `MaskedFft` (rustfft, f64): the forward transform, the adjoint identity ⟨Ax, y⟩ = ⟨x, Aᴴy⟩,
//! the loss and its gradient (plain and through the sigmoid) on random, never-zero fields and
//! random masks at small even and odd sizes, determinism, and a short `fit mri --device cuda`.
//!
//! Every test that needs the GPU is ignored without `--include-ignored`; it first builds the
//! operator, and where that fails (no GPU, no cuFFT) it fails under `FFVOL_REQUIRE_CUDA=1` (the
//! GPU check), else prints `skipped: <reason>`. The fits run the `ffvol` binary, one process per
//! variant, so no test changes this process's environment.

use ffvol::backend::cuda::{self, CudaBackend, GpuKspaceOperator, Precision};
use ffvol::backend::Backend;
use ffvol::encoding::EncodingConfig;
use ffvol::job::mri::{MriConfig, MriMetrics};
use ffvol::model::ModelConfig;
use ffvol::operator::fft::{MaskedFft, C64};
use ffvol::sample::voxels::grid_points;
use ffvol::sample::CounterRng;

#[macro_use]
mod common;
use common::{cuda, cuda_backend, cuda_required, ffvol_fit, network, random_complex, rel_err64, scratch};

/// Grids: even, odd, one axis of length 1, and more than one loss block (> 256 · 1024 voxels is
/// not needed for that: 1024 partials cover 262,144 voxels, so 70×64×60 makes the blocks loop).
const GRIDS: [[usize; 3]; 4] = [[16, 12, 10], [9, 7, 5], [1, 6, 5], [70, 64, 60]];

/// The operator on the GPU, or None after printing why (a failure under FFVOL_REQUIRE_CUDA=1).
fn gpu_operator(op: &MaskedFft, y: &[C64]) -> Option<GpuKspaceOperator> {
    match GpuKspaceOperator::new(op, y) {
        Ok(g) => Some(g),
        Err(reason) => {
            if cuda_required() {
                panic!("FFVOL_REQUIRE_CUDA=1 but the cuFFT operator is not usable: {reason}");
            }
            println!("skipped: {reason}");
            None
        }
    }
}

/// About 30 % measured, and never nothing (DC always).
fn random_mask(n: usize, seed: u64) -> Vec<bool> {
    let rng = CounterRng::new(seed, 98);
    (0..n).map(|i| i == 0 || rng.uniform(i as u64) < 0.3).collect()
}

/// Values in [lo, hi), never zero for lo > 0.
fn random_field(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let rng = CounterRng::new(seed, 97);
    (0..n).map(|i| lo + (hi - lo) * rng.uniform(i as u64)).collect()
}

fn dot(a: &[C64], b: &[C64]) -> C64 {
    a.iter().zip(b).map(|(x, y)| x * y.conj()).sum()
}

/// max |a − b| / max |b|: one scale for a whole buffer.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    rel_err64(a, b, 1e-30)
}

fn rel_err_c(a: &[C64], b: &[C64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1e-300f64, |m, x| m.max(x.norm()));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).norm())) / scale
}

/// A problem of `dims`: the operator with a random mask and random measured k-space (nonzero
/// outside the mask too: the operator must mask it itself, as the host does).
fn problem(dims: [usize; 3], seed: u64) -> (MaskedFft, Vec<C64>) {
    let n = dims.iter().product();
    let op = MaskedFft::new(dims, random_mask(n, seed)).unwrap();
    let y: Vec<C64> = random_complex(n, seed + 50).iter().map(|c| c * 3.0).collect();
    (op, y)
}

/// Building the operator never panics: without CUDA it is the error that names the reason
/// `runtime()` gives, without cuFFT the one that names the library, else it works; `ffvol info`
/// says whether cuFFT loads.
#[test]
fn building_the_operator_never_panics() {
    let (op, y) = problem([4, 3, 2], 1);
    let got = GpuKspaceOperator::new(&op, &y);
    let info = cuda::describe_devices();
    let cufft = cuda::fft::cufft_present();
    assert!(info.contains(if cufft { "cuFFT yes" } else { "cuFFT no" }), "{info}");
    match (cuda::runtime(), got) {
        (Err(reason), got) => {
            assert_eq!(got.err(), Some(format!("CUDA is not usable: {reason}")));
            println!("not usable, as expected without a GPU: {reason}");
        }
        (Ok(_), got) if !cufft => assert_eq!(
            got.err().as_deref(),
            Some("no cuFFT (libcufft.so.12 cannot be loaded; it ships with the CUDA toolkit)")
        ),
        (Ok(_), Ok(g)) => println!("usable: {}", g.describe()),
        (Ok(_), Err(e)) => panic!("CUDA and cuFFT are here but the operator failed: {e}"),
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn forward_and_adjoint_match_the_host() {
    for (k, dims) in GRIDS.into_iter().enumerate() {
        let seed = 10 + k as u64;
        let (op, y) = problem(dims, seed);
        let Some(mut gpu) = gpu_operator(&op, &y) else { return };
        let n = op.mask.len();
        let x = random_complex(n, seed + 1);
        let v = random_complex(n, seed + 2);
        let (ax_gpu, ax_cpu) = (gpu.apply(&x).unwrap(), op.apply(&x));
        let (atv_gpu, atv_cpu) = (gpu.adjoint(&v).unwrap(), op.adjoint(&v));
        let (e_fwd, e_adj) = (rel_err_c(&ax_gpu, &ax_cpu), rel_err_c(&atv_gpu, &atv_cpu));
        // ⟨Ax, v⟩ = ⟨x, Aᴴv⟩ on the GPU alone
        let (lhs, rhs) = (dot(&ax_gpu, &v), dot(&x, &atv_gpu));
        let e_dot = (lhs - rhs).norm() / lhs.norm().max(rhs.norm());
        println!("{dims:?}: forward {e_fwd:.1e}, adjoint {e_adj:.1e}, <Ax,v> vs <x,A^H v> {e_dot:.1e}");
        assert!(e_fwd < 1e-12 && e_adj < 1e-12, "{dims:?}: forward {e_fwd:e}, adjoint {e_adj:e}");
        assert!(e_dot < 1e-12, "{dims:?}: <Ax, v> = {lhs}, <x, A^H v> = {rhs}");
        // masked entries are exactly zero, as on the host
        assert!(op.mask.iter().zip(&ax_gpu).all(|(&m, c)| m || (c.re == 0.0 && c.im == 0.0)));
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn loss_and_gradient_match_the_host() {
    for (k, dims) in GRIDS.into_iter().enumerate() {
        let seed = 20 + k as u64;
        let (op, y) = problem(dims, seed);
        let Some(mut gpu) = gpu_operator(&op, &y) else { return };
        let n = op.mask.len();
        let f = random_field(n, seed + 1, 0.05, 0.95);
        let (mut g_cpu, mut g_gpu) = (vec![0.0f32; n], vec![0.0f32; n]);
        let l_cpu = op.loss_and_gradient(&f, &y, &mut g_cpu);
        let l_gpu = gpu.loss_and_gradient(&f, &mut g_gpu).unwrap();
        let (e_loss, e_grad) = ((l_gpu - l_cpu).abs() / l_cpu.abs(), rel_err(&g_gpu, &g_cpu));
        println!("{dims:?}: loss {l_gpu:.9e} vs {l_cpu:.9e} ({e_loss:.1e}), gradient {e_grad:.1e}");
        assert!(l_cpu > 0.0 && g_cpu.iter().any(|&g| g != 0.0), "{dims:?}: a trivial problem");
        assert!(e_loss < 1e-12, "{dims:?}: loss {l_gpu} vs {l_cpu}");
        // the same f64 values rounded to f32 on both sides: at most an ulp or so apart
        assert!(e_grad < 1e-6, "{dims:?}: gradient relative error {e_grad:e}");
    }
}

/// The training step's fused form: σ on the device, and ∂L/∂z = ∂L/∂p · p(1 − p), against the
/// host's three passes in src/task/mri.rs.
#[test]
#[ignore = "needs a CUDA GPU"]
fn sigmoid_loss_and_gradient_match_the_host() {
    for (k, dims) in GRIDS.into_iter().enumerate() {
        let seed = 30 + k as u64;
        let (op, y) = problem(dims, seed);
        let Some(mut gpu) = gpu_operator(&op, &y) else { return };
        let n = op.mask.len();
        // logits on both sides of 0, none exactly 0
        let z: Vec<f32> = random_field(n, seed + 1, 0.01, 4.0)
            .iter()
            .enumerate()
            .map(|(i, &v)| if i % 2 == 0 { v } else { -v })
            .collect();
        let p: Vec<f32> = z.iter().map(|&z| ffvol::train::loss::sigmoid(z)).collect();
        let mut g_cpu = vec![0.0f32; n];
        let l_cpu = op.loss_and_gradient(&p, &y, &mut g_cpu);
        g_cpu.iter_mut().zip(&p).for_each(|(g, &p)| *g *= p * (1.0 - p));
        let mut g_gpu = vec![0.0f32; n];
        let l_gpu = gpu.sigmoid_loss_and_gradient(&z, &mut g_gpu).unwrap();
        let (e_loss, e_grad) = ((l_gpu - l_cpu).abs() / l_cpu.abs(), rel_err(&g_gpu, &g_cpu));
        println!("{dims:?}: loss {l_gpu:.9e} vs {l_cpu:.9e} ({e_loss:.1e}), gradient {e_grad:.1e}");
        // expf on the device and on the host may differ in the last bit of σ
        assert!(e_loss < 1e-6, "{dims:?}: loss {l_gpu} vs {l_cpu}");
        assert!(e_grad < 1e-5, "{dims:?}: gradient relative error {e_grad:e}");
    }
}

/// The same inputs give the same loss and gradient, bit for bit (fixed-order sums, no atomics);
/// wrong sizes are errors.
#[test]
#[ignore = "needs a CUDA GPU"]
fn deterministic_and_checks_sizes() {
    let dims = [70, 64, 60];
    let (op, y) = problem(dims, 40);
    let Some(mut gpu) = gpu_operator(&op, &y) else { return };
    let n = op.mask.len();
    let z = random_field(n, 41, -3.0, 3.0);
    let (mut a, mut b) = (vec![0.0f32; n], vec![0.0f32; n]);
    let la = gpu.sigmoid_loss_and_gradient(&z, &mut a).unwrap();
    let _ = gpu.loss_and_gradient(&random_field(n, 42, 0.1, 0.9), &mut b).unwrap();
    let lb = gpu.sigmoid_loss_and_gradient(&z, &mut b).unwrap();
    assert_eq!(la.to_bits(), lb.to_bits());
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    let err = |r: ffvol::Result<f64>| r.unwrap_err().to_string();
    assert_eq!(
        err(gpu.loss_and_gradient(&z[1..], &mut a)),
        format!("invalid configuration: k-space operator: a field of {} values for a {dims:?} grid", n - 1)
    );
    assert_eq!(
        err(gpu.loss_and_gradient(&z, &mut a[1..])),
        "invalid configuration: k-space operator: gradient buffer of the wrong size"
    );
    assert_eq!(
        gpu.apply(&y[1..]).unwrap_err().to_string(),
        format!("invalid configuration: k-space operator: {} values for a {dims:?} grid", n - 1)
    );
}

/// A CUDA backend for a 3-D field (Gaussian features, 2 × 64, one output), the same weights for
/// the same seed.
fn backend(precision: Precision, seed: u64) -> CudaBackend {
    let enc = EncodingConfig::Gaussian { sigma: 2.0, features: 32, normalize: false };
    let (e, mlp) = network(&enc, 3, 2, 64, &CounterRng::new(seed, 0));
    cuda_backend(e, mlp, cuda(precision))
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

/// The device-resident step (points uploaded once, z → operator → ∂L/∂z → backward on the
/// device, on the backend's stream) against `fit mri`'s host-data GPU step (forward downloads z,
/// the operator on its own stream uploads it, ∂L/∂z comes back and goes up again), five Adam
/// steps each from the same weights: the same loss, ∂L/∂z and parameter gradients (bit for bit
/// by construction: the same kernels on the same values, and the same loss scale in fp16, since
/// max |∂L/∂z| is exact; asserted to 1e-6 in fp32, 1e-3 in fp16).
#[test]
#[ignore = "needs a CUDA GPU"]
fn resident_step_matches_the_host_data_step() {
    let dims = [16, 12, 10];
    let (op, y) = problem(dims, 60);
    let Some(mut host_op) = gpu_operator(&op, &y) else { return };
    let points = grid_points(dims, 1);
    let n = points.len() / 3;
    for (precision, tol) in [(Precision::Fp32, 1e-6), (Precision::Fp16, 1e-3)] {
        let (mut a, mut b) = (backend(precision, 61), backend(precision, 61));
        let mut dev_op = GpuKspaceOperator::on_stream(&op, &y, b.stream()).unwrap();
        assert_eq!(b.set_resident_points(&points).unwrap(), n);
        let mut grad = vec![0.0f32; n];
        for step in 0..5 {
            let (pass, z) = a.forward(&points).unwrap();
            let la = host_op.sigmoid_loss_and_gradient(z, &mut grad).unwrap();
            a.backward(pass, &grad).unwrap();
            let z = b.forward_resident().unwrap();
            let (lb, max) = dev_op.sigmoid_loss_and_gradient_device(&z).unwrap();
            let gb: Vec<f32> = b.stream().clone_dtoh(&dev_op.gradient()).unwrap();
            b.backward_device_grad(&dev_op.gradient(), max).unwrap();
            let host_max = grad.iter().fold(0.0f32, |m, g| m.max(g.abs()));
            let (pa, pb) = (a.gradients().unwrap(), b.gradients().unwrap());
            let (e_loss, e_dz, e_dp) = (rel(lb, la), rel_err(&gb, &grad), rel_err(&pb, &pa));
            println!(
                "{} step {step}: loss {lb:.9e} vs {la:.9e} ({e_loss:.1e}), dL/dz {e_dz:.1e}, \
                 max |dL/dz| {max:e} vs {host_max:e}, parameter gradients {e_dp:.1e}",
                precision.name()
            );
            let e_max = rel(max as f64, host_max as f64);
            assert!(la > 0.0 && host_max > 0.0, "a trivial problem");
            assert!(e_max < tol, "max |dL/dz| {max} vs {host_max}");
            assert!(e_loss < tol && e_dz < tol && e_dp < tol, "{}: step {step}", precision.name());
            a.optimizer_step(1e-3).unwrap();
            b.optimizer_step(1e-3).unwrap();
        }
        // the weights after five steps
        let (sa, sb) = (a.state().unwrap(), b.state().unwrap());
        let e = rel_err(&sb.mlp.params, &sa.mlp.params);
        println!("{}: parameters after 5 steps {e:.1e}", precision.name());
        assert!(e < tol, "{}: parameters {e:e}", precision.name());
    }
}

/// The resident API's edges: forward_resident needs resident points; `forward` (which writes the
/// training buffers' points) drops them, `predict` does not; a NaN output is an error of
/// backward_device_grad (the loss scale cannot be chosen), never a panic, in both precisions.
#[test]
#[ignore = "needs a CUDA GPU"]
fn resident_step_errors_on_nan_and_without_points() {
    let dims = [9, 7, 5];
    let (op, y) = problem(dims, 62);
    if gpu_operator(&op, &y).is_none() {
        return;
    }
    let points = grid_points(dims, 1);
    for precision in [Precision::Fp32, Precision::Fp16] {
        let mut b = backend(precision, 63);
        let e = b.forward_resident().err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            e,
            "invalid configuration: CUDA forward_resident: no resident points (set_resident_points first)"
        );
        b.set_resident_points(&points).unwrap();
        let mut out = vec![0.0f32; points.len() / 3];
        b.predict(&points, &mut out).unwrap();
        assert!(b.has_resident_points(), "predict uses its own buffers");
        let _ = b.forward(&points[..30]).unwrap();
        assert!(!b.has_resident_points(), "forward overwrote the points");
        b.set_resident_points(&points).unwrap();

        let mut state = b.state().unwrap();
        let last = state.mlp.params.len() - 1; // the output bias
        state.mlp.params[last] = f32::NAN;
        b.set_state(state).unwrap();
        let mut dev_op = GpuKspaceOperator::on_stream(&op, &y, b.stream()).unwrap();
        let z = b.forward_resident().unwrap();
        let (loss, max) = dev_op.sigmoid_loss_and_gradient_device(&z).unwrap();
        assert!(loss.is_nan() && max.is_nan(), "{}: loss {loss}, max {max}", precision.name());
        let e = b.backward_device_grad(&dev_op.gradient(), max).unwrap_err().to_string();
        assert_eq!(e, "invalid input: backward: the output gradient is not finite (NaN); the loss diverged");
        // and a wrong-sized gradient is an error too
        let n = points.len() / 3;
        let short = dev_op.gradient().slice(1..);
        let e = b.backward_device_grad(&short, 1.0).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("invalid input: backward: got {} output gradients for a forward of {n} points", n - 1)
        );
    }
}

/// A smooth blob with a ripple along x, x fastest.
fn synthetic_volume(dims: [usize; 3]) -> Vec<f32> {
    (0..dims.iter().product::<usize>())
        .map(|i| {
            let (x, yy, z) = (i % dims[0], (i / dims[0]) % dims[1], i / (dims[0] * dims[1]));
            let c = |v: usize, d: usize| (v as f32 + 0.5) / d as f32 - 0.5;
            let r2 = c(x, dims[0]).powi(2) + c(yy, dims[1]).powi(2) + c(z, dims[2]).powi(2);
            (1.0 - 4.0 * r2).max(0.0) + 0.2 * (7.0 * c(x, dims[0])).sin()
        })
        .collect()
}

/// `fit mri --device cuda --precision fp32` (network and k-space operator on the GPU) against the
/// same run with the k-space step on the host (`[device] gpu_operator = false`), through host
/// memory (`resident = false`), and `--device cpu`, on a small synthetic volume: the same run each
/// time, so the losses and the fits agree closely. Each variant is its own `ffvol` process, its
/// device settings in its own `--config` file.
#[test]
#[ignore = "needs a CUDA GPU"]
fn fit_on_the_gpu_tracks_the_cpu() {
    let (op, y) = problem([4, 3, 2], 50);
    if gpu_operator(&op, &y).is_none() {
        return;
    }
    let dims = [20usize, 18, 16];
    let vol = synthetic_volume(dims);
    let dir = scratch("fit");
    let path = dir.join("volume.npy");
    ffvol::io::write_npy(&path, &vol, &dims, true).unwrap(); // x fastest
    let mut c = MriConfig::fast();
    c.volume = Some(path.clone());
    c.common.encoding = EncodingConfig::Gaussian { sigma: 2.0, features: 32, normalize: false };
    c.common.model = ModelConfig { depth: 2, width: 64 };
    c.train.steps = 60;
    c.train.checkpoint_every = 0;
    c.export.montage = false;
    let run = |device: &str, name: &str, gpu_operator: bool, resident: bool| -> MriMetrics {
        let out = dir.join(name);
        let mut c = c.clone();
        (c.common.device.gpu_operator, c.common.device.resident) = (gpu_operator, resident);
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, c.to_toml().unwrap()).unwrap();
        let args =
            ["fit", "mri", "--config", config.to_str().unwrap(), "--device", device, "--precision", "fp32"];
        let args: Vec<&str> = args.into_iter().chain(["--output", out.to_str().unwrap()]).collect();
        ffvol_fit(&args, &out)
    };
    let cpu = run("cpu", "cpu", true, true);
    let host_fft = run("cuda", "cuda-rustfft", false, true);
    let host_data = run("cuda", "cuda-cufft-host-data", true, false);
    let gpu = run("cuda", "cuda-cufft", true, true);
    for (name, m) in [
        ("cpu", &cpu),
        ("cuda + rustfft", &host_fft),
        ("cuda + cuFFT, host data", &host_data),
        ("cuda + cuFFT, resident", &gpu),
    ] {
        println!("{name:<24} loss {:.6e}  PSNR {:.3} dB  ({})", m.run.final_loss, m.psnr, m.run.device);
    }
    assert!(gpu.run.device.contains("cuda"), "{}", gpu.run.device);
    // the same network on the device, the k-space step on the host or the device: equal to rounding
    let rel = (gpu.run.final_loss - host_fft.run.final_loss).abs() / host_fft.run.final_loss;
    assert!(
        rel < 1e-3,
        "final loss: cuFFT {} vs rustfft {} ({rel:.1e})",
        gpu.run.final_loss,
        host_fft.run.final_loss
    );
    assert!((gpu.psnr - host_fft.psnr).abs() < 0.05, "PSNR: cuFFT {} vs rustfft {}", gpu.psnr, host_fft.psnr);
    // the device-resident step against the same step through host memory: the same kernels on
    // the same values, so the same run (bit for bit expected; rounding allowed)
    let rel = (gpu.run.final_loss - host_data.run.final_loss).abs() / host_data.run.final_loss;
    assert!(
        rel < 1e-4,
        "final loss: resident {} vs host data {} ({rel:.1e})",
        gpu.run.final_loss,
        host_data.run.final_loss
    );
    assert!(
        (gpu.psnr - host_data.psnr).abs() < 0.01,
        "PSNR: resident {} vs host data {}",
        gpu.psnr,
        host_data.psnr
    );
    // against the CPU network: the backends' own fp32 differences, over 60 Adam steps
    let rel = (gpu.run.final_loss - cpu.run.final_loss).abs() / cpu.run.final_loss;
    assert!(rel < 0.05, "final loss: cuda {} vs cpu {} ({rel:.1e})", gpu.run.final_loss, cpu.run.final_loss);
    assert!((gpu.psnr - cpu.psnr).abs() < 0.5, "PSNR: cuda {} vs cpu {}", gpu.psnr, cpu.psnr);
    let _ = std::fs::remove_dir_all(&dir);
}

// The paper protocol's speed (96³, 4 × 256, resident vs host data) was a timing test; its times
// come from `ffvol fit mri --preset paper` in scripts/gpu-session.sh (step mri_alone).
