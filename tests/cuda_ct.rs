//! The CT projector on the GPU ([`GpuProjector`], `cuda/ct.cu`) against the CPU's
//! [`RayProjector`]: forward and adjoint for every beam, the exact-adjoint identity and
//! determinism on the GPU, the fused loss and gradient of `fit ct`, errors, and `fit ct` on CUDA
//! (which projector runs, what it learns; its speed is `ffvol fit ct` in scripts/gpu-session.sh).
//!
//! Tolerances (max |gpu − cpu| / max |cpu| over a buffer): both sample ray point k at
//! start + k·delta with the same f32 roundings, so they differ only in the order of their sums:
//! ≤ 1e-5 forward and adjoint (a CPU mirror of the kernels: 0 forward, ≤ 7.4e-7 adjoint). On
//! the GPU itself ⟨A x, y⟩ = ⟨x, Aᵀ y⟩ to 1e-6, and repeated calls give the same bits (no
//! atomics).
//!
//! Every test needs a GPU: ignored without `--include-ignored` (the GPU check passes it, with
//! `FFVOL_REQUIRE_CUDA=1`, where a missing GPU fails them). The fit variants run the `ffvol`
//! binary, one process each, so no test changes this process's environment.

use ffvol::backend::cuda::{CudaBackend, GpuProjector, Precision};
use ffvol::backend::Backend;
use ffvol::encoding::EncodingConfig;
use ffvol::job::ct::{self, CtConfig, CtMetrics, CtOutcome, CtPreset};
use ffvol::operator::ct_geometry::Scan;
use ffvol::operator::ray::RayProjector;
use ffvol::sample::CounterRng;
use ffvol::sim::ct::{PhantomSource, SimulateOptions};
use ffvol::train::loss::sigmoid;
use ffvol::train::FitOptions;
use std::path::Path;

#[macro_use]
mod common;
use common::{cuda, cuda_backend, ffvol_fit, four_beams, network, rel_err64, scan, scratch};

/// tests/ct_operators.rs's four beams (`four_beams`: offsets, odd sizes, non-square voxels), a
/// fan beam whose source nearly touches the volume, a detector far finer than the voxels, and the
/// paper's geometry at 64².
fn geometries() -> Vec<(&'static str, Scan)> {
    let mut v = four_beams();
    v.extend([
        ("fan, close source", scan("beam = \"fan\"\ndims = 2\ndso = 17.5\ndsd = 40.0\n[detector]\npixels = [90]\npixel_size = [1.0]\n[volume]\nvoxels = [22, 26]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = 5\n")),
        ("parallel, fine pixels", scan("beam = \"parallel\"\ndims = 2\n[detector]\npixels = [230]\npixel_size = [0.1]\n[volume]\nvoxels = [16, 16]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = 4\nfirst = 0.3\n")),
        ("paper 64²", Scan::paper_2d(64, 20)),
    ]);
    v
}

