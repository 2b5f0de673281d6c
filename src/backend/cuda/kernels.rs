//! The kernel sources in `cuda/`, compiled at run time by NVRTC and cached on disk as PTX.
//!
//! NVRTC needs no GPU, so `tests/cuda_kernels_compile.rs` compiles every source here for sm_80
//! and sm_90 on every CI run. At run time the whole set is compiled as one program for the
//! device's own `sm_XY`, once per process, and the PTX is cached under
//! `$FFVOL_CACHE_DIR`, `$XDG_CACHE_HOME/ffvol/ptx` or `~/.cache/ffvol/ptx`, keyed by a hash of
//! source, options, architecture and NVRTC version.

use std::path::{Path, PathBuf};

/// Prepended to every kernel source (device helpers: counter RNG, sincos of turns).
pub const PRELUDE: &str = include_str!("../../../cuda/common.cuh");

/// Every kernel file in `cuda/`, by name. `tests/cuda_kernels_compile.rs` checks that this list
/// and the folder agree.
pub const SOURCES: &[(&str, &str)] = &[
    ("encoding.cu", include_str!("../../../cuda/encoding.cu")),
    ("mlp.cu", include_str!("../../../cuda/mlp.cu")),
    ("loss.cu", include_str!("../../../cuda/loss.cu")),
    ("adam.cu", include_str!("../../../cuda/adam.cu")),
    ("sample.cu", include_str!("../../../cuda/sample.cu")),
    ("winding.cu", include_str!("../../../cuda/winding.cu")),
    ("kspace.cu", include_str!("../../../cuda/kspace.cu")),
    ("ct.cu", include_str!("../../../cuda/ct.cu")),
];

/// Every `extern "C" __global__` function the backend loads.
pub const KERNEL_NAMES: &[&str] = &[
    // encoding.cu
    "encode_fourier",
    "encode_fourier_h",
    "encode_identity",
    "encode_identity_h",
    // mlp.cu
    "bias_act",
    "bias_relu_h",
    "relu_mask",
    "relu_mask_colsum_h",
    "column_sums_partial",
    "column_sums_final",
    "scale_into",
    "f32_to_f16",
    // loss.cu
    "loss_bce",
    "loss_mse",
    "mean_of_partials",
    "mean_of_partials_slot",
    "absmax_total",
    // adam.cu
    "adam_step",
    "adam_step_h",
    "adam_step_h_dev",
    // sample.cu
    "rng_uniform_fill",
    "sample_uniform_box",
    "sample_near_surface",
    // winding.cu
    "winding_label",
    "winding_values",
    // kspace.cu
    "kspace_pack",
    "kspace_residual",
    "kspace_loss_total",
    "kspace_gradient",
    "kspace_mask",
    "kspace_gradient_absmax",
    // ct.cu
    "ct_forward",
    "ct_adjoint",
    "ct_residual",
    "ct_sigmoid",
    "ct_chain_absmax",
    "ct_loss_total",
];

/// One program made of the prelude and the given sources, with `#line` markers so NVRTC's
/// messages name the right file and line.
pub fn program_source(sources: &[(&str, &str)]) -> String {
    let mut s =
        String::with_capacity(PRELUDE.len() + sources.iter().map(|(_, t)| t.len() + 64).sum::<usize>());
    s.push_str("#line 1 \"cuda/common.cuh\"\n");
    s.push_str(PRELUDE);
    for (name, text) in sources {
        s.push_str(&format!("\n#line 1 \"cuda/{name}\"\n"));
        s.push_str(text);
    }
    s
}

/// The folders NVRTC should search for `<cuda_fp16.h>` and friends: `$FFVOL_CUDA_INCLUDE`
/// (a list, like PATH), then `include/` (and `include/cccl/`) under `$CUDA_PATH`, `$CUDA_HOME`
/// and `/usr/local/cuda`. Only folders that exist are returned.
pub fn include_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![];
    if let Some(list) = std::env::var_os("FFVOL_CUDA_INCLUDE") {
        dirs.extend(std::env::split_paths(&list));
    }
    let roots = ["CUDA_PATH", "CUDA_HOME"]
        .iter()
        .filter_map(|v| std::env::var_os(v).map(PathBuf::from))
        .chain(std::iter::once(PathBuf::from("/usr/local/cuda")));
    for root in roots {
        dirs.push(root.join("include"));
    }
    let mut out: Vec<PathBuf> = vec![];
    for d in dirs {
        if !d.is_dir() {
            continue;
        }
        let cccl = d.join("cccl");
        if !out.contains(&d) {
            out.push(d);
        }
        if cccl.is_dir() && !out.contains(&cccl) {
            out.push(cccl);
        }
    }
    out
}

