//! Helpers shared by the CUDA test files: the GPU-or-skip guard, random points, a learnable
//! target, one relative error for a whole buffer, and the bundled bunny's path.
#![allow(dead_code)] // each test file uses its own subset

use ffvol::sample::CounterRng;
use std::path::PathBuf;

/// Whether `FFVOL_REQUIRE_CUDA=1` (set by the GPU check scripts): a missing GPU is then a failure.
pub fn cuda_required() -> bool {
    std::env::var("FFVOL_REQUIRE_CUDA").is_ok_and(|v| v == "1")
}

/// Without a usable GPU, prints `skipped: <reason>` and returns from the test (passes), unless
/// `FFVOL_REQUIRE_CUDA=1`, where it fails.
macro_rules! require_cuda {
    () => {
        if let Err(reason) = ffvol::backend::cuda::runtime() {
            if common::cuda_required() {
                panic!("FFVOL_REQUIRE_CUDA=1 but CUDA is not usable: {reason}");
            }
            println!("skipped: {reason}");
            return;
        }
    };
}

/// n points (3n coordinates) uniform in the unit cube, from counters first.. of `rng`.
pub fn points(rng: &CounterRng, first: u64, n: usize) -> Vec<f32> {
    (0..3 * n).map(|i| rng.uniform(first + i as u64)).collect()
}

/// Occupancy of a ball of radius 0.3 around the centre: a target the network can learn.
pub fn ball(pts: &[f32]) -> Vec<f32> {
    pts.chunks(3)
        .map(|p| (p.iter().map(|x| (x - 0.5) * (x - 0.5)).sum::<f32>() < 0.09) as u8 as f32)
        .collect()
}

/// max |a − b| / max(max |b|, floor): one scale for a whole buffer, so near-zero entries do not
/// blow up the ratio.
pub fn rel_err(a: &[f32], b: &[f32], floor: f32) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(floor, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// datasets/bunny.ply: `$FFVOL_BUNNY`, else from the working directory (the GPU check runs in
/// the repository root), else from this checkout.
pub fn bunny_path() -> PathBuf {
    if let Some(p) = std::env::var_os("FFVOL_BUNNY") {
        return p.into();
    }
    let here = PathBuf::from("datasets/bunny.ply");
    if here.is_file() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/bunny.ply")
}
