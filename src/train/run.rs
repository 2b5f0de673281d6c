//! What every job's run folder shares: the file names, building the network from the run's seed
//! on the chosen device, resuming it from the folder's checkpoint, the pieces of the training
//! loops (stop, divergence, checkpoints, final loss), and reopening a saved network for export.

use crate::backend::Backend;
use crate::config::{Common, DeviceConfig};
use crate::encoding::Encoding;
use crate::model::checkpoint::{self, Checkpoint, TensorSpec};
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
    build_network_outputs(common, dim, 1)
}

/// [`build_network`] with `outputs` outputs per point (an RGB image: 3).
pub fn build_network_outputs(common: &Common, dim: usize, outputs: usize) -> Result<Network> {
    let seed = common.seed;
    let rng = CounterRng::new(seed, streams::ENCODING);
    let encoding = Encoding::build_with(&common.encoding, common.frequencies, dim, &rng);
    let sizes = Mlp::sizes_for(encoding.n_features(), &common.model, outputs);
    let mlp = Mlp::init_field(sizes, &encoding, &CounterRng::new(seed, streams::INIT_WEIGHTS));
    let n_params = mlp.params.len();
    let adam = common.optimiser.adam();
    let chosen = crate::backend::select::choose(&common.device, encoding, mlp, adam, common.threads)?;
    Ok(Network { backend: chosen.backend, reason: chosen.reason, n_params })
}

/// The tensors (names, shapes, dtypes) a checkpoint of the network `common` describes for
/// `dim`-D points holds: the one source of what a run's checkpoint must contain
/// ([`crate::model::checkpoint::layout`] of the encoding and MLP the run's config builds).
pub fn expected_tensors(common: &Common, dim: usize, outputs: usize) -> Vec<TensorSpec> {
    let rng = CounterRng::new(common.seed, streams::ENCODING);
    let encoding = Encoding::build_with(&common.encoding, common.frequencies, dim, &rng);
    let sizes = Mlp::sizes_for(encoding.n_features(), &common.model, outputs);
    checkpoint::layout(&encoding, &sizes)
}

/// Reads `dir`'s checkpoint and checks it holds the network `common` describes for `dim`-D points
/// (names, shapes and dtypes of every tensor; every value finite), before any of it is used.
pub fn load_checkpoint(dir: &Path, common: &Common, dim: usize) -> Result<Checkpoint> {
    load_checkpoint_outputs(dir, common, dim, 1)
}

/// [`load_checkpoint`] for a network with `outputs` outputs per point (an RGB image: 3).
pub fn load_checkpoint_outputs(
    dir: &Path,
    common: &Common,
    dim: usize,
    outputs: usize,
) -> Result<Checkpoint> {
    let path = dir.join(CHECKPOINT);
    let ck = Checkpoint::load(&path)?;
    ck.check_layout(&expected_tensors(common, dim, outputs), &dir.join(RUN_TOML).display().to_string())
        .map_err(|m| Error::format(&path, m))?;
    Ok(ck)
}

/// What resuming `dir` starts from: its checkpoint (None when the run was stopped before its
/// first one, so it starts over) and the loss log up to the checkpoint's step.
pub struct Resumed {
    pub checkpoint: Option<Checkpoint>,
    pub loss_log: Vec<(u64, f32, f32)>,
    /// What the run log should say about it.
    pub notes: Vec<String>,
}

/// Reads and checks what `fit --resume` continues from, writing nothing: `dir`'s checkpoint
/// against the network `common` describes (and its encoding against `encoding`, the one the
/// run's seed builds), and `loss.csv` up to the checkpoint's step. Rows past that step (a kill
/// between the log and the checkpoint) are dropped; missing rows are reported.
pub fn read_resume(
    dir: &Path,
    common: &Common,
    dim: usize,
    outputs: usize,
    encoding: &Encoding,
) -> Result<Resumed> {
    let ck_path = dir.join(CHECKPOINT);
    let loss_path = dir.join(LOSS_CSV);
    if !ck_path.exists() {
        return Ok(Resumed {
            checkpoint: None,
            loss_log: vec![],
            notes: vec![format!(
                "{} has no checkpoint yet (stopped before its first one): starting from step 0",
                dir.display()
            )],
        });
    }
    let ck = load_checkpoint_outputs(dir, common, dim, outputs)?;
    if ck.encoding != *encoding {
        return Err(Error::format(&ck_path, "the checkpoint's encoding does not match run.toml"));
    }
    let step = ck.state.adam.step;
    let loss_log = read_loss_log(&loss_path, step)?;
    let mut notes = vec![];
    let contiguous = loss_log.iter().enumerate().all(|(i, r)| r.0 == i as u64 + 1);
    if !contiguous || loss_log.len() as u64 != step {
        notes.push(format!(
            "warning: {} holds {} rows for the checkpoint's {step} steps: final_loss will not match an uninterrupted run",
            loss_path.display(),
            loss_log.len()
        ));
    }
    Ok(Resumed { checkpoint: Some(ck), loss_log, notes })
}

