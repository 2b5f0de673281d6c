//! The device-resident occupancy step against the host path: GPU labels (winding numbers in
//! `cuda/winding.cu`) against `WindingNumber::label_points`, GPU batches against
//! `training_batch`, device training against host training, and a short fit on both.
//!
//! The GPU tests are ignored without `--include-ignored` (the GPU check passes it, with
//! `FFVOL_REQUIRE_CUDA=1`, where a missing GPU fails them). The first test runs everywhere: the
//! flat tree the kernel reads fits the device's stack. The kernel's own winding numbers are
//! checked against the CPU's in `gpu_labels_match_cpu_labels` (there is no Rust copy of it).

use ffvol::backend::cuda::{BatchParams, CudaBackend, Precision, WINDING_STACK};
use ffvol::backend::{Backend, CpuBackend};
use ffvol::config::{OccupancyConfig, Preset};
use ffvol::encoding::EncodingConfig;
use ffvol::geometry::prepared::PreparedMesh;
use ffvol::job::occupancy::{self, FitOutcome};
use ffvol::model::ModelConfig;
use ffvol::sample::rng::streams;
use ffvol::sample::{near_surface, uniform_in_box, CounterRng};
use ffvol::train::FitOptions;
use ffvol::train::Loss;
use glam::Vec3;
use std::path::PathBuf;

#[macro_use]
mod common;
use common::*;

fn bunny() -> PreparedMesh {
    PreparedMesh::load(&bunny_path()).expect("datasets/bunny.ply")
}

/// 200k test points: 100k uniform in the box, 60k near the surface (σ = 0.01), 40k very near
/// (σ = 0.001), where the inside test is hardest.
fn label_points(mesh: &PreparedMesh) -> Vec<[f32; 3]> {
    let mut uniform = vec![[0.0; 3]; 100_000];
    uniform_in_box(&mesh.bbox, &CounterRng::new(7, streams::TEST_UNIFORM), 0, &mut uniform);
    let mut near = vec![[0.0; 3]; 60_000];
    near_surface(&mesh.mesh_in_unit, 0.01, &CounterRng::new(7, streams::TEST_SURFACE), 0, &mut near);
    let mut nearer = vec![[0.0; 3]; 40_000];
    near_surface(&mesh.mesh_in_unit, 0.001, &CounterRng::new(8, streams::TEST_SURFACE), 0, &mut nearer);
    uniform.extend(near);
    uniform.extend(nearer);
    uniform
}

/// Runs everywhere: the flat arrays the GPU reads have one far-field record per node, every
/// triangle in one leaf, and no node deeper than the device's traversal stack.
#[test]
fn flat_tree_fits_the_device_stack() {
    let mesh = bunny();
    let flat = mesh.winding.export_flat();
    println!(
        "bunny: {} triangles, {} nodes, deepest node at depth {} (device stack {WINDING_STACK})",
        flat.tris.len(),
        flat.nodes.len(),
        flat.max_depth
    );
    assert!(flat.max_depth < WINDING_STACK);
    assert_eq!(flat.far.len(), flat.nodes.len());
    let leaf_tris: u32 = flat.nodes.iter().filter(|n| n[1] > 0).map(|n| n[1]).sum();
    assert_eq!(leaf_tris as usize, flat.tris.len(), "every triangle in exactly one leaf");
}

