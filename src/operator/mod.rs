//! A and Aᵀ: the linear measurement operators (DESIGN.md). `fft`: the masked 3-D FFT of the MRI job.

pub mod fft;
