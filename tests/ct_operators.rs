//! CT operators: exact adjoints, line integrals against closed-form chords, FBP and FDK quality.

use ffvol::operator::ct_geometry::Scan;
use ffvol::operator::ray::RayProjector;
use ffvol::recon;
use ffvol::sample::rays::{stratified, RaySamples};
use ffvol::sample::CounterRng;
use ffvol::sim::phantom::{Ellipsoid, Phantom};
use ffvol::train::image_metrics::psnr_ct as psnr;

mod common;
use common::{four_beams, scan};

fn parallel_2d(n: usize, bins: usize, views: usize) -> String {
    format!("beam = \"parallel\"\ndims = 2\n[detector]\npixels = [{bins}]\npixel_size = [1.0]\n[volume]\nvoxels = [{n}, {n}]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = {views}\n")
}

#[test]
fn projector_adjoint_is_exact_for_every_geometry() {
    let rng = CounterRng::new(5, 1);
    for (name, s) in four_beams() {
        let a = RayProjector::new(&s, 0.5);
        let x: Vec<f32> = (0..a.n_voxels()).map(|i| rng.uniform(i as u64) - 0.3).collect();
        let y: Vec<f32> = (0..a.n_rays()).map(|i| rng.normal(1_000_000 + i as u64)).collect();
        let mut ax = vec![0.0; a.n_rays()];
        a.forward(&x, &mut ax);
        let mut aty = vec![0.0; a.n_voxels()];
        a.adjoint(&y, &mut aty);
        let lhs: f64 = ax.iter().zip(&y).map(|(p, q)| *p as f64 * *q as f64).sum();
        let rhs: f64 = x.iter().zip(&aty).map(|(p, q)| *p as f64 * *q as f64).sum();
        let norm: f64 = ax.iter().zip(&y).map(|(p, q)| (*p as f64 * *q as f64).abs()).sum();
        let rel = (lhs - rhs).abs() / norm;
        assert!(rel < 1e-5, "{name}: <Ax,y> = {lhs}, <x,Aᵀy> = {rhs}, relative {rel:e}");
        assert!(ax.iter().any(|v| *v != 0.0), "{name}: no ray meets the volume");
    }
}

