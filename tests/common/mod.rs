//! Helpers shared by the test files: the one place backends are built ([`Device::backend`],
//! [`cuda_backend`]), the `test_device!` macro that runs one test body on every backend, the
//! GPU guard, the independent readers (python3 with trimesh, nibabel, numpy), random points, a
//! learnable target, one relative error for a whole buffer, the bundled bunny's path, a network
//! with random biases, scan geometries from TOML, random k-space values, and a fresh scratch
//! folder per test.
//!
//! Tests that need a GPU are `#[ignore = "needs a CUDA GPU"]`, so a machine without one reports
//! them as ignored, never as passed; the GPU check runs them with `--include-ignored` and
//! `FFVOL_REQUIRE_CUDA=1`, where a missing GPU fails them.
#![allow(dead_code, unused_macros)] // each test file uses its own subset

use ffvol::backend::cuda::{CudaBackend, CudaSettings, Precision};
use ffvol::backend::{Backend, CpuBackend};
use ffvol::encoding::{Encoding, EncodingConfig};
use ffvol::model::{Mlp, ModelConfig};
use ffvol::operator::ct_geometry::{GeometryFile, Scan};
use ffvol::operator::fft::C64;
use ffvol::sample::CounterRng;
use ffvol::train::Adam;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether `FFVOL_REQUIRE_CUDA=1` (set by the GPU check scripts): a missing GPU is then a failure.
pub fn cuda_required() -> bool {
    std::env::var("FFVOL_REQUIRE_CUDA").is_ok_and(|v| v == "1")
}

/// Whether `CI` is set (and not `0`/`false`): a missing independent reader is then a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Inside a test marked `#[ignore = "needs a CUDA GPU"]`: without a usable GPU, fails under
/// `FFVOL_REQUIRE_CUDA=1` (the GPU check), else prints `skipped: <reason>` and returns (someone
/// ran `--include-ignored` by hand on a machine without a GPU).
macro_rules! require_cuda {
    () => {
        if let Err(reason) = ffvol::backend::cuda::runtime() {
            if crate::common::cuda_required() {
                panic!("FFVOL_REQUIRE_CUDA=1 but CUDA is not usable: {reason}");
            }
            println!("skipped: {reason}");
            return;
        }
    };
}

/// The backends every conformance property runs on. The CPU is the reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Device {
    Cpu,
    CudaFp32,
    /// fp16 with cuBLASLt's fused epilogues (where the library loads)
    CudaFp16,
    /// fp16 without cuBLASLt (the fallback when the library is missing)
    CudaFp16NoLt,
}

/// The CUDA backend's settings a test chooses.
pub type Cuda = CudaSettings;

/// The default settings in `precision`.
pub fn cuda(precision: Precision) -> Cuda {
    CudaSettings { precision, ..Default::default() }
}

/// The one place a test builds a CUDA backend.
pub fn cuda_backend(e: Encoding, mlp: Mlp, s: Cuda) -> CudaBackend {
    CudaBackend::new(e, mlp, Adam::default(), s).expect("CUDA backend")
}

/// The CPU reference (2 threads).
pub fn cpu_backend(e: Encoding, mlp: Mlp) -> CpuBackend {
    CpuBackend::new(e, mlp, Adam::default(), 2).expect("CPU backend")
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::CudaFp32 => "cuda fp32",
            Device::CudaFp16 => "cuda fp16",
            Device::CudaFp16NoLt => "cuda fp16 without cuBLASLt",
        }
    }

    pub fn is_cpu(self) -> bool {
        self == Device::Cpu
    }

    pub fn is_fp16(self) -> bool {
        matches!(self, Device::CudaFp16 | Device::CudaFp16NoLt)
    }

    pub fn cuda(self) -> Option<Cuda> {
        match self {
            Device::Cpu => None,
            Device::CudaFp32 => Some(cuda(Precision::Fp32)),
            Device::CudaFp16 => Some(cuda(Precision::Fp16)),
            Device::CudaFp16NoLt => Some(Cuda { lt: false, ..cuda(Precision::Fp16) }),
        }
    }

    /// This device's backend on `e` and `mlp`.
    pub fn backend(self, e: Encoding, mlp: Mlp) -> Box<dyn Backend> {
        match self.cuda() {
            None => Box::new(cpu_backend(e, mlp)),
            Some(s) => Box::new(cuda_backend(e, mlp, s)),
        }
    }
}

