//! A and Aᵀ: the linear measurement operators (DESIGN.md): ray integrals for CT (`ray`, with the
//! scan geometry in `ct_geometry`) and the masked 3-D FFT of the MRI job (`fft`).

pub mod ct_geometry;
pub mod fft;
pub mod ray;
