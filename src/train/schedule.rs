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
    /// `constant`, `cosine[:WARMUP[:FINAL_FRACTION]]` or `exponential[:FACTOR[:EVERY]]` (the
    /// command line's `--schedule`).
    pub fn parse(s: &str) -> crate::Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = |why: String| crate::Error::Config(format!("--schedule {s}: {why}"));
        let num = |i: usize, default: f64| -> crate::Result<f64> {
            parts.get(i).map_or(Ok(default), |p| {
                p.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| bad(format!("{p:?} is not a number ≥ 0")))
            })
        };
        let schedule = match parts[0] {
            "constant" if parts.len() == 1 => LrSchedule::Constant,
            "cosine" if parts.len() <= 3 => {
                LrSchedule::Cosine { warmup: num(1, 50.0)? as u64, final_fraction: num(2, 0.02)? as f32 }
            }
            "exponential" if parts.len() <= 3 => {
                LrSchedule::Exponential { factor: num(1, 0.1)? as f32, every: num(2, 5000.0)? as u64 }
            }
            _ => {
                return Err(bad(
                    "use constant, cosine[:WARMUP[:FINAL]] or exponential[:FACTOR[:EVERY]]".into()
                ))
            }
        };
        Ok(schedule)
    }

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
