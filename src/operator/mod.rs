//! A and Aᵀ: the linear measurement operators (identity, ray integrals, masked FFT).

pub mod ct_geometry;
pub mod ray;
