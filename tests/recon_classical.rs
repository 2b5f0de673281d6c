//! The classical reconstructions beyond FBP: OS-SART, ASD-POCS (and its TV steps), CGLS; the
//! CLI's range checks; the TIGRE noise recipe's statistics.

use ffvol::operator::ct_geometry::Scan;
use ffvol::operator::ray::RayProjector;
use ffvol::recon::{self, tv, AsdPocsOptions, CglsOptions, SartOptions};
use ffvol::sample::CounterRng;
use ffvol::sim::ct::{add_noise, Noise};
use ffvol::train::image_metrics::psnr_ct;
use std::process::Command;

mod common;

/// A piecewise-constant n × n image in [0, 1]: a disk, a square and a small bright disk.
fn blocks(n: usize) -> Vec<f32> {
    let c = (n as f64 - 1.0) / 2.0;
    (0..n * n)
        .map(|i| {
            let (x, y) = ((i % n) as f64 - c, (i / n) as f64 - c);
            let r = n as f64 / 2.0;
            let mut v = 0.0;
            if x * x + y * y < (0.8 * r).powi(2) {
                v += 0.5;
            }
            if (x - 0.2 * r).abs() < 0.25 * r && (y + 0.1 * r).abs() < 0.2 * r {
                v += 0.3;
            }
            if (x + 0.35 * r).powi(2) + (y - 0.3 * r).powi(2) < (0.12 * r).powi(2) {
                v += 0.5;
            }
            v as f32
        })
        .collect()
}

/// A parallel-beam 2-D scan of n² unit voxels, `views` over [0, π), 1.5 n detector bins.
fn parallel(n: usize, views: usize) -> Scan {
    common::scan(&format!(
        "beam = \"parallel\"\ndims = 2\n[detector]\npixels = [{}]\npixel_size = [1.0]\n[volume]\nvoxels = [{n}, {n}]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = {views}\n",
        n * 3 / 2
    ))
}

/// Consistent data: the truth projected by the same projector.
fn consistent(scan: &Scan, truth: &[f32]) -> (RayProjector, Vec<f32>) {
    let a = RayProjector::new(scan, 0.5);
    let mut b = vec![0.0; a.n_rays()];
    a.forward(truth, &mut b);
    (a, b)
}

#[test]
fn os_sart_converges_on_consistent_data_and_keeps_positivity() {
    let n = 32;
    let truth = blocks(n);
    let s = parallel(n, 60);
    let (a, b) = consistent(&s, &truth);
    for subsets in [0, 10, 1] {
        let iterations = if subsets == 1 { 200 } else { 30 };
        let x = recon::sart(&a, &b, SartOptions { iterations, subsets, ..Default::default() });
        let p = psnr_ct(&x, &truth);
        println!("SART, {subsets} subsets, {iterations} passes: {p:.2} dB");
        assert!(x.iter().all(|&v| v >= 0.0));
        assert!(p > 30.0, "subsets {subsets}: {p:.2} dB");
    }
    assert!(SartOptions { subsets: 61, ..Default::default() }.validate(60).is_err());
}

#[test]
fn asd_pocs_converges_tv_falls_positivity_holds() {
    let n = 32;
    let truth = blocks(n);
    // consistent, many views: ASD-POCS must reach the truth
    let s = parallel(n, 60);
    let (a, b) = consistent(&s, &truth);
    let out = recon::asd_pocs(&s, &a, &b, AsdPocsOptions { iterations: 30, ..Default::default() }).unwrap();
    let p = psnr_ct(&out.volume, &truth);
    println!("ASD-POCS 32², 60 views, consistent: {p:.2} dB, stop {}, ε {:.3e}", out.stop, out.epsilon);
    assert!(p > 32.0, "{p:.2} dB");
    assert!(out.volume.iter().all(|&v| v >= 0.0));
    for (k, h) in out.history.iter().enumerate() {
        assert!(h.min_after_data >= 0.0, "iteration {k}: the data step left {}", h.min_after_data);
        assert!(h.tv_after < h.tv_before, "iteration {k}: TV {} → {}", h.tv_before, h.tv_after);
    }
    // the residual falls overall
    let first = out.history[0].residual;
    let last = out.history.last().unwrap().residual;
    assert!(last < 0.1 * first, "‖Ax − b‖ {first} → {last}");

    // few views: TV beats plain SART on a piecewise-constant image (what it is for)
    let s = parallel(n, 8);
    let (a, b) = consistent(&s, &truth);
    let sart = psnr_ct(&recon::sart(&a, &b, SartOptions { iterations: 30, ..Default::default() }), &truth);
    let tvp = psnr_ct(
        &recon::asd_pocs(&s, &a, &b, AsdPocsOptions { iterations: 30, ..Default::default() }).unwrap().volume,
        &truth,
    );
    println!("8 views: SART {sart:.2} dB, ASD-POCS {tvp:.2} dB");
    assert!(tvp > sart + 1.0, "SART {sart:.2}, ASD-POCS {tvp:.2}");
}

