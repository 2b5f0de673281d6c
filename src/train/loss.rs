//! Losses on the network's outputs, each returning the mean loss and writing ∂L/∂output.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Sigmoid cross-entropy on logits, mean over the batch (occupancy).
    Bce,
    /// ½·mean((y_pred − y)²), as in the paper's CT and MRI code (volumes).
    Mse,
}

impl Loss {
    /// Mean loss over the batch; `grad[i] = ∂L/∂pred[i]`. Sums in f64 for stability.
    pub fn eval(&self, pred: &[f32], target: &[f32], grad: &mut [f32]) -> f32 {
        assert_eq!(pred.len(), target.len());
        assert_eq!(pred.len(), grad.len());
        let inv_n = 1.0 / pred.len().max(1) as f32;
        let mut total = 0.0f64;
        match self {
            Loss::Bce => {
                for ((&z, &y), g) in pred.iter().zip(target).zip(grad.iter_mut()) {
                    total += bce_with_logits(z, y) as f64;
                    *g = (sigmoid(z) - y) * inv_n;
                }
            }
            Loss::Mse => {
                for ((&p, &y), g) in pred.iter().zip(target).zip(grad.iter_mut()) {
                    let r = p - y;
                    total += 0.5 * (r as f64) * (r as f64);
                    *g = r * inv_n;
                }
            }
        }
        (total * inv_n as f64) as f32
    }
}

/// max(z, 0) − z·y + log(1 + e^(−|z|)): never overflows, exact for large |z|.
#[inline]
pub fn bce_with_logits(z: f32, y: f32) -> f32 {
    z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()
}

/// The chain rule through the field's sigmoid output p = σ(z): ∂L/∂z = ∂L/∂p · p(1 − p). Every
/// job whose field is σ(MLP(γ(x))) goes through this one function.
#[inline]
pub fn through_sigmoid(dl_dp: f32, p: f32) -> f32 {
    dl_dp * (p * (1.0 - p))
}

/// [`through_sigmoid`] with σ′ = p(1 − p) raised to at least `floor` (in [0, ¼]): a surrogate
/// gradient. Where the logit z has saturated on the wrong side (p ≈ 0 inside a low-contrast
/// object), p(1 − p) is ~1e-3 and the voxel hardly moves, however large its error: in a 3D
/// cone-beam `fit ct` (64³, 50 views) 77 % of a low-contrast interior stayed below 0.01 through
/// the warm start and the fit ended at 23.1 dB; with a floor of 0.05 in the warm start it
/// reached 32.8 dB (`train.warm_start_floor`, BENCHMARKS.md). The direction stays a descent
/// direction in p; `floor = 0` is [`through_sigmoid`] exactly.
#[inline]
pub fn through_sigmoid_floor(dl_dp: f32, p: f32, floor: f32) -> f32 {
    dl_dp * (p * (1.0 - p)).max(floor)
}

#[inline]
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::CounterRng;

    #[test]
    fn the_sigmoid_floor_only_raises_small_derivatives() {
        for k in -200..=200 {
            let z = k as f32 * 0.1;
            let p = sigmoid(z);
            for g in [-3.5f32, 0.25, 7.0] {
                // floor 0: the exact chain rule, bit for bit
                assert_eq!(through_sigmoid_floor(g, p, 0.0).to_bits(), through_sigmoid(g, p).to_bits());
                let d = through_sigmoid_floor(g, p, 0.05) / g;
                assert!(d >= 0.05 && d >= p * (1.0 - p) * 0.999_999, "z {z}: {d}");
                if p * (1.0 - p) > 0.05 {
                    assert_eq!(through_sigmoid_floor(g, p, 0.05), through_sigmoid(g, p));
                }
                // a floor of ¼ (σ′'s largest value) is a constant ¼
                assert_eq!(through_sigmoid_floor(g, p, 0.25), g * 0.25);
            }
        }
    }

    #[test]
    fn stable_for_large_logits() {
        assert!((bce_with_logits(100.0, 1.0)).abs() < 1e-6);
        assert!((bce_with_logits(-100.0, 1.0) - 100.0).abs() < 1e-4);
        assert!(bce_with_logits(1e30, 0.0).is_finite());
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let rng = CounterRng::new(11, 0);
        let n = 64;
        let pred: Vec<f32> = (0..n).map(|i| 4.0 * rng.normal(i)).collect();
        for loss in [Loss::Bce, Loss::Mse] {
            let target: Vec<f32> = (0..n)
                .map(|i| {
                    if loss == Loss::Bce {
                        (rng.uniform(500 + i) > 0.5) as u8 as f32
                    } else {
                        rng.normal(500 + i)
                    }
                })
                .collect();
            let mut grad = vec![0.0; n as usize];
            loss.eval(&pred, &target, &mut grad);
            let f64_loss = |p: &[f64]| -> f64 {
                p.iter()
                    .zip(&target)
                    .map(|(&z, &y)| {
                        let y = y as f64;
                        match loss {
                            Loss::Bce => z.max(0.0) - z * y + (-z.abs()).exp().ln_1p(),
                            Loss::Mse => 0.5 * (z - y) * (z - y),
                        }
                    })
                    .sum::<f64>()
                    / p.len() as f64
            };
            let p64: Vec<f64> = pred.iter().map(|&x| x as f64).collect();
            for j in 0..n as usize {
                let h = 1e-5;
                let (mut a, mut b) = (p64.clone(), p64.clone());
                a[j] += h;
                b[j] -= h;
                let fd = (f64_loss(&a) - f64_loss(&b)) / (2.0 * h);
                let rel = (fd - grad[j] as f64).abs() / fd.abs().max(1e-3);
                assert!(rel < 1e-3, "{loss:?} [{j}]: analytic {} fd {fd}", grad[j]);
            }
        }
    }
}
