//! γ: the input mappings of Tancik et al. 2020 (PAPER.md, "The four mappings").
//!
//! `basic`, `positional` and `gaussian` are all `γ(v) = [cos 2πBv, sin 2πBv]` with a different
//! frequency matrix B (rows in cycles per unit box); only how B is built differs. `none` feeds
//! the raw coordinates as 2v − 1, as the paper's code does.

pub mod hashgrid;

pub use hashgrid::{HashGrid, HashGridSpec};

use crate::sample::CounterRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Which mapping, and its parameters, as written in `run.toml` (`[encoding] type = "gaussian"`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum EncodingConfig {
    /// Raw coordinates, mapped to 2v − 1.
    None,
    /// [cos 2πv, sin 2πv] per axis.
    Basic {
        #[serde(default)]
        normalize: bool,
    },
    /// Per axis, frequencies f_j = 2^(σ·j/(n−1)) − 1 for j = 0..n−1 (on-axis only).
    Positional {
        /// σ_p: the highest frequency is 2^σ − 1 cycles per unit box.
        sigma: f32,
        /// n: frequencies per axis.
        features: usize,
        #[serde(default)]
        normalize: bool,
    },
    /// B is m×d with entries from N(0, σ²), drawn once from the run's seed.
    Gaussian {
        /// σ_g: standard deviation of the frequencies, in cycles per unit box.
        sigma: f32,
        /// m: number of frequencies (2m features).
        features: usize,
        /// Divide the features by √m, as the paper's occupancy code does.
        #[serde(default)]
        normalize: bool,
    },
    /// The multiresolution hash grid of Müller et al. 2022 ([`hashgrid`]), with trainable
    /// tables; optionally concatenated after Gaussian Fourier features (`fourier_features` > 0).
    #[serde(rename = "hashgrid")]
    HashGrid {
        /// L: number of levels.
        levels: usize,
        /// T: each level has at most 2^T entries.
        log2_table: u32,
        /// F: features per level.
        features_per_level: usize,
        /// N_min: cells a side of the coarsest level.
        base_resolution: usize,
        /// N_max: cells a side of the finest level.
        finest_resolution: usize,
        /// m of the Gaussian features put before the grid's (0: the grid alone).
        #[serde(default)]
        fourier_features: usize,
        /// σ_g of those Gaussian features.
        #[serde(default)]
        fourier_sigma: f32,
    },
}

/// `finest_resolution = 0` of a hash grid: the finest level has as many cells a side as the
/// data's voxel grid has voxels along its longest axis (jobs on a voxel grid: `mri`, `volume`).
/// A finer level than the grid has cells that no voxel constrains; on undersampled k-space they
/// alias (48³ MNI152: 34.9 dB with N_max = 48, 23.1 dB with N_max = 96).
pub const GRID_FINEST: usize = 0;

impl EncodingConfig {
    /// Replaces a hash grid's `finest_resolution = 0` ([`GRID_FINEST`]) by the grid's longest
    /// side (at least the base resolution); other encodings are unchanged.
    pub fn fit_finest_to_grid(&mut self, dims: [usize; 3]) {
        if let EncodingConfig::HashGrid { base_resolution, finest_resolution, .. } = self {
            if *finest_resolution == GRID_FINEST {
                *finest_resolution = dims.iter().copied().max().unwrap_or(1).max(*base_resolution);
            }
        }
    }

    /// An error for a hash grid whose `finest_resolution = 0` the job `job` cannot resolve
    /// (it has no voxel grid to take it from).
    pub fn require_finest(&self, job: &str) -> crate::Result<()> {
        match self {
            EncodingConfig::HashGrid { finest_resolution: GRID_FINEST, .. } => {
                Err(crate::Error::Config(format!(
                    "hashgrid encoding: finest_resolution = 0 (the voxel grid's side) is for the mri and \
                 volume jobs; give {job} a number"
                )))
            }
            _ => Ok(()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            EncodingConfig::None => "none",
            EncodingConfig::Basic { .. } => "basic",
            EncodingConfig::Positional { .. } => "positional",
            EncodingConfig::Gaussian { .. } => "gaussian",
            EncodingConfig::HashGrid { .. } => "hashgrid",
        }
    }

    /// The hash grid's settings, for `hashgrid`.
    pub fn hash_spec(&self) -> Option<HashGridSpec> {
        match *self {
            EncodingConfig::HashGrid {
                levels,
                log2_table,
                features_per_level,
                base_resolution,
                finest_resolution,
                ..
            } => Some(HashGridSpec {
                levels,
                log2_table,
                features_per_level,
                base_resolution,
                finest_resolution,
            }),
            _ => None,
        }
    }

    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        match *self {
            EncodingConfig::Positional { sigma, features, .. }
            | EncodingConfig::Gaussian { sigma, features, .. } => {
                if !(sigma.is_finite() && sigma >= 0.0) {
                    return bad(format!("encoding scale sigma must be finite and ≥ 0, got {sigma}"));
                }
                if features == 0 || features > 16_384 {
                    return bad(format!("encoding features must be in 1..=16384, got {features}"));
                }
                Ok(())
            }
            EncodingConfig::HashGrid { fourier_features, fourier_sigma, .. } => {
                let mut spec = self.hash_spec().expect("a hashgrid");
                if spec.finest_resolution == GRID_FINEST {
                    // resolved to the data's grid by the job (`fit_finest_to_grid`)
                    spec.finest_resolution = spec.base_resolution;
                }
                spec.validate()?;
                if !(fourier_sigma.is_finite() && fourier_sigma >= 0.0) {
                    return bad(format!(
                        "hashgrid fourier_sigma must be finite and ≥ 0, got {fourier_sigma}"
                    ));
                }
                if fourier_features > 16_384 {
                    return bad(format!(
                        "hashgrid fourier_features must be in 0..=16384, got {fourier_features}"
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The distribution the Gaussian mapping's frequencies are drawn from, always scaled to the
/// standard deviation σ (`frequencies = "laplace"` at the top of `run.toml`, `--frequencies`).
/// The paper's claim: only σ matters, not the shape of the distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// N(0, σ²): the paper's.
    #[default]
    Gaussian,
    /// U(−√3 σ, √3 σ).
    Uniform,
    /// Laplace with scale σ/√2.
    Laplace,
}

impl Distribution {
    pub fn is_gaussian(&self) -> bool {
        *self == Distribution::Gaussian
    }

    pub fn name(self) -> &'static str {
        match self {
            Distribution::Gaussian => "gaussian",
            Distribution::Uniform => "uniform",
            Distribution::Laplace => "laplace",
        }
    }

    /// Draw `i` of a unit-variance, zero-mean variable of this distribution.
    pub fn draw(self, rng: &CounterRng, i: u64) -> f32 {
        match self {
            Distribution::Gaussian => rng.normal(i),
            Distribution::Uniform => (3f64.sqrt() * (2.0 * rng.uniform_f64(i) - 1.0)) as f32,
            Distribution::Laplace => {
                let u = rng.uniform_f64(i) - 0.5; // [-0.5, 0.5)
                let tail = (1.0 - 2.0 * u.abs()).max(f64::EPSILON);
                (-u.signum() * tail.ln() / 2f64.sqrt()) as f32
            }
        }
    }
}

/// A built encoding: the frequency matrix and the output scale.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoding {
    /// Input dimension d.
    pub dim: usize,
    /// Frequencies, row-major m×d, in cycles per unit box. Empty for `none`.
    pub b: Vec<f32>,
    /// Multiplies every feature (1/√m when normalised, else 1).
    pub scale: f32,
    /// True for `none` (features are 2v − 1).
    pub identity: bool,
    /// B column by column (d×m), for the vectorised encoder.
    columns: Vec<f32>,
    /// A hash grid whose L·F features follow the Fourier features; its trainable tables are
    /// parameters of the network ([`crate::model::Mlp`]), passed to [`Self::encode_with`].
    pub hash: Option<HashGrid>,
}

impl Encoding {
    /// An encoding from an explicit frequency matrix (row-major m×d), e.g. read from a checkpoint.
    pub fn from_frequencies(dim: usize, b: Vec<f32>, scale: f32) -> Self {
        let m = b.len() / dim.max(1);
        let columns =
            (0..dim).flat_map(|a| (0..m).map(move |k| (k, a))).map(|(k, a)| b[k * dim + a]).collect();
        Encoding { dim, b, scale, identity: false, columns, hash: None }
    }

    /// This encoding with a hash grid's features after its own.
    pub fn with_hash(mut self, grid: HashGrid) -> Self {
        assert!(
            !self.identity && grid.dim == self.dim,
            "a hash grid follows Fourier features of its dimension"
        );
        self.hash = Some(grid);
        self
    }

    /// Trainable floats of the encoding (the hash grid's tables; 0 for the fixed mappings).
    pub fn table_len(&self) -> usize {
        self.hash.as_ref().map_or(0, HashGrid::table_len)
    }

    /// The identity mapping 2v − 1 (`none`).
    pub fn identity(dim: usize) -> Self {
        Encoding { dim, b: vec![], scale: 1.0, identity: true, columns: vec![], hash: None }
    }

    /// Builds the encoding for `dim`-dimensional inputs; Gaussian frequencies come from `rng`.
    pub fn build(config: &EncodingConfig, dim: usize, rng: &CounterRng) -> Self {
        Self::build_with(config, Distribution::Gaussian, dim, rng)
    }

    /// [`Encoding::build`] with the Gaussian mapping's frequencies drawn from `distribution`
    /// (scaled to the same σ); the other mappings ignore it.
    pub fn build_with(
        config: &EncodingConfig,
        distribution: Distribution,
        dim: usize,
        rng: &CounterRng,
    ) -> Self {
        let norm = |normalize: bool, m: usize| if normalize { 1.0 / (m as f32).sqrt() } else { 1.0 };
        match *config {
            EncodingConfig::None => Encoding::identity(dim),
            EncodingConfig::Basic { normalize } => {
                let mut b = vec![0.0; dim * dim];
                for a in 0..dim {
                    b[a * dim + a] = 1.0;
                }
                Encoding::from_frequencies(dim, b, norm(normalize, dim))
            }
            EncodingConfig::Positional { sigma, features, normalize } => {
                let n = features;
                let mut b = vec![0.0; n * dim * dim];
                for a in 0..dim {
                    for j in 0..n {
                        let t = if n > 1 { j as f32 / (n - 1) as f32 } else { 0.0 };
                        b[(a * n + j) * dim + a] = (sigma * t).exp2() - 1.0;
                    }
                }
                Encoding::from_frequencies(dim, b, norm(normalize, n * dim))
            }
            EncodingConfig::Gaussian { sigma, features, normalize } => {
                let b = (0..features * dim).map(|i| sigma * distribution.draw(rng, i as u64)).collect();
                Encoding::from_frequencies(dim, b, norm(normalize, features))
            }
            EncodingConfig::HashGrid { fourier_features, fourier_sigma, .. } => {
                let grid = config.hash_spec().expect("a hashgrid");
                let b = (0..fourier_features * dim).map(|i| fourier_sigma * rng.normal(i as u64)).collect();
                Encoding::from_frequencies(dim, b, 1.0).with_hash(HashGrid::new(grid, dim))
            }
        }
    }

    /// Number of frequencies m (0 for `none`).
    pub fn frequencies(&self) -> usize {
        if self.identity {
            0
        } else {
            self.b.len() / self.dim
        }
    }

    /// Width of γ(v).
    pub fn n_features(&self) -> usize {
        if self.identity {
            self.dim
        } else {
            2 * self.frequencies() + self.hash.as_ref().map_or(0, HashGrid::n_features)
        }
    }

    /// γ for `n` points (row-major n×d) into `out` (row-major n×F): [cos 2πBv, sin 2πBv]·scale.
    /// The fixed mappings only; an encoding with a hash grid needs its tables ([`Self::encode_with`]).
    pub fn encode(&self, points: &[f32], out: &mut [f32]) {
        assert!(self.hash.is_none(), "encode: a hash-grid encoding needs its tables (encode_with)");
        self.encode_with(points, &[], out)
    }

    /// γ for `n` points into `out`, the hash grid's features (if any) read from `table`
    /// ([`Self::table_len`] floats).
    pub fn encode_with(&self, points: &[f32], table: &[f32], out: &mut [f32]) {
        let (d, f) = (self.dim, self.n_features());
        let n = points.len() / d;
        assert_eq!(out.len(), n * f, "encode: output has the wrong size");
        assert_eq!(table.len(), self.table_len(), "encode: the hash grid's table has the wrong size");
        let fourier = if self.identity { f } else { 2 * self.frequencies() };
        const ROWS: usize = 256;
        out.par_chunks_mut(ROWS * f).zip(points.par_chunks(ROWS * d)).for_each(|(o, p)| {
            for (orow, prow) in o.chunks_exact_mut(f).zip(p.chunks_exact(d)) {
                let (head, tail) = orow.split_at_mut(fourier);
                self.encode_one(prow, head);
                if let Some(h) = &self.hash {
                    h.encode_one(prow, table, tail);
                }
            }
        });
    }

    #[inline]
    fn encode_one(&self, v: &[f32], out: &mut [f32]) {
        let d = self.dim;
        if self.identity {
            for (o, x) in out.iter_mut().zip(v) {
                *o = 2.0 * x - 1.0;
            }
            return;
        }
        let m = self.frequencies();
        let (cos_part, sin_part) = out.split_at_mut(m);
        if d == 3 && self.columns.len() == 3 * m {
            // B's columns are contiguous so this loop vectorises
            let (bx, rest) = self.columns.split_at(m);
            let (by, bz) = rest.split_at(m);
            let (v0, v1, v2) = (v[0], v[1], v[2]);
            let scale = self.scale;
            for k in 0..m {
                let t = bx[k] * v0 + by[k] * v1 + bz[k] * v2;
                let (sn, cs) = sincos_turns(t);
                cos_part[k] = cs * scale;
                sin_part[k] = sn * scale;
            }
        } else {
            for ((row, c), s) in self.b.chunks_exact(d).zip(cos_part.iter_mut()).zip(sin_part.iter_mut()) {
                let t: f32 = row.iter().zip(v).map(|(b, x)| b * x).sum();
                let (sn, cs) = sincos_turns(t);
                *c = cs * self.scale;
                *s = sn * self.scale;
            }
        }
    }

    /// Backward: given ∂L/∂γ (n×F), writes ∂L/∂v (n×d). B is fixed, so this is the only gradient.
    /// The fixed mappings only (no job needs ∂L/∂v of a hash grid; its tables' gradient is
    /// [`HashGrid::backward_table`]).
    pub fn backward(&self, points: &[f32], d_features: &[f32], d_points: &mut [f32]) {
        assert!(self.hash.is_none(), "Encoding::backward: not for a hash-grid encoding");
        let (d, f) = (self.dim, self.n_features());
        let n = points.len() / d;
        assert_eq!(d_features.len(), n * f);
        assert_eq!(d_points.len(), n * d);
        for i in 0..n {
            let v = &points[i * d..(i + 1) * d];
            let g = &d_features[i * f..(i + 1) * f];
            let out = &mut d_points[i * d..(i + 1) * d];
            if self.identity {
                for (o, gi) in out.iter_mut().zip(g) {
                    *o = 2.0 * gi;
                }
                continue;
            }
            out.iter_mut().for_each(|o| *o = 0.0);
            let m = self.frequencies();
            for (k, row) in self.b.chunks_exact(d).enumerate() {
                let t: f32 = row.iter().zip(v).map(|(b, x)| b * x).sum();
                let (sn, cs) = sincos_turns(t);
                // d cos(2πt)/dt = −2π sin, d sin(2πt)/dt = 2π cos
                let dt = std::f32::consts::TAU * self.scale * (-sn * g[k] + cs * g[m + k]);
                for (o, b) in out.iter_mut().zip(row) {
                    *o += dt * b;
                }
            }
        }
    }
}

/// (sin 2πt, cos 2πt), branch-free so the compiler vectorises it; absolute error below 1e-6
/// for |t| < 2^20 (beyond the phase itself loses f32 precision).
#[inline(always)]
pub fn sincos_turns(t: f32) -> (f32, f32) {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting rounds to nearest
    let r = t - ((t + MAGIC) - MAGIC); // r in [-0.5, 0.5]
    let q4 = (r * 4.0 + MAGIC) - MAGIC; // nearest quarter turn, in {-2..2}
    let x = (r - q4 * 0.25) * std::f32::consts::TAU; // in [-π/4, π/4]
    let x2 = x * x;
    let s = x * (1.0 + x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0))));
    let c = 1.0 + x2 * (-0.5 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0))));
    let q = (q4 as i32) & 3;
    // rotate (s, c) by q quarter turns, with selects rather than branches
    let odd = q & 1 == 1;
    let s1 = if odd { c } else { s };
    let c1 = if odd { -s } else { c };
    let sign = if q & 2 == 2 { -1.0 } else { 1.0 };
    (s1 * sign, c1 * sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `finest_resolution = 0` validates, resolves to the grid's longest side (never below the
    /// base resolution), and is refused by name for a job without a voxel grid; a resolved or
    /// explicit value is left alone.
    #[test]
    fn grid_finest_resolves_to_the_longest_side() {
        let grid = |finest| EncodingConfig::HashGrid {
            levels: 4,
            log2_table: 12,
            features_per_level: 2,
            base_resolution: 8,
            finest_resolution: finest,
            fourier_features: 0,
            fourier_sigma: 0.0,
        };
        let finest = |e: &EncodingConfig| e.hash_spec().unwrap().finest_resolution;
        let mut e = grid(GRID_FINEST);
        e.validate().unwrap();
        let err = e.require_finest("ct").unwrap_err().to_string();
        assert!(err.contains("finest_resolution = 0") && err.contains("ct"), "{err}");
        e.fit_finest_to_grid([40, 56, 48]);
        assert_eq!(finest(&e), 56);
        e.require_finest("ct").unwrap();
        e.fit_finest_to_grid([100, 100, 100]);
        assert_eq!(finest(&e), 56, "a resolved value stays");
        let mut small = grid(GRID_FINEST);
        small.fit_finest_to_grid([4, 4, 1]);
        assert_eq!(finest(&small), 8, "at least the base resolution");
        let mut fixed = grid(32);
        fixed.fit_finest_to_grid([64, 64, 64]);
        assert_eq!(finest(&fixed), 32);
        let mut gaussian = EncodingConfig::Gaussian { sigma: 1.0, features: 4, normalize: false };
        gaussian.fit_finest_to_grid([64, 64, 64]);
        assert!(gaussian.require_finest("ct").is_ok());
    }

    #[test]
    fn sincos_matches_std() {
        let mut worst: f32 = 0.0;
        for i in 0..200_001 {
            let t = -50.0 + i as f32 * 0.0005;
            let (s, c) = sincos_turns(t);
            let x = std::f64::consts::TAU * t as f64;
            worst = worst.max((s as f64 - x.sin()).abs() as f32).max((c as f64 - x.cos()).abs() as f32);
        }
        assert!(worst < 2e-6, "worst error {worst}");
    }

    fn configs() -> Vec<EncodingConfig> {
        vec![
            EncodingConfig::None,
            EncodingConfig::Basic { normalize: false },
            EncodingConfig::Positional { sigma: 3.0, features: 8, normalize: true },
            EncodingConfig::Gaussian { sigma: 4.0, features: 16, normalize: false },
            EncodingConfig::Gaussian { sigma: 4.0, features: 16, normalize: true },
        ]
    }

    #[test]
    fn paper_definitions() {
        let rng = CounterRng::new(0, 2);
        let e = Encoding::build(
            &EncodingConfig::Positional { sigma: 6.0, features: 85, normalize: false },
            3,
            &rng,
        );
        assert_eq!(e.n_features(), 2 * 85 * 3);
        // highest frequency on x: 2^6 − 1 = 63 cycles
        assert!((e.b[84 * 3] - 63.0).abs() < 1e-4);
        assert_eq!(e.b[0], 0.0);
        let g = Encoding::build(
            &EncodingConfig::Gaussian { sigma: 12.0, features: 4096, normalize: true },
            3,
            &rng,
        );
        let var = g.b.iter().map(|b| (*b as f64).powi(2)).sum::<f64>() / g.b.len() as f64;
        assert!((var.sqrt() - 12.0).abs() < 0.5, "std {}", var.sqrt());
        assert!((g.scale - 1.0 / 64.0).abs() < 1e-7);
        let mut out = vec![0.0; g.n_features()];
        g.encode(&[0.3, 0.1, 0.7], &mut out);
        let t = g.b[0] as f64 * 0.3 + g.b[1] as f64 * 0.1 + g.b[2] as f64 * 0.7;
        assert!((out[0] as f64 - (std::f64::consts::TAU * t).cos() / 64.0).abs() < 1e-6);
        assert!((out[4096] as f64 - (std::f64::consts::TAU * t).sin() / 64.0).abs() < 1e-6);
    }

    /// Every distribution has mean 0 and standard deviation σ; the Gaussian one is the paper's
    /// draw, bit for bit; uniform stays within √3 σ and Laplace has its excess kurtosis 3.
    #[test]
    fn distributions_share_their_standard_deviation() {
        let rng = CounterRng::new(4, 2);
        let cfg = EncodingConfig::Gaussian { sigma: 5.0, features: 20_000, normalize: false };
        let plain = Encoding::build(&cfg, 2, &rng);
        assert_eq!(plain, Encoding::build_with(&cfg, Distribution::Gaussian, 2, &rng));
        for (d, kurtosis) in
            [(Distribution::Gaussian, 3.0), (Distribution::Uniform, 1.8), (Distribution::Laplace, 6.0)]
        {
            let e = Encoding::build_with(&cfg, d, 2, &rng);
            let n = e.b.len() as f64;
            let mean = e.b.iter().map(|&b| b as f64).sum::<f64>() / n;
            let var = e.b.iter().map(|&b| (b as f64 - mean).powi(2)).sum::<f64>() / n;
            let k4 = e.b.iter().map(|&b| (b as f64 - mean).powi(4)).sum::<f64>() / n / (var * var);
            assert!(mean.abs() < 0.1, "{d:?} mean {mean}");
            assert!((var.sqrt() - 5.0).abs() < 0.1, "{d:?} std {}", var.sqrt());
            assert!((k4 - kurtosis).abs() < 0.1 * kurtosis, "{d:?} kurtosis {k4}");
        }
        let u = Encoding::build_with(&cfg, Distribution::Uniform, 2, &rng);
        assert!(u.b.iter().all(|b| b.abs() <= 5.0 * 3f32.sqrt() + 1e-4));
    }

    /// ∂L/∂v against central differences in f64, L = Σ w ⊙ γ(v) with random w.
    #[test]
    fn backward_matches_finite_differences() {
        let rng = CounterRng::new(3, 9);
        for cfg in configs() {
            let e = Encoding::build(&cfg, 3, &rng);
            let f = e.n_features();
            let n = 5;
            let pts: Vec<f32> = (0..n * 3).map(|i| rng.uniform(1000 + i as u64)).collect();
            let w: Vec<f32> = (0..n * f).map(|i| rng.normal(5000 + i as u64)).collect();
            let mut dp = vec![0.0; n * 3];
            e.backward(&pts, &w, &mut dp);
            let loss = |p: &[f64]| -> f64 {
                // exact f64 evaluation of Σ w·γ
                let mut s = 0.0;
                for i in 0..n {
                    let v = &p[i * 3..i * 3 + 3];
                    if e.identity {
                        for a in 0..3 {
                            s += w[i * f + a] as f64 * (2.0 * v[a] - 1.0);
                        }
                        continue;
                    }
                    let m = e.frequencies();
                    for k in 0..m {
                        let t: f64 = (0..3).map(|a| e.b[k * 3 + a] as f64 * v[a]).sum();
                        let x = std::f64::consts::TAU * t;
                        s += e.scale as f64
                            * (w[i * f + k] as f64 * x.cos() + w[i * f + m + k] as f64 * x.sin());
                    }
                }
                s
            };
            let p64: Vec<f64> = pts.iter().map(|&x| x as f64).collect();
            for j in 0..n * 3 {
                let h = 1e-6;
                let (mut a, mut b) = (p64.clone(), p64.clone());
                a[j] += h;
                b[j] -= h;
                let fd = (loss(&a) - loss(&b)) / (2.0 * h);
                let rel = (fd - dp[j] as f64).abs() / fd.abs().max(1.0);
                assert!(rel < 1e-3, "{}: d/dv[{j}] analytic {} fd {fd}", cfg.name(), dp[j]);
            }
        }
    }
}