#[test]
fn tv_gradient_matches_finite_differences_and_descent_lowers_tv() {
    let rng = CounterRng::new(3, 7);
    for dims in [[9usize, 7, 1], [6, 5, 4]] {
        let n: usize = dims.iter().product();
        let f: Vec<f32> = (0..n).map(|i| rng.uniform(i as u64)).collect();
        let mut g = vec![0.0; n];
        tv::tv_gradient(&f, dims, &mut g);
        let h = 1e-3f32;
        let mut worst = 0.0f64;
        for i in 0..n {
            let mut fp = f.clone();
            fp[i] += h;
            let mut fm = f.clone();
            fm[i] -= h;
            let fd = (tv::tv(&fp, dims) - tv::tv(&fm, dims)) / (2.0 * h as f64);
            worst = worst.max((fd - g[i] as f64).abs() / (1.0 + fd.abs()));
        }
        println!("{dims:?}: worst relative difference {worst:.2e}");
        assert!(worst < 2e-3, "{dims:?}: {worst:e}");
        // TIGRE's normalised steps lower TV, step after step
        let mut u = f.clone();
        let mut prev = tv::tv(&u, dims);
        for _ in 0..10 {
            tv::minimize_tv(&mut u, dims, 0.05, 1);
            let now = tv::tv(&u, dims);
            assert!(now < prev, "{dims:?}: TV {prev} → {now}");
            prev = now;
        }
        // a constant image has TV 0 and is left alone
        let mut c = vec![0.5f32; n];
        assert_eq!(tv::tv(&c, dims), 0.0);
        tv::minimize_tv(&mut c, dims, 0.1, 3);
        assert!(c.iter().all(|&v| (v - 0.5).abs() < 1e-6));
    }
}

/// Solves the n × n symmetric positive definite system m x = r by Cholesky, in f64.
fn cholesky_solve(m: &[f64], r: &[f64], n: usize) -> Vec<f64> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = m[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            l[i * n + j] = if i == j {
                assert!(s > 0.0, "not positive definite");
                s.sqrt()
            } else {
                s / l[j * n + j]
            };
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (r[i] - (0..i).map(|k| l[i * n + k] * y[k]).sum::<f64>()) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| l[k * n + i] * x[k]).sum::<f64>()) / l[i * n + i];
    }
    x
}

