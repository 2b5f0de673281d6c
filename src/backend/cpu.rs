//! The CPU backend: f32, rayon threads, matrix products through the `gemm` crate.
//!
//! Activations are row-major (batch × width). A dense layer is `Z = A·Wᵀ + b` with W stored
//! row-major out×in; the backward pass is `dW = dZᵀ·A`, `db = Σ_rows dZ`, `dA = dZ·W`.
//! Only post-ReLU activations are kept: relu(z) > 0 exactly when z > 0, so they double as the
//! ReLU mask. Every reduction runs over fixed-size row blocks in a fixed order, so results do
//! not depend on the number of threads.

use super::{check_output_grad, check_predict, count_points, Backend, Pass, Passes, TrainState};
use crate::encoding::Encoding;
use crate::model::{LayerLayout, Mlp};
use crate::train::{Adam, AdamState};
use rayon::prelude::*;

/// Rows per block for elementwise work and bias-gradient partial sums.
const ROW_BLOCK: usize = 1024;
/// Points per chunk in `predict`, to bound memory.
const PREDICT_CHUNK: usize = 1 << 15;

pub struct CpuBackend {
    encoding: Encoding,
    mlp: Mlp,
    layers: Vec<LayerLayout>,
    adam: Adam,
    adam_state: AdamState,
    grads: Vec<f32>,
    parallelism: gemm::Parallelism,
    threads: usize,
    /// Encoded inputs of the last forward (n × features).
    features: Vec<f32>,
    /// The points of the last forward, when the encoding has trainable tables (their backward
    /// needs them).
    points: Vec<f32>,
    /// ∂L/∂features, for the tables' backward.
    d_features: Vec<f32>,
    /// Outputs of every layer of the last forward (post-ReLU for hidden layers).
    activations: Vec<Vec<f32>>,
    /// Two scratch buffers for ∂L/∂Z during backward.
    delta: [Vec<f32>; 2],
    batch: usize,
    /// The forward whose activations are kept.
    passes: Passes,
    /// Scratch for `predict`, kept between calls so exports do not page-fault on every slab.
    predict_scratch: (Vec<f32>, Vec<Vec<f32>>),
}

impl CpuBackend {
    /// `threads` = 0 uses rayon's global pool size.
    pub fn new(encoding: Encoding, mlp: Mlp, adam: Adam, threads: usize) -> crate::Result<Self> {
        if mlp.sizes[0] != encoding.n_features() {
            return Err(crate::Error::Config(format!(
                "the MLP takes {} inputs but the encoding makes {} features",
                mlp.sizes[0],
                encoding.n_features()
            )));
        }
        if mlp.params.len() != mlp.layer_params() + encoding.table_len() {
            return Err(crate::Error::Config(format!(
                "the network has {} parameters but its layers and the encoding's tables take {}",
                mlp.params.len(),
                mlp.layer_params() + encoding.table_len()
            )));
        }
        let threads = if threads == 0 { rayon::current_num_threads() } else { threads };
        let parallelism =
            if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        let n = mlp.params.len();
        Ok(CpuBackend {
            layers: mlp.layers(),
            encoding,
            mlp,
            adam,
            adam_state: AdamState::zeros(n),
            grads: vec![0.0; n],
            parallelism,
            threads,
            features: vec![],
            points: vec![],
            d_features: vec![],
            activations: vec![],
            delta: [vec![], vec![]],
            batch: 0,
            passes: Passes::default(),
            predict_scratch: (vec![], vec![]),
        })
    }

    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// The encoding's trainable tables (empty for the fixed mappings).
    fn table(&self) -> &[f32] {
        &self.mlp.params[self.mlp.layer_params()..]
    }

