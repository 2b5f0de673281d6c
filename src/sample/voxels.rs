//! Voxel grids as query points: voxel centres in the unit box and the train/test split of a
//! volume fit.

use crate::sample::rng::CounterRng;

/// Voxel centres of the `upsample`-times finer grid, flat (x, y, z) triples in the unit box, x fastest.
pub fn grid_points(dims: [usize; 3], upsample: usize) -> Vec<f32> {
    let d = dims.map(|n| n * upsample);
    let mut pts = Vec::with_capacity(3 * d[0] * d[1] * d[2]);
    for k in 0..d[2] {
        for j in 0..d[1] {
            for i in 0..d[0] {
                pts.push((i as f32 + 0.5) / d[0] as f32);
                pts.push((j as f32 + 0.5) / d[1] as f32);
                pts.push((k as f32 + 0.5) / d[2] as f32);
            }
        }
    }
    pts
}

/// Stream of the train/test split (beyond the shared streams 1–5).
const STREAM_SPLIT: u64 = 16;

/// Which voxels are trained on: voxel i when uniform(seed, i) < fraction.
pub fn train_split(seed: u64, n: usize, fraction: f32) -> Vec<bool> {
    let rng = CounterRng::new(seed, STREAM_SPLIT);
    (0..n).map(|i| rng.uniform(i as u64) < fraction).collect()
}