#[test]
fn cgls_residual_falls_monotonically_and_reaches_the_least_squares_solution() {
    // tiny and inconsistent: 6² unknowns, 12 views × 9 bins, noisy data
    let n = 6;
    let s = parallel(n, 12);
    let a = RayProjector::new(&s, 0.5);
    let (m, nv) = (a.n_rays(), a.n_voxels());
    let rng = CounterRng::new(11, 2);
    let truth: Vec<f32> = (0..nv).map(|i| rng.uniform(i as u64)).collect();
    let mut b = vec![0.0f32; m];
    a.forward(&truth, &mut b);
    b.iter_mut().enumerate().for_each(|(i, v)| *v += 0.05 * rng.normal(1000 + i as u64));
    // the dense matrix, column by column
    let mut dense = vec![0.0f64; m * nv];
    let mut e = vec![0.0f32; nv];
    let mut col = vec![0.0f32; m];
    for j in 0..nv {
        e.iter_mut().for_each(|v| *v = 0.0);
        e[j] = 1.0;
        a.forward(&e, &mut col);
        for i in 0..m {
            dense[i * nv + j] = col[i] as f64;
        }
    }
    let mut ata = vec![0.0; nv * nv];
    let mut atb = vec![0.0; nv];
    for i in 0..m {
        for j in 0..nv {
            atb[j] += dense[i * nv + j] * b[i] as f64;
            for k in 0..nv {
                ata[j * nv + k] += dense[i * nv + j] * dense[i * nv + k];
            }
        }
    }
    let ls = cholesky_solve(&ata, &atb, nv);
    let out = recon::cgls(&a, &b, CglsOptions { iterations: 60 }).unwrap();
    for w in out.residuals.windows(2) {
        assert!(w[1] <= w[0] * (1.0 + 1e-6), "residual rose: {} → {}", w[0], w[1]);
    }
    let err = out.volume.iter().zip(&ls).map(|(&x, &y)| (x as f64 - y).powi(2)).sum::<f64>().sqrt();
    let size = ls.iter().map(|y| y * y).sum::<f64>().sqrt();
    println!("CGLS {} iterations: ‖x − x_LS‖ / ‖x_LS‖ = {:.2e}", out.iterations, err / size);
    assert!(err < 1e-3 * size, "{:e}", err / size);
    // the residual it reports is the true one
    let mut ax = vec![0.0f32; m];
    a.forward(&out.volume, &mut ax);
    let r = ax.iter().zip(&b).map(|(&p, &q)| (p as f64 - q as f64).powi(2)).sum::<f64>().sqrt();
    let reported = *out.residuals.last().unwrap();
    assert!((r - reported).abs() < 1e-3 * r, "true {r}, reported {reported}");
    assert!(recon::cgls(&a, &b, CglsOptions { iterations: 0 }).is_err());
}

#[test]
fn cgls_converges_on_consistent_data() {
    let n = 32;
    let truth = blocks(n);
    let s = parallel(n, 60);
    let (a, b) = consistent(&s, &truth);
    let out = recon::cgls(&a, &b, CglsOptions { iterations: 60 }).unwrap();
    let p = psnr_ct(&out.volume, &truth);
    println!("CGLS 32², 60 views, consistent, 60 iterations: {p:.2} dB");
    assert!(p > 30.0, "{p:.2} dB");
}

/// `simulate ct --noise tigre` on a flat scan (every line integral p = ln 1000, so
/// I0·e^(−p) = 100 photons): counts I0·e^(−p̃) have mean 100 and variance 100 (Poisson) + 100
/// (σ = 10); `poisson:1e5` alone keeps variance 100.
#[test]
fn tigre_noise_has_poisson_plus_gaussian_statistics() {
    let n = 200_000;
    let p0 = (1000.0f64).ln() as f32;
    let stats = |noise: &Noise| {
        let mut p = vec![p0; n];
        add_noise(&mut p, noise, 5).unwrap();
        let counts: Vec<f64> = p.iter().map(|&v| 1e5 * (-(v as f64)).exp()).collect();
        let mean = counts.iter().sum::<f64>() / n as f64;
        let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (mean, var)
    };
    let tigre = Noise::parse("tigre").unwrap();
    assert_eq!(tigre, Noise::PoissonGaussian { i0: 1e5, mean: 0.0, sigma: 10.0 });
    assert_eq!(Noise::parse("poisson:1e5,gaussian:10").unwrap(), tigre);
    assert_eq!(Noise::parse("poisson:1e5,gaussian:0:10").unwrap(), tigre);
    let (m, v) = stats(&tigre);
    println!("tigre: mean {m:.3}, variance {v:.2}");
    // standard errors: mean 0.03, variance ≈ 200·√(2/n) = 0.63
    assert!((m - 100.0).abs() < 0.2, "mean {m}");
    assert!((v - 200.0).abs() < 4.0, "variance {v}");
    let (m, v) = stats(&Noise::parse("poisson:1e5").unwrap());
    println!("poisson: mean {m:.3}, variance {v:.2}");
    assert!((m - 100.0).abs() < 0.2 && (v - 100.0).abs() < 3.0, "mean {m}, variance {v}");
    let (m, _) = stats(&Noise::parse("poisson:1e5,gaussian:5:10").unwrap());
    assert!((m - 105.0).abs() < 0.2, "mean {m}");
    // reproducible from the seed
    let mut a = vec![p0; 100];
    let mut b = vec![p0; 100];
    add_noise(&mut a, &tigre, 9).unwrap();
    add_noise(&mut b, &tigre, 9).unwrap();
    assert_eq!(a, b);
    for bad in [
        "gaussian:10",
        "poisson:0",
        "poisson:-3",
        "poisson:1e5,gaussian:-1",
        "poisson:x",
        "tigre,poisson:1",
        "gauss:3",
    ] {
        let e = Noise::parse(bad).unwrap_err().to_string();
        assert!(e.contains("--noise"), "{bad}: {e}");
    }
}

