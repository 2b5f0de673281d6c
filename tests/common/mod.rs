//! Helpers shared by the test files: the GPU-or-skip guard, random points, a learnable target,
//! one relative error for a whole buffer, the bundled bunny's path, a network with random biases,
//! scan geometries from TOML, random k-space values, and a fresh scratch folder per test.
#![allow(dead_code, unused_macros)] // each test file uses its own subset

use ffvol::encoding::{Encoding, EncodingConfig};
use ffvol::model::{Mlp, ModelConfig};
use ffvol::operator::ct_geometry::{GeometryFile, Scan};
use ffvol::operator::fft::C64;
use ffvol::sample::CounterRng;
use std::path::{Path, PathBuf};

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

/// A fresh, empty folder under the system's temporary one, named after the test file, this
/// process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ffvol-{}-{}-{name}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch folder");
    dir
}

/// The encoding and a depth × width network (one output) of seed 42, with random, non-zero biases
/// so the bias paths are exercised; the generator, for the test's own draws.
pub fn random_network(enc: EncodingConfig, depth: usize, width: usize) -> (Encoding, Mlp, CounterRng) {
    let rng = CounterRng::new(42, 0);
    let e = Encoding::build(&enc, 3, &rng);
    let sizes = Mlp::sizes_for(e.n_features(), &ModelConfig { depth, width }, 1);
    let mut mlp = Mlp::init(sizes, &rng);
    for l in mlp.layers() {
        for i in 0..l.n_out {
            mlp.params[l.bias + i] = 0.1 * rng.normal(900_000 + (l.bias + i) as u64);
        }
    }
    (e, mlp, rng)
}

/// A scan from a geometry file's text.
pub fn scan(text: &str) -> Scan {
    let f: GeometryFile = toml::from_str(text).expect("toml");
    f.resolve(Path::new("test.toml")).expect("geometry")
}

/// Four beams with offsets, odd sizes and non-square voxels: parallel and fan 2-D, parallel and
/// cone 3-D.
pub fn four_beams() -> Vec<(&'static str, Scan)> {
    vec![
        ("parallel 2D", scan("beam = \"parallel\"\ndims = 2\nquantity = \"mean\"\n[detector]\npixels = [37]\npixel_size = [0.9]\noffset = [1.3]\n[volume]\nvoxels = [24, 20]\nvoxel_size = [1.0, 1.2]\noffset = [0.5, -1.0]\n[angles]\ncount = 7\nfirst = 0.1\n")),
        ("fan 2D", scan("beam = \"fan\"\ndims = 2\ndso = 60.0\ndsd = 100.0\n[detector]\npixels = [41]\npixel_size = [1.5]\noffset = [-0.7]\n[volume]\nvoxels = [22, 26]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = 9\n")),
        ("parallel 3D", scan("beam = \"parallel\"\ndims = 3\n[detector]\npixels = [23, 17]\npixel_size = [1.0, 1.1]\n[volume]\nvoxels = [16, 14, 12]\nvoxel_size = [1.0, 1.0, 1.2]\n[angles]\ncount = 5\n")),
        ("cone 3D", scan("beam = \"cone\"\ndims = 3\ndso = 50.0\ndsd = 90.0\n[detector]\npixels = [29, 23]\npixel_size = [1.2, 1.2]\noffset = [0.4, -0.8]\n[volume]\nvoxels = [14, 16, 12]\nvoxel_size = [1.0, 1.0, 1.0]\noffset = [0.0, 0.5, 0.3]\n[angles]\ncount = 6\nunit = \"degrees\"\nspan = 360.0\n")),
    ]
}

/// n standard-normal complex values of `seed`.
pub fn random_complex(n: usize, seed: u64) -> Vec<C64> {
    let rng = CounterRng::new(seed, 99);
    (0..n).map(|i| C64::new(rng.normal(2 * i as u64) as f64, rng.normal(2 * i as u64 + 1) as f64)).collect()
}