fn backend_for(
    depth: usize,
    width: usize,
    features: usize,
    precision: Precision,
) -> (CpuBackend, CudaBackend) {
    let enc = EncodingConfig::Gaussian { sigma: 10.0, features, normalize: false };
    let (e, mlp) = network(&enc, 3, depth, width, &CounterRng::new(3, streams::INIT_WEIGHTS));
    (cpu_backend(e.clone(), mlp.clone()), cuda_backend(e, mlp, cuda(precision)))
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_labels_match_cpu_labels() {
    require_cuda!();
    let mesh = bunny();
    let (_, gpu) = backend_for(1, 8, 4, Precision::Fp32);
    let dm = gpu.upload_mesh(&mesh.winding, &mesh.mesh_in_unit, mesh.bbox).unwrap();
    let pts = label_points(&mesh);
    let mut want = vec![0.0; pts.len()];
    mesh.label(&pts, &mut want);
    let (got, secs) = gpu.label_points(&dm, &pts).unwrap();
    println!("{} labels on the GPU in {secs:.4} s of device time", pts.len());
    let inside = want.iter().filter(|&&l| l > 0.5).count();
    println!("{inside} of {} inside", pts.len());
    let mut bad = vec![];
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if g != w {
            let wn = mesh.winding.winding(Vec3::from_array(pts[i]));
            println!("label mismatch at {:?}: gpu {g}, cpu {w}, w = {wn:.17}", pts[i]);
            bad.push((wn - 0.5).abs());
        }
    }
    println!("label mismatches: {}", bad.len());
    assert!(bad.len() <= 5 && bad.iter().all(|&d| d < 1e-9), "{} labels differ: {bad:?}", bad.len());

    // the winding numbers themselves, at the tree's β: equal to the last bits of atan2/sqrt
    let sub: Vec<[f32; 3]> = pts.iter().step_by(10).copied().collect();
    let w_gpu = gpu.winding_numbers(&dm, &sub, mesh.winding.beta2()).unwrap();
    let mut worst = 0.0f64;
    for (p, g) in sub.iter().zip(&w_gpu) {
        worst = worst.max((mesh.winding.winding(Vec3::from_array(*p)) - g).abs());
    }
    println!("winding numbers: worst |gpu − cpu| = {worst:.2e} over {} points", sub.len());
    assert!(worst < 1e-9, "winding numbers differ by {worst:e}");
}

fn batch_config(batch: usize, surface_fraction: f32) -> OccupancyConfig {
    let mut c = OccupancyConfig::preset(Preset::Fast);
    c.mesh = bunny_path();
    c.common.seed = 11;
    c.train.batch = batch;
    c.train.surface_fraction = surface_fraction;
    c
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpu_batches_match_cpu_batches() {
    require_cuda!();
    let mesh = bunny();
    let (_, mut gpu) = backend_for(1, 8, 4, Precision::Fp32);
    let dm = gpu.upload_mesh(&mesh.winding, &mesh.mesh_in_unit, mesh.bbox).unwrap();
    for (batch, fraction) in [(8192, 0.5), (32_768, 0.0), (1000, 1.0), (777, 0.3)] {
        let cfg = batch_config(batch, fraction);
        let n_surface = occupancy::surface_points(&cfg);
        let n_uniform = batch - n_surface;
        for step in [0u64, 1, 1234] {
            let (mut pts, mut labels) = (vec![], vec![]);
            occupancy::training_batch(&cfg, &mesh, step, &mut pts, &mut labels);
            let p = BatchParams {
                seed: cfg.common.seed,
                step,
                batch,
                n_surface,
                surface_sigma: cfg.train.surface_sigma,
            };
            let (gp, gl) = gpu.occupancy_batch(&dm, &p).unwrap();
            let host = pts.as_flattened();
            assert_eq!(
                &gp[..3 * n_uniform],
                &host[..3 * n_uniform],
                "uniform points differ (batch {batch}, step {step})"
            );
            let worst = gp[3 * n_uniform..]
                .iter()
                .zip(&host[3 * n_uniform..])
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            let not_bitwise = gp.iter().zip(host).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            let mut label_diff = 0;
            for i in 0..batch {
                if gl[i] != labels[i] {
                    let same_point = gp[3 * i..3 * i + 3] == host[3 * i..3 * i + 3];
                    assert!(!same_point, "label of point {i} {:?} differs on an identical point", pts[i]);
                    label_diff += 1;
                }
            }
            println!(
                "batch {batch} ({n_surface} near the surface), step {step}: near-surface worst |Δ| {worst:.1e}, \
                 {not_bitwise} coordinates not bitwise equal, {label_diff} labels differ"
            );
            assert!(worst <= 1e-6, "near-surface points differ by {worst:e}");
            assert!(label_diff <= 2, "{label_diff} labels differ");
        }
    }
}

/// The device step (sample + label + train on the GPU) follows the CPU's training curve on the
/// host batches, as `training_curves_match_fp32` in cuda_parity.rs does for host batches.
#[test]
#[ignore = "needs a CUDA GPU"]
fn device_steps_follow_the_cpu_training_curve() {
    require_cuda!();
    let mesh = bunny();
    let (mut cpu, mut gpu) = backend_for(3, 64, 64, Precision::Fp32);
    let dm = gpu.upload_mesh(&mesh.winding, &mesh.mesh_in_unit, mesh.bbox).unwrap();
    let cfg = batch_config(4096, 0.25);
    let n_surface = occupancy::surface_points(&cfg);
    let steps = 100u64;
    let mut want = vec![];
    let (mut pts, mut labels) = (vec![], vec![]);
    for step in 0..steps {
        occupancy::training_batch(&cfg, &mesh, step, &mut pts, &mut labels);
        want.push(cpu.train_step(pts.as_flattened(), &labels, Loss::Bce, 2e-3).unwrap());
    }
    let mut got = vec![];
    let mut slot = 0;
    let (mut label_s, mut train_s) = (0.0, 0.0);
    for step in 0..steps {
        let p = BatchParams {
            seed: cfg.common.seed,
            step,
            batch: cfg.train.batch,
            n_surface,
            surface_sigma: 0.01,
        };
        gpu.occupancy_step(&dm, &p, 2e-3, slot).unwrap();
        slot += 1;
        if slot == 16 || step + 1 == steps {
            let r = gpu.read_steps(slot).unwrap();
            got.extend(r.losses);
            label_s += r.label_seconds;
            train_s += r.train_seconds;
            slot = 0;
        }
    }
    assert_eq!(got.len(), want.len());
    let worst = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs() / b.abs()));
    println!(
        "device steps: loss {:.4} → {:.4} (cpu {:.4} → {:.4}); worst relative difference {worst:.2e}; \
         device time: sample + label {label_s:.3} s, train {train_s:.3} s",
        got[0],
        got[got.len() - 1],
        want[0],
        want[want.len() - 1]
    );
    assert!(worst < 1e-4, "device-step loss curve differs from the CPU's by {worst:.2e} relative");
    let (a, b) = (gpu.state().unwrap(), cpu.state().unwrap());
    assert_eq!(a.adam.step, b.adam.step);
}