/// One test body run on every backend: `test_device!(name, |device: Device| { ... })` makes a
/// module `name` with a `cpu` test and ignored `cuda_fp32`, `cuda_fp16`, `cuda_fp16_nolt` tests
/// (they need a GPU: `--include-ignored` on the GPU machine).
macro_rules! test_device {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            fn body(device: crate::common::Device) {
                let f: fn(crate::common::Device) = $body;
                f(device)
            }
            #[test]
            fn cpu() {
                body(crate::common::Device::Cpu)
            }
            #[test]
            #[ignore = "needs a CUDA GPU"]
            fn cuda_fp32() {
                require_cuda!();
                body(crate::common::Device::CudaFp32)
            }
            #[test]
            #[ignore = "needs a CUDA GPU"]
            fn cuda_fp16() {
                require_cuda!();
                body(crate::common::Device::CudaFp16)
            }
            #[test]
            #[ignore = "needs a CUDA GPU"]
            fn cuda_fp16_nolt() {
                require_cuda!();
                body(crate::common::Device::CudaFp16NoLt)
            }
        }
    };
}

/// Whether `python3 -c "import <module>"` works.
pub fn python_has(module: &str) -> bool {
    Command::new("python3")
        .arg("-c")
        .arg(format!("import {module}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Whether the independent reader `module` (trimesh, nibabel, numpy) is there for `what`. Under
/// `CI` (where `.ci/run` installs them) a missing one fails the test; elsewhere it prints why the
/// check is skipped and returns false.
pub fn reader(module: &str, what: &str) -> bool {
    if python_has(module) {
        return true;
    }
    let why = format!(
        "`python3 -c \"import {module}\"` fails, so {what} is not checked \
         (`python3 -m pip install trimesh nibabel numpy`, as .ci/run does)"
    );
    if in_ci() {
        panic!("CI is set but {why}");
    }
    println!("skipped: {why}");
    false
}

/// [`reader`] for a module `.ci/run` installs under another pip name list (`pip`): under `CI` a
/// missing one fails the test; elsewhere it prints why the check is skipped and returns false.
pub fn reader_from(module: &str, pip: &str, what: &str) -> bool {
    if python_has(module) {
        return true;
    }
    let why = format!(
        "`python3 -c \"import {module}\"` fails, so {what} is not checked \
         (`python3 -m pip install {pip}`, as .ci/run does)"
    );
    if in_ci() {
        panic!("CI is set but {why}");
    }
    println!("skipped: {why}");
    false
}

/// Runs scripts/check_nifti.py on `out` against `reference` (nibabel). Returns false when
/// skipped (see [`reader`]).
pub fn check_with_nibabel(out: &Path, reference: &Path, extra: &[&str]) -> bool {
    if !reader("nibabel", &out.display().to_string()) {
        return false;
    }
    let o = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_nifti.py"))
        .arg(out)
        .arg(reference)
        .args(extra)
        .output()
        .expect("run python3");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "check_nifti.py {} {}: {text}", out.display(), reference.display());
    eprintln!("{text}");
    true
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

/// max |a − b| / max(max |b|, floor) in f64 (for operators whose values are f64 or whose
/// tolerances are below f32's resolution of the ratio).
pub fn rel_err64(a: &[f32], b: &[f32], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(floor, |m, x| m.max(x.abs() as f64));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs())) / scale
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

/// The encoding of `enc` in `dim`-D and a depth × width network (one output) as a run starts:
/// both drawn from `rng`, Glorot weights, zero biases.
pub fn network(
    enc: &EncodingConfig,
    dim: usize,
    depth: usize,
    width: usize,
    rng: &CounterRng,
) -> (Encoding, Mlp) {
    let e = Encoding::build(enc, dim, rng);
    let mlp = Mlp::init(Mlp::sizes_for(e.n_features(), &ModelConfig { depth, width }, 1), rng);
    (e, mlp)
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

/// The `ffvol` binary: `$FFVOL_BIN` (the GPU check ships it beside the test binaries), else the
/// one cargo built with these tests.
pub fn ffvol_exe() -> PathBuf {
    std::env::var_os("FFVOL_BIN").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_BIN_EXE_ffvol").into())
}

/// Runs `ffvol <args>` in its own process, asserts that it succeeded, and reads
/// `<out>/metrics.json`.
pub fn ffvol_fit<T: serde::de::DeserializeOwned>(args: &[&str], out: &Path) -> T {
    let o = Command::new(ffvol_exe()).args(args).output().expect("run the ffvol binary");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "ffvol {args:?} failed:\n{text}");
    let path = out.join(ffvol::job::ct::METRICS);
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// SplitMix64: a tiny deterministic generator for the geometry tests' points and coin flips.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn point_in(&mut self, lo: glam::Vec3, hi: glam::Vec3) -> glam::Vec3 {
        lo + (hi - lo) * glam::Vec3::new(self.uniform(), self.uniform(), self.uniform())
    }
}
