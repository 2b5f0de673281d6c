//! The empirical NTK: the backend's Jacobian equals central finite differences of the network's
//! output in every parameter (so K = J Jᵀ is the finite-difference kernel), K is symmetric and
//! positive semidefinite, its spectrum matches numpy's `eigvalsh` (when numpy is present), it is
//! stationary with Fourier features and not without, and the kernel-regression prediction of
//! gradient descent follows a wide network's actual training.

use ffvol::config::{Common, DeviceConfig, DeviceKind};
use ffvol::encoding::{Distribution, EncodingConfig};
use ffvol::job::ntk::{run, NtkConfig};
use ffvol::model::ModelConfig;
use ffvol::ntk::{gram, jacobian, symmetric_eigen};

mod common;
use common::scratch;

fn tiny_backend(enc: EncodingConfig) -> Box<dyn ffvol::backend::Backend> {
    let mut c = Common::new(enc, ModelConfig { depth: 3, width: 6 });
    c.seed = 3;
    c.device = DeviceConfig::on(DeviceKind::Cpu);
    ffvol::train::run::build_network(&c, 1).unwrap().backend
}

#[test]
fn jacobian_matches_finite_differences() {
    let mut be = tiny_backend(EncodingConfig::Gaussian { sigma: 2.0, features: 4, normalize: false });
    // non-zero biases so every parameter matters
    let mut state = be.state().unwrap();
    for (i, p) in state.mlp.params.iter_mut().enumerate() {
        *p += 0.05 * ((i * 7 % 11) as f32 - 5.0) / 5.0;
    }
    be.set_state(state.clone()).unwrap();
    let points: Vec<f32> = (0..9).map(|i| (i as f32 + 0.5) / 9.0).collect();
    let j = jacobian(be.as_mut(), &points).unwrap();
    let n_params = state.mlp.params.len();
    let mut fd = vec![vec![0.0f64; n_params]; points.len()];
    let h = 1e-3f32;
    for k in 0..n_params {
        let mut out = [vec![0.0f32; points.len()], vec![0.0f32; points.len()]];
        for (s, sign) in [1.0f32, -1.0].iter().enumerate() {
            let mut st = state.clone();
            st.mlp.params[k] += sign * h;
            be.set_state(st).unwrap();
            be.predict(&points, &mut out[s]).unwrap();
        }
        for i in 0..points.len() {
            fd[i][k] = (out[0][i] as f64 - out[1][i] as f64) / (2.0 * h as f64);
        }
    }
    let mut worst: f64 = 0.0;
    for i in 0..points.len() {
        for k in 0..n_params {
            worst = worst.max((j[i][k] - fd[i][k]).abs());
        }
    }
    // f32 outputs: differences of h = 1e-3 carry ~1e-4 of rounding noise
    let jmax = j.iter().flatten().fold(0f64, |m, v| m.max(v.abs()));
    assert!(worst < 1e-2 * jmax, "Jacobian vs finite differences: worst {worst} of {jmax}");
    let (ka, kb) = (gram(&j), gram(&fd));
    let scale = ka.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = ka.iter().zip(&kb).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-3 * scale, "K vs finite-difference K: {diff} of {scale}");
}

fn ntk(
    dir: &std::path::Path,
    enc: EncodingConfig,
    dim: usize,
    per_axis: usize,
    steps: u64,
) -> ffvol::job::ntk::NtkSummary {
    run(&NtkConfig {
        encoding: enc,
        frequencies: Distribution::Gaussian,
        model: ModelConfig { depth: 3, width: 256 },
        dim,
        per_axis,
        seed: 1,
        steps,
        lr: None,
        output: dir.to_path_buf(),
        threads: 0,
    })
    .unwrap()
}

#[test]
fn kernel_is_symmetric_psd_and_stationary_only_with_fourier_features() {
    let dir = scratch("ntk-stationary");
    let g = ntk(
        &dir.join("g"),
        EncodingConfig::Gaussian { sigma: 4.0, features: 256, normalize: false },
        1,
        64,
        300,
    );
    let none = ntk(&dir.join("n"), EncodingConfig::None, 1, 64, 10);
    eprintln!("gaussian: {g:?}\nnone: {none:?}");
    for s in [&g, &none] {
        assert!(s.asymmetry < 1e-12, "{s:?}");
        assert!(s.lambda_min > -1e-9 * s.lambda_max, "{s:?}");
    }
    assert!(g.stationarity < 0.1, "gaussian stationarity {}", g.stationarity);
    assert!(
        none.stationarity > 2.0 * g.stationarity && none.stationarity > 0.1,
        "none {} vs gaussian {}",
        none.stationarity,
        g.stationarity
    );
    // the linearised prediction follows the wide network's gradient descent
    let (a, b) = (g.train_mse_ntk.unwrap(), g.train_mse_network.unwrap());
    let (c, d) = (g.test_mse_ntk.unwrap(), g.test_mse_network.unwrap());
    assert!((a - b).abs() < 0.25 * b.max(1e-4), "train MSE: NTK {a} vs network {b}");
    assert!((c - d).abs() < 0.25 * d.max(1e-4), "test MSE: NTK {c} vs network {d}");
    for f in ["profile", "spectrum", "frequency", "training"] {
        assert!(ffvol::io::read_png(&dir.join("g").join(format!("{f}.png"))).is_ok(), "{f}.png");
        assert!(dir.join("g").join(format!("{f}.csv")).is_file());
    }
    // 2D works too (no training comparison)
    let two = ntk(
        &dir.join("2d"),
        EncodingConfig::Gaussian { sigma: 3.0, features: 64, normalize: false },
        2,
        10,
        0,
    );
    assert!(two.train_mse_ntk.is_none() && two.points == 100 && two.stationarity < 0.15, "{two:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Our Jacobi eigenvalues against numpy's `eigvalsh` on an NTK.
#[test]
fn spectrum_matches_numpy() {
    if !common::python_has("numpy") {
        assert!(!common::in_ci(), "numpy is missing in CI");
        eprintln!("numpy not installed: skipping the numpy check");
        return;
    }
    let mut be = tiny_backend(EncodingConfig::Gaussian { sigma: 3.0, features: 8, normalize: false });
    let points: Vec<f32> = (0..40).map(|i| (i as f32 + 0.5) / 40.0).collect();
    let k = gram(&jacobian(be.as_mut(), &points).unwrap());
    let (values, _) = symmetric_eigen(&k, 40).unwrap();
    let dir = scratch("ntk-numpy");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("k.npy");
    ffvol::io::write_npy(&path, &k, &[40, 40], false).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-c", "import numpy,sys; v=numpy.linalg.eigvalsh(numpy.load(sys.argv[1]))[::-1]; print(' '.join(repr(float(x)) for x in v))"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let np: Vec<f64> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(|x| x.parse().unwrap()).collect();
    for (a, b) in values.iter().zip(&np) {
        assert!((a - b).abs() < 1e-9 * values[0], "{a} vs numpy {b}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