    /// Forward through the MLP from already-encoded features into `acts` (one buffer per layer).
    fn mlp_forward(&self, features: &[f32], n: usize, acts: &mut Vec<Vec<f32>>) {
        acts.resize_with(self.layers.len(), Vec::new);
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, rest) = acts.split_at_mut(l);
            let input: &[f32] = if l == 0 { features } else { &before[l - 1] };
            let out = &mut rest[0];
            out.resize(n * layer.n_out, 0.0);
            let w = &self.mlp.params[layer.weight..layer.bias];
            let b = &self.mlp.params[layer.bias..layer.bias + layer.n_out];
            // Z (n×out) = A (n×in) · Wᵀ (in×out)
            matmul(
                self.parallelism,
                n,
                layer.n_out,
                layer.n_in,
                Mat { data: out, rs: layer.n_out, cs: 1 },
                false,
                MatRef { data: input, rs: layer.n_in, cs: 1 },
                MatRef { data: w, rs: 1, cs: layer.n_in },
            );
            let relu = l + 1 < self.layers.len();
            out.par_chunks_mut(ROW_BLOCK * layer.n_out).for_each(|block| {
                for row in block.chunks_exact_mut(layer.n_out) {
                    for (z, bias) in row.iter_mut().zip(b) {
                        let v = *z + bias;
                        *z = if relu { v.max(0.0) } else { v };
                    }
                }
            });
        }
    }
}

/// A row-major or strided view for [`matmul`].
struct MatRef<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}
struct Mat<'a> {
    data: &'a mut [f32],
    rs: usize,
    cs: usize,
}

