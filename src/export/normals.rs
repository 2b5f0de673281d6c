//! Normals from the field itself: the analytic gradient of the network's output with respect to
//! its input point, through the MLP (a backward pass down to the encoded features) and through
//! the encoding (`Encoding::backward`: for Fourier features ∂γ/∂x = 2π·scale·B·[−sin, cos]; for
//! `none`, 2). The outward normal of an iso-surface whose inside is where the field is larger
//! (occupancy logits, intensities above a level) is −∇f / |∇f|.
//!
//! This runs on the host from the network's weights (read from any backend through
//! [`Backend::state`]), so a run trained on CUDA gets the same normals.

use crate::backend::Backend;
use crate::encoding::Encoding;
use crate::model::{LayerLayout, Mlp};
use crate::{Error, Result};
use glam::Vec3;
use rayon::prelude::*;

/// Where the vertex normals of an exported surface come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Normals {
    /// −∇f of the fitted field at each vertex (smooth at any resolution).
    #[default]
    Field,
    /// Area-weighted normals of the marching-cubes facets.
    Facets,
}

/// Points per block: each block runs its own small products on one thread.
const BLOCK: usize = 256;

/// A network and its encoding on the host, for values and input gradients.
pub struct FieldGradient {
    encoding: Encoding,
    mlp: Mlp,
    layers: Vec<LayerLayout>,
    /// The hash grid's tables (the tail of the parameters; empty for the fixed mappings).
    table: Vec<f32>,
}

impl FieldGradient {
    /// The field of `encoding` followed by `mlp` (one output, 3-D inputs).
    pub fn new(encoding: Encoding, mlp: Mlp) -> Result<Self> {
        if encoding.dim != 3 {
            return Err(Error::Config(format!(
                "field normals need a 3-D field; this network takes {}-D points",
                encoding.dim
            )));
        }
        if mlp.sizes.first() != Some(&encoding.n_features()) || mlp.sizes.last() != Some(&1) {
            return Err(Error::Config(format!(
                "field normals: the network {:?} does not take the encoding's {} features to one output",
                mlp.sizes,
                encoding.n_features()
            )));
        }
        let layer_params = Mlp::n_params(&mlp.sizes);
        if mlp.params.len() != layer_params + encoding.table_len() {
            return Err(Error::Config(
                "field normals: the network's parameters do not match its shape".into(),
            ));
        }
        let table = mlp.params[layer_params..].to_vec();
        let layers = mlp.layers();
        Ok(FieldGradient { encoding, mlp, layers, table })
    }

    /// The network a backend holds (read back from the device when it is not the host).
    pub fn from_backend(backend: &dyn Backend) -> Result<Self> {
        Self::new(backend.encoding().clone(), backend.state()?.mlp)
    }

    /// The field f and its gradient ∇f with respect to the unit-box point, at each point.
    pub fn eval(&self, points: &[[f32; 3]]) -> (Vec<f32>, Vec<Vec3>) {
        let mut values = vec![0.0f32; points.len()];
        let mut grads = vec![Vec3::ZERO; points.len()];
        values
            .par_chunks_mut(BLOCK)
            .zip(grads.par_chunks_mut(BLOCK))
            .zip(points.par_chunks(BLOCK))
            .for_each(|((v, g), p)| self.eval_block(p, v, g));
        (values, grads)
    }

    /// A hash grid (trilinear in its cells, no analytic input gradient here): f at the points,
    /// and ∇f by central differences over a quarter of the finest cell.
    fn eval_block_differences(&self, points: &[[f32; 3]], values: &mut [f32], grads: &mut [Vec3]) {
        let finest = self.encoding.hash.as_ref().map_or(256, |h| h.spec.finest_resolution.max(1));
        let h = 0.25 / finest as f32;
        values.copy_from_slice(&self.values(points));
        for axis in 0..3 {
            let shifted = |sign: f32| -> Vec<[f32; 3]> {
                points
                    .iter()
                    .map(|p| {
                        let mut q = *p;
                        q[axis] += sign * h;
                        q
                    })
                    .collect()
            };
            let (up, down) = (self.values(&shifted(1.0)), self.values(&shifted(-1.0)));
            for ((g, u), d) in grads.iter_mut().zip(&up).zip(&down) {
                g[axis] = (u - d) / (2.0 * h);
            }
        }
    }

