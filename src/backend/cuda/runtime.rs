//! The process-wide CUDA state ([`Runtime`]: the context on device 0 and the kernels compiled for
//! it, see [`super::kernels`]), the probe that says why CUDA cannot be used, `ffvol info`'s device
//! list, and the launch shapes the element-wise kernels share.

use super::kernels;
use cudarc::driver::{CudaContext, CudaFunction, LaunchConfig};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The process-wide CUDA state: a context on device 0 and the loaded kernels.
pub struct Runtime {
    pub ctx: Arc<CudaContext>,
    /// "sm_90"
    pub arch: String,
    /// "NVIDIA H200"
    pub device_name: String,
    /// Whether the PTX came from the disk cache ("cached") or NVRTC ("compiled").
    pub ptx_origin: &'static str,
    kernels: HashMap<&'static str, CudaFunction>,
}

impl Runtime {
    /// A kernel by name (one of [`kernels::KERNEL_NAMES`], all loaded when the runtime was made).
    pub fn kernel(&self, name: &str) -> crate::Result<&CudaFunction> {
        self.kernels
            .get(name)
            .ok_or_else(|| crate::Error::Config(format!("CUDA kernel {name} is not loaded")))
    }
}

/// A driver, NVRTC or cuBLAS failure as a library error.
pub(crate) fn cuda_error(what: &str, e: impl std::fmt::Debug) -> crate::Error {
    crate::Error::Config(format!("CUDA: {what} failed: {e:?}"))
}

/// Threads per block of the element-wise kernels (the loss and reduction kernels assume 256).
pub(super) const THREADS: u32 = 256;

/// A grid-stride launch over `len` items: [`THREADS`] per block, at most 2^20 blocks.
pub(super) fn grid(len: usize) -> LaunchConfig {
    let blocks = len.div_ceil(THREADS as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// One block of [`THREADS`]: the kernels that finish a reduction over per-block partials.
pub(super) const ONE_BLOCK: LaunchConfig =
    LaunchConfig { grid_dim: (1, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };

/// The message of a caught panic (`catch_unwind`'s payload), or "?".
pub(super) fn panic_message(p: &(dyn std::any::Any + Send)) -> &str {
    p.downcast_ref::<String>().map(String::as_str).or(p.downcast_ref::<&str>().copied()).unwrap_or("?")
}

/// Which CUDA libraries can be loaded, without loading anything else.
pub fn libraries_present() -> (bool, bool, bool) {
    // SAFETY: each call only tries to dlopen the library by its usual names.
    unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
        )
    }
}

/// The runtime, made on first use; the error says why CUDA cannot be used here. Never panics:
/// a panic inside `cudarc` (a missing symbol in an old library, say) is caught and reported.
pub fn runtime() -> Result<Arc<Runtime>, String> {
    static RUNTIME: OnceLock<Result<Arc<Runtime>, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| match std::panic::catch_unwind(probe) {
            Ok(r) => r.map(Arc::new),
            Err(p) => Err(format!("CUDA initialisation panicked: {}", panic_message(&*p))),
        })
        .clone()
}

