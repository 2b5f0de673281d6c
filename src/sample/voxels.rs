//! Voxel grids as query points: voxel centres in the unit box and the train/test split of a
//! volume fit.

use crate::sample::rng::CounterRng;

/// Voxel centres of the `upsample`-times finer grid, flat (x, y, z) triples in the unit box, x fastest.
pub fn grid_points(dims: [usize; 3], upsample: usize) -> Vec<f32> {
    let d = dims.map(|n| n * upsample);
    let mut pts = Vec::with_capacity(3 * d[0] * d[1] * d[2]);
    push_grid_planes(&mut pts, d, 0..d[2], 3);
    pts
}

/// Appends the voxel centres of z-planes `planes` of the grid `d` (as [`grid_points`] orders
/// them), as `dim`-D points: (x, y, z), or (x, y) for `dim` = 2 (a 2D scan's single plane).
pub fn push_grid_planes(pts: &mut Vec<f32>, d: [usize; 3], planes: std::ops::Range<usize>, dim: usize) {
    for k in planes {
        for j in 0..d[1] {
            for i in 0..d[0] {
                pts.push((i as f32 + 0.5) / d[0] as f32);
                pts.push((j as f32 + 0.5) / d[1] as f32);
                if dim == 3 {
                    pts.push((k as f32 + 0.5) / d[2] as f32);
                }
            }
        }
    }
}

/// Stream of the train/test split (beyond the shared streams 1–5).
const STREAM_SPLIT: u64 = 16;

/// Which voxels are trained on: voxel i when uniform(seed, i) < fraction.
pub fn train_split(seed: u64, n: usize, fraction: f32) -> Vec<bool> {
    let rng = CounterRng::new(seed, STREAM_SPLIT);
    (0..n).map(|i| rng.uniform(i as u64) < fraction).collect()
}