/// Writes `dir`'s loss log and then its checkpoint (the backend's state with `extra`), so the log
/// never lags the checkpoint: a kill between the two leaves rows past the checkpoint's step,
/// which a resume drops.
pub fn save(
    dir: &Path,
    backend: &dyn Backend,
    extra: HashMap<String, String>,
    loss_log: &[(u64, f32, f32)],
) -> Result<()> {
    let state = backend.state()?;
    write_loss_log(&dir.join(LOSS_CSV), loss_log)?;
    Checkpoint { encoding: backend.encoding().clone(), state, extra, tensors: vec![] }
        .save(&dir.join(CHECKPOINT))
}

/// The record of a run's input files (`inputs.toml`): what a resume needs to find unchanged.
pub const INPUTS: &str = "inputs.toml";

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct InputFile {
    path: std::path::PathBuf,
    bytes: u64,
    /// FNV-1a (64-bit) of the whole file, hex.
    fnv1a64: String,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Inputs {
    #[serde(default)]
    file: Vec<InputFile>,
}

/// The files a run's config names as inputs: every string in `run.toml` (outside `output`)
/// that names an existing regular file, so a job's new input key is covered without a list.
fn input_paths(run_toml: &str) -> Vec<std::path::PathBuf> {
    fn walk(v: &toml::Value, key: &str, out: &mut Vec<std::path::PathBuf>) {
        match v {
            toml::Value::String(s) if key != "output" => {
                let p = Path::new(s);
                if std::fs::metadata(p).is_ok_and(|m| m.is_file()) && !out.iter().any(|q| q == p) {
                    out.push(p.to_path_buf());
                }
            }
            toml::Value::Table(t) => t.iter().for_each(|(k, v)| walk(v, k, out)),
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, key, out)),
            _ => {}
        }
    }
    let mut out = vec![];
    if let Ok(t) = toml::from_str::<toml::Table>(run_toml) {
        walk(&toml::Value::Table(t), "", &mut out);
    }
    out
}

/// Size and FNV-1a hash of `path`, read in 1 MiB pieces.
fn fingerprint(path: &Path) -> Result<InputFile> {
    use std::io::Read;
    let mut f = crate::io::open_file(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut hash, mut bytes) = (0xcbf2_9ce4_8422_2325u64, 0u64);
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        bytes += n as u64;
    }
    Ok(InputFile { path: path.to_path_buf(), bytes, fnv1a64: format!("{hash:016x}") })
}

/// Records the size and hash of every input file of the run (`inputs.toml`).
pub fn record_inputs(dir: &Path, run_toml: &str) -> Result<()> {
    let file = input_paths(run_toml).iter().map(|p| fingerprint(p)).collect::<Result<Vec<_>>>()?;
    let text = crate::config::to_toml(&Inputs { file })?;
    crate::io::write_bytes_atomic(&dir.join(INPUTS), text.as_bytes())
}

/// Checks the input files recorded when the run started are unchanged (size and hash): a
/// resume on other data would silently continue a different fit. A run without the record
/// (from an older ffvol) is resumed with a note.
pub fn check_inputs(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(INPUTS);
    if !path.exists() {
        return Ok(vec![format!("note: {} has no {INPUTS}: its input files are not checked", dir.display())]);
    }
    let text = crate::io::read_text(&path)?;
    let inputs: Inputs = toml::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))?;
    for want in &inputs.file {
        let now = fingerprint(&want.path).map_err(|e| {
            Error::format(&path, format!("input {} of this run cannot be read: {e}", want.path.display()))
        })?;
        if now != *want {
            return Err(Error::format(
                &want.path,
                format!(
                    "changed since the run started ({} bytes, FNV-1a {} then; {} bytes, {} now): resuming would continue the fit on other data; restore the file or start a new run",
                    want.bytes, want.fnv1a64, now.bytes, now.fnv1a64
                ),
            ));
        }
    }
    Ok(vec![])
}

/// Removes the temporary files of atomic writes into `dir` that a killed process left behind
/// (`.NAME.tmp-PID` of a process that is no longer running); returns how many.
pub fn remove_stale_temps(dir: &Path) -> usize {
    // whether a process is alive is read from /proc; elsewhere nothing is removed
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    if !Path::new("/proc/self").exists() {
        return 0;
    }
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = crate::io::atomic_temp_pid(&name.to_string_lossy()) else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if alive {
            continue;
        }
        // a file, or the staging folder of several (io::Staged)
        let path = entry.path();
        let gone = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
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
    /// Called after every logged step with (step done, steps in the run, loss): how a caller
    /// that is not a terminal (the Python package, a notebook) shows progress.
    pub on_step: Option<StepObserver>,
}

/// See [`FitOptions::on_step`].
pub type StepObserver = Arc<dyn Fn(u64, u64, f32) + Send + Sync>;

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

/// The run folder of a new fit: `output` (refused when it already holds a run with a checkpoint,
/// unless `force`; a run stopped before its first checkpoint has nothing to lose and is fitted
/// again), or `runs/<stem>`, `runs/<stem>-2`, … whichever is free.
pub fn run_folder(output: Option<&Path>, force: bool, stem: &str) -> Result<std::path::PathBuf> {
    if let Some(o) = output {
        if o.join(RUN_TOML).exists() && o.join(CHECKPOINT).exists() && !force {
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
