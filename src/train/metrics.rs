//! Metrics: IoU for occupancy.

/// Σ f(i) for i in 0..n, in parallel but always added in the same order (fixed blocks, partial
/// sums in block order), so the result does not depend on the thread count or on scheduling —
/// rayon's own `sum` does not promise that, and resumed runs must match uninterrupted ones exactly.
pub fn ordered_sum(n: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    use rayon::prelude::*;
    const BLOCK: usize = 4096;
    let partial: Vec<f64> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| (b * BLOCK..((b + 1) * BLOCK).min(n)).map(&f).sum())
        .collect();
    partial.iter().sum()
}

/// Intersection over union of `logit > 0` against `label > 0.5`; `None` when the union is empty
/// (no point inside either set: nothing to measure, never a perfect score).
pub fn iou_from_logits(logits: &[f32], labels: &[f32]) -> Option<f64> {
    let (mut inter, mut union) = (0u64, 0u64);
    for (&z, &y) in logits.iter().zip(labels) {
        let (p, g) = (z > 0.0, y > 0.5);
        inter += (p && g) as u64;
        union += (p || g) as u64;
    }
    (union > 0).then(|| inter as f64 / union as f64)
}

/// Fraction of points where `logit > 0` agrees with `label > 0.5`.
pub fn accuracy_from_logits(logits: &[f32], labels: &[f32]) -> f64 {
    let ok = logits.iter().zip(labels).filter(|(&z, &y)| (z > 0.0) == (y > 0.5)).count();
    ok as f64 / logits.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ordered_sum_is_reproducible() {
        let f = |i: usize| ((i as f64) * 0.37).sin() * 1e-3 + 1e8 * (i.is_multiple_of(7) as u8 as f64);
        let a = ordered_sum(1_000_003, f);
        let b = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| ordered_sum(1_000_003, f));
        assert_eq!(a, b);
    }

    #[test]
    fn iou_counts() {
        let logits = [1.0, 1.0, -1.0, -1.0, 2.0];
        let labels = [1.0, 0.0, 1.0, 0.0, 1.0];
        assert_eq!(iou_from_logits(&logits, &labels), Some(2.0 / 4.0));
        assert_eq!(iou_from_logits(&[-1.0, -2.0], &[0.0, 0.0]), None, "empty union");
        assert_eq!(iou_from_logits(&[1.0, -2.0], &[0.0, 0.0]), Some(0.0));
        assert!((accuracy_from_logits(&logits, &labels) - 3.0 / 5.0).abs() < 1e-12);
    }
}