/// A uniform disk / ball: closed-form chords, against (a) the ray sampler used by `fit ct`
/// evaluating the exact indicator, (b) the discrete projector on a supersampled raster.
#[test]
fn line_integrals_match_closed_form_chords() {
    let cases = [
        ("fan 2D", scan("beam = \"fan\"\ndims = 2\ndso = 300.0\ndsd = 500.0\n[detector]\npixels = [200]\npixel_size = [1.5]\n[volume]\nvoxels = [128, 128]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = 8\n"), 2),
        ("parallel 2D", scan(&parallel_2d(128, 160, 8)), 2),
        ("parallel 3D", scan("beam = \"parallel\"\ndims = 3\n[detector]\npixels = [110, 110]\npixel_size = [1.0, 1.0]\n[volume]\nvoxels = [96, 96, 96]\nvoxel_size = [1.0, 1.0, 1.0]\n[angles]\ncount = 3\n"), 3),
        ("cone 3D", scan("beam = \"cone\"\ndims = 3\ndso = 250.0\ndsd = 400.0\n[detector]\npixels = [96, 96]\npixel_size = [2.0, 2.0]\n[volume]\nvoxels = [96, 96, 96]\nvoxel_size = [1.0, 1.0, 1.0]\n[angles]\ncount = 4\n"), 3),
    ];
    for (name, s, dims) in cases {
        // a disk of radius 0.7 (normalised) = 0.7·(edge/2) mm, off centre, and an ellipse/ellipsoid
        let shapes = [
            Ellipsoid { value: 1.0, axes: [0.7, 0.7, 0.7], centre: [0.1, -0.15, 0.05], phi: 0.0 },
            Ellipsoid { value: 1.0, axes: [0.8, 0.4, 0.5], centre: [-0.05, 0.1, 0.0], phi: 0.5 },
        ];
        for shape in shapes {
            let ph = Phantom { dims, ellipses: vec![shape] };
            let ids: Vec<usize> = (0..s.n_rays()).collect();
            let exact: Vec<f64> = ids.iter().map(|&i| ph.line_integral(&s, &s.ray(i))).collect();
            let max = exact.iter().cloned().fold(0.0, f64::max);
            // chord of a ball by geometry: 2√(r² − d²), d the distance of the ray from the centre
            if shape.axes[0] == shape.axes[1] {
                let r_mm = 0.7 * s.vol_extent()[0] / 2.0;
                let c: [f64; 3] = std::array::from_fn(|a| {
                    shape.centre[a] * s.vol_extent()[0] / 2.0 * if a < dims { 1.0 } else { 0.0 }
                });
                for &i in &ids {
                    let ray = s.ray(i);
                    let w: [f64; 3] = std::array::from_fn(|a| c[a] - ray.origin[a]);
                    let t: f64 = (0..3).map(|a| w[a] * ray.dir[a]).sum();
                    let d2: f64 = (0..3).map(|a| (w[a] - t * ray.dir[a]).powi(2)).sum();
                    let chord = 2.0 * (r_mm * r_mm - d2).max(0.0).sqrt();
                    assert!(
                        (chord - exact[i]).abs() < 1e-6 * max,
                        "{name}: closed form {} vs geometry {chord}",
                        exact[i]
                    );
                }
            }
            // (a) stratified midpoints of the exact indicator, 1024 per ray
            let mut smp = RaySamples::default();
            stratified(&s, &ids, 1024, None, 0, &mut smp);
            let ext = s.vol_extent();
            let mut worst_a: f64 = 0.0;
            for (j, pts) in smp.points.chunks_exact(1024 * dims).enumerate() {
                let sum: f64 = pts
                    .chunks_exact(dims)
                    .map(|p| {
                        let xi: [f64; 3] = std::array::from_fn(|a| {
                            if a < dims {
                                (p[a] as f64 - 0.5) * ext[a] / (ext[0] / 2.0)
                            } else {
                                0.0
                            }
                        });
                        ph.value_at(xi)
                    })
                    .sum();
                worst_a = worst_a.max((sum * smp.weights[j] as f64 - exact[j]).abs());
            }
            // achieved: at most 0.178 % of the longest chord (printed below)
            assert!(worst_a < 0.0025 * max, "{name}: ray sampler off by {worst_a} (max chord {max})");
            // (b) discrete projector on a 4×-supersampled raster
            let a = RayProjector::new(&s, 0.5);
            let raster = ph.rasterize(&s, 4, false);
            let mut proj = vec![0.0; s.n_rays()];
            a.forward(&raster, &mut proj);
            let errs: Vec<f64> = proj.iter().zip(&exact).map(|(p, e)| (*p as f64 - e).abs()).collect();
            let rms = (errs.iter().map(|e| e * e).sum::<f64>() / errs.len() as f64).sqrt();
            let worst_b = errs.iter().cloned().fold(0.0, f64::max);
            // away from grazing rays (where the chord's slope is unbounded and any raster blurs it)
            let worst_inner =
                errs.iter().zip(&exact).filter(|(_, e)| **e > 0.5 * max).map(|(d, _)| *d).fold(0.0, f64::max);
            println!(
                "{name}: max chord {max:.1} mm; sampler worst {:.3} %; projector RMS {:.3} %, worst {:.2} % (chords > 50 % of max: {:.3} %)",
                100.0 * worst_a / max,
                100.0 * rms / max,
                100.0 * worst_b / max,
                100.0 * worst_inner / max
            );
            // achieved: RMS at most 0.451 %, away from grazing rays at most 0.547 %
            assert!(rms < 0.006 * max, "{name}: discrete projector RMS error {rms} (max chord {max})");
            assert!(
                worst_inner < 0.007 * max,
                "{name}: discrete projector error {worst_inner} on a non-grazing ray (max chord {max})"
            );
            assert!(
                worst_b < 0.11 * max, // achieved: at most 9.07 % (a grazing ray)
                "{name}: discrete projector worst error {worst_b} (max chord {max})"
            );
        }
    }
}

