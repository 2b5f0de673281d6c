//! Choosing the backend for `--device auto|cpu|cuda`.

use crate::backend::{Backend, CpuBackend};
use crate::encoding::Encoding;
use crate::model::Mlp;
use crate::train::Adam;

/// The backend a run will use, and why, for the log.
pub struct Chosen {
    pub backend: Box<dyn Backend>,
    pub reason: String,
}

/// Builds the backend named by `device`. This build has the CPU backend only: `auto` says so
/// and uses the CPU, an explicit `cuda` is an error rather than a silent fallback.
pub fn choose(device: &str, encoding: Encoding, mlp: Mlp, threads: usize) -> crate::Result<Chosen> {
    let cpu = |reason: String| -> crate::Result<Chosen> {
        Ok(Chosen { backend: Box::new(CpuBackend::new(encoding, mlp, Adam::default(), threads)?), reason })
    };
    match device {
        "cpu" => cpu("asked for --device cpu".into()),
        "auto" => cpu("--device auto: this build has no CUDA backend yet, so the CPU".into()),
        "cuda" => Err(crate::Error::Config(
            "--device cuda: this build of ffvol has no CUDA backend yet; use --device cpu or auto".into(),
        )),
        other => Err(crate::Error::Config(format!("unknown device {other:?}: use auto, cpu or cuda"))),
    }
}
