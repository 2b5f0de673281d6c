//! The multiresolution hash encoding of Müller et al. 2022 (instant-ngp), on the host.
//!
//! L levels; level l is a grid of N_l cells a side over the unit box, N_l = ⌊N_min · b^l⌋ with
//! b = exp((ln N_max − ln N_min)/(L − 1)), so N_0 = N_min and N_{L−1} = N_max. Each vertex of a
//! level owns F trainable features in that level's table. A level whose (N_l + 1)^d vertices fit
//! in 2^T entries is indexed densely (x fastest); a finer one shares 2^T entries through the
//! spatial hash `(⊕_i c_i·π_i) mod 2^T` with π = (1, 2654435761, 805459861) (u32 wrap-around
//! products). A point's features at level l are the d-linear interpolation (bilinear in 2D,
//! trilinear in 3D) of its cell's 2^d corner features; the encoding concatenates the L levels
//! (L·F features, level-major).
//!
//! The tables are trainable: they live after the MLP's layers in the flat parameter vector
//! ([`crate::model::Mlp`]), start as U(−10⁻⁴, 10⁻⁴) and are trained by the same Adam. Their
//! gradient is `∂L/∂table[v, f] = Σ_points w_v(x) · ∂L/∂feature_f(x)`, summed level by level
//! (each level's entries are its own, so the levels run in parallel and every sum runs over the
//! points in order: the result does not depend on the thread count).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The primes of the spatial hash, one per axis (π₁ = 1 keeps neighbouring x coherent).
pub const PRIMES: [u32; 3] = [1, 2_654_435_761, 805_459_861];

/// Largest number of table floats a config may ask for (512 MiB a copy; the run keeps the
/// parameters, their gradients and two Adam moments).
pub const MAX_TABLE_FLOATS: u64 = 1 << 27;

/// Half-width of the uniform initialisation of the tables.
pub const INIT_RANGE: f32 = 1e-4;

/// The settings of a hash grid (`[encoding] type = "hashgrid"` in `run.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HashGridSpec {
    /// L: number of levels.
    pub levels: usize,
    /// T: each level has at most 2^T entries.
    pub log2_table: u32,
    /// F: features per entry (per level).
    pub features_per_level: usize,
    /// N_min: cells a side of the coarsest level.
    pub base_resolution: usize,
    /// N_max: cells a side of the finest level.
    pub finest_resolution: usize,
}

impl HashGridSpec {
    /// Sizes in range, N_min ≤ N_max, and the tables within [`MAX_TABLE_FLOATS`]; errors name the
    /// setting.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(format!("hashgrid encoding: {m}")));
        if !(1..=32).contains(&self.levels) {
            return bad(format!("levels must be in 1..=32, got {}", self.levels));
        }
        if !(2..=24).contains(&self.log2_table) {
            return bad(format!("log2_table must be in 2..=24, got {}", self.log2_table));
        }
        if !(1..=16).contains(&self.features_per_level) {
            return bad(format!("features_per_level must be in 1..=16, got {}", self.features_per_level));
        }
        if !(1..=1 << 20).contains(&self.base_resolution) {
            return bad(format!("base_resolution must be in 1..=1048576, got {}", self.base_resolution));
        }
        if !(self.base_resolution..=1 << 20).contains(&self.finest_resolution) {
            return bad(format!(
                "finest_resolution must be in base_resolution ({})..=1048576, got {}",
                self.base_resolution, self.finest_resolution
            ));
        }
        let floats = (self.levels as u64)
            .checked_mul(1u64 << self.log2_table)
            .and_then(|v| v.checked_mul(self.features_per_level as u64));
        match floats {
            Some(f) if f <= MAX_TABLE_FLOATS => Ok(()),
            _ => bad(format!(
                "levels × 2^log2_table × features_per_level = {} × 2^{} × {} is more than 2^27 table \
                 entries; use a smaller log2_table",
                self.levels, self.log2_table, self.features_per_level
            )),
        }
    }

    /// The growth factor b between levels.
    pub fn growth(&self) -> f64 {
        if self.levels < 2 {
            return 1.0;
        }
        ((self.finest_resolution as f64).ln() - (self.base_resolution as f64).ln()) / (self.levels - 1) as f64
    }
}

