//! The empirical neural tangent kernel of a network at initialisation, and what it predicts.
//!
//! For a scalar-output network f(x; θ), the empirical NTK on points x_1..x_n is K = J Jᵀ with
//! J_ij = ∂f(x_i)/∂θ_j, exact: each row is the backend's backward of the one-point forward at
//! x_i with ∂L/∂f = 1 (the hand-written backward, itself checked against finite differences).
//! [`symmetric_eigen`] diagonalises K (cyclic Jacobi, f64), and [`linear_dynamics`] predicts
//! gradient descent on ½·mean((f − y)²) with rate η from it: in the linearised network
//! f_t = f_0 + K_·,train K_train⁻¹ (I − (I − ηK_train/n)^t)(y − f_0) — the discrete form of the
//! paper's ŷ(t) ≈ K_test K⁻¹ (I − e^(−ηKt)) y, each eigen-component of the training error decaying
//! as (1 − ηλ_i/n)^t.

use crate::backend::Backend;
use crate::{Error, Result};
use rayon::prelude::*;

/// J (n × P, row-major, f64) of the backend's scalar output at `points` (row-major n×d).
pub fn jacobian(backend: &mut dyn Backend, points: &[f32]) -> Result<Vec<Vec<f64>>> {
    let d = backend.encoding().dim;
    if points.is_empty() || points.len() % d != 0 {
        return Err(Error::Input(format!(
            "ntk: {} coordinates are not a whole number of {d}-D points",
            points.len()
        )));
    }
    let mut rows = Vec::with_capacity(points.len() / d);
    for p in points.chunks_exact(d) {
        let (pass, out) = backend.forward(p)?;
        if out.len() != 1 {
            return Err(Error::Config(format!(
                "ntk: the network has {} outputs; the NTK here is for one",
                out.len()
            )));
        }
        backend.backward(pass, &[1.0])?;
        rows.push(backend.gradients()?.iter().map(|&g| g as f64).collect());
    }
    Ok(rows)
}

