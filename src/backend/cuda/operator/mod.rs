//! Device operators of the grid jobs: the CT ray projector and its adjoint ([`GpuProjector`],
//! `cuda/ct.cu`) and the MRI job's masked k-space operator ([`GpuKspaceOperator`], cuFFT and
//! `cuda/kspace.cu`).

mod ct;
pub mod fft;

pub use ct::GpuProjector;
pub use fft::GpuKspaceOperator;