fn fit_config(device: &str, out: PathBuf) -> OccupancyConfig {
    let mut c = OccupancyConfig::preset(Preset::Fast);
    c.mesh = bunny_path();
    c.common.output = out;
    c.common.device.kind =
        if device == "cuda" { ffvol::config::DeviceKind::Cuda } else { ffvol::config::DeviceKind::Cpu };
    c.common.seed = 5;
    c.common.encoding = EncodingConfig::Gaussian { sigma: 8.0, features: 64, normalize: false };
    c.common.model = ModelConfig { depth: 3, width: 64 };
    c.train.batch = 4096;
    c.train.steps = 200;
    c.train.lr = 5e-3;
    c.train.checkpoint_every = 100;
    c.eval.test_points = 20_000;
    c.export.resolution = 32;
    c.export.nifti = false;
    c
}

/// `fit` on CUDA takes the device path and lands where the CPU does.
#[test]
#[ignore = "needs a CUDA GPU"]
fn short_fit_on_cuda_matches_cpu() {
    require_cuda!();
    let root = scratch("fit");
    let run = |device: &str| {
        let cfg = fit_config(device, root.join(device));
        match occupancy::fit(&cfg, &FitOptions::default()).unwrap() {
            FitOutcome::Finished(m) => *m,
            FitOutcome::Interrupted { step } => panic!("interrupted at {step}"),
        }
    };
    let c = run("cpu");
    let g = run("cuda");
    println!(
        "200 steps: IoU uniform cpu {:.4} gpu {:.4}; near-surface cpu {:.4} gpu {:.4}; final loss cpu {:.4} gpu {:.4}; \
         gpu: {} (batches on {}), label {:.3} s, train {:.3} s",
        c.iou_uniform,
        g.iou_uniform,
        c.iou_surface,
        g.iou_surface,
        c.final_loss,
        g.final_loss,
        g.device,
        g.batches_on,
        g.label_seconds,
        g.train_seconds
    );
    assert_eq!(c.batches_on, "host");
    assert_eq!(g.batches_on, "gpu");
    assert!((c.iou_uniform - g.iou_uniform).abs() < 0.01);
    assert!((c.iou_surface - g.iou_surface).abs() < 0.01);
    // the loss log has every step, as on the host path
    let log = std::fs::read_to_string(root.join("cuda").join(occupancy::LOSS_CSV)).unwrap();
    assert_eq!(log.lines().count(), 201);
    let _ = std::fs::remove_dir_all(&root);
}