/// One level of a built grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level {
    /// N_l: cells a side (vertices 0..=N_l).
    pub resolution: u32,
    /// Entries of this level's table.
    pub entries: usize,
    /// First entry of this level in the concatenated tables.
    pub offset: usize,
    /// Dense indexing (the whole grid fits in the table), else hashed.
    pub dense: bool,
}

/// A hash grid for `dim`-D points (2 or 3; 1 works too), built from a valid [`HashGridSpec`].
#[derive(Clone, Debug, PartialEq)]
pub struct HashGrid {
    pub spec: HashGridSpec,
    pub dim: usize,
    pub levels: Vec<Level>,
}

impl HashGrid {
    /// The levels of `spec` for `dim`-D points; `spec` must have passed [`HashGridSpec::validate`].
    pub fn new(spec: HashGridSpec, dim: usize) -> Self {
        assert!((1..=3).contains(&dim), "hash grid: points must be 1-, 2- or 3-D");
        let cap = 1u64 << spec.log2_table;
        let ln_b = spec.growth();
        let mut offset = 0usize;
        let levels = (0..spec.levels)
            .map(|l| {
                let r = (spec.base_resolution as f64 * (ln_b * l as f64).exp()).floor();
                // the last level is N_max exactly, whatever the rounding of exp
                let r = if l + 1 == spec.levels { spec.finest_resolution as f64 } else { r };
                let resolution = (r as u32).clamp(1, spec.finest_resolution as u32);
                let dense_entries = (resolution as u64 + 1).checked_pow(dim as u32);
                let (entries, dense) = match dense_entries {
                    Some(e) if e <= cap => (e as usize, true),
                    _ => (cap as usize, false),
                };
                let level = Level { resolution, entries, offset, dense };
                offset += entries;
                level
            })
            .collect();
        HashGrid { spec, dim, levels }
    }

    /// Features this encoding adds to γ: L·F.
    pub fn n_features(&self) -> usize {
        self.levels.len() * self.spec.features_per_level
    }

    /// Entries of all levels.
    pub fn entries(&self) -> usize {
        self.levels.last().map_or(0, |l| l.offset + l.entries)
    }

    /// Trainable floats: entries × F.
    pub fn table_len(&self) -> usize {
        self.entries() * self.spec.features_per_level
    }

    /// The initial tables, U(−10⁻⁴, 10⁻⁴): entry float `i` from `rng.uniform(first + i)`.
    pub fn init_table(&self, rng: &crate::sample::CounterRng, first: u64) -> Vec<f32> {
        (0..self.table_len() as u64).map(|i| INIT_RANGE * (2.0 * rng.uniform(first + i) - 1.0)).collect()
    }

    /// The entry of vertex `c` (per-axis vertex coordinates) at `level`.
    #[inline]
    fn index(&self, level: &Level, c: &[u32; 3]) -> usize {
        if level.dense {
            let side = level.resolution as usize + 1;
            let mut idx = 0usize;
            for a in (0..self.dim).rev() {
                idx = idx * side + c[a] as usize;
            }
            idx
        } else {
            let mut h = 0u32;
            for a in 0..self.dim {
                h ^= c[a].wrapping_mul(PRIMES[a]);
            }
            (h as usize) & (level.entries - 1)
        }
    }

    /// Calls `f(entry, weight)` for the 2^d corners of `x`'s cell at `level` (x clamped to
    /// the unit box).
    #[inline]
    fn corners(&self, level: &Level, x: &[f32], mut f: impl FnMut(usize, f32)) {
        let n = level.resolution;
        let mut base = [0u32; 3];
        let mut t = [0f32; 3];
        for a in 0..self.dim {
            let pos = x[a].clamp(0.0, 1.0) * n as f32;
            let i = (pos.floor() as u32).min(n - 1);
            base[a] = i;
            t[a] = (pos - i as f32).clamp(0.0, 1.0);
        }
        for corner in 0..1usize << self.dim {
            let mut c = base;
            let mut w = 1.0f32;
            for a in 0..self.dim {
                if corner >> a & 1 == 1 {
                    c[a] += 1;
                    w *= t[a];
                } else {
                    w *= 1.0 - t[a];
                }
            }
            f(self.index(level, &c), w);
        }
    }