#[test]
fn fbp_of_shepp_logan_from_360_views() {
    // 256², 360 views over [0, π), noiseless closed-form projections of the plain phantom
    let s = scan(&parallel_2d(256, 256, 360));
    let ph = Phantom::shepp_2d(None);
    let a = RayProjector::new(&s, 0.5);
    let proj = ph.project(&s, &a, 3);
    let truth = ph.rasterize(&s, 3, true);
    let rec = recon::fbp(&s, &proj);
    let p = psnr(&rec, &truth);
    println!("FBP parallel 256², 360 views: PSNR {p:.2} dB");
    assert!(p > 30.0, "FBP PSNR {p:.2} dB"); // achieved 30.97 dB
                                             // the same through a fan beam (FDK in 2D), 360 views over 2π
    let f = scan("beam = \"fan\"\ndims = 2\ndso = 400.0\ndsd = 700.0\n[detector]\npixels = [600]\npixel_size = [1.0]\n[volume]\nvoxels = [256, 256]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = 360\n");
    let af = RayProjector::new(&f, 0.5);
    let rec = recon::fbp(&f, &ph.project(&f, &af, 3));
    let p = psnr(&rec, &truth);
    println!("FBP fan 256², 360 views: PSNR {p:.2} dB");
    assert!(p > 31.5, "fan FBP PSNR {p:.2} dB"); // achieved 32.42 dB
}

#[test]
fn fdk_of_3d_shepp_logan() {
    let s = scan("beam = \"cone\"\ndims = 3\ndso = 200.0\ndsd = 400.0\n[detector]\npixels = [128, 128]\npixel_size = [1.0, 1.0]\n[volume]\nvoxels = [64, 64, 64]\nvoxel_size = [1.0, 1.0, 1.0]\n[angles]\ncount = 180\n");
    let ph = Phantom::shepp_3d(None);
    let a = RayProjector::new(&s, 0.5);
    let proj = ph.project(&s, &a, 2);
    let truth = ph.rasterize(&s, 2, true);
    let rec = recon::fbp(&s, &proj);
    let p = psnr(&rec, &truth);
    println!("FDK cone 64³, 180 views: PSNR {p:.2} dB");
    assert!(p > 29.5, "FDK PSNR {p:.2} dB"); // achieved 30.33 dB
}

#[test]
fn sart_beats_fbp_on_sparse_views() {
    let s = Scan::paper_2d(128, 20);
    let ph = Phantom::shepp_2d(Some(1));
    let a = RayProjector::new(&s, 0.5);
    let proj = ph.project(&s, &a, 3);
    let truth = ph.rasterize(&s, 3, true);
    let fbp = psnr(&recon::fbp(&s, &proj), &truth);
    let sart = psnr(&recon::sart(&a, &proj, recon::SartOptions::default()), &truth);
    println!("128², 20 views: FBP {fbp:.2} dB, SART {sart:.2} dB");
    // achieved: FBP 19.44 dB, SART 29.39 dB
    assert!(fbp > 18.5 && sart > fbp + 9.0, "FBP {fbp:.2}, SART {sart:.2}");
}

