//! What every job's run folder shares: the file names, building the network from the run's seed
//! on the chosen device, resuming it from the folder's checkpoint, the pieces of the training
//! loops (stop, divergence, checkpoints, final loss), and reopening a saved network for export.

use crate::backend::Backend;
use crate::config::{Common, DeviceConfig};
use crate::encoding::Encoding;
use crate::model::checkpoint::Checkpoint;
use crate::model::Mlp;
use crate::sample::rng::streams;
use crate::sample::CounterRng;
use crate::train::loss_log::{read_loss_log, write_loss_log};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const RUN_TOML: &str = "run.toml";
pub const METRICS: &str = "metrics.json";
pub const LOSS_CSV: &str = "loss.csv";

/// A freshly initialised network on its device.
pub struct Network {
    pub backend: Box<dyn Backend>,
    /// Why this device, for the run log.
    pub reason: String,
    pub n_params: usize,
}

/// γ and a one-output MLP for `dim`-D inputs as `common` sets them (encoding, model, seed,
/// optimiser), on its device.
pub fn build_network(common: &Common, dim: usize) -> Result<Network> {
    let seed = common.seed;
    let encoding = Encoding::build(&common.encoding, dim, &CounterRng::new(seed, streams::ENCODING));
    let sizes = Mlp::sizes_for(encoding.n_features(), &common.model, 1);
    let mlp = Mlp::init_field(sizes, &encoding, &CounterRng::new(seed, streams::INIT_WEIGHTS));
    let n_params = mlp.params.len();
    let adam = common.optimiser.adam();
    let chosen = crate::backend::select::choose(&common.device, encoding, mlp, adam, common.threads)?;
    Ok(Network { backend: chosen.backend, reason: chosen.reason, n_params })
}

/// Loads `dir`'s checkpoint into `backend` (whose encoding must match it) and returns the loss
/// log up to the checkpoint's step.
pub fn resume(backend: &mut dyn Backend, dir: &Path) -> Result<Vec<(u64, f32, f32)>> {
    let ck_path = dir.join(CHECKPOINT);
    let ck = Checkpoint::load(&ck_path)?;
    if ck.encoding != *backend.encoding() {
        return Err(Error::format(&ck_path, "the checkpoint's encoding does not match run.toml"));
    }
    backend.set_state(ck.state)?;
    Ok(read_loss_log(&dir.join(LOSS_CSV), backend.step()))
}

/// Writes `dir`'s checkpoint (the backend's state with `extra`) and its loss log.
pub fn save(
    dir: &Path,
    backend: &dyn Backend,
    extra: HashMap<String, String>,
    loss_log: &[(u64, f32, f32)],
) -> Result<()> {
    Checkpoint { encoding: backend.encoding().clone(), state: backend.state()?, extra }
        .save(&dir.join(CHECKPOINT))?;
    write_loss_log(&dir.join(LOSS_CSV), loss_log)
}

/// The error of a training loop whose loss at `step` is not finite.
pub fn diverged(step: u64, loss: f32) -> Error {
    Error::Input(format!("training diverged at step {step} (loss {loss}); try a smaller learning rate"))
}

/// Whether a periodic checkpoint is due after step `done` of `steps` (the last one is always
/// written by the loop's end).
pub fn checkpoint_due(every: u64, done: u64, steps: u64) -> bool {
    every > 0 && done.is_multiple_of(every) && done < steps
}

/// Mean loss over the last 1 % of logged steps.
pub fn final_loss(loss_log: &[(u64, f32, f32)]) -> f64 {
    let tail = (loss_log.len() / 100).max(1);
    loss_log.iter().rev().take(tail).map(|r| r.1 as f64).sum::<f64>() / tail as f64
}

/// The network a checkpoint holds, on `device`, for re-evaluating a saved run.
pub fn saved_backend(ck: &Checkpoint, device: &DeviceConfig, threads: usize) -> Result<Box<dyn Backend>> {
    let adam = crate::train::Adam::default(); // export never takes an optimiser step
    Ok(crate::backend::select::choose(device, ck.encoding.clone(), ck.state.mlp.clone(), adam, threads)?
        .backend)
}

/// Reads `dir/run.toml` as a job's config (or as a plain `toml::Value`).
pub fn load_run_toml<T: serde::Serialize + serde::de::DeserializeOwned>(dir: &Path) -> Result<T> {
    let path = dir.join(RUN_TOML);
    crate::config::from_value_strict(crate::config::read_toml(&path)?, &path)
}

