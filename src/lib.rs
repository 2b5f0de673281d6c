//! ffvol fits continuous 3D fields with Fourier-feature MLPs.
//!
//! Every job is the same three things (see ARCHITECTURE.md):
//!
//! ```text
//! field        f(x) = MLP(γ(x))      x ∈ [0,1]^d, γ = a Fourier-feature encoding
//! measurement  y_pred = A · f(X)     A is linear: identity, ray sums, masked FFT
//! loss         L(y_pred, y)          MSE or sigmoid cross-entropy
//! ```
//!
//! The modules follow the stages a run passes through: [`config`] resolves a run's settings,
//! [`io`] reads meshes, volumes and scans, [`geometry`] normalises shapes, labels points
//! inside/outside and extracts iso-surfaces, [`sim`] simulates phantoms and scans, [`sample`]
//! draws query points, [`encoding`] maps them to features, [`model`] holds the MLP,
//! [`operator`] applies A (on the host or, through [`backend::DeviceJobs`], on a GPU),
//! [`recon`] holds the classical reconstructions, [`train`] holds the one training loop,
//! losses, Adam and metrics, [`export`] writes fields out, [`backend`] runs the network on a
//! device, and [`job`] wires the stages into whole jobs.

// `!(x > 0.0)` is used on purpose in input checks: unlike `x <= 0.0` it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod backend;
pub mod config;
pub mod encoding;
pub mod error;
pub mod export;
pub mod geometry;
pub mod io;
pub mod job;
pub mod model;
pub mod ntk;
pub mod operator;
pub mod recon;
pub mod report;
pub mod sample;
pub mod sim;
pub mod train;

pub use error::{Error, Result};
