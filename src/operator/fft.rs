//! The masked 3-D Fourier operator of the MRI job: `A f = M ⊙ F f` and its adjoint
//! `Aᴴ y = Fᴴ (M ⊙ y)`.
//!
//! `F` is the unnormalised DFT, `(F x)_k = Σ_n x_n e^(−2πi k·n / N)` per axis, as `numpy.fft.fftn`
//! computes it, so `Fᴴ F = N·I` with N the number of voxels. Volumes are x fastest,
//! `data[x + nx·(y + ny·z)]`. k-space here is *unshifted* (DC at index 0), as the FFT leaves it;
//! [`fftshift`] / [`ifftshift`] convert to and from the centred layout files and masks use.
//!
//! The transforms run in f64 through `rustfft`: one axis at a time, lines spread over rayon's
//! threads. Lines along y and z are gathered into contiguous buffers first (a transpose), so each
//! thread runs batched 1-D FFTs over contiguous memory.
//!
//! The MRI loss of the paper is `L = ½·mean_k |M(F f) − M y|²`, a mean over all N coefficients;
//! [`MaskedFft::loss_and_gradient`] returns it with `∂L/∂f = Re(Fᴴ M (M F f − M y)) / N`.

use std::sync::Arc;

use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// A complex number in f64.
pub type C64 = Complex<f64>;

/// Lines per rayon task.
const LINES_PER_TASK: usize = 64;

/// Forward and inverse 1-D plans for each of the three axes.
pub struct Fft3 {
    dims: [usize; 3],
    forward: [Arc<dyn Fft<f64>>; 3],
    inverse: [Arc<dyn Fft<f64>>; 3],
}

impl Fft3 {
    pub fn new(dims: [usize; 3]) -> Self {
        let mut planner = FftPlanner::new();
        let forward = dims.map(|n| planner.plan_fft_forward(n.max(1)));
        let inverse = dims.map(|n| planner.plan_fft_inverse(n.max(1)));
        Fft3 { dims, forward, inverse }
    }

    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// In place: `data ← F data` (unnormalised).
    pub fn forward(&self, data: &mut [C64]) {
        for axis in 0..3 {
            self.along(axis, &self.forward[axis], data);
        }
    }

    /// In place: `data ← Fᴴ data` (unnormalised, so `Fᴴ F = N·I`).
    pub fn adjoint(&self, data: &mut [C64]) {
        for axis in 0..3 {
            self.along(axis, &self.inverse[axis], data);
        }
    }

    /// In place: `data ← F⁻¹ data = Fᴴ data / N`.
    pub fn inverse(&self, data: &mut [C64]) {
        self.adjoint(data);
        let inv_n = 1.0 / self.len() as f64;
        data.par_iter_mut().for_each(|v| *v *= inv_n);
    }

    fn along(&self, axis: usize, fft: &Arc<dyn Fft<f64>>, data: &mut [C64]) {
        let [nx, ny, nz] = self.dims;
        assert_eq!(data.len(), nx * ny * nz, "volume of the wrong size for this FFT");
        let n = self.dims[axis];
        if n <= 1 {
            return;
        }
        let batched = |buf: &mut [C64]| {
            buf.par_chunks_mut(n * LINES_PER_TASK).for_each_init(
                || vec![Complex::new(0.0, 0.0); fft.get_inplace_scratch_len()],
                |scratch, chunk| fft.process_with_scratch(chunk, scratch),
            );
        };
        match axis {
            0 => batched(data),
            1 => {
                // buf[(x + nx·z)·ny + y] = data[x + nx·(y + ny·z)]
                let mut buf = vec![Complex::new(0.0, 0.0); data.len()];
                buf.par_chunks_mut(ny).enumerate().for_each(|(line, out)| {
                    let (x, z) = (line % nx, line / nx);
                    for (y, o) in out.iter_mut().enumerate() {
                        *o = data[x + nx * (y + ny * z)];
                    }
                });
                batched(&mut buf);
                data.par_chunks_mut(nx).enumerate().for_each(|(row, out)| {
                    let (y, z) = (row % ny, row / ny);
                    for (x, o) in out.iter_mut().enumerate() {
                        *o = buf[(x + nx * z) * ny + y];
                    }
                });
            }
            _ => {
                // buf[p·nz + z] = data[p + nxy·z], p = x + nx·y
                let nxy = nx * ny;
                let mut buf = vec![Complex::new(0.0, 0.0); data.len()];
                buf.par_chunks_mut(nz).enumerate().for_each(|(p, out)| {
                    for (z, o) in out.iter_mut().enumerate() {
                        *o = data[p + nxy * z];
                    }
                });
                batched(&mut buf);
                data.par_chunks_mut(nxy).enumerate().for_each(|(z, out)| {
                    for (p, o) in out.iter_mut().enumerate() {
                        *o = buf[p * nz + z];
                    }
                });
            }
        }
    }
}