    /// The L·F features of one point `x` from `table` into `out`.
    #[inline]
    pub fn encode_one(&self, x: &[f32], table: &[f32], out: &mut [f32]) {
        let nf = self.spec.features_per_level;
        for (level, o) in self.levels.iter().zip(out.chunks_exact_mut(nf)) {
            o.iter_mut().for_each(|v| *v = 0.0);
            let t = &table[level.offset * nf..(level.offset + level.entries) * nf];
            self.corners(level, x, |e, w| {
                for (ov, tv) in o.iter_mut().zip(&t[e * nf..e * nf + nf]) {
                    *ov += w * tv;
                }
            });
        }
    }

    /// ∂L/∂table from ∂L/∂features: for `n` points (row-major n×d) and `d_features` rows of
    /// `stride` floats whose columns `col..col + L·F` are this encoding's, writes (replacing) the
    /// gradient of every table float into `d_table` (of [`Self::table_len`]).
    pub fn backward_table(
        &self,
        points: &[f32],
        d_features: &[f32],
        stride: usize,
        col: usize,
        d_table: &mut [f32],
    ) {
        let (d, nf) = (self.dim, self.spec.features_per_level);
        let n = points.len() / d;
        assert_eq!(d_table.len(), self.table_len(), "hash grid backward: wrong table size");
        assert!(d_features.len() >= n * stride && col + self.n_features() <= stride);
        // each level's part of the gradient is its own slice: the levels run in parallel
        let mut parts: Vec<(usize, &Level, &mut [f32])> = Vec::with_capacity(self.levels.len());
        let mut rest = d_table;
        for (l, level) in self.levels.iter().enumerate() {
            let (mine, after) = rest.split_at_mut(level.entries * nf);
            parts.push((l, level, mine));
            rest = after;
        }
        parts.into_par_iter().for_each(|(l, level, g)| {
            g.iter_mut().for_each(|v| *v = 0.0);
            let c0 = col + l * nf;
            for (x, row) in points.chunks_exact(d).zip(d_features.chunks_exact(stride)) {
                let df = &row[c0..c0 + nf];
                if df.iter().all(|&v| v == 0.0) {
                    continue;
                }
                self.corners(level, x, |e, w| {
                    for (gv, dv) in g[e * nf..e * nf + nf].iter_mut().zip(df) {
                        *gv += w * dv;
                    }
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::CounterRng;

    fn spec(levels: usize, log2_table: u32, f: usize, base: usize, finest: usize) -> HashGridSpec {
        HashGridSpec {
            levels,
            log2_table,
            features_per_level: f,
            base_resolution: base,
            finest_resolution: finest,
        }
    }

    #[test]
    fn levels_grow_geometrically_and_switch_to_hashing() {
        let g = HashGrid::new(spec(4, 10, 2, 4, 32), 2);
        let res: Vec<u32> = g.levels.iter().map(|l| l.resolution).collect();
        assert_eq!(res, vec![4, 8, 16, 32]);
        // 5² = 25, 9² = 81, 17² = 289 fit in 1024 entries; 33² = 1089 does not
        let dense: Vec<bool> = g.levels.iter().map(|l| l.dense).collect();
        assert_eq!(dense, vec![true, true, true, false]);
        assert_eq!(g.entries(), 25 + 81 + 289 + 1024);
        assert_eq!(g.table_len(), 2 * g.entries());
        assert_eq!(g.levels[2].offset, 25 + 81);
        // the hash is the paper's
        let lvl = g.levels[3];
        let c = [7u32, 11, 0];
        assert_eq!(g.index(&lvl, &c), ((7u32 ^ 11u32.wrapping_mul(2_654_435_761)) & 1023) as usize);
        let g3 = HashGrid::new(spec(1, 12, 1, 100, 100), 3);
        let c = [3u32, 5, 9];
        let h = 3u32 ^ 5u32.wrapping_mul(2_654_435_761) ^ 9u32.wrapping_mul(805_459_861);
        assert_eq!(g3.index(&g3.levels[0], &c), (h & 4095) as usize);
        assert!(spec(2, 25, 2, 16, 64).validate().is_err());
        assert!(spec(2, 10, 2, 64, 16).validate().is_err());
        assert!(spec(0, 10, 2, 16, 64).validate().is_err());
        assert!(spec(32, 24, 16, 16, 64).validate().is_err());
        assert!(spec(16, 19, 2, 16, 2048).validate().is_ok());
    }

    /// Interpolation reproduces a table that is linear in the vertex coordinates exactly, and
    /// vertices read their own entry.
    #[test]
    fn interpolation_is_multilinear() {
        let g = HashGrid::new(spec(1, 16, 1, 8, 8), 3);
        let side = 9;
        let mut table = vec![0.0f32; g.table_len()];
        for k in 0..side {
            for j in 0..side {
                for i in 0..side {
                    table[(k * side + j) * side + i] = i as f32 + 2.0 * j as f32 - 3.0 * k as f32;
                }
            }
        }
        let rng = CounterRng::new(1, 2);
        for p in 0..50 {
            let x: Vec<f32> = (0..3).map(|a| rng.uniform(p * 3 + a)).collect();
            let mut out = [0.0f32];
            g.encode_one(&x, &table, &mut out);
            let want = 8.0 * (x[0] + 2.0 * x[1] - 3.0 * x[2]);
            assert!((out[0] - want).abs() < 1e-4, "{} vs {want}", out[0]);
        }
    }

    /// ∂(Σ w ⊙ features)/∂table against central differences, on dense and hashed levels
    /// (a table smaller than the grid: entries shared by colliding vertices).
    #[test]
    fn table_gradient_matches_finite_differences() {
        for dim in [2, 3] {
            let g = HashGrid::new(spec(3, 6, 2, 2, 12), dim);
            assert!(g.levels.iter().any(|l| !l.dense) && g.levels.iter().any(|l| l.dense));
            let rng = CounterRng::new(4, dim as u64);
            let table = g.init_table(&rng, 0).iter().map(|v| v * 1e4).collect::<Vec<_>>();
            let n = 7;
            let pts: Vec<f32> = (0..n * dim).map(|i| rng.uniform(10_000 + i as u64)).collect();
            let nf = g.n_features();
            let stride = nf + 3;
            let w: Vec<f32> = (0..n * stride).map(|i| rng.normal(20_000 + i as u64)).collect();
            let mut grad = vec![0.0; g.table_len()];
            g.backward_table(&pts, &w, stride, 3, &mut grad);
            let loss = |t: &[f32]| -> f64 {
                let mut s = 0.0;
                let mut out = vec![0.0; nf];
                for (i, x) in pts.chunks_exact(dim).enumerate() {
                    g.encode_one(x, t, &mut out);
                    s +=
                        out.iter().zip(&w[i * stride + 3..]).map(|(o, w)| *o as f64 * *w as f64).sum::<f64>();
                }
                s
            };
            let mut nonzero = 0;
            for j in 0..table.len() {
                let h = 1e-2;
                let (mut a, mut b) = (table.clone(), table.clone());
                a[j] += h;
                b[j] -= h;
                let fd = (loss(&a) - loss(&b)) / (2.0 * h as f64);
                assert!(
                    (fd - grad[j] as f64).abs() < 1e-3 * fd.abs().max(1.0),
                    "entry {j}: {} vs {fd}",
                    grad[j]
                );
                nonzero += (grad[j] != 0.0) as usize;
            }
            assert!(nonzero > 10, "only {nonzero} entries had a gradient");
        }
    }
}
