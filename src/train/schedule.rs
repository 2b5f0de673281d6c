//! Learning-rate schedules.

use serde::{Deserialize, Serialize};

/// Learning rate as a function of the step, as written in `run.toml` (`[train.schedule]`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum LrSchedule {
    Constant,
    /// lr · factor^(step / every): the paper's 0.1× per 5000 steps, applied smoothly.
    Exponential {
        factor: f32,
        every: u64,
    },
    /// Cosine from lr to lr·final_fraction over the run, after a linear warm-up.
    Cosine {
        warmup: u64,
        final_fraction: f32,
    },
}

impl LrSchedule {
    pub fn lr(&self, base: f32, step: u64, total: u64) -> f32 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Exponential { factor, every } => {
                base * factor.powf(step as f32 / every.max(1) as f32)
            }
            LrSchedule::Cosine { warmup, final_fraction } => {
                if step < warmup {
                    return base * (step + 1) as f32 / warmup as f32;
                }
                let t = (step - warmup) as f32 / (total.saturating_sub(warmup)).max(1) as f32;
                let c = 0.5 * (1.0 + (std::f32::consts::PI * t.min(1.0)).cos());
                base * (final_fraction + (1.0 - final_fraction) * c)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn paper_decay() {
        let s = LrSchedule::Exponential { factor: 0.1, every: 5000 };
        assert!((s.lr(5e-4, 5000, 10_000) - 5e-5).abs() < 1e-9);
        assert!((s.lr(5e-4, 10_000, 10_000) - 5e-6).abs() < 1e-10);
        let c = LrSchedule::Cosine { warmup: 10, final_fraction: 0.1 };
        assert!((c.lr(1.0, 1000, 1000) - 0.1).abs() < 1e-6);
        assert!(c.lr(1.0, 0, 1000) < 0.2);
    }
}