/// A fan-beam short scan (π + 2δ, δ just over the detector's half fan angle) with Parker's
/// weights comes within 3 dB of the full turn (32.4 dB full, 30.2 dB short; 25.0 dB without the
/// weights), and conjugate rays' weights add up to one.
#[test]
fn fdk_short_scan_with_parker_weights() {
    let geometry = |span_deg: f64, count: usize| {
        scan(&format!(
            "beam = \"fan\"\ndims = 2\ndso = 400.0\ndsd = 700.0\n[detector]\npixels = [600]\npixel_size = [1.0]\n\
             [volume]\nvoxels = [256, 256]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = {count}\nunit = \"degrees\"\n\
             span = {span_deg}\n"
        ))
    };
    let ph = Phantom::shepp_2d(None);
    let full = geometry(360.0, 360);
    let truth = ph.rasterize(&full, 3, true);
    let rec = |s: &Scan| {
        let a = RayProjector::new(s, 0.5);
        psnr(&recon::fbp(s, &ph.project(s, &a, 3)), &truth)
    };
    let p_full = rec(&full);
    let short = geometry(180.0 + 2.0 * 24.0, 228);
    let sh = recon::short_scan(&short).expect("a short scan");
    assert!(sh.complete(), "{sh:?}");
    assert!(recon::short_scan(&full).is_none());
    let p_short = rec(&short);
    // the conjugate rays' weights add up to one
    for &(beta, gamma) in &[(0.1, 0.2), (0.3, -0.35), (1.5, 0.0), (2.0, 0.3)] {
        let (b2, g2) = (beta + std::f64::consts::PI - 2.0 * gamma, -gamma);
        let sum = recon::parker_weight(beta, gamma, sh.delta) + recon::parker_weight(b2, g2, sh.delta);
        assert!((sum - 1.0).abs() < 1e-9, "β {beta} γ {gamma}: weights add to {sum}");
    }
    println!("FDK fan 256²: full turn {p_full:.2} dB, short scan (228°) with Parker weights {p_short:.2} dB");
    // achieved: full turn 32.42 dB, short scan 30.21 dB
    assert!(p_short > p_full - 2.5 && p_short > 29.5, "short scan {p_short:.2} dB, full {p_full:.2} dB");
}

/// The ramp-weighted grid loss ½·rᵀ(I + β·F)r / m of `fit ct --ramp-weight`: its gradient
/// against central finite differences on random logits, in 2D and in a 3D cone beam (rows of
/// the detector filtered separately), and its metric positive (the loss of any residual ≥ the
/// plain one's share, never below 0).
#[test]
fn ramp_weighted_loss_matches_finite_differences() {
    use ffvol::operator::ray::RayLoss;
    use ffvol::operator::GridLoss;
    let rng = CounterRng::new(17, 3);
    for (name, s) in four_beams() {
        let a = RayProjector::new(&s, 0.5);
        let n = a.n_voxels();
        let truth: Vec<f32> = (0..n).map(|i| rng.uniform(i as u64)).collect();
        let mut measured = vec![0.0; a.n_rays()];
        a.forward(&truth, &mut measured);
        let z: Vec<f32> = (0..n).map(|i| 2.0 * rng.normal(50_000 + i as u64)).collect();
        for beta in [0.0, 3.0, 100.0] {
            let mut plain = RayLoss::new(&a, &measured);
            let mut op = RayLoss::new(&a, &measured).with_ramp(s.det_pixels[0], beta);
            let mut g = vec![0.0f32; n];
            let l = op.sigmoid_loss_and_gradient(&z, &mut g).unwrap();
            let l0 = plain.sigmoid_loss_and_gradient(&z, &mut vec![0.0; n]).unwrap();
            assert!(l >= l0 * (1.0 - 1e-5), "{name} β {beta}: {l} below the plain loss {l0}");
            let mut worst = 0.0f64;
            for k in 0..8 {
                let i = (k * 7919 + 13) % n;
                let h = 1e-2f32;
                let (mut zp, mut zm) = (z.clone(), z.clone());
                zp[i] += h;
                zm[i] -= h;
                let mut scratch = vec![0.0; n];
                let lp = op.sigmoid_loss_and_gradient(&zp, &mut scratch).unwrap();
                let lm = op.sigmoid_loss_and_gradient(&zm, &mut scratch).unwrap();
                let fd = (lp - lm) / (2.0 * h as f64);
                let scale = g.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
                worst = worst.max((fd - g[i] as f64).abs() / scale);
            }
            assert!(
                worst < 2e-2,
                "{name} β {beta}: gradient off finite differences by {worst:e} of its largest"
            );
            if beta > 0.0 {
                assert!(l > l0 * 1.01, "{name} β {beta}: the ramp term added nothing ({l} vs {l0})");
            }
        }
    }
}
