//! How a [`super::CudaBackend`] runs: the number format of the matrix products and the fp16
//! path's optional parts, chosen at construction ([`CudaSettings`]); no environment variables.

/// The number format, as the run config names it (`[device] precision`).
pub use crate::config::Precision;

/// What [`super::CudaBackend::new`] builds. The default is DESIGN.md's: fp16 tensor cores with
/// fp32 master weights, cuBLASLt's fused bias + ReLU epilogues, and the occupancy step's
/// training part replayed as a CUDA graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CudaSettings {
    pub precision: Precision,
    /// fp16: the hidden forward products through cuBLASLt with the bias + ReLU in the epilogue
    /// (off: cuBLAS and our `bias_relu_h`, the fallback when cuBLASLt is missing).
    pub lt: bool,
    /// fp16: the device-resident occupancy step's training part captured once and replayed as a
    /// CUDA graph (off: ordinary launches every step).
    pub graph: bool,
}

impl Default for CudaSettings {
    fn default() -> Self {
        CudaSettings { precision: Precision::Fp16, lt: true, graph: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_names_parse_and_serialise_alike() {
        for p in [Precision::Fp16, Precision::Fp32] {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.name()));
            assert_eq!(serde_json::from_str::<Precision>(&format!("\"{}\"", p.name())).unwrap(), p);
        }
        assert!(Precision::parse("bf16").is_err());
        let d = CudaSettings::default();
        assert!(d.precision == Precision::Fp16 && d.lt && d.graph);
    }
}