/// K = J Jᵀ (n × n, row-major), in f64.
pub fn gram(j: &[Vec<f64>]) -> Vec<f64> {
    let n = j.len();
    let upper: Vec<Vec<f64>> =
        (0..n).into_par_iter().map(|a| (a..n).map(|b| dot(&j[a], &j[b])).collect()).collect();
    let mut k = vec![0.0; n * n];
    for (a, row) in upper.iter().enumerate() {
        for (o, &v) in row.iter().enumerate() {
            k[a * n + a + o] = v;
            k[(a + o) * n + a] = v;
        }
    }
    k
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Eigenvalues (descending) and eigenvectors (column k of the row-major n×n result belongs to
/// eigenvalue k) of the symmetric `a` (n×n, row-major), by cyclic Jacobi rotations until the
/// off-diagonal mass is below 1e-24 of the total (at most 60 sweeps).
pub fn symmetric_eigen(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if a.len() != n * n {
        return Err(Error::Input(format!("eigen: {} values for a {n}×{n} matrix", a.len())));
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(Error::Input("eigen: the matrix has a non-finite entry".into()));
    }
    let mut m = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = m.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j].powi(2))
            .sum();
        if off <= 1e-24 * total {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let (app, aqq) = (m[p * n + p], m[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + theta.hypot(1.0));
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&x, &y| m[y * n + y].partial_cmp(&m[x * n + x]).unwrap_or(std::cmp::Ordering::Equal));
    let values = order.iter().map(|&k| m[k * n + k]).collect();
    let mut vectors = vec![0.0; n * n];
    for (col, &k) in order.iter().enumerate() {
        for r in 0..n {
            vectors[r * n + col] = v[r * n + k];
        }
    }
    Ok((values, vectors))
}

/// The linearised network's predictions after `t` steps of gradient descent with rate `eta` on
/// ½·mean over the training points of (f − y)², at the training points and at the other
/// points: `k_train` (n×n) and its eigen-decomposition, `k_cross` (m×n, other × train), the
/// initial outputs and the targets.
pub struct LinearDynamics {
    values: Vec<f64>,
    vectors: Vec<f64>,
    n: usize,
    k_cross: Vec<f64>,
    /// Vᵀ(y − f_0) on the training points.
    residual_modes: Vec<f64>,
    f0_train: Vec<f64>,
    f0_other: Vec<f64>,
    eta: f64,
}

impl LinearDynamics {
    pub fn new(
        k_train: &[f64],
        n: usize,
        k_cross: Vec<f64>,
        f0_train: Vec<f64>,
        f0_other: Vec<f64>,
        y_train: &[f64],
        eta: f64,
    ) -> Result<Self> {
        let (values, vectors) = symmetric_eigen(k_train, n)?;
        let r: Vec<f64> = y_train.iter().zip(&f0_train).map(|(y, f)| y - f).collect();
        let residual_modes = (0..n).map(|k| (0..n).map(|i| vectors[i * n + k] * r[i]).sum()).collect();
        Ok(LinearDynamics { values, vectors, n, k_cross, residual_modes, f0_train, f0_other, eta })
    }

    /// The largest eigenvalue of the training kernel.
    pub fn lambda_max(&self) -> f64 {
        self.values.first().copied().unwrap_or(0.0)
    }

    /// (f at the training points, f at the other points) after `t` steps.
    pub fn predict(&self, t: u64) -> (Vec<f64>, Vec<f64>) {
        let n = self.n;
        let scale = self.eta / n as f64;
        // training: f0 + V (1 − (1 − ηλ/n)^t) Vᵀ r; other points: f0 + K_cross V ((1 − (1 − ηλ/n)^t)/λ) Vᵀ r
        let tol = 1e-12 * self.lambda_max().abs().max(f64::MIN_POSITIVE);
        let decayed: Vec<f64> = self.values.iter().map(|&l| 1.0 - (1.0 - scale * l).powf(t as f64)).collect();
        let per_lambda: Vec<f64> = self
            .values
            .iter()
            .zip(&decayed)
            .map(|(&l, &d)| if l.abs() > tol { d / l } else { scale * t as f64 })
            .collect();
        let coef_train: Vec<f64> = (0..n).map(|k| decayed[k] * self.residual_modes[k]).collect();
        let coef_other: Vec<f64> = (0..n).map(|k| per_lambda[k] * self.residual_modes[k]).collect();
        let mut train = self.f0_train.clone();
        let mut alpha = vec![0.0; n]; // V coef_other: the kernel weights of the training points
        for i in 0..n {
            for k in 0..n {
                train[i] += self.vectors[i * n + k] * coef_train[k];
                alpha[i] += self.vectors[i * n + k] * coef_other[k];
            }
        }
        let m = self.f0_other.len();
        let other =
            (0..m).map(|j| self.f0_other[j] + dot(&self.k_cross[j * n..(j + 1) * n], &alpha)).collect();
        (train, other)
    }
}

/// Mean squared difference.
pub fn mse(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A A ᵀ-built matrix with known spectrum: Q diag(λ) Qᵀ for a product of rotations.
    #[test]
    fn jacobi_recovers_a_known_spectrum() {
        let n = 7;
        let lambdas = [9.0, 5.0, 3.5, 2.0, 1.0, 0.25, 0.0];
        let mut q = vec![0.0; n * n];
        for i in 0..n {
            q[i * n + i] = 1.0;
        }
        for (p, r, angle) in [(0, 3, 0.7), (1, 5, -1.1), (2, 6, 0.4), (0, 1, 0.9), (4, 6, 1.3)] {
            let (c, s) = (f64::cos(angle), f64::sin(angle));
            for k in 0..n {
                let (a, b) = (q[k * n + p], q[k * n + r]);
                q[k * n + p] = c * a - s * b;
                q[k * n + r] = s * a + c * b;
            }
        }
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| q[i * n + k] * lambdas[k] * q[j * n + k]).sum();
            }
        }
        let (values, vectors) = symmetric_eigen(&a, n).unwrap();
        for (v, l) in values.iter().zip(lambdas) {
            assert!((v - l).abs() < 1e-10, "{values:?}");
        }
        // A v = λ v for each column
        for k in 0..n {
            for i in 0..n {
                let av: f64 = (0..n).map(|j| a[i * n + j] * vectors[j * n + k]).sum();
                assert!((av - values[k] * vectors[i * n + k]).abs() < 1e-9);
            }
        }
    }

    /// Gradient descent on a linear model f = Jθ is exactly what the prediction says.
    #[test]
    fn linear_dynamics_match_gradient_descent_on_a_linear_model() {
        let (n, m, p) = (5, 3, 8);
        let j: Vec<Vec<f64>> = (0..n + m)
            .map(|i| (0..p).map(|k| ((i * 7 + k * 3) % 5) as f64 - 2.0 + 0.1 * i as f64).collect())
            .collect();
        let k = gram(&j);
        let nm = n + m;
        let k_train: Vec<f64> =
            (0..n).flat_map(|a| (0..n).map(move |b| (a, b))).map(|(a, b)| k[a * nm + b]).collect();
        let k_cross: Vec<f64> =
            (n..nm).flat_map(|a| (0..n).map(move |b| (a, b))).map(|(a, b)| k[a * nm + b]).collect();
        let y: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
        let eta = 0.5 * n as f64 / symmetric_eigen(&k_train, n).unwrap().0[0];
        let dyn_ = LinearDynamics::new(&k_train, n, k_cross, vec![0.0; n], vec![0.0; m], &y, eta).unwrap();
        let mut theta = vec![0.0; p];
        for _ in 0..40 {
            let f: Vec<f64> = (0..n).map(|i| dot(&j[i], &theta)).collect();
            for (kk, t) in theta.iter_mut().enumerate() {
                *t -= eta / n as f64 * (0..n).map(|i| (f[i] - y[i]) * j[i][kk]).sum::<f64>();
            }
        }
        let (train, other) = dyn_.predict(40);
        for i in 0..n {
            assert!((train[i] - dot(&j[i], &theta)).abs() < 1e-9);
        }
        for a in 0..m {
            assert!(
                (other[a] - dot(&j[n + a], &theta)).abs() < 1e-9,
                "{} vs {}",
                other[a],
                dot(&j[n + a], &theta)
            );
        }
    }
}