/// `A = M ⊙ F` with a binary sampling mask M in unshifted layout.
pub struct MaskedFft {
    pub fft: Fft3,
    /// `true` where a coefficient is measured (unshifted: DC at index 0).
    pub mask: Vec<bool>,
}

impl MaskedFft {
    /// `mask` is in unshifted layout, x fastest.
    pub fn new(dims: [usize; 3], mask: Vec<bool>) -> crate::Result<Self> {
        let n: usize = dims.iter().product();
        if mask.len() != n {
            return Err(crate::Error::Input(format!("a mask of {} entries for a {dims:?} grid", mask.len())));
        }
        Ok(MaskedFft { fft: Fft3::new(dims), mask })
    }

    pub fn dims(&self) -> [usize; 3] {
        self.fft.dims()
    }

    /// Fraction of k-space the mask measures.
    pub fn sampled_fraction(&self) -> f64 {
        self.mask.iter().filter(|&&m| m).count() as f64 / self.mask.len().max(1) as f64
    }

    /// `y = M ⊙ F x`.
    pub fn apply(&self, x: &[C64]) -> Vec<C64> {
        let mut y = x.to_vec();
        self.fft.forward(&mut y);
        self.apply_mask(&mut y);
        y
    }

    /// `x = Fᴴ (M ⊙ y)`.
    pub fn adjoint(&self, y: &[C64]) -> Vec<C64> {
        let mut x = y.to_vec();
        self.apply_mask(&mut x);
        self.fft.adjoint(&mut x);
        x
    }

    /// `M ⊙ F f` for a real volume.
    pub fn apply_real(&self, f: &[f32]) -> Vec<C64> {
        let x: Vec<C64> = f.par_iter().map(|&v| Complex::new(v as f64, 0.0)).collect();
        self.apply(&x)
    }

    pub fn apply_mask(&self, y: &mut [C64]) {
        y.par_iter_mut().zip(self.mask.par_iter()).for_each(|(v, &m)| {
            if !m {
                *v = Complex::new(0.0, 0.0);
            }
        });
    }

    /// The zero-filled reconstruction `Re(F⁻¹ (M ⊙ y))`, the classical baseline.
    pub fn zero_filled(&self, y: &[C64]) -> Vec<f32> {
        let mut x = y.to_vec();
        self.apply_mask(&mut x);
        self.fft.inverse(&mut x);
        x.iter().map(|v| v.re as f32).collect()
    }

    /// `L = ½·mean_k |M F f − M y|²` over all N coefficients; writes `grad[n] = ∂L/∂f_n`.
    pub fn loss_and_gradient(&self, f: &[f32], y: &[C64], grad: &mut [f32]) -> f64 {
        let n = f.len() as f64;
        let mut r = self.apply_real(f);
        r.par_iter_mut().zip(y.par_iter()).zip(self.mask.par_iter()).for_each(|((r, &y), &m)| {
            *r = if m { *r - y } else { Complex::new(0.0, 0.0) };
        });
        let loss = 0.5 * crate::train::metrics::ordered_sum(r.len(), |i| r[i].norm_sqr()) / n;
        self.fft.adjoint(&mut r); // mask already applied: Fᴴ M r
        grad.par_iter_mut().zip(r.par_iter()).for_each(|(g, v)| *g = (v.re / n) as f32);
        loss
    }
}

/// Moves index 0 to the centre (`numpy.fft.fftshift`): `out[(i + n/2) mod n] = in[i]` per axis.
pub fn fftshift<T: Copy>(data: &[T], dims: [usize; 3]) -> Vec<T> {
    shift(data, dims, |n| n / 2)
}