    /// The field at the points (forward only).
    fn values(&self, points: &[[f32; 3]]) -> Vec<f32> {
        let mut features = vec![0.0f32; points.len() * self.encoding.n_features()];
        self.encoding.encode_with(points.as_flattened(), &self.table, &mut features);
        self.forward(&features, points.len()).pop().unwrap_or_default()
    }

    /// Each layer's output for `n` points of encoded `features` (post-ReLU for hidden layers;
    /// the last is f).
    fn forward(&self, features: &[f32], n: usize) -> Vec<Vec<f32>> {
        let mut acts: Vec<Vec<f32>> = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            let input: &[f32] = if l == 0 { features } else { &acts[l - 1] };
            let w = &self.mlp.params[layer.weight..layer.bias];
            let b = &self.mlp.params[layer.bias..layer.bias + layer.n_out];
            let mut out = vec![0.0f32; n * layer.n_out];
            // Z (n×out) = A (n×in) · Wᵀ (in×out)
            matmul(n, layer.n_out, layer.n_in, &mut out, (input, layer.n_in, 1), (w, 1, layer.n_in));
            let relu = l + 1 < self.layers.len();
            for row in out.chunks_exact_mut(layer.n_out) {
                for (z, bias) in row.iter_mut().zip(b) {
                    let v = *z + bias;
                    *z = if relu { v.max(0.0) } else { v };
                }
            }
            acts.push(out);
        }
        acts
    }

    fn eval_block(&self, points: &[[f32; 3]], values: &mut [f32], grads: &mut [Vec3]) {
        if self.encoding.hash.is_some() {
            return self.eval_block_differences(points, values, grads);
        }
        let n = points.len();
        let flat = points.as_flattened();
        let mut features = vec![0.0f32; n * self.encoding.n_features()];
        self.encoding.encode(flat, &mut features);
        // forward, keeping each layer's output for the backward pass
        let acts = self.forward(&features, n);
        values.copy_from_slice(&acts[self.layers.len() - 1]);
        // backward from ∂f/∂f = 1 down to the features
        let mut delta = vec![1.0f32; n];
        for l in (0..self.layers.len()).rev() {
            let layer = self.layers[l];
            let w = &self.mlp.params[layer.weight..layer.bias];
            let mut next = vec![0.0f32; n * layer.n_in];
            // dA (n×in) = dZ (n×out) · W (out×in)
            matmul(n, layer.n_in, layer.n_out, &mut next, (&delta, layer.n_out, 1), (w, layer.n_in, 1));
            if l > 0 {
                for (g, a) in next.iter_mut().zip(&acts[l - 1]) {
                    if *a <= 0.0 {
                        *g = 0.0;
                    }
                }
            }
            delta = next;
        }
        let mut d_points = vec![0.0f32; n * 3];
        self.encoding.backward(flat, &delta, &mut d_points);
        for (g, d) in grads.iter_mut().zip(d_points.chunks_exact(3)) {
            *g = Vec3::new(d[0], d[1], d[2]);
        }
    }
}

/// Outward unit normals −g/|g| from field gradients `grads` (already in the mesh's frame), with
/// `fallback[i]` (a facet normal) where a gradient is zero or not finite. Returns the normals and
/// how many fell back.
pub fn outward_normals(grads: &[Vec3], fallback: &[Vec3]) -> (Vec<Vec3>, usize) {
    let mut fell_back = 0;
    let normals = grads
        .iter()
        .zip(fallback)
        .map(|(g, f)| match (-*g).try_normalize() {
            Some(n) => n,
            None => {
                fell_back += 1;
                *f
            }
        })
        .collect();
    (normals, fell_back)
}