/// NVRTC options for `arch` ("sm_90"). `--fmad=false` keeps every product and sum rounded as
/// the CPU backend rounds it (see cuda/common.cuh).
pub fn compile_options(arch: &str, includes: &[PathBuf]) -> Vec<String> {
    let mut o = vec![format!("--gpu-architecture={arch}"), "--std=c++17".into(), "--fmad=false".into()];
    o.extend(includes.iter().map(|d| format!("--include-path={}", d.display())));
    o
}

/// Whether the NVRTC library can be loaded (cudarc's check, which never panics).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// NVRTC's version (major, minor). Loads the library: call only after [`nvrtc_present`].
pub fn nvrtc_version() -> crate::Result<(i32, i32)> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two out-pointers to live locals.
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if r != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(crate::Error::Config(format!("nvrtcVersion failed: {r:?}")));
    }
    Ok((major, minor))
}

/// Compiles `source` for `arch` and returns the PTX text. NVRTC's log, with the options it got,
/// is in the error. Does not use the cache.
pub fn compile_ptx(source: &str, arch: &str, includes: &[PathBuf]) -> crate::Result<String> {
    if !nvrtc_present() {
        return Err(crate::Error::Config(
            "NVRTC (libnvrtc.so.13) cannot be loaded: put its folder on LD_LIBRARY_PATH (scripts/fetch-nvrtc.sh fetches it)"
                .into(),
        ));
    }
    let opts =
        cudarc::nvrtc::CompileOptions { options: compile_options(arch, includes), ..Default::default() };
    match cudarc::nvrtc::compile_ptx_with_opts(source, opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(cudarc::nvrtc::CompileError::CompileError { log, options, .. }) => {
            Err(crate::Error::Config(format!(
                "NVRTC could not compile the kernels for {arch} (options {options:?}):\n{}",
                log.to_string_lossy()
            )))
        }
        Err(e) => Err(crate::Error::Config(format!("NVRTC failed for {arch}: {e}"))),
    }
}

/// FNV-1a, 64-bit: a hash that is the same in every build, for cache file names.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(&[0xff]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Where compiled PTX is kept between runs; None when no folder can be named.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("FFVOL_CACHE_DIR") {
        return Some(PathBuf::from(d).join("ptx"));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("ffvol").join("ptx"));
    }
    std::env::var_os("HOME")
        .filter(|d| !d.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("ffvol").join("ptx"))
}

/// The whole kernel set as PTX for `arch`, from the disk cache when it holds a copy made from
/// the same source, options and NVRTC version; otherwise compiled and written to the cache
/// (a cache that cannot be written is skipped silently: it only saves time).
pub fn all_kernels_ptx(arch: &str) -> crate::Result<(String, &'static str)> {
    let source = program_source(SOURCES);
    let includes = include_dirs();
    let (major, minor) = nvrtc_version()?;
    let opts = compile_options(arch, &includes).join(" ");
    let key =
        fnv1a(&[source.as_bytes(), opts.as_bytes(), arch.as_bytes(), format!("{major}.{minor}").as_bytes()]);
    let file = cache_dir().map(|d| d.join(format!("{key:016x}.ptx")));
    if let Some(f) = &file {
        if let Ok(text) = std::fs::read_to_string(f) {
            if text.contains(".entry") {
                return Ok((text, "cached"));
            }
        }
    }
    let ptx = compile_ptx(&source, arch, &includes)?;
    if let Some(f) = &file {
        write_atomically(f, &ptx);
    }
    Ok((ptx, "compiled"))
}

fn write_atomically(path: &Path, text: &str) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_name_is_defined_once() {
        let src = program_source(SOURCES);
        for name in KERNEL_NAMES {
            let n = src.matches(&format!(" {name}(")).count();
            assert_eq!(n, 1, "kernel {name} defined {n} times");
        }
        assert_eq!(src.matches("__global__").count(), KERNEL_NAMES.len());
    }

    #[test]
    fn cache_key_is_stable() {
        assert_eq!(fnv1a(&[b"a", b"b"]), fnv1a(&[b"a", b"b"]));
        assert_ne!(fnv1a(&[b"ab"]), fnv1a(&[b"a", b"b"]));
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
    }
}
