//! PSNR and SSIM for CT reconstructions.
//!
//! NAF's convention: both volumes are scaled by the truth's range to [0, 1] (a no-op for truth
//! already in [0, 1]), the prediction is clipped to [0, 1], and PSNR = 10·log10(1 / MSE) over
//! every voxel. SSIM is the Wang et al. index with an 11-tap Gaussian window (σ = 1.5),
//! K1 = 0.01, K2 = 0.03, data range 1, over the valid ("same") region of each z slice,
//! averaged over slices.

/// Truth scaled to [0, 1] by its own min/max (when outside [0, 1]) and the prediction scaled
/// the same way and clipped to [0, 1].
pub fn normalised(pred: &[f32], truth: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (lo, hi) = truth.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo >= 0.0 && hi <= 1.0 { (0.0, 1.0) } else { (lo, hi) };
    let span = (hi - lo).max(1e-12);
    let t = truth.iter().map(|&v| (v - lo) / span).collect();
    let p = pred.iter().map(|&v| ((v - lo) / span).clamp(0.0, 1.0)).collect();
    (p, t)
}

/// PSNR in dB after [`normalised`].
pub fn psnr(pred: &[f32], truth: &[f32]) -> f64 {
    let (p, t) = normalised(pred, truth);
    let mse = p.iter().zip(&t).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / p.len().max(1) as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

/// Mean SSIM over the z slices of an nx×ny×nz volume (x fastest), after [`normalised`].
pub fn ssim(pred: &[f32], truth: &[f32], dims: [usize; 3]) -> f64 {
    let (p, t) = normalised(pred, truth);
    let [nx, ny, nz] = dims;
    let s = nx * ny;
    (0..nz).map(|z| ssim_2d(&p[z * s..(z + 1) * s], &t[z * s..(z + 1) * s], nx, ny)).sum::<f64>()
        / nz.max(1) as f64
}

/// SSIM of two nx×ny images in [0, 1].
pub fn ssim_2d(a: &[f32], b: &[f32], nx: usize, ny: usize) -> f64 {
    const R: usize = 5;
    let w: Vec<f64> =
        (0..=2 * R).map(|i| (-((i as f64 - R as f64).powi(2)) / (2.0 * 1.5 * 1.5)).exp()).collect();
    let sum: f64 = w.iter().sum();
    let w: Vec<f64> = w.iter().map(|x| x / sum).collect();
    if nx <= 2 * R || ny <= 2 * R {
        return f64::NAN;
    }
    // separable Gaussian filter, "valid" region
    let blur = |img: &dyn Fn(usize) -> f64| -> Vec<f64> {
        let (ox, oy) = (nx - 2 * R, ny - 2 * R);
        let mut rows = vec![0.0; ox * ny];
        for y in 0..ny {
            for x in 0..ox {
                rows[y * ox + x] = (0..=2 * R).map(|k| w[k] * img(y * nx + x + k)).sum();
            }
        }
        let mut out = vec![0.0; ox * oy];
        for y in 0..oy {
            for x in 0..ox {
                out[y * ox + x] = (0..=2 * R).map(|k| w[k] * rows[(y + k) * ox + x]).sum();
            }
        }
        out
    };
    let ma = blur(&|i| a[i] as f64);
    let mb = blur(&|i| b[i] as f64);
    let aa = blur(&|i| (a[i] as f64).powi(2));
    let bb = blur(&|i| (b[i] as f64).powi(2));
    let ab = blur(&|i| a[i] as f64 * b[i] as f64);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let n = ma.len();
    (0..n)
        .map(|i| {
            let (mx, my) = (ma[i], mb[i]);
            let (vx, vy, cxy) = (aa[i] - mx * mx, bb[i] - my * my, ab[i] - mx * my);
            ((2.0 * mx * my + c1) * (2.0 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        })
        .sum::<f64>()
        / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let t: Vec<f32> = (0..32 * 32).map(|i| (i % 32) as f32 / 31.0).collect();
        assert!(psnr(&t, &t) > 190.0);
        let p: Vec<f32> = t.iter().map(|v| v + 0.1).collect();
        // clipped at 1: errors are 0.1 except where t > 0.9
        let mse = t.iter().map(|&v| ((v + 0.1).min(1.0) - v).powi(2) as f64).sum::<f64>() / t.len() as f64;
        assert!((psnr(&p, &t) - 10.0 * (1.0 / mse).log10()).abs() < 1e-4);
        assert!((ssim(&t, &t, [32, 32, 1]) - 1.0).abs() < 1e-9);
        let s = ssim(&p, &t, [32, 32, 1]);
        assert!(s < 1.0 && s > 0.5, "{s}");
    }
}