/// C (m×n) = A (m×k) · B (k×n), or C += A·B with `accumulate`. Bounds are checked here so the
/// unsafe call below cannot read or write outside the slices.
#[allow(clippy::too_many_arguments)]
fn matmul(
    par: gemm::Parallelism,
    m: usize,
    n: usize,
    k: usize,
    c: Mat,
    accumulate: bool,
    a: MatRef,
    b: MatRef,
) {
    let last =
        |rows: usize, cols: usize, rs: usize, cs: usize| (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs;
    assert!(m > 0 && n > 0 && k > 0, "matmul with an empty dimension");
    assert!(last(m, n, c.rs, c.cs) < c.data.len(), "matmul: C too small");
    assert!(last(m, k, a.rs, a.cs) < a.data.len(), "matmul: A too small");
    assert!(last(k, n, b.rs, b.cs) < b.data.len(), "matmul: B too small");
    // SAFETY: every index the product touches was checked against the slice lengths above, and
    // C is borrowed mutably, so it cannot alias A or B.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.data.as_mut_ptr(),
            c.cs as isize,
            c.rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

impl Backend for CpuBackend {
    fn describe(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn encoding(&self) -> &Encoding {
        &self.encoding
    }

    fn forward(&mut self, points: &[f32]) -> crate::Result<(Pass, &[f32])> {
        let n = count_points(points, self.encoding.dim, "forward")?;
        self.batch = n;
        let mut features = std::mem::take(&mut self.features);
        features.resize(n * self.encoding.n_features(), 0.0);
        self.encoding.encode_with(points, self.table(), &mut features);
        if self.encoding.hash.is_some() {
            self.points.clear();
            self.points.extend_from_slice(points);
        }
        let mut acts = std::mem::take(&mut self.activations);
        self.mlp_forward(&features, n, &mut acts);
        self.features = features;
        self.activations = acts;
        let pass = self.passes.start(n);
        Ok((pass, self.activations.last().map(|v| v.as_slice()).unwrap_or(&[])))
    }

    fn backward(&mut self, pass: Pass, d_output: &[f32]) -> crate::Result<()> {
        let pass = self.passes.check(pass)?;
        let n = pass.points();
        let n_layers = self.layers.len();
        check_output_grad(d_output.len(), n, self.layers[n_layers - 1].n_out)?;
        let [mut delta, mut next] = std::mem::take(&mut self.delta);
        delta.clear();
        delta.extend_from_slice(d_output);
        let mut grads = std::mem::take(&mut self.grads);
        for l in (0..n_layers).rev() {
            let layer = self.layers[l];
            let input: &[f32] = if l == 0 { &self.features } else { &self.activations[l - 1] };
            let (gw, gb) =
                grads[layer.weight..layer.bias + layer.n_out].split_at_mut(layer.n_in * layer.n_out);
            // dW (out×in) = dZᵀ (out×n) · A (n×in)
            matmul(
                self.parallelism,
                layer.n_out,
                layer.n_in,
                n,
                Mat { data: gw, rs: layer.n_in, cs: 1 },
                false,
                MatRef { data: &delta, rs: 1, cs: layer.n_out },
                MatRef { data: input, rs: layer.n_in, cs: 1 },
            );
            // db = column sums of dZ, in fixed blocks for thread-count independence
            let partial: Vec<Vec<f64>> = delta
                .par_chunks(ROW_BLOCK * layer.n_out)
                .map(|block| {
                    let mut s = vec![0.0f64; layer.n_out];
                    for row in block.chunks_exact(layer.n_out) {
                        for (acc, v) in s.iter_mut().zip(row) {
                            *acc += *v as f64;
                        }
                    }
                    s
                })
                .collect();
            for (j, g) in gb.iter_mut().enumerate() {
                *g = partial.iter().map(|p| p[j]).sum::<f64>() as f32;
            }
            if l == 0 {
                if let Some(hash) = &self.encoding.hash {
                    // ∂L/∂γ (n×in) = dZ · W, then the tables' gradient from the grid's columns
                    let w = &self.mlp.params[layer.weight..layer.bias];
                    self.d_features.resize(n * layer.n_in, 0.0);
                    matmul(
                        self.parallelism,
                        n,
                        layer.n_in,
                        layer.n_out,
                        Mat { data: &mut self.d_features, rs: layer.n_in, cs: 1 },
                        false,
                        MatRef { data: &delta, rs: layer.n_out, cs: 1 },
                        MatRef { data: w, rs: layer.n_in, cs: 1 },
                    );
                    let col = 2 * self.encoding.frequencies();
                    let off = self.mlp.layer_params();
                    hash.backward_table(&self.points, &self.d_features, layer.n_in, col, &mut grads[off..]);
                }
                break;
            }
            // dA (n×in) = dZ (n×out) · W (out×in), then the ReLU mask of the layer below
            let w = &self.mlp.params[layer.weight..layer.bias];
            next.resize(n * layer.n_in, 0.0);
            matmul(
                self.parallelism,
                n,
                layer.n_in,
                layer.n_out,
                Mat { data: &mut next, rs: layer.n_in, cs: 1 },
                false,
                MatRef { data: &delta, rs: layer.n_out, cs: 1 },
                MatRef { data: w, rs: layer.n_in, cs: 1 },
            );
            let below = &self.activations[l - 1];
            next.par_chunks_mut(ROW_BLOCK * layer.n_in)
                .zip(below.par_chunks(ROW_BLOCK * layer.n_in))
                .for_each(|(g, a)| {
                    for (gi, ai) in g.iter_mut().zip(a) {
                        if *ai <= 0.0 {
                            *gi = 0.0;
                        }
                    }
                });
            std::mem::swap(&mut delta, &mut next);
        }
        self.grads = grads;
        self.delta = [delta, next];
        Ok(())
    }

    fn backward_accumulate(&mut self, pass: Pass, d_output: &[f32]) -> crate::Result<()> {
        // `backward` checks its input before it writes any gradient
        let before = self.grads.clone();
        self.backward(pass, d_output)?;
        self.grads.iter_mut().zip(&before).for_each(|(g, b)| *g += b);
        Ok(())
    }

    fn gradients(&self) -> crate::Result<Vec<f32>> {
        Ok(self.grads.clone())
    }

    fn optimizer_step(&mut self, lr: f32) -> crate::Result<()> {
        self.adam.step(&mut self.mlp.params, &self.grads, &mut self.adam_state, lr);
        Ok(())
    }

    fn predict(&mut self, points: &[f32], out: &mut [f32]) -> crate::Result<()> {
        let d = self.encoding.dim;
        let n_out = *self.mlp.sizes.last().unwrap_or(&1);
        check_predict(points.len(), out.len(), d, n_out)?;
        let (mut features, mut acts) = std::mem::take(&mut self.predict_scratch);
        for (p, o) in points.chunks(PREDICT_CHUNK * d).zip(out.chunks_mut(PREDICT_CHUNK * n_out)) {
            let n = p.len() / d;
            features.resize(n * self.encoding.n_features(), 0.0);
            self.encoding.encode_with(p, self.table(), &mut features);
            self.mlp_forward(&features, n, &mut acts);
            o.copy_from_slice(&acts[self.layers.len() - 1]);
        }
        self.predict_scratch = (features, acts);
        Ok(())
    }

    fn state(&self) -> crate::Result<TrainState> {
        Ok(TrainState { mlp: self.mlp.clone(), adam: self.adam_state.clone() })
    }

    fn step(&self) -> u64 {
        self.adam_state.step
    }

    fn set_state(&mut self, state: TrainState) -> crate::Result<()> {
        if state.mlp.sizes != self.mlp.sizes
            || state.mlp.params.len() != self.mlp.params.len()
            || state.adam.m.len() != state.mlp.params.len()
        {
            return Err(crate::Error::Config(format!(
                "checkpoint network {:?} does not match the configured {:?}",
                state.mlp.sizes, self.mlp.sizes
            )));
        }
        self.mlp = state.mlp;
        self.adam_state = state.adam;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::EncodingConfig;
    use crate::model::ModelConfig;
    use crate::sample::CounterRng;
    use crate::train::Loss;

    /// Reference forward in f64 with plain loops, for checking the GEMM path.
    fn forward_f64(mlp: &Mlp, x: &[f64]) -> f64 {
        let mut a = x.to_vec();
        let layers = mlp.layers();
        for (l, layer) in layers.iter().enumerate() {
            let mut z = vec![0.0; layer.n_out];
            for (o, zo) in z.iter_mut().enumerate() {
                *zo = mlp.params[layer.bias + o] as f64
                    + (0..layer.n_in)
                        .map(|i| mlp.params[layer.weight + o * layer.n_in + i] as f64 * a[i])
                        .sum::<f64>();
                if l + 1 < layers.len() {
                    *zo = zo.max(0.0);
                }
            }
            a = z;
        }
        a[0]
    }

    fn setup(enc: EncodingConfig, depth: usize, width: usize) -> (CpuBackend, CounterRng) {
        let rng = CounterRng::new(42, 0);
        let e = Encoding::build(&enc, 3, &rng);
        let sizes = Mlp::sizes_for(e.n_features(), &ModelConfig { depth, width }, 1);
        let mut mlp = Mlp::init(sizes, &rng);
        // random, non-zero biases so the bias paths are exercised
        for l in mlp.layers() {
            for i in 0..l.n_out {
                mlp.params[l.bias + i] = 0.1 * rng.normal(900_000 + (l.bias + i) as u64);
            }
        }
        (CpuBackend::new(e, mlp, Adam::default(), 2).unwrap(), rng)
    }

    #[test]
    fn forward_matches_reference() {
        let (mut be, rng) =
            setup(EncodingConfig::Gaussian { sigma: 3.0, features: 16, normalize: false }, 4, 24);
        let n = 37;
        let pts: Vec<f32> = (0..3 * n).map(|i| rng.uniform(i as u64)).collect();
        let out = be.forward(&pts).unwrap().1.to_vec();
        let mut pred = vec![0.0; n];
        be.predict(&pts, &mut pred).unwrap();
        let mut feats = vec![0.0; n * be.encoding.n_features()];
        be.encoding.encode(&pts, &mut feats);
        let f = be.encoding.n_features();
        for i in 0..n {
            let x: Vec<f64> = feats[i * f..(i + 1) * f].iter().map(|&v| v as f64).collect();
            let r = forward_f64(&be.mlp, &x);
            assert!((out[i] as f64 - r).abs() < 1e-4 * r.abs().max(1.0), "{} vs {r}", out[i]);
            assert_eq!(out[i], pred[i]);
        }
    }

    /// ∂L/∂params from backward against central differences of the f64 reference, for both losses.
    #[test]
    fn backward_matches_finite_differences() {
        for loss in [Loss::Bce, Loss::Mse] {
            let (mut be, rng) =
                setup(EncodingConfig::Gaussian { sigma: 2.0, features: 6, normalize: false }, 3, 7);
            let n = 9;
            let pts: Vec<f32> = (0..3 * n).map(|i| rng.uniform(7000 + i as u64)).collect();
            let targets: Vec<f32> =
                (0..n).map(|i| (rng.uniform(8000 + i as u64) > 0.5) as u8 as f32).collect();
            let (pass, out) = be.forward(&pts).unwrap();
            let out = out.to_vec();
            let mut g = vec![0.0; n];
            loss.eval(&out, &targets, &mut g);
            be.backward(pass, &g).unwrap();
            let grads = be.gradients().unwrap();
            let f = be.encoding.n_features();
            let mut feats = vec![0.0; n * f];
            be.encoding.encode(&pts, &mut feats);
            let feats64: Vec<f64> = feats.iter().map(|&v| v as f64).collect();
            let total = |mlp: &Mlp| -> f64 {
                (0..n)
                    .map(|i| {
                        let z = forward_f64(mlp, &feats64[i * f..(i + 1) * f]);
                        let y = targets[i] as f64;
                        match loss {
                            Loss::Bce => z.max(0.0) - z * y + (-z.abs()).exp().ln_1p(),
                            Loss::Mse => 0.5 * (z - y) * (z - y),
                        }
                    })
                    .sum::<f64>()
                    / n as f64
            };
            let mlp = be.mlp.clone();
            let mut checked = 0;
            #[allow(clippy::needless_range_loop)]
            for j in 0..mlp.params.len() {
                let h = 1e-3f32;
                let (mut a, mut b) = (mlp.clone(), mlp.clone());
                a.params[j] += h;
                b.params[j] -= h;
                let fd = (total(&a) - total(&b)) / (2.0 * h as f64);
                if fd.abs() < 1e-6 && grads[j].abs() < 1e-6 {
                    continue; // a dead ReLU: both zero
                }
                let rel = (fd - grads[j] as f64).abs() / fd.abs().max(grads[j].abs() as f64);
                assert!(rel < 1e-2, "{loss:?} param {j}: analytic {} fd {fd}", grads[j]);
                checked += 1;
            }
            assert!(checked > mlp.params.len() / 2, "only {checked} parameters had a gradient");
        }
    }

    /// A hash grid (2^5-entry tables: the finer levels collide) after Gaussian features: ∂L/∂θ
    /// from backward against central differences of the f64 reference, for the table entries
    /// and the MLP's weights alike.
    #[test]
    fn hashgrid_backward_matches_finite_differences() {
        let cfg = EncodingConfig::HashGrid {
            levels: 3,
            log2_table: 5,
            features_per_level: 2,
            base_resolution: 2,
            finest_resolution: 8,
            fourier_features: 3,
            fourier_sigma: 1.5,
        };
        let rng = CounterRng::new(42, 0);
        let e = Encoding::build(&cfg, 3, &rng);
        assert!(e.hash.as_ref().unwrap().levels.iter().any(|l| !l.dense));
        let sizes = Mlp::sizes_for(e.n_features(), &ModelConfig { depth: 3, width: 7 }, 1);
        let mut mlp = Mlp::init_field(sizes, &e, &rng);
        // tables of order 1 rather than 1e-4, so every path carries signal
        let off = mlp.layer_params();
        mlp.params[off..].iter_mut().for_each(|v| *v *= 5e3);
        for l in mlp.layers() {
            for i in 0..l.n_out {
                mlp.params[l.bias + i] = 0.1 * rng.normal(900_000 + (l.bias + i) as u64);
            }
        }
        let mut be = CpuBackend::new(e.clone(), mlp.clone(), Adam::default(), 2).unwrap();
        let n = 11;
        let pts: Vec<f32> = (0..3 * n).map(|i| rng.uniform(7000 + i as u64)).collect();
        let targets: Vec<f32> = (0..n).map(|i| rng.uniform(8000 + i as u64)).collect();
        let (pass, out) = be.forward(&pts).unwrap();
        let out = out.to_vec();
        let mut g = vec![0.0; n];
        Loss::Mse.eval(&out, &targets, &mut g);
        be.backward(pass, &g).unwrap();
        let grads = be.gradients().unwrap();
        assert_eq!(grads.len(), mlp.params.len());
        let f = e.n_features();
        let total = |m: &Mlp| -> f64 {
            let mut feats = vec![0.0; n * f];
            e.encode_with(&pts, &m.params[off..], &mut feats);
            (0..n)
                .map(|i| {
                    let x: Vec<f64> = feats[i * f..(i + 1) * f].iter().map(|&v| v as f64).collect();
                    let z = forward_f64(m, &x);
                    0.5 * (z - targets[i] as f64).powi(2)
                })
                .sum::<f64>()
                / n as f64
        };
        let (mut checked, mut table_checked) = (0, 0);
        let centre = total(&mlp);
        for j in 0..mlp.params.len() {
            // the tables enter through f32 features: a wider step there
            let h = if j >= off { 1e-2f32 } else { 1e-4 };
            let (mut a, mut b) = (mlp.clone(), mlp.clone());
            a.params[j] += h;
            b.params[j] -= h;
            let (ha, hb) = ((a.params[j] - mlp.params[j]) as f64, (mlp.params[j] - b.params[j]) as f64);
            let (up, down) = ((total(&a) - centre) / ha, (centre - total(&b)) / hb);
            let fd = 0.5 * (up + down);
            if fd.abs() < 1e-6 && grads[j].abs() < 1e-6 {
                continue;
            }
            if (up - down).abs() > 0.005 * fd.abs().max(1e-4) {
                continue; // a ReLU kink between the two sides: no derivative to compare
            }
            let rel = (fd - grads[j] as f64).abs() / fd.abs().max(grads[j].abs() as f64);
            assert!(rel < 1e-2, "param {j} (table from {off}): analytic {} fd {fd}", grads[j]);
            checked += 1;
            table_checked += (j >= off) as usize;
        }
        assert!(checked > mlp.params.len() / 3, "only {checked} parameters had a gradient");
        assert!(table_checked > 20, "only {table_checked} table entries had a gradient");
        eprintln!("checked {checked} parameters, {table_checked} of them table entries");
        // predict agrees with forward
        let mut pred = vec![0.0; n];
        be.predict(&pts, &mut pred).unwrap();
        assert_eq!(pred, out);
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let cfg = EncodingConfig::Gaussian { sigma: 5.0, features: 32, normalize: true };
        let (mut a, rng) = setup(cfg, 3, 64);
        let (b0, _) = setup(cfg, 3, 64);
        let mut b = CpuBackend::new(b0.encoding.clone(), b0.mlp.clone(), Adam::default(), 1).unwrap();
        let n = 5000;
        let pts: Vec<f32> = (0..3 * n).map(|i| rng.uniform(i as u64)).collect();
        let y: Vec<f32> = (0..n).map(|i| (pts[3 * i] > 0.5) as u8 as f32).collect();
        for _ in 0..3 {
            let la = a.train_step(&pts, &y, Loss::Bce, 1e-3).unwrap();
            let lb = b.train_step(&pts, &y, Loss::Bce, 1e-3).unwrap();
            assert_eq!(la, lb);
        }
        assert_eq!(a.state().unwrap(), b.state().unwrap());
    }
}
