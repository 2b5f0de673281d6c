//! Choosing the backend for `--device auto|cpu|cuda`.
//!
//! `auto` uses CUDA when the driver, NVRTC and cuBLAS libraries load, a context can be made on
//! device 0 and our kernels compile for it; otherwise the CPU, and `reason` says why, for the
//! run log. An explicit `cuda` that cannot be honoured is an error, never a silent fallback.
//! The CUDA settings come from [`set_cuda_settings`] (the CLI's `--precision`): `fp16` (the
//! default: tensor-core products with fp32 master weights) or `fp32` (for checking).

use crate::backend::cuda::{self, CudaBackend, CudaSettings};
use crate::backend::{Backend, CpuBackend};
use crate::encoding::Encoding;
use crate::model::Mlp;
use crate::train::Adam;

/// The backend a run will use, and why, for the log.
pub struct Chosen {
    pub backend: Box<dyn Backend>,
    pub reason: String,
}

/// The settings [`choose`] builds CUDA backends with; None: [`CudaSettings::default`].
static CUDA_SETTINGS: std::sync::Mutex<Option<CudaSettings>> = std::sync::Mutex::new(None);

/// Sets the CUDA settings of the backends [`choose`] builds from now on (the CLI's `--precision`).
pub fn set_cuda_settings(settings: CudaSettings) {
    *CUDA_SETTINGS.lock().unwrap_or_else(|e| e.into_inner()) = Some(settings);
}

fn cuda_settings() -> CudaSettings {
    CUDA_SETTINGS.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or_default()
}

/// Builds the backend named by `device`. Never panics when CUDA is missing or broken.
pub fn choose(device: &str, encoding: Encoding, mlp: Mlp, threads: usize) -> crate::Result<Chosen> {
    let cpu = |encoding: Encoding, mlp: Mlp, reason: String| -> crate::Result<Chosen> {
        Ok(Chosen { backend: Box::new(CpuBackend::new(encoding, mlp, Adam::default(), threads)?), reason })
    };
    match device {
        "cpu" => cpu(encoding, mlp, "asked for --device cpu".into()),
        "auto" => match cuda::runtime() {
            Err(why) => cpu(encoding, mlp, format!("--device auto: CUDA is not usable ({why}), so the CPU")),
            Ok(rt) => {
                let settings = cuda_settings();
                let precision = settings.precision;
                match CudaBackend::new(encoding.clone(), mlp.clone(), Adam::default(), settings) {
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
        "cuda" => {
            let settings = cuda_settings();
            let precision = settings.precision;
            let rt = cuda::runtime().map_err(|why| {
                crate::Error::Config(format!(
                    "--device cuda: CUDA is not usable here: {why}; use --device cpu or auto"
                ))
            })?;
            let be = CudaBackend::new(encoding, mlp, Adam::default(), settings)?;
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
        other => Err(crate::Error::Config(format!("unknown device {other:?}: use auto, cpu or cuda"))),
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
        let chosen = choose("auto", e.clone(), mlp.clone(), 1).unwrap();
        assert!(chosen.reason.starts_with("--device auto:"), "{}", chosen.reason);
        let mut be = chosen.backend;
        let out = be.forward(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]).unwrap();
        assert_eq!(out.len(), 2);
        match choose("cuda", e.clone(), mlp.clone(), 1) {
            Ok(c) => assert!(c.backend.describe().starts_with("cuda")),
            Err(err) => assert!(err.to_string().contains("--device cuda"), "{err}"),
        }
        assert!(choose("tpu", e, mlp, 1).is_err());
    }
}