fn probe() -> Result<Runtime, String> {
    let (driver, nvrtc, cublas) = libraries_present();
    if !driver {
        return Err("no CUDA driver (libcuda.so.1 cannot be loaded)".into());
    }
    if !nvrtc {
        return Err("no NVRTC (libnvrtc.so.13 cannot be loaded; it ships with the CUDA 13 toolkit)".into());
    }
    if !cublas {
        return Err("no cuBLAS (libcublas.so.13 cannot be loaded)".into());
    }
    let count = cudarc::driver::CudaContext::device_count()
        .map_err(|e| format!("cuInit/cuDeviceGetCount failed: {e:?}"))?;
    if count < 1 {
        return Err("the CUDA driver sees no device".into());
    }
    let ctx = CudaContext::new(0).map_err(|e| format!("cannot create a context on CUDA device 0: {e:?}"))?;
    // SAFETY: every backend works on its own stream and never shares a buffer with another
    // stream, so cudarc's cross-stream event tracking only costs launches; turn it off before
    // anything is allocated.
    unsafe { ctx.disable_event_tracking() };
    let (major, minor) = ctx.compute_capability().map_err(|e| format!("compute capability: {e:?}"))?;
    let device_name = ctx.name().unwrap_or_else(|_| "CUDA device 0".into());
    let arch = format!("sm_{major}{minor}");
    let (ptx, ptx_origin) = kernels::all_kernels_ptx(&arch).map_err(|e| e.to_string())?;
    let module = ctx
        .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
        .map_err(|e| format!("the driver refused the kernels' PTX for {arch}: {e:?}"))?;
    let mut map = HashMap::new();
    for &name in kernels::KERNEL_NAMES {
        let f = module
            .load_function(name)
            .map_err(|e| format!("kernel {name} missing from the module: {e:?}"))?;
        map.insert(name, f);
    }
    Ok(Runtime { ctx, arch, device_name, ptx_origin, kernels: map })
}

/// A few lines for `ffvol info`: which libraries load, NVRTC's version, and every device with
/// its compute capability and memory; or why there is none. Never panics.
pub fn describe_devices() -> String {
    std::panic::catch_unwind(describe_devices_inner)
        .unwrap_or_else(|_| "cuda: probing the driver panicked".into())
}

fn describe_devices_inner() -> String {
    use cudarc::driver::result::device;
    let (driver, nvrtc, cublas) = libraries_present();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut s = String::new();
    let nvrtc_version = if nvrtc {
        kernels::nvrtc_version().map(|(a, b)| format!(" ({a}.{b})")).unwrap_or_default()
    } else {
        String::new()
    };
    // SAFETY: only tries to dlopen the library by its usual names.
    let cublaslt = unsafe { cudarc::cublaslt::sys::is_culib_present() };
    s.push_str(&format!(
        "cuda: driver library {}, NVRTC {}{nvrtc_version}, cuBLAS {}, cuBLASLt {} (fp16 epilogues), cuFFT {} (fit mri)\n",
        yes(driver),
        yes(nvrtc),
        yes(cublas),
        yes(cublaslt),
        yes(super::fft::cufft_present())
    ));
    if !driver {
        s.push_str("cuda: no devices (no driver)\n");
        return s;
    }
    if let Err(e) = cudarc::driver::result::init() {
        s.push_str(&format!("cuda: cuInit failed: {e:?}\n"));
        return s;
    }
    let count = match device::get_count() {
        Ok(c) => c,
        Err(e) => {
            s.push_str(&format!("cuda: cuDeviceGetCount failed: {e:?}\n"));
            return s;
        }
    };
    s.push_str(&format!("cuda: {count} device(s)\n"));
    use cudarc::driver::sys::CUdevice_attribute as A;
    for i in 0..count {
        let line = (|| -> Result<String, cudarc::driver::DriverError> {
            let dev = device::get(i)?;
            let name = device::get_name(dev)?;
            // SAFETY: `dev` came from cuDeviceGet above.
            let (major, minor, mem) = unsafe {
                (
                    device::get_attribute(dev, A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
                    device::get_attribute(dev, A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
                    device::total_mem(dev)?,
                )
            };
            Ok(format!("cuda {i}: {name}, sm_{major}{minor}, {:.1} GiB", mem as f64 / (1u64 << 30) as f64))
        })()
        .unwrap_or_else(|e| format!("cuda {i}: cannot be queried: {e:?}"));
        s.push_str(&line);
        s.push('\n');
    }
    match runtime() {
        Ok(rt) => s.push_str(&format!(
            "cuda: usable: kernels {} for {} on {}\n",
            rt.ptx_origin, rt.arch, rt.device_name
        )),
        Err(reason) => s.push_str(&format!("cuda: not usable: {reason}\n")),
    }
    s
}