/// C (m×n) = A (m×k) · B (k×n), A and B given as (data, row stride, column stride). Bounds are
/// checked here so the unsafe call cannot read or write outside the slices.
fn matmul(m: usize, n: usize, k: usize, c: &mut [f32], a: (&[f32], usize, usize), b: (&[f32], usize, usize)) {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(m > 0 && n > 0 && k > 0, "matmul with an empty dimension");
    assert!(c.len() >= m * n, "matmul: C too small");
    assert!(last(m, k, a.1, a.2) < a.0.len(), "matmul: A too small");
    assert!(last(k, n, b.1, b.2) < b.0.len(), "matmul: B too small");
    // SAFETY: every index the product touches was checked against the slice lengths above, and
    // C is borrowed mutably, so it cannot alias A or B.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.0.as_ptr(),
            a.2 as isize,
            a.1 as isize,
            b.0.as_ptr(),
            b.2 as isize,
            b.1 as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::EncodingConfig;
    use crate::model::ModelConfig;
    use crate::sample::CounterRng;

    fn network(cfg: EncodingConfig, seed: u64) -> FieldGradient {
        let rng = CounterRng::new(seed, 1);
        let e = Encoding::build(&cfg, 3, &rng);
        let sizes = Mlp::sizes_for(e.n_features(), &ModelConfig { depth: 4, width: 24 }, 1);
        let mut mlp = Mlp::init(sizes, &rng);
        for l in mlp.layers() {
            for i in 0..l.n_out {
                mlp.params[l.bias + i] = 0.1 * rng.normal(900_000 + (l.bias + i) as u64);
            }
        }
        FieldGradient::new(e, mlp).unwrap()
    }

    /// f64 forward of the same network, for central differences.
    fn value_f64(f: &FieldGradient, p: [f64; 3]) -> f64 {
        let e = &f.encoding;
        let mut a: Vec<f64> = if e.identity {
            p.iter().map(|x| 2.0 * x - 1.0).collect()
        } else {
            let m = e.frequencies();
            let t: Vec<f64> =
                (0..m).map(|k| (0..3).map(|d| e.b[k * 3 + d] as f64 * p[d]).sum::<f64>()).collect();
            let s = e.scale as f64;
            let tau = std::f64::consts::TAU;
            t.iter().map(|t| s * (tau * t).cos()).chain(t.iter().map(|t| s * (tau * t).sin())).collect()
        };
        for (l, layer) in f.layers.iter().enumerate() {
            a = (0..layer.n_out)
                .map(|o| {
                    let z = f.mlp.params[layer.bias + o] as f64
                        + (0..layer.n_in)
                            .map(|i| f.mlp.params[layer.weight + o * layer.n_in + i] as f64 * a[i])
                            .sum::<f64>();
                    if l + 1 < f.layers.len() {
                        z.max(0.0)
                    } else {
                        z
                    }
                })
                .collect();
        }
        a[0]
    }

    /// ∇f against central differences of an f64 evaluation, for every encoding.
    #[test]
    fn gradient_matches_finite_differences() {
        let configs = [
            EncodingConfig::None,
            EncodingConfig::Basic { normalize: false },
            EncodingConfig::Positional { sigma: 3.0, features: 6, normalize: true },
            EncodingConfig::Gaussian { sigma: 3.0, features: 16, normalize: false },
        ];
        let rng = CounterRng::new(77, 3);
        for (c, cfg) in configs.iter().enumerate() {
            let f = network(*cfg, c as u64);
            let pts: Vec<[f32; 3]> =
                (0..300).map(|i| std::array::from_fn(|d| rng.uniform((3 * i + d) as u64))).collect();
            let (values, grads) = f.eval(&pts);
            let mut checked = 0;
            for (i, p) in pts.iter().enumerate() {
                let p64 = p.map(|x| x as f64);
                assert!((values[i] as f64 - value_f64(&f, p64)).abs() < 1e-4, "{}: value", cfg.name());
                let h = 1e-5;
                let fd: [f64; 3] = std::array::from_fn(|d| {
                    let (mut a, mut b) = (p64, p64);
                    a[d] += h;
                    b[d] -= h;
                    (value_f64(&f, a) - value_f64(&f, b)) / (2.0 * h)
                });
                // a ReLU kink between the two probes makes the difference meaningless: skip those
                let kink = (0..3).any(|d| {
                    let (mut a, mut b) = (p64, p64);
                    a[d] += 2.0 * h;
                    b[d] -= 2.0 * h;
                    let fd2 = (value_f64(&f, a) - value_f64(&f, b)) / (4.0 * h);
                    (fd2 - fd[d]).abs() > 1e-3 * fd[d].abs().max(1e-2)
                });
                if kink {
                    continue;
                }
                let g = grads[i].to_array();
                let scale = fd.iter().map(|x| x.abs()).fold(1e-3, f64::max);
                for d in 0..3 {
                    assert!(
                        (g[d] as f64 - fd[d]).abs() < 2e-3 * scale,
                        "{}: point {i} axis {d}: analytic {} fd {}",
                        cfg.name(),
                        g[d],
                        fd[d]
                    );
                }
                checked += 1;
            }
            assert!(checked > 200, "{}: only {checked} points checked", cfg.name());
        }
    }

    #[test]
    fn zero_gradients_fall_back() {
        let (n, k) = outward_normals(&[Vec3::new(0.0, 0.0, -2.0), Vec3::ZERO], &[Vec3::X, Vec3::Y]);
        assert_eq!(n, vec![Vec3::Z, Vec3::Y]);
        assert_eq!(k, 1);
    }

    #[test]
    fn refuses_a_network_that_does_not_match() {
        let rng = CounterRng::new(0, 0);
        let e = Encoding::build(&EncodingConfig::Basic { normalize: false }, 3, &rng);
        let mlp = Mlp::init(vec![5, 4, 1], &rng);
        assert!(FieldGradient::new(e, mlp).is_err());
        let e2 = Encoding::build(&EncodingConfig::None, 2, &rng);
        let mlp2 = Mlp::init(vec![2, 4, 1], &rng);
        assert!(FieldGradient::new(e2, mlp2).is_err());
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;
    use crate::encoding::EncodingConfig;
    use crate::model::ModelConfig;
    use crate::sample::CounterRng;

    /// A hash-grid network (its tables at the end of the parameters) is accepted, and its ∇f by
    /// differences matches a coarser central difference of its values (the field is smooth at
    /// that scale only where a cell holds the points: compared on the direction).
    #[test]
    fn hash_grid_fields_get_normals_by_differences() {
        let cfg = EncodingConfig::HashGrid {
            levels: 4,
            log2_table: 12,
            features_per_level: 2,
            base_resolution: 4,
            finest_resolution: 32,
            fourier_features: 0,
            fourier_sigma: 0.0,
        };
        let rng = CounterRng::new(5, 1);
        let e = Encoding::build(&cfg, 3, &rng);
        let sizes = Mlp::sizes_for(e.n_features(), &ModelConfig { depth: 3, width: 16 }, 1);
        let mut mlp = Mlp::init_field(sizes, &e, &rng);
        // tables far from their tiny initial values, so the field varies
        let start = Mlp::n_params(&mlp.sizes);
        for (i, p) in mlp.params[start..].iter_mut().enumerate() {
            *p = rng.normal(7_000_000 + i as u64);
        }
        let f = FieldGradient::new(e, mlp).unwrap();
        let pts: Vec<[f32; 3]> =
            (0..64).map(|i| std::array::from_fn(|d| 0.2 + 0.6 * rng.uniform((3 * i + d) as u64))).collect();
        let (v, g) = f.eval(&pts);
        assert_eq!(v, f.values(&pts));
        let mut agree = 0;
        for (p, g) in pts.iter().zip(&g) {
            let h = 1e-3f32;
            let fd = Vec3::from_array(std::array::from_fn(|a| {
                let (mut u, mut d) = (*p, *p);
                u[a] += h;
                d[a] -= h;
                (f.values(&[u])[0] - f.values(&[d])[0]) / (2.0 * h)
            }));
            if g.length() > 0.0 && g.normalize().dot(fd.normalize_or_zero()) > 0.5 {
                agree += 1;
            }
        }
        assert!(agree >= 52, "only {agree} of 64 hash-grid gradients agree with a finer difference");
    }
}
