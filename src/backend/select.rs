//! Choosing the backend for `--device auto|cpu|cuda`.
//!
//! `auto` uses CUDA when the driver, NVRTC and cuBLAS libraries load, a context can be made on
//! device 0 and our kernels compile for it; otherwise the CPU, and `reason` says why, for the
//! run log. An explicit `cuda` that cannot be honoured is an error, never a silent fallback.
//! The CUDA number format and code paths come from the run's `[device]` settings
//! ([`crate::config::DeviceConfig`]): `fp16` (the default: tensor-core products with fp32 master
//! weights) or `fp32` (for checking).

use crate::backend::cuda::{self, CudaBackend, CudaSettings};
use crate::backend::{Backend, CpuBackend};
use crate::config::{DeviceConfig, DeviceKind};
use crate::encoding::Encoding;
use crate::model::Mlp;
use crate::train::Adam;

/// The backend a run will use, and why, for the log.
pub struct Chosen {
    pub backend: Box<dyn Backend>,
    pub reason: String,
}

/// The CUDA backend's settings for `device`.
fn settings(device: &DeviceConfig) -> CudaSettings {
    CudaSettings { precision: device.precision, lt: device.cublaslt, graph: device.graph }
}

/// Builds the backend `device` names, with `adam` as its optimiser. Never panics when CUDA is
/// missing or broken.
pub fn choose(
    device: &DeviceConfig,
    encoding: Encoding,
    mlp: Mlp,
    adam: Adam,
    threads: usize,
) -> crate::Result<Chosen> {
    crate::config::check_threads(threads)?;
    let cpu = |encoding: Encoding, mlp: Mlp, reason: String| -> crate::Result<Chosen> {
        Ok(Chosen { backend: Box::new(CpuBackend::new(encoding, mlp, adam, threads)?), reason })
    };
    match device.kind {
        DeviceKind::Cpu => cpu(encoding, mlp, "asked for --device cpu".into()),
        DeviceKind::Auto => match cuda::runtime() {
            Err(why) => cpu(encoding, mlp, format!("--device auto: CUDA is not usable ({why}), so the CPU")),
            Ok(rt) => {
                let precision = device.precision;
                match CudaBackend::new(encoding.clone(), mlp.clone(), adam, settings(device)) {
                    Ok(be) => Ok(Chosen {
                        backend: Box::new(be),
                        reason: format!(
                            "--device auto: CUDA on {} ({}), {}",
                            rt.device_name,
                            rt.arch,
                            precision.name()
                        ),
                    }),
                    Err(e) => cpu(
                        encoding,
                        mlp,
                        format!("--device auto: the CUDA backend failed to start ({e}), so the CPU"),
                    ),
                }
            }
        },
        DeviceKind::Cuda => {
            let precision = device.precision;
            let rt = cuda::runtime().map_err(|why| {
                crate::Error::Config(format!(
                    "--device cuda: CUDA is not usable here: {why}; use --device cpu or auto"
                ))
            })?;
            let be = CudaBackend::new(encoding, mlp, adam, settings(device))?;
            Ok(Chosen {
                backend: Box::new(be),
                reason: format!(
                    "asked for --device cuda: {} ({}), {}",
                    rt.device_name,
                    rt.arch,
                    precision.name()
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::EncodingConfig;
    use crate::model::ModelConfig;
    use crate::sample::CounterRng;

    fn parts() -> (Encoding, Mlp) {
        let rng = CounterRng::new(1, 0);
        let e =
            Encoding::build(&EncodingConfig::Gaussian { sigma: 2.0, features: 4, normalize: false }, 3, &rng);
        let mlp = Mlp::init(Mlp::sizes_for(e.n_features(), &ModelConfig { depth: 2, width: 8 }, 1), &rng);
        (e, mlp)
    }

    /// Whatever this machine has, `auto` gives a working backend and says which, and `cuda`
    /// either works or explains itself; nothing panics.
    #[test]
    fn auto_always_gives_a_backend() {
        let (e, mlp) = parts();
        let on = |k| DeviceConfig::on(k);
        let chosen = choose(&on(DeviceKind::Auto), e.clone(), mlp.clone(), Adam::default(), 1).unwrap();
        let mut be = chosen.backend;
        let (_, out) = be.forward(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]).unwrap();
        assert_eq!(out.len(), 2);
        let cuda = choose(&on(DeviceKind::Cuda), e.clone(), mlp.clone(), Adam::default(), 1);
        // what this machine has decides the one right answer of each
        match cuda::runtime() {
            Err(why) => {
                assert_eq!(chosen.reason, format!("--device auto: CUDA is not usable ({why}), so the CPU"));
                assert_eq!(be.describe(), "cpu (1 threads)");
                assert_eq!(
                    cuda.err().map(|e| e.to_string()),
                    Some(format!(
                        "invalid configuration: --device cuda: CUDA is not usable here: {why}; use --device cpu or auto"
                    ))
                );
            }
            Ok(rt) => {
                assert_eq!(
                    chosen.reason,
                    format!("--device auto: CUDA on {} ({}), fp16", rt.device_name, rt.arch)
                );
                assert!(cuda.unwrap().backend.describe().starts_with("cuda"));
            }
        }
        let cpu = choose(&on(DeviceKind::Cpu), e, mlp, Adam::default(), 1).unwrap();
        assert_eq!(cpu.reason, "asked for --device cpu");
    }
}
