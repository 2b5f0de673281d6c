//! Adam (Kingma & Ba) with bias correction.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay (AdamW, Loshchilov & Hutter): each step also takes
    /// `lr · weight_decay · θ` off every parameter (0: plain Adam).
    #[serde(default)]
    pub weight_decay: f32,
}

impl Default for Adam {
    /// The paper's (0.9, 0.999, 1e-8).
    fn default() -> Self {
        Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// First and second moments and the number of steps taken.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdamState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub step: u64,
}

impl AdamState {
    pub fn zeros(n: usize) -> Self {
        AdamState { m: vec![0.0; n], v: vec![0.0; n], step: 0 }
    }
}

impl Adam {
    /// One step: `params -= lr · m̂ / (√v̂ + ε)` with bias-corrected moments (and, with weight
    /// decay, `params -= lr · weight_decay · params` first).
    pub fn step(&self, params: &mut [f32], grads: &[f32], state: &mut AdamState, lr: f32) {
        state.step += 1;
        let t = state.step as i32;
        let c1 = 1.0 / (1.0 - (self.beta1 as f64).powi(t)) as f32;
        let c2 = 1.0 / (1.0 - (self.beta2 as f64).powi(t)) as f32;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let decay = 1.0 - lr * self.weight_decay;
        params
            .par_chunks_mut(8192)
            .zip(grads.par_chunks(8192))
            .zip(state.m.par_chunks_mut(8192).zip(state.v.par_chunks_mut(8192)))
            .for_each(|((p, g), (m, v))| {
                for i in 0..p.len() {
                    if self.weight_decay != 0.0 {
                        p[i] *= decay;
                    }
                    m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                    v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                    p[i] -= lr * (m[i] * c1) / ((v[i] * c2).sqrt() + eps);
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_by_lr_times_sign() {
        // with bias correction the first step is lr · g/|g| (up to ε)
        let adam = Adam::default();
        let mut p = vec![1.0, -2.0, 0.5];
        let g = vec![0.3, -7.0, 1e-3];
        let mut s = AdamState::zeros(3);
        adam.step(&mut p, &g, &mut s, 0.01);
        assert!((p[0] - 0.99).abs() < 1e-6);
        assert!((p[1] + 1.99).abs() < 1e-6);
        assert!((p[2] - 0.49).abs() < 1e-5);
    }

    #[test]
    fn matches_reference_over_steps() {
        let adam = Adam::default();
        let mut p = vec![0.7f32];
        let mut s = AdamState::zeros(1);
        let (mut m, mut v, mut pr) = (0.0f64, 0.0f64, 0.7f64);
        for t in 1..=50 {
            let g = (pr * 3.0).sin() + 0.1 * t as f64;
            adam.step(&mut p, &[g as f32], &mut s, 1e-2);
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            pr -= 1e-2 * (m / (1.0 - 0.9f64.powi(t))) / ((v / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8);
        }
        assert!((p[0] as f64 - pr).abs() < 1e-4, "{} vs {pr}", p[0]);
    }
}