fn ffvol(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ffvol")).args(args).output().expect("run ffvol");
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn recon_cli_runs_each_method_and_refuses_bad_flags() {
    let dir = common::scratch("cli");
    let sim = dir.join("sim").to_string_lossy().into_owned();
    let (ok, text) = ffvol(&[
        "simulate",
        "ct",
        "--phantom",
        "shepp2d",
        "--geometry",
        "paper-ct:32:12",
        "--output",
        &sim,
        "--supersample",
        "2",
        "--noise",
        "tigre",
    ]);
    assert!(ok, "{text}");
    let proj = format!("{sim}/projections.npy");
    let geom = format!("{sim}/geometry.toml");
    let truth = format!("{sim}/truth.nii.gz");
    let base = ["--projections", proj.as_str(), "--geometry", geom.as_str(), "--truth", truth.as_str()];
    let run = |method: &str, extra: &[&str]| {
        let out = dir.join(format!("{method}.nii.gz")).to_string_lossy().into_owned();
        let mut args = vec!["recon", method];
        args.extend_from_slice(&base);
        args.extend_from_slice(&["--output", &out]);
        args.extend_from_slice(extra);
        ffvol(&args)
    };
    for (method, extra) in [
        ("asd-pocs", vec!["--iterations", "3", "--subsets", "4"]),
        ("cgls", vec!["--iterations", "5"]),
        ("sart", vec!["--iterations", "2", "--subsets", "3", "--relaxation-decay", "0.9"]),
    ] {
        let (ok, text) = run(method, &extra);
        assert!(ok, "{method}: {text}");
        assert!(text.contains("PSNR") && text.contains("SSIM") && text.contains(" s → "), "{method}: {text}");
    }
    for (method, extra, says) in [
        ("asd-pocs", vec!["--alpha=-1"], "--alpha"),
        ("asd-pocs", vec!["--alpha", "nan"], "--alpha"),
        ("asd-pocs", vec!["--alpha-red", "1.5"], "--alpha-red"),
        ("asd-pocs", vec!["--ratio", "0"], "--ratio"),
        ("asd-pocs", vec!["--tv-iterations", "0"], "--tv-iterations"),
        ("asd-pocs", vec!["--max-l2-err=-2"], "--max-l2-err"),
        ("asd-pocs", vec!["--subsets", "13"], "--subsets"),
        ("sart", vec!["--iterations", "0"], "--iterations"),
        ("sart", vec!["--relaxation", "2.5"], "--relaxation"),
        ("sart", vec!["--relaxation-decay", "0"], "--relaxation-decay"),
        ("sart", vec!["--alpha", "0.1"], "--alpha does not apply"),
        ("cgls", vec!["--iterations", "0"], "--iterations"),
        ("cgls", vec!["--subsets", "2"], "--subsets does not apply"),
        ("cgls", vec!["--relaxation", "0.5"], "--relaxation does not apply"),
        ("fbp", vec!["--iterations", "3"], "--iterations does not apply"),
    ] {
        let (ok, text) = run(method, &extra);
        assert!(!ok, "{method} {extra:?} was accepted: {text}");
        assert!(text.contains(says), "{method} {extra:?}: {text}");
        assert!(!text.contains("panicked"), "{text}");
    }
    let (ok, text) = ffvol(&[
        "simulate",
        "ct",
        "--phantom",
        "shepp2d",
        "--geometry",
        "paper-ct:32:4",
        "--output",
        &sim,
        "--noise",
        "gaussian:10",
    ]);
    assert!(!ok && text.contains("--noise"), "{text}");
}
