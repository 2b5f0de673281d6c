//! `ffvol ntk`: the empirical NTK of a config at initialisation on a 1D, 2D or 3D grid of
//! points, written as CSV and PNG into a folder — the kernel's profile k(x₀, x₀ + δ) along x
//! at three anchors x₀ (they coincide when the kernel is stationary, as with Fourier features),
//! its eigenvalue spectrum, its gain on each frequency along x (Rayleigh quotients of the grid's
//! Fourier modes: the decay against frequency), and, in 1D, the kernel-regression prediction of
//! gradient descent ([`crate::ntk::LinearDynamics`]) against the same network trained by
//! gradient descent on the same signal (train on the even points, test on the odd ones).

use crate::backend::TrainState;
use crate::config::{Common, DeviceConfig, DeviceKind};
use crate::encoding::{Distribution, EncodingConfig};
use crate::export::plot::{Plot, Series, COLORS};
use crate::model::ModelConfig;
use crate::ntk::{gram, jacobian, mse, symmetric_eigen, LinearDynamics};
use crate::sample::CounterRng;
use crate::{Error, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `ffvol ntk` computes.
#[derive(Clone, Debug)]
pub struct NtkConfig {
    pub encoding: EncodingConfig,
    pub frequencies: Distribution,
    pub model: ModelConfig,
    /// 1, 2 or 3.
    pub dim: usize,
    /// Grid points per axis (points = per_axis^dim ≤ 2048).
    pub per_axis: usize,
    pub seed: u64,
    /// Gradient-descent steps of the training comparison (1D).
    pub steps: u64,
    /// Learning rate η of plain gradient descent; `None`: n_train / λ_max (half the largest
    /// stable rate).
    pub lr: Option<f64>,
    pub output: PathBuf,
    pub threads: usize,
}

/// Largest point set: K and its eigenvectors are n² f64 each.
pub const MAX_POINTS: usize = 2048;

#[derive(Clone, Debug, Default, Serialize)]
pub struct NtkSummary {
    pub points: usize,
    pub params: usize,
    pub encoding: String,
    /// max over anchors and offsets of |k(x₀, x₀+δ) − its mean over anchors|, over max |k|:
    /// 0 for a stationary kernel.
    pub stationarity: f64,
    /// Largest and smallest eigenvalue of K; the smallest over the largest (≥ −1e-9: PSD).
    pub lambda_max: f64,
    pub lambda_min: f64,
    /// Relative asymmetry max |K − Kᵀ| / max |K|.
    pub asymmetry: f64,
    /// 1D: learning rate η and steps of the comparison, and its final MSEs.
    pub eta: Option<f64>,
    pub steps: Option<u64>,
    pub train_mse_ntk: Option<f64>,
    pub train_mse_network: Option<f64>,
    pub test_mse_ntk: Option<f64>,
    pub test_mse_network: Option<f64>,
}

/// The grid's points: index ix + n·(iy + n·iz) at ((ix+½)/n, …).
fn grid(n: usize, dim: usize) -> Vec<f32> {
    let total = n.pow(dim as u32);
    let mut p = Vec::with_capacity(total * dim);
    for i in 0..total {
        let mut r = i;
        for _ in 0..dim {
            p.push(((r % n) as f32 + 0.5) / n as f32);
            r /= n;
        }
    }
    p
}

/// The 1D training signal: Σ_k a_k sin(2πkx + φ_k) for k = 1..n/4, a_k ∝ 1/k, from the seed.
pub fn signal(x: &[f32], n: usize, seed: u64) -> Vec<f64> {
    let rng = CounterRng::new(seed, 21);
    let kmax = (n / 4).max(1);
    x.iter()
        .map(|&x| {
            (1..=kmax)
                .map(|k| {
                    let phase = std::f64::consts::TAU * rng.uniform_f64(k as u64);
                    0.5 / k as f64 * (std::f64::consts::TAU * k as f64 * x as f64 + phase).sin()
                })
                .sum()
        })
        .collect()
}

pub fn run(cfg: &NtkConfig) -> Result<NtkSummary> {
    if !(1..=3).contains(&cfg.dim) {
        return Err(Error::Config(format!("--dim must be 1, 2 or 3, got {}", cfg.dim)));
    }
    let total =
        (cfg.per_axis as u64).checked_pow(cfg.dim as u32).filter(|&t| t >= 4 && t <= MAX_POINTS as u64);
    let Some(total) = total.map(|t| t as usize) else {
        return Err(Error::Config(format!(
            "--points {} in {}D: the grid must have 4 to {MAX_POINTS} points",
            cfg.per_axis, cfg.dim
        )));
    };
    if cfg.per_axis < 4 {
        return Err(Error::Config(format!("--points must be at least 4 per axis, got {}", cfg.per_axis)));
    }
    let mut common = Common::new(cfg.encoding, cfg.model);
    common.seed = cfg.seed;
    common.threads = cfg.threads;
    common.frequencies = cfg.frequencies;
    common.device = DeviceConfig::on(DeviceKind::Cpu);
    common.validate("ntk")?;
    let net = crate::train::run::build_network(&common, cfg.dim)?;
    let mut backend = net.backend;
    // memory: J (n × P f64), K and its eigenvectors
    let p = net.n_params as u64;
    let need =
        (total as u64).saturating_mul(p).saturating_mul(8).saturating_add(3 * (total as u64).pow(2) * 8);
    crate::train::memory::check_export(
        "ffvol ntk (use fewer --points or a smaller network)",
        &[("Jacobian and kernel", need)],
    )?;
    std::fs::create_dir_all(&cfg.output).map_err(|e| Error::io(&cfg.output, e))?;
    let points = grid(cfg.per_axis, cfg.dim);
    let j = jacobian(backend.as_mut(), &points)?;
    let k = gram(&j);
    drop(j);
    let n = total;
    let kmax = k.iter().fold(0f64, |m, v| m.max(v.abs())).max(f64::MIN_POSITIVE);
    let asymmetry = (0..n)
        .flat_map(|a| (0..n).map(move |b| (a, b)))
        .map(|(a, b)| (k[a * n + b] - k[b * n + a]).abs())
        .fold(0.0, f64::max)
        / kmax;

    // profile along x at three anchors (other axes at the centre)
    let na = cfg.per_axis;
    let centre: usize = (1..cfg.dim).map(|a| na / 2 * na.pow(a as u32)).sum();
    let anchors = [na / 4, na / 2, 3 * na / 4];
    let reach = (na / 4) as i64;
    let mut csv = String::from("offset,dx,k_quarter,k_half,k_three_quarters\n");
    let mut curves: Vec<Vec<(f64, f64)>> = vec![vec![]; 3];
    let mut stationarity: f64 = 0.0;
    for d in -reach..=reach {
        let vals: Vec<f64> =
            anchors.iter().map(|&a| k[(centre + a) * n + centre + (a as i64 + d) as usize]).collect();
        let mean = vals.iter().sum::<f64>() / 3.0;
        stationarity = vals.iter().fold(stationarity, |s, v| s.max((v - mean).abs() / kmax));
        let dx = d as f64 / na as f64;
        csv.push_str(&format!("{d},{dx},{:e},{:e},{:e}\n", vals[0], vals[1], vals[2]));
        for (c, v) in curves.iter_mut().zip(&vals) {
            c.push((dx, *v));
        }
    }
    crate::io::write_bytes_atomic(&cfg.output.join("profile.csv"), csv.as_bytes())?;
    let name = cfg.encoding.name();
    Plot {
        title: format!("NTK profile k(x0, x0 + dx) along x, {name}, {}D", cfg.dim),
        x_label: "dx".into(),
        y_label: "k".into(),
        series: ["x0 = 1/4", "x0 = 1/2", "x0 = 3/4"]
            .iter()
            .zip(curves)
            .enumerate()
            .map(|(i, (l, c))| Series::line(l, c, COLORS[i]))
            .collect(),
        ..Default::default()
    }
    .write(&cfg.output.join("profile.png"))?;

    // spectrum
    let (values, _) = symmetric_eigen(&k, n)?;
    let mut csv = String::from("index,eigenvalue\n");
    for (i, v) in values.iter().enumerate() {
        csv.push_str(&format!("{i},{v:e}\n"));
    }
    crate::io::write_bytes_atomic(&cfg.output.join("spectrum.csv"), csv.as_bytes())?;
    let floor = values[0] * 1e-12;
    Plot {
        title: format!("NTK eigenvalues, {name}, {n} points"),
        x_label: "index".into(),
        y_label: "eigenvalue".into(),
        log_y: true,
        series: vec![Series::line(
            "",
            values.iter().enumerate().map(|(i, &v)| (i as f64, v.max(floor))).collect(),
            COLORS[0],
        )],
        ..Default::default()
    }
    .write(&cfg.output.join("spectrum.png"))?;

    // gain against frequency along x: Rayleigh quotients of cos/sin modes
    let mut csv = String::from("frequency,gain\n");
    let mut gains = Vec::new();
    for f in 0..=na / 2 {
        let mut g = Vec::new();
        for phase in [0.0, 0.25] {
            let v: Vec<f64> = (0..n)
                .map(|i| (std::f64::consts::TAU * (f as f64 * points[i * cfg.dim] as f64 + phase)).cos())
                .collect();
            let vv = dot(&v, &v);
            if vv > 1e-9 * n as f64 {
                let kv: f64 = (0..n).map(|a| v[a] * dot(&k[a * n..(a + 1) * n], &v)).sum();
                g.push(kv / vv);
            }
        }
        let gain = g.iter().sum::<f64>() / g.len().max(1) as f64;
        csv.push_str(&format!("{f},{gain:e}\n"));
        gains.push((f as f64, gain.max(floor)));
    }
    crate::io::write_bytes_atomic(&cfg.output.join("frequency.csv"), csv.as_bytes())?;
    Plot {
        title: format!("NTK gain on cos/sin modes along x, {name}"),
        x_label: "frequency (cycles per unit box)".into(),
        y_label: "gain".into(),
        log_y: true,
        series: vec![Series::line("", gains, COLORS[1])],
        ..Default::default()
    }
    .write(&cfg.output.join("frequency.png"))?;

    let mut summary = NtkSummary {
        points: n,
        params: net.n_params,
        encoding: name.into(),
        stationarity,
        lambda_max: values[0],
        lambda_min: *values.last().unwrap_or(&0.0),
        asymmetry,
        ..Default::default()
    };
    if cfg.dim == 1 {
        training(cfg, backend.as_mut(), &points, &k, &mut summary)?;
    }
    let json = crate::config::to_json(&summary)?;
    crate::io::write_bytes_atomic(&cfg.output.join("ntk.json"), json.as_bytes())?;
    Ok(summary)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// 1D: kernel regression against gradient descent of the network itself, on the signal.
fn training(
    cfg: &NtkConfig,
    backend: &mut dyn crate::backend::Backend,
    points: &[f32],
    k: &[f64],
    summary: &mut NtkSummary,
) -> Result<()> {
    let n = points.len();
    let (train, test): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| i % 2 == 0);
    let y = signal(points, n, cfg.seed);
    let pick = |idx: &[usize]| -> Vec<f32> { idx.iter().map(|&i| points[i]).collect() };
    let (xt, xs) = (pick(&train), pick(&test));
    let yt: Vec<f64> = train.iter().map(|&i| y[i]).collect();
    let ys: Vec<f64> = test.iter().map(|&i| y[i]).collect();
    let nt = train.len();
    let k_train: Vec<f64> = train.iter().flat_map(|&a| train.iter().map(move |&b| k[a * n + b])).collect();
    let k_cross: Vec<f64> = test.iter().flat_map(|&a| train.iter().map(move |&b| k[a * n + b])).collect();
    let predict = |backend: &mut dyn crate::backend::Backend, x: &[f32]| -> Result<Vec<f64>> {
        let mut z = vec![0.0; x.len()];
        backend.predict(x, &mut z)?;
        Ok(z.iter().map(|&v| v as f64).collect())
    };
    let (f0t, f0s) = (predict(backend, &xt)?, predict(backend, &xs)?);
    let probe = LinearDynamics::new(&k_train, nt, vec![], f0t.clone(), vec![], &yt, 1.0)?;
    let eta = cfg.lr.unwrap_or(nt as f64 / probe.lambda_max());
    if !(eta.is_finite() && eta > 0.0) {
        return Err(Error::Config(format!("ntk: learning rate {eta} (give --lr)")));
    }
    let dynamics = LinearDynamics::new(&k_train, nt, k_cross, f0t, f0s, &yt, eta)?;
    let mut marks: Vec<u64> =
        (0..=40).map(|i| (cfg.steps as f64).powf(i as f64 / 40.0).round() as u64).collect();
    marks.insert(0, 0);
    marks.dedup();
    let mut csv = String::from("step,train_mse_ntk,test_mse_ntk,train_mse_network,test_mse_network\n");
    let mut curves: Vec<Vec<(f64, f64)>> = vec![vec![]; 4];
    let mut step = 0u64;
    for &t in &marks {
        while step < t {
            let (pass, z) = backend.forward(&xt)?;
            let dz: Vec<f32> =
                z.iter().zip(&yt).map(|(&z, &y)| ((z as f64 - y) / nt as f64) as f32).collect();
            backend.backward(pass, &dz)?;
            let g = backend.gradients()?;
            let mut state: TrainState = backend.state()?;
            for (p, g) in state.mlp.params.iter_mut().zip(&g) {
                *p -= (eta * *g as f64) as f32;
            }
            backend.set_state(state)?;
            step += 1;
        }
        let (pt, ps) = dynamics.predict(t);
        let (nt_out, ns_out) = (predict(backend, &xt)?, predict(backend, &xs)?);
        let row = [mse(&pt, &yt), mse(&ps, &ys), mse(&nt_out, &yt), mse(&ns_out, &ys)];
        if row.iter().any(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "ntk: gradient descent diverged at step {t} (η = {eta}); give a smaller --lr"
            )));
        }
        csv.push_str(&format!("{t},{:e},{:e},{:e},{:e}\n", row[0], row[1], row[2], row[3]));
        for (c, v) in curves.iter_mut().zip(row) {
            c.push(((t.max(1)) as f64, v));
        }
        summary.train_mse_ntk = Some(row[0]);
        summary.test_mse_ntk = Some(row[1]);
        summary.train_mse_network = Some(row[2]);
        summary.test_mse_network = Some(row[3]);
    }
    crate::io::write_bytes_atomic(&cfg.output.join("training.csv"), csv.as_bytes())?;
    let labels = ["train, NTK", "test, NTK", "train, network", "test, network"];
    let colors = [COLORS[0], COLORS[1], COLORS[0], COLORS[1]];
    let series = labels
        .iter()
        .zip(curves)
        .zip(colors)
        .enumerate()
        .map(|(i, ((l, c), col))| if i < 2 { Series::line(l, c, col) } else { Series::markers(l, c, col) })
        .collect();
    Plot {
        title: format!("gradient descent, η = {eta:.3e}: NTK prediction (lines) and the network (dots)"),
        x_label: "step".into(),
        y_label: "MSE".into(),
        log_x: true,
        log_y: true,
        series,
        ..Default::default()
    }
    .write(&cfg.output.join("training.png"))?;
    summary.eta = Some(eta);
    summary.steps = Some(cfg.steps);
    Ok(())
}

pub fn output_dir(output: Option<&Path>, name: &str) -> PathBuf {
    output.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("runs").join(format!("ntk-{name}")))
}