/// max |a − b| / max |b|
fn rel(a: &[f32], b: &[f32]) -> f64 {
    rel_err64(a, b, 0.0)
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Random values in [lo, lo + 1): never zero for lo > 0.
fn random(rng: &CounterRng, first: u64, n: usize, lo: f32) -> Vec<f32> {
    (0..n).map(|i| lo + rng.uniform(first + i as u64)).collect()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn forward_and_adjoint_match_the_cpu_for_every_beam() {
    require_cuda!();
    let rng = CounterRng::new(21, 4);
    for (name, s) in geometries() {
        let cpu = RayProjector::new(&s, 0.5);
        let mut gpu = GpuProjector::new(&s, &cpu).unwrap();
        let x = random(&rng, 0, cpu.n_voxels(), 0.5);
        let y = random(&rng, 1 << 32, cpu.n_rays(), 0.5);
        let (mut ax_c, mut ax_g) = (vec![0.0; cpu.n_rays()], vec![1.0; cpu.n_rays()]);
        cpu.forward(&x, &mut ax_c);
        gpu.forward(&x, &mut ax_g).unwrap();
        let (mut aty_c, mut aty_g) = (vec![0.0; cpu.n_voxels()], vec![1.0; cpu.n_voxels()]);
        cpu.adjoint(&y, &mut aty_c);
        gpu.adjoint(&y, &mut aty_g).unwrap();
        let (ef, ea) = (rel(&ax_g, &ax_c), rel(&aty_g, &aty_c));
        println!("{name}: forward {ef:.1e}, adjoint {ea:.1e} (relative to the CPU)");
        assert!(ax_c.iter().any(|v| *v != 0.0), "{name}: no ray meets the volume");
        assert!(ef <= 1e-5, "{name}: forward differs from the CPU by {ef:e}");
        assert!(ea <= 1e-5, "{name}: adjoint differs from the CPU by {ea:e}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_adjoint_is_exact_and_deterministic() {
    require_cuda!();
    let rng = CounterRng::new(22, 4);
    for (name, s) in geometries() {
        let cpu = RayProjector::new(&s, 0.5);
        let mut gpu = GpuProjector::new(&s, &cpu).unwrap();
        // signed values, so that nothing cancels by luck
        let x = random(&rng, 0, cpu.n_voxels(), -0.3);
        let y: Vec<f32> = (0..cpu.n_rays()).map(|i| rng.normal(1 << 33 | i as u64)).collect();
        let mut ax = vec![0.0; cpu.n_rays()];
        let mut aty = vec![0.0; cpu.n_voxels()];
        gpu.forward(&x, &mut ax).unwrap();
        gpu.adjoint(&y, &mut aty).unwrap();
        let (lhs, rhs) = (dot(&ax, &y), dot(&x, &aty));
        let norm: f64 = ax.iter().zip(&y).map(|(p, q)| (*p as f64 * *q as f64).abs()).sum();
        let e = (lhs - rhs).abs() / norm;
        println!("{name}: <Ax,y> = {lhs:.6e}, <x,Aᵀy> = {rhs:.6e}, relative {e:.1e}");
        assert!(e < 1e-6, "{name}: <Ax,y> = {lhs}, <x,Aᵀy> = {rhs}, relative {e:e}");
        let (mut ax2, mut aty2) = (vec![0.0; ax.len()], vec![0.0; aty.len()]);
        gpu.forward(&x, &mut ax2).unwrap();
        gpu.adjoint(&y, &mut aty2).unwrap();
        assert!(ax == ax2 && aty == aty2, "{name}: a second call gave other bits");
    }
}

/// `fit ct`'s step as the CPU path computes it: ½·mean(r²) and Aᵀ(r / m).
fn cpu_loss_and_gradient(p: &RayProjector, image: &[f32], measured: &[f32]) -> (f32, Vec<f32>) {
    let mut r = vec![0.0; p.n_rays()];
    p.forward(image, &mut r);
    let m = r.len() as f32;
    let mut total = 0.0f64;
    for (v, &y) in r.iter_mut().zip(measured) {
        let d = *v - y;
        total += 0.5 * (d as f64) * (d as f64);
        *v = d / m;
    }
    let mut g = vec![0.0; p.n_voxels()];
    p.adjoint(&r, &mut g);
    ((total / m as f64) as f32, g)
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn fused_loss_and_gradient_match_the_cpu() {
    require_cuda!();
    let rng = CounterRng::new(23, 4);
    for (name, s) in geometries() {
        let cpu = RayProjector::new(&s, 0.5);
        let mut gpu = GpuProjector::new(&s, &cpu).unwrap();
        let image = random(&rng, 0, cpu.n_voxels(), 0.0);
        let truth = random(&rng, 1 << 32, cpu.n_voxels(), 0.0);
        let mut measured = vec![0.0; cpu.n_rays()];
        cpu.forward(&truth, &mut measured);
        gpu.set_measured(&measured).unwrap();
        let mut grad = vec![1.0; cpu.n_voxels()];
        let loss = gpu.loss_and_gradient(&image, &mut grad).unwrap();
        let (loss_c, grad_c) = cpu_loss_and_gradient(&cpu, &image, &measured);
        let (el, eg) = ((loss - loss_c).abs() as f64 / loss_c as f64, rel(&grad, &grad_c));
        println!("{name}: loss {loss:.6e} (cpu {loss_c:.6e}, relative {el:.1e}), gradient {eg:.1e}");
        assert!(el < 1e-4, "{name}: loss {loss} vs the CPU's {loss_c}");
        assert!(eg < 1e-4, "{name}: gradient differs from the CPU's by {eg:e}");
        // the fused call is the GPU's own forward, residual and adjoint, bit for bit
        let mut r = vec![0.0; cpu.n_rays()];
        gpu.forward(&image, &mut r).unwrap();
        let m = r.len() as f32;
        r.iter_mut().zip(&measured).for_each(|(v, &y)| *v = (*v - y) / m);
        let mut g2 = vec![0.0; cpu.n_voxels()];
        gpu.adjoint(&r, &mut g2).unwrap();
        assert!(grad == g2, "{name}: fused gradient differs from forward + adjoint: {:e}", rel(&grad, &g2));
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn errors_are_errors() {
    require_cuda!();
    let s = Scan::paper_2d(16, 3);
    let cpu = RayProjector::new(&s, 0.5);
    let mut gpu = GpuProjector::new(&s, &cpu).unwrap();
    let mut g = vec![0.0; cpu.n_voxels()];
    let e = gpu.loss_and_gradient(&vec![0.5; cpu.n_voxels()], &mut g).unwrap_err().to_string();
    assert_eq!(e, "invalid configuration: CUDA projector: loss_and_gradient before set_measured");
    let e = gpu.set_measured(&[1.0; 5]).unwrap_err().to_string();
    let want = format!(
        "invalid configuration: CUDA projector: measured projections has 5 values, the scan needs {}",
        cpu.n_rays()
    );
    assert_eq!(e, want);
    let e = gpu.forward(&[1.0; 7], &mut vec![0.0; cpu.n_rays()]).unwrap_err().to_string();
    let want = format!(
        "invalid configuration: CUDA projector: forward: the volume has 7 values, the scan needs {}",
        cpu.n_voxels()
    );
    assert_eq!(e, want);
    let other = RayProjector::new(&Scan::paper_2d(16, 4), 0.5);
    let e = GpuProjector::new(&s, &other).err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(e, "invalid configuration: CUDA projector: the ray projector was made for another scan");
}

/// A CUDA backend for a 2-D field (Gaussian features, 2 × 64, one output), the same weights for
/// the same seed.
fn backend(precision: Precision, seed: u64) -> CudaBackend {
    let enc = EncodingConfig::Gaussian { sigma: 4.0, features: 32, normalize: false };
    let (e, mlp) = network(&enc, 2, 2, 64, &CounterRng::new(seed, 0));
    cuda_backend(e, mlp, cuda(precision))
}

/// `fit ct`'s host-data GPU grid step up to the optimizer (src/task/ct.rs `grid_step`): forward
/// (z comes down), σ on the host, the projector's loss and gradient (the image goes up, Aᵀ r / m
/// comes down), the chain factor on the host, backward (∂L/∂z goes up). Returns the loss and
/// ∂L/∂z.
fn host_data_step(be: &mut CudaBackend, gpu: &mut GpuProjector, points: &[f32]) -> (f32, Vec<f32>) {
    let (pass, z) = be.forward(points).unwrap();
    let image: Vec<f32> = z.iter().map(|&v| sigmoid(v)).collect();
    let mut back = vec![0.0; image.len()];
    let loss = gpu.loss_and_gradient(&image, &mut back).unwrap();
    let d: Vec<f32> = back.iter().zip(&image).map(|(&g, &p)| g * p * (1.0 - p)).collect();
    be.backward(pass, &d).unwrap();
    (loss, d)
}

/// The device-resident grid step (voxel centres uploaded once; z, σ(z), A, Aᵀ, the chain factor
/// and ∂L/∂z on the device, on the backend's stream) against the host-data step, five Adam steps
/// each from the same weights. σ is expf on the device and Rust's exp on the host (an ulp apart
/// at most) and the loss's f64 sum runs in another order, so: the loss and ∂L/∂z to 1e-5 in fp32
/// (1e-6 expected), 1e-3 in fp16; max |∂L/∂z| to an ulp or so of the host's.
#[test]
#[ignore = "needs a CUDA GPU"]
fn resident_step_matches_the_host_data_step() {
    require_cuda!();
    let s = Scan::paper_2d(32, 8);
    let cpu = RayProjector::new(&s, 0.5);
    let points = s.voxel_centres_unit();
    let truth = random(&CounterRng::new(25, 4), 0, cpu.n_voxels(), 0.0);
    let mut measured = vec![0.0; cpu.n_rays()];
    cpu.forward(&truth, &mut measured);
    for (precision, tol) in [(Precision::Fp32, 1e-5), (Precision::Fp16, 1e-3)] {
        let (mut a, mut b) = (backend(precision, 26), backend(precision, 26));
        let mut host_gpu = GpuProjector::new(&s, &cpu).unwrap();
        host_gpu.set_measured(&measured).unwrap();
        let mut dev_gpu = GpuProjector::on_stream(&s, &cpu, b.stream()).unwrap();
        dev_gpu.set_measured(&measured).unwrap();
        b.set_resident_points(&points).unwrap();
        for step in 0..5 {
            let (la, da) = host_data_step(&mut a, &mut host_gpu, &points);
            let z = b.forward_resident().unwrap();
            let (lb, max) = dev_gpu.sigmoid_loss_and_gradient_device(&z).unwrap();
            let db: Vec<f32> = b.stream().clone_dtoh(&dev_gpu.gradient()).unwrap();
            b.backward_device_grad(&dev_gpu.gradient(), max).unwrap();
            let host_max = da.iter().fold(0.0f32, |m, g| m.max(g.abs()));
            let mut image = vec![0.0; cpu.n_voxels()];
            dev_gpu.image(&mut image).unwrap();
            // a's weights are still those of the step: the image its forward rendered (this
            // forward leaves a's parameter gradients alone)
            let host_image: Vec<f32> = a.forward(&points).unwrap().1.iter().map(|&v| sigmoid(v)).collect();
            let (pa, pb) = (a.gradients().unwrap(), b.gradients().unwrap());
            let e_loss = (lb - la).abs() as f64 / la as f64;
            let (e_dz, e_max) = (rel(&db, &da), (max - host_max).abs() as f64 / host_max as f64);
            let (e_img, e_dp) = (rel(&image, &host_image), rel(&pb, &pa));
            println!(
                "{} step {step}: loss {lb:.9e} vs {la:.9e} ({e_loss:.1e}), dL/dz {e_dz:.1e}, max {e_max:.1e}, \
                 image {e_img:.1e}, parameter gradients {e_dp:.1e}",
                precision.name()
            );
            assert!(la > 0.0 && host_max > 0.0, "a trivial problem");
            assert!(e_loss < tol && e_dz < tol && e_max < tol, "{}: step {step}", precision.name());
            assert!(e_img < tol && e_dp < tol, "{}: step {step}", precision.name());
            a.optimizer_step(1e-3).unwrap();
            b.optimizer_step(1e-3).unwrap();
        }
    }
}

/// A NaN output is an error of backward_device_grad (no loss scale fits it), never a panic, in
/// both precisions; the resident step needs set_measured.
#[test]
#[ignore = "needs a CUDA GPU"]
fn resident_step_errors_on_nan() {
    require_cuda!();
    let s = Scan::paper_2d(16, 3);
    let cpu = RayProjector::new(&s, 0.5);
    let points = s.voxel_centres_unit();
    for precision in [Precision::Fp32, Precision::Fp16] {
        let mut b = backend(precision, 27);
        let mut gpu = GpuProjector::on_stream(&s, &cpu, b.stream()).unwrap();
        b.set_resident_points(&points).unwrap();
        {
            let z = b.forward_resident().unwrap();
            let e = gpu.sigmoid_loss_and_gradient_device(&z).unwrap_err().to_string();
            assert_eq!(e, "invalid configuration: CUDA projector: loss_and_gradient before set_measured");
        }
        gpu.set_measured(&vec![0.5; cpu.n_rays()]).unwrap();
        let mut state = b.state().unwrap();
        let last = state.mlp.params.len() - 1; // the output bias
        state.mlp.params[last] = f32::NAN;
        b.set_state(state).unwrap();
        let z = b.forward_resident().unwrap();
        let (loss, max) = gpu.sigmoid_loss_and_gradient_device(&z).unwrap();
        assert!(loss.is_nan() && max.is_nan(), "{}: loss {loss}, max {max}", precision.name());
        let e = b.backward_device_grad(&gpu.gradient(), max).unwrap_err().to_string();
        assert_eq!(e, "invalid input: backward: the output gradient is not finite (NaN); the loss diverged");
    }
}

/// Simulates a perturbed Shepp–Logan for `scan` into `dir`; a config reading it.
fn setup(scan: &Scan, dir: &Path, preset: CtPreset) -> CtConfig {
    let opts = SimulateOptions {
        phantom: PhantomSource::Shepp2d(Some(7)),
        poisson_i0: None,
        seed: 0,
        supersample: 2,
    };
    let sim = ffvol::sim::ct::simulate(scan, &opts).unwrap();
    ffvol::sim::ct::write_simulation(scan, &sim, dir).unwrap();
    let mut c = CtConfig::preset(preset);
    c.projections = dir.join("projections.npy");
    c.geometry = dir.join("geometry.toml");
    c.truth = Some(dir.join("truth.nii.gz"));
    c.common.output = dir.join("run");
    c.common.device.kind = ffvol::config::DeviceKind::Cuda;
    c
}

fn finished(o: CtOutcome) -> Box<ct::CtMetrics> {
    match o {
        CtOutcome::Finished(m) => m,
        CtOutcome::Interrupted { step } => panic!("stopped at {step}"),
    }
}

/// tests/ct_fit.rs's 128² check on CUDA: the projector runs on the GPU and the fit learns.
#[test]
#[ignore = "needs a CUDA GPU"]
fn fit_ct_on_cuda_projects_on_the_gpu() {
    require_cuda!();
    let dir = scratch("fit");
    let mut c = setup(&Scan::paper_2d(128, 20), &dir, CtPreset::Fast);
    c.common.encoding = EncodingConfig::Gaussian { sigma: 4.0, features: 64, normalize: false };
    c.common.model.depth = 3;
    c.common.model.width = 64;
    c.train.lr = 3e-3;
    c.train.steps = 400;
    c.train.eval_every = 0;
    let m = finished(ct::fit(&c, &FitOptions::default()).unwrap());
    let psnr = m.psnr.unwrap();
    println!(
        "128², 20 views, 3×64, 400 steps on {}: projector {:?}, PSNR {psnr:.2} dB, {:.1} steps/s",
        m.device, m.projector, m.steps_per_second
    );
    assert!(m.projector.as_deref().is_some_and(|p| p.starts_with("gpu")), "{:?}", m.projector);
    assert!(psnr > 20.0, "PSNR {psnr:.2} (the CPU reaches 23 dB here: tests/ct_fit.rs)");
    std::fs::remove_dir_all(&dir).ok();
}

/// `fit ct --precision fp32` with the device-resident grid step against the same fit through
/// host memory (`[device] resident = false` in a `--config` file), 128², 200 steps: the same fit
/// to rounding. Each variant is its own `ffvol` process.
#[test]
#[ignore = "needs a CUDA GPU"]
fn resident_fit_matches_the_host_data_fit() {
    require_cuda!();
    let dir = scratch("resident");
    setup(&Scan::paper_2d(128, 20), &dir, CtPreset::Fast);
    let run = |name: &str, resident: bool| -> CtMetrics {
        let out = dir.join(name);
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, format!("[device]\nresident = {resident}\n")).unwrap();
        let config = config.to_string_lossy().into_owned();
        let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
        let (proj, geom, truth, o) =
            (p("projections.npy"), p("geometry.toml"), p("truth.nii.gz"), out.to_string_lossy().into_owned());
        let args = [
            "fit",
            "ct",
            "--projections",
            &proj,
            "--geometry",
            &geom,
            "--truth",
            &truth,
            "--output",
            &o,
            "--config",
            &config,
            "--device",
            "cuda",
            "--precision",
            "fp32",
            "--encoding",
            "gaussian",
            "--sigma",
            "4",
            "--features",
            "64",
            "--depth",
            "3",
            "--width",
            "64",
            "--lr",
            "3e-3",
            "--steps",
            "200",
        ];
        ffvol_fit(&args, &out)
    };
    let host = run("host-data", false);
    let res = run("resident", true);
    for (name, m) in [("host data", &host), ("resident", &res)] {
        println!(
            "128², 3×64, 200 steps, {name:<9}: PSNR {:.4} dB, curve {:?}, loss {:.6e} ({})",
            m.psnr.unwrap(),
            m.psnr_curve,
            m.final_loss,
            m.device
        );
    }
    assert!(res.device.contains("fp32"), "{}", res.device);
    assert_eq!(res.psnr_curve.len(), host.psnr_curve.len());
    for ((s1, p1), (s2, p2)) in res.psnr_curve.iter().zip(&host.psnr_curve) {
        assert!(s1 == s2 && (p1 - p2).abs() < 0.05, "PSNR at step {s1}: resident {p1} vs host data {p2}");
    }
    let (p1, p2) = (res.psnr.unwrap(), host.psnr.unwrap());
    assert!((p1 - p2).abs() < 0.05, "PSNR: resident {p1} vs host data {p2}");
    let rel = (res.final_loss - host.final_loss).abs() / host.final_loss;
    assert!(
        rel < 1e-2,
        "final loss: resident {} vs host data {} ({rel:.1e})",
        res.final_loss,
        host.final_loss
    );
    std::fs::remove_dir_all(&dir).ok();
}

// The paper protocol's speed (512², 4 × 256, resident vs host data, and the projector alone) was
// a timing test; its times come from `ffvol fit ct --preset paper-ct` in scripts/gpu-session.sh
// (step ct_alone).
