//! The CUDA backend: our kernels (`cuda/*.cu`, compiled at run time by NVRTC) around cuBLAS
//! matrix products, launched through `cudarc`.
//!
//! ## Design
//!
//! Nothing of CUDA is linked at build time (`cudarc` with `dynamic-loading`), so this module
//! builds everywhere and every entry point first asks whether the driver, NVRTC and cuBLAS
//! libraries can be loaded; when one cannot, it says which, and the caller uses the CPU.
//! Everything that touches the GPU goes through one process-wide [`Runtime`]: the context on
//! device 0 and the kernels compiled for that device's `sm_XY`, so NVRTC runs once per process
//! (and the PTX is cached on disk, see [`kernels`]). Each [`CudaBackend`] owns a stream and a
//! cuBLAS handle, so backends on different threads do not serialise on each other. How a backend
//! runs (precision, cuBLASLt, CUDA graphs) is a [`CudaSettings`] given at construction.
//!
//! Layouts are the CPU backend's (row-major activations batch × width, W row-major out × in,
//! parameters flat in [`crate::model::Mlp`]'s order), so parity tests compare buffers directly.
//!
//! ## Where things are
//!
//! One file per component; where a component has an fp32 and an fp16 form, both are in its file,
//! and its kernels are in the `cuda/*.cu` file of the same name.
//! - `runtime.rs`: the context, the probe, `ffvol info`'s device list; `kernels.rs`: the kernel
//!   sources, NVRTC and the PTX cache; `settings.rs`: [`Precision`] and [`CudaSettings`].
//! - `backend.rs`: [`CudaBackend`] itself (state, construction, the `Backend` trait).
//! - `buffers.rs`: device memory (the launch context `Gpu`, per-batch `Buffers`).
//! - `gemm.rs`: cuBLAS products; `gemm/lt.rs`: cuBLASLt's fused bias + ReLU epilogues.
//! - `encoding.rs`, `mlp.rs` (forward and backward), `loss.rs` (and fp16 loss scaling),
//!   `adam.rs`: the training step's stages (`cuda/encoding.cu`, `mlp.cu`, `loss.cu`, `adam.cu`).
//! - `sample.rs`: the counter RNG and point sampling on the device (`cuda/sample.cu`).
//! - `winding.rs`: a mesh on the device and the winding-number labels (`cuda/winding.cu`);
//!   `occupancy.rs`: the device-resident occupancy step built on it; `graph.rs`: that step's
//!   training part as a CUDA graph.
//! - `resident.rs`: the device-resident API of the full-grid steps (`fit mri`, `fit ct`).
//! - `operator/`: device operators, [`GpuProjector`] (`ct.rs`, `cuda/ct.cu`) and
//!   [`GpuKspaceOperator`] (`fft.rs`, `cuda/kspace.cu` around cuFFT).

/// Launches kernel `$name` with the given arguments (each an expression whose reference is
/// pushed) on `$on.stream`, the kernel coming from `$on.rt` (the [`Runtime`]).
macro_rules! launch {
    ($on:expr, $name:literal, $cfg:expr, $($arg:expr),* $(,)?) => {{
        let f = $on.rt.kernel($name)?;
        let mut b = $on.stream.launch_builder(f);
        $( b.arg($arg); )*
        // SAFETY: the argument list matches the kernel's signature in cuda/*.cu, and every
        // length argument is at most the length of the buffer it describes (checked by callers).
        unsafe { b.launch($cfg) }
            .map(|_| ())
            .map_err(|e| $crate::backend::cuda::cuda_error(concat!("launching ", $name), e))
    }};
}

mod adam;
mod backend;
mod buffers;
mod encoding;
mod gemm;
mod graph;
mod jobs;
pub mod kernels;
mod loss;
mod mlp;
mod occupancy;
mod operator;
mod resident;
mod runtime;
mod sample;
mod settings;
mod winding;

pub use backend::CudaBackend;
pub use occupancy::{BatchParams, StepReport, LOSS_SLOTS};
pub use operator::{fft, GpuKspaceOperator, GpuProjector};
pub use runtime::{describe_devices, libraries_present, runtime, Runtime};
pub use sample::rng_key;
pub use settings::{CudaSettings, Precision};
pub use winding::{DeviceMesh, WINDING_STACK};

pub(crate) use runtime::cuda_error;
use runtime::{grid, panic_message, ONE_BLOCK, THREADS};