/// Writes `dir/metrics.json` atomically (NaN, e.g. "no truth", becomes null).
pub fn write_metrics(dir: &Path, metrics: &impl serde::Serialize) -> Result<()> {
    let json = crate::config::to_json(metrics)?;
    crate::io::write_bytes_atomic(&dir.join(METRICS), json.as_bytes())
}

/// How a fit is driven, beyond its config.
#[derive(Clone, Default)]
pub struct FitOptions {
    /// Set (by a Ctrl-C handler) to stop at the next step, after writing a checkpoint.
    pub interrupt: Option<Arc<AtomicBool>>,
    /// Show a progress bar / progress lines on stderr.
    pub progress: bool,
    /// Stop after this step as if interrupted (tests of resume).
    pub stop_after: Option<u64>,
    /// Continue from the checkpoint in the run folder.
    pub resume: bool,
    /// Host memory the run may plan for (`--max-memory`); `None`: what the machine has free,
    /// less a margin ([`crate::train::memory`]).
    pub max_memory: Option<u64>,
    /// Evaluate full-grid steps this many points at a time (`--chunk`); `None`: chunk only when
    /// the whole grid's activations would not fit ([`crate::train::memory::choose_chunk`]).
    pub chunk: Option<usize>,
}

impl FitOptions {
    /// The limits a job's memory plan is checked against: the host's, and a device's with
    /// `device_free` bytes free ([`crate::backend::Backend::device_memory_free`]).
    pub fn memory_limits(&self, device_free: Option<u64>) -> crate::train::memory::MemoryLimits {
        crate::train::memory::MemoryLimits::new(self.max_memory, device_free)
    }

    /// The chunk of a full-grid step of `n` points through a network of layer `sizes`: the one
    /// asked for, else one that bounds the working set (`None`: the whole grid at once).
    pub fn grid_chunk(&self, n: usize, sizes: &[usize]) -> Option<usize> {
        use crate::train::memory::{choose_chunk, network_bytes_per_point, NETWORK_BUDGET};
        match self.chunk {
            Some(c) => (c < n).then_some(c),
            None => choose_chunk(n, network_bytes_per_point(sizes), NETWORK_BUDGET),
        }
    }

    /// Whether the loop stops before `step` (interrupted, or `stop_after`), with a checkpoint.
    pub fn should_stop(&self, step: u64) -> bool {
        self.interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst))
            || self.stop_after.is_some_and(|s| step >= s)
    }
}

/// Prints a run-log line when the run shows progress.
pub fn log(opts: &FitOptions, line: &str) {
    if opts.progress {
        eprintln!("{line}");
    }
}

pub(crate) fn progress_bar(opts: &FitOptions, steps: u64, start: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !opts.progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(steps);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:30} step {pos}/{len}  {msg}  elapsed {elapsed}  left {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_position(start);
    bar.reset_eta();
    Some(bar)
}

/// The run folder of a new fit: `output` (refused when it already holds a run, unless `force`),
/// or `runs/<stem>`, `runs/<stem>-2`, … whichever is free.
pub fn run_folder(output: Option<&Path>, force: bool, stem: &str) -> Result<std::path::PathBuf> {
    if let Some(o) = output {
        if o.join(RUN_TOML).exists() && !force {
            return Err(Error::Config(format!(
                "{} already holds a run; pass --force to overwrite it or `ffvol fit --resume {}` to continue it",
                o.display(),
                o.display()
            )));
        }
        return Ok(o.to_path_buf());
    }
    let base = std::path::PathBuf::from("runs");
    let mut dir = base.join(stem);
    let mut k = 2;
    while dir.exists() {
        dir = base.join(format!("{stem}-{k}"));
        k += 1;
    }
    Ok(dir)
}

/// A data file's name without its extensions (`brain.nii.gz` → `brain`), for run folder names.
pub fn data_stem(path: &Path) -> String {
    let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("run");
    name.trim_end_matches(".gz")
        .trim_end_matches(".nii")
        .trim_end_matches(".npy")
        .trim_end_matches(".ply")
        .trim_end_matches(".obj")
        .trim_end_matches(".stl")
        .to_string()
}