/// The inverse of [`fftshift`] (`numpy.fft.ifftshift`).
pub fn ifftshift<T: Copy>(data: &[T], dims: [usize; 3]) -> Vec<T> {
    shift(data, dims, |n| n - n / 2)
}

fn shift<T: Copy>(data: &[T], dims: [usize; 3], by: impl Fn(usize) -> usize) -> Vec<T> {
    let [nx, ny, nz] = dims;
    let s = [by(nx), by(ny), by(nz)];
    let mut out = data.to_vec();
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let (tx, ty, tz) = ((x + s[0]) % nx, (y + s[1]) % ny, (z + s[2]) % nz);
                out[tx + nx * (ty + ny * tz)] = data[x + nx * (y + ny * z)];
            }
        }
    }
    out
}

/// `fit mri`'s loss on the host: the masked FFT of σ(z) against the measured k-space, with
/// rustfft on the host's threads.
pub struct KspaceLoss<'a> {
    pub op: &'a MaskedFft,
    /// Measured coefficients, unshifted, zero outside the mask.
    pub measured: &'a [C64],
    /// σ(z).
    p: Vec<f32>,
}

impl<'a> KspaceLoss<'a> {
    pub fn new(op: &'a MaskedFft, measured: &'a [C64]) -> Self {
        KspaceLoss { op, measured, p: vec![] }
    }
}

impl super::GridLoss for KspaceLoss<'_> {
    fn describe(&self) -> String {
        format!("rustfft ({} threads)", rayon::current_num_threads())
    }

    fn sigmoid_loss_and_gradient(&mut self, z: &[f32], dz: &mut [f32]) -> crate::Result<f64> {
        use crate::train::loss::{sigmoid, through_sigmoid};
        let p = &mut self.p;
        p.resize(z.len(), 0.0);
        p.par_iter_mut().zip(z.par_iter()).for_each(|(p, &z)| *p = sigmoid(z));
        let loss = self.op.loss_and_gradient(p, self.measured, dz);
        dz.par_iter_mut().zip(p.par_iter()).for_each(|(g, &p)| *g = through_sigmoid(*g, p));
        Ok(loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A direct 3-D DFT, O(N²), for small grids.
    fn naive_dft(x: &[C64], dims: [usize; 3]) -> Vec<C64> {
        let [nx, ny, nz] = dims;
        let mut out = vec![Complex::new(0.0, 0.0); x.len()];
        for kz in 0..nz {
            for ky in 0..ny {
                for kx in 0..nx {
                    let mut s = Complex::new(0.0, 0.0);
                    for z in 0..nz {
                        for y in 0..ny {
                            for xx in 0..nx {
                                let phase = -std::f64::consts::TAU
                                    * ((kx * xx) as f64 / nx as f64
                                        + (ky * y) as f64 / ny as f64
                                        + (kz * z) as f64 / nz as f64);
                                s += x[xx + nx * (y + ny * z)] * Complex::from_polar(1.0, phase);
                            }
                        }
                    }
                    out[kx + nx * (ky + ny * kz)] = s;
                }
            }
        }
        out
    }

    #[test]
    fn matches_a_direct_dft_on_an_odd_grid() {
        let dims = [5, 3, 4];
        let x: Vec<C64> =
            (0..60).map(|i| Complex::new((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos())).collect();
        let mut y = x.clone();
        Fft3::new(dims).forward(&mut y);
        let want = naive_dft(&x, dims);
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).norm() < 1e-9, "{a} vs {b}");
        }
        Fft3::new(dims).inverse(&mut y);
        for (a, b) in y.iter().zip(&x) {
            assert!((a - b).norm() < 1e-12);
        }
    }

    #[test]
    fn shifts_invert_each_other() {
        let dims = [5, 4, 3];
        let v: Vec<usize> = (0..60).collect();
        assert_eq!(ifftshift(&fftshift(&v, dims), dims), v);
        // DC (index 0) lands at n/2 per axis.
        let s = fftshift(&v, dims);
        assert_eq!(s[2 + 5 * (2 + 4)], 0);
    }
}
