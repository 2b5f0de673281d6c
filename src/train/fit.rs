//! The one training loop every job runs.
//!
//! ```text
//! for step in start..steps:
//!     stop?  (Ctrl-C, stop_after)            → checkpoint, Interrupted
//!     sample      points X (and targets)     ← Objective::batch
//!     forward     z = f(X)                   ← Backend::forward
//!     operator    loss, ∂L/∂z = Aᵀ(…)        ← Objective::loss
//!     backward    ∂L/∂θ                      ← Backend::backward
//!     optimiser   Adam step at lr(step)      ← Backend::optimizer_step
//!     log the loss, check it is finite, show progress, checkpoint when due
//! ```
//!
//! A job gives the loop an [`Objective`]: its sampler, its operator and its loss. Three
//! variations sit in the same loop rather than in copies of it:
//!
//! - **Pointwise targets** (identity operator, a loss against known values at the points): the
//!   backend's [`Backend::train_step`] runs forward, loss, backward and Adam, so a GPU backend
//!   can fuse the loss into its last layer.
//! - **Chunks** ([`LoopSpec::chunk`]): a full-grid operator (MRI, CT on the grid) evaluates the
//!   field in chunks without keeping activations, applies the operator to the whole grid, then
//!   re-runs each chunk's forward and accumulates its backward, so the memory a step needs is
//!   bounded by the chunk rather than by the grid.
//! - **Device steps** ([`Objective::device_step`]): when the job's sampler or operator runs on
//!   the backend's device, the whole step stays there; its losses are either returned at once or
//!   queued and read back in groups ([`Objective::read_queued`]), so the host never waits on
//!   the device between steps.
//!
//! Progress, checkpoints, resume, divergence and timing are here, once.

use crate::backend::Backend;
use crate::config::Common;
use crate::train::run::{self, log, progress_bar, FitOptions, CHECKPOINT, RUN_TOML};
use crate::train::{Loss, LrSchedule};
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The query points of one step, and their targets when the loss is pointwise.
pub struct Batch<'a> {
    /// Row-major n×d coordinates in the unit box.
    pub points: &'a [f32],
    /// Targets and loss, when the operator is the identity: the backend then runs the whole step
    /// ([`Backend::train_step`]) and [`Objective::loss`] is not called.
    pub targets: Option<(&'a [f32], Loss)>,
}

/// What a device step reports.
pub enum DeviceStep {
    /// The step ran; its loss.
    Done(f32),
    /// The step is queued on the device; its loss comes from [`Objective::read_queued`].
    Queued,
}

/// Losses of queued device steps, in order, and the device time they took.
#[derive(Default)]
pub struct QueuedReport {
    pub losses: Vec<f32>,
    pub train_seconds: f64,
    pub sample_seconds: f64,
}

/// A job's sampler, operator and loss.
pub trait Objective {
    /// The points of `step` (a pure function of the seed and the step, so resumed runs continue
    /// exactly).
    fn batch(&mut self, step: u64) -> Result<Batch<'_>>;

    /// Operator, loss and adjoint: from the field's outputs `z` at the batch's points, the loss
    /// and ∂L/∂z (written into `dz`, which has `z`'s length). Not called for pointwise batches.
    fn loss(&mut self, step: u64, z: &[f32], dz: &mut [f32]) -> Result<f32>;

    /// The whole step on the device, optimiser included, when this objective and the backend
    /// have one; `None` runs the host step.
    fn device_step(
        &mut self,
        _backend: &mut dyn Backend,
        _step: u64,
        _lr: f32,
    ) -> Option<Result<DeviceStep>> {
        None
    }

    /// Waits for the queued device steps and returns their losses.
    fn read_queued(&mut self, _backend: &mut dyn Backend, _n: usize) -> Result<QueuedReport> {
        Err(Error::Config("read_queued: this objective queues no device steps".into()))
    }

    /// Device steps queued before their losses are read.
    fn queue_limit(&self) -> usize {
        16
    }

    /// Called after step `done`'s loss is logged (evaluation curves); the text, if any, is added
    /// to the progress line.
    fn after_step(&mut self, _backend: &mut dyn Backend, _done: u64) -> Result<Option<String>> {
        Ok(None)
    }
}

/// How long and how fast to train.
#[derive(Clone, Debug)]
pub struct LoopSpec {
    pub steps: u64,
    /// Base learning rate of Adam.
    pub lr: f32,
    pub schedule: LrSchedule,
    /// A checkpoint every this many steps (0 = only at the end and on a stop).
    pub checkpoint_every: u64,
    /// Points a step trains on, for the samples-per-second figure.
    pub samples_per_step: usize,
    /// Evaluate and back-propagate the field this many points at a time (None: all at once).
    pub chunk: Option<usize>,
}

impl LoopSpec {
    /// `steps` steps of Adam at `lr` on `schedule`, a checkpoint every `checkpoint_every`, on
    /// `samples_per_step` points a step, the field evaluated all at once.
    pub fn new(
        steps: u64,
        lr: f32,
        schedule: LrSchedule,
        checkpoint_every: u64,
        samples_per_step: usize,
    ) -> Self {
        LoopSpec { steps, lr, schedule, checkpoint_every, samples_per_step, chunk: None }
    }
}

impl LoopSpec {
    /// A finite, positive learning rate and finite schedule factors (a NaN factor in a run.toml
    /// would train every weight to NaN after a finite loss).
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(format!("train: {what}")));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be a finite number > 0, got {}", self.lr));
        }
        match self.schedule {
            LrSchedule::Exponential { factor, .. } if !(factor.is_finite() && factor > 0.0) => {
                bad(format!("the exponential schedule's factor must be finite and > 0, got {factor}"))
            }
            LrSchedule::Cosine { final_fraction, .. }
                if !(final_fraction.is_finite() && final_fraction >= 0.0) =>
            {
                bad(format!(
                    "the cosine schedule's final fraction must be finite and ≥ 0, got {final_fraction}"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// The loop's settings every job's `[train]` table has: steps, Adam's base learning rate, its
/// schedule and the checkpoint interval (implemented with [`crate::train_settings!`]).
pub trait TrainSettings {
    /// The loop for these settings, on `samples_per_step` points a step.
    fn loop_spec(&self, samples_per_step: usize) -> LoopSpec;
    /// The settings, to change (the command line's flags).
    fn loop_fields(&mut self) -> (&mut u64, &mut f32, &mut LrSchedule, &mut u64);
}

/// `impl TrainSettings` for a `[train]` struct with `steps`, `lr`, `schedule` and
/// `checkpoint_every` fields.
#[macro_export]
macro_rules! train_settings {
    ($t:ty) => {
        impl $crate::train::fit::TrainSettings for $t {
            fn loop_spec(&self, samples_per_step: usize) -> $crate::train::fit::LoopSpec {
                let (steps, lr, every) = (self.steps, self.lr, self.checkpoint_every);
                $crate::train::fit::LoopSpec::new(steps, lr, self.schedule, every, samples_per_step)
            }
            fn loop_fields(&mut self) -> (&mut u64, &mut f32, &mut $crate::train::LrSchedule, &mut u64) {
                (&mut self.steps, &mut self.lr, &mut self.schedule, &mut self.checkpoint_every)
            }
        }
    };
}

/// How the loop ended.
#[derive(Clone, Debug, Default)]
pub struct Trained {
    /// Stopped before this step, with a checkpoint (Ctrl-C or `stop_after`).
    pub interrupted: Option<u64>,
    /// Steps run in this session.
    pub steps_run: u64,
    /// Seconds in forward, operator, backward and optimiser.
    pub train_seconds: f64,
    /// Seconds drawing (and labelling) batches.
    pub sample_seconds: f64,
}

impl Trained {
    /// Seconds per step of this session (0 when no step ran).
    pub fn seconds_per_step(&self) -> f64 {
        (self.train_seconds + self.sample_seconds) / self.steps_run.max(1) as f64
    }
}

/// What every finished run reports about its training, in `metrics.json`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RunStats {
    /// Mean training loss over the last 1 % of steps.
    pub final_loss: f64,
    pub steps: u64,
    pub n_params: usize,
    pub device: String,
    /// Seconds training in this session (sampling included).
    pub train_seconds: f64,
    pub seconds_per_step: f64,
    /// Seconds from the start of the job to its metrics.
    pub total_seconds: f64,
}

/// A run being trained: its folder, its network and its loss log.
pub struct Run {
    pub dir: PathBuf,
    pub backend: Box<dyn Backend>,
    pub loss_log: Vec<(u64, f32, f32)>,
    pub n_params: usize,
    /// Job metadata saved with every checkpoint (what export needs without the input data).
    pub extra: HashMap<String, String>,
}

impl Run {
    /// Builds the network `common` describes for `dim`-D points from its seed on its device and,
    /// when resuming, reads and checks the folder's checkpoint and loss log; only then, with
    /// every check passed, creates the run folder, removes temporary files a killed run left
    /// in it and writes `run.toml` (a fresh run; a resumed run's `run.toml` is its input and is
    /// left as it is). A fresh run in a used folder (`--force`, or a run stopped before its
    /// first checkpoint) first removes the old checkpoint, loss log and metrics, so nothing of
    /// the old run can be resumed under the new `run.toml`.
    pub fn start(
        dir: &Path,
        run_toml: &str,
        common: &Common,
        dim: usize,
        extra: HashMap<String, String>,
        opts: &FitOptions,
    ) -> Result<Self> {
        Self::start_outputs(dir, run_toml, common, dim, 1, extra, opts)
    }

    /// [`Run::start`] for a network with `outputs` outputs per point.
    pub fn start_outputs(
        dir: &Path,
        run_toml: &str,
        common: &Common,
        dim: usize,
        outputs: usize,
        extra: HashMap<String, String>,
        opts: &FitOptions,
    ) -> Result<Self> {
        let built = run::build_network_outputs(common, dim, outputs)?;
        let (mut backend, n_params) = (built.backend, built.n_params);
        let resumed = if opts.resume {
            let mut r = run::read_resume(dir, common, dim, outputs, backend.encoding())?;
            r.notes.extend(run::check_inputs(dir)?);
            Some(r)
        } else {
            None
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let stale = run::remove_stale_temps(dir);
        if stale > 0 {
            log(opts, &format!("removed {stale} temporary file(s) a killed write left in {}", dir.display()));
        }
        if resumed.is_none() {
            for name in [CHECKPOINT, run::LOSS_CSV, run::METRICS, run::INPUTS] {
                let path = dir.join(name);
                if path.exists() {
                    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                }
            }
            crate::io::write_bytes_atomic(&dir.join(RUN_TOML), run_toml.as_bytes())?;
            run::record_inputs(dir, run_toml)?;
        }
        log(opts, &format!("device: {} ({})", backend.describe(), built.reason));
        log(
            opts,
            &format!(
                "network: {} encoding → {} features → {}×{} MLP, {n_params} parameters",
                common.encoding.name(),
                backend.encoding().n_features(),
                common.model.depth,
                common.model.width
            ),
        );
        let mut loss_log = Vec::new();
        if let Some(resumed) = resumed {
            resumed.notes.iter().for_each(|n| log(opts, n));
            loss_log = resumed.loss_log;
            if let Some(ck) = resumed.checkpoint {
                backend.set_state(ck.state)?;
                // the log as the checkpoint has it (rows past its step dropped), at once
                crate::train::loss_log::write_loss_log(&dir.join(run::LOSS_CSV), &loss_log)?;
                log(
                    opts,
                    &format!("resumed from {} at step {}", dir.join(CHECKPOINT).display(), backend.step()),
                );
            }
        }
        Ok(Run { dir: dir.to_path_buf(), backend, loss_log, n_params, extra })
    }

    /// A network for a trial fit (the σ search) in the scratch folder `dir`: no `run.toml`, no
    /// resume, no log lines; its checkpoint goes to `dir`.
    pub fn scratch(dir: &Path, common: &Common, dim: usize, outputs: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let built = run::build_network_outputs(common, dim, outputs)?;
        let n_params = built.n_params;
        Ok(Run {
            dir: dir.to_path_buf(),
            backend: built.backend,
            loss_log: vec![],
            n_params,
            extra: HashMap::new(),
        })
    }

    /// The step the network has been trained to.
    pub fn step(&self) -> u64 {
        self.backend.step()
    }

    /// Writes the checkpoint (with the job's metadata) and the loss log.
    pub fn save(&self) -> Result<()> {
        run::save(&self.dir, self.backend.as_ref(), self.extra.clone(), &self.loss_log)
    }

    /// Mean loss over the last 1 % of logged steps.
    pub fn final_loss(&self) -> f64 {
        run::final_loss(&self.loss_log)
    }

    /// The training figures of a finished run of `steps` steps that started at `started`.
    pub fn stats(&self, trained: &Trained, steps: u64, started: std::time::Instant) -> RunStats {
        RunStats {
            final_loss: self.final_loss(),
            steps,
            n_params: self.n_params,
            device: self.backend.describe(),
            train_seconds: trained.train_seconds + trained.sample_seconds,
            seconds_per_step: trained.seconds_per_step(),
            total_seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// Trains from the network's step to `spec.steps`; see the module docs.
    pub fn train(
        &mut self,
        spec: &LoopSpec,
        objective: &mut dyn Objective,
        opts: &FitOptions,
    ) -> Result<Trained> {
        spec.validate()?;
        Loop::new(self, spec, opts).run(objective)
    }
}

/// The state of one call of [`Run::train`].
struct Loop<'r> {
    run: &'r mut Run,
    spec: &'r LoopSpec,
    opts: &'r FitOptions,
    start: u64,
    bar: Option<indicatif::ProgressBar>,
    out: Trained,
    /// (step number after the step, learning rate) of the device steps queued since the last read.
    queued: Vec<(u64, f32)>,
    dz: Vec<f32>,
    z: Vec<f32>,
    /// When the last progress line was printed (no progress bar).
    printed: std::cell::Cell<Instant>,
}

/// Without a progress bar, a progress line at least this often (and after the first step), so a
/// slow run never looks hung.
const PROGRESS_EVERY_SECONDS: f64 = 30.0;

impl<'r> Loop<'r> {
    fn new(run: &'r mut Run, spec: &'r LoopSpec, opts: &'r FitOptions) -> Self {
        let start = run.step();
        let bar = progress_bar(opts, spec.steps, start);
        let printed = std::cell::Cell::new(Instant::now());
        Loop {
            run,
            spec,
            opts,
            start,
            bar,
            out: Trained::default(),
            queued: vec![],
            dz: vec![],
            z: vec![],
            printed,
        }
    }

    fn run(mut self, objective: &mut dyn Objective) -> Result<Trained> {
        let steps = self.spec.steps;
        for step in self.start..steps {
            if self.opts.should_stop(step) {
                self.read_queued(objective)?;
                self.run.save()?;
                if let Some(b) = &self.bar {
                    b.abandon();
                }
                self.out.interrupted = Some(step);
                return Ok(self.out);
            }
            let lr = self.spec.schedule.lr(self.spec.lr, step, steps);
            if !(lr.is_finite() && lr >= 0.0) {
                return Err(Error::Config(format!(
                    "the learning rate at step {step} is {lr} (lr {}, schedule {:?}): training would write non-finite weights",
                    self.spec.lr, self.spec.schedule
                )));
            }
            let done = step + 1;
            let t = Instant::now();
            match objective.device_step(self.run.backend.as_mut(), step, lr) {
                Some(result) => match result? {
                    DeviceStep::Done(loss) => {
                        self.out.train_seconds += t.elapsed().as_secs_f64();
                        self.logged(objective, done, loss, lr)?;
                    }
                    DeviceStep::Queued => self.queued.push((done, lr)),
                },
                None => {
                    let loss = self.host_step(objective, step, lr)?;
                    self.logged(objective, done, loss, lr)?;
                }
            }
            let checkpoint = run::checkpoint_due(self.spec.checkpoint_every, done, steps);
            if self.queued.len() >= objective.queue_limit() || done == steps || checkpoint {
                self.read_queued(objective)?;
            }
            if checkpoint {
                self.run.save()?;
            }
        }
        if let Some(b) = &self.bar {
            b.finish();
        }
        self.run.save()?;
        Ok(self.out)
    }

    /// Sample, forward, operator, loss, adjoint, backward and optimiser on host data.
    fn host_step(&mut self, objective: &mut dyn Objective, step: u64, lr: f32) -> Result<f32> {
        let backend = self.run.backend.as_mut();
        let t0 = Instant::now();
        let batch = objective.batch(step)?;
        let t1 = Instant::now();
        self.out.sample_seconds += (t1 - t0).as_secs_f64();
        let loss = match batch.targets {
            Some((targets, loss)) => backend.train_step(batch.points, targets, loss, lr)?,
            None => {
                let points = batch.points;
                let dim = backend.encoding().dim;
                let n = points.len() / dim;
                let loss = match self.spec.chunk.filter(|&c| c < n) {
                    None => {
                        let (pass, z) = backend.forward(points)?;
                        self.dz.resize(z.len(), 0.0);
                        let loss = objective.loss(step, z, &mut self.dz)?;
                        backend.backward(pass, &self.dz)?;
                        loss
                    }
                    Some(chunk) => {
                        self.z.resize(n, 0.0);
                        backend.predict(points, &mut self.z)?;
                        self.dz.resize(n, 0.0);
                        let loss = objective.loss(step, &self.z, &mut self.dz)?;
                        // the same points again (a batch is a pure function of the step), rather
                        // than a copy of a grid-sized array kept across `loss`
                        let points = objective.batch(step)?.points;
                        for (k, (p, g)) in points.chunks(chunk * dim).zip(self.dz.chunks(chunk)).enumerate() {
                            let (pass, _) = backend.forward(p)?;
                            if k == 0 {
                                backend.backward(pass, g)?;
                            } else {
                                backend.backward_accumulate(pass, g)?;
                            }
                        }
                        loss
                    }
                };
                backend.optimizer_step(lr)?;
                loss
            }
        };
        self.out.train_seconds += t1.elapsed().as_secs_f64();
        Ok(loss)
    }

    /// Reads the queued device steps' losses and logs them.
    fn read_queued(&mut self, objective: &mut dyn Objective) -> Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let report = objective.read_queued(self.run.backend.as_mut(), self.queued.len())?;
        self.out.train_seconds += report.train_seconds;
        self.out.sample_seconds += report.sample_seconds;
        let queued = std::mem::take(&mut self.queued);
        for (&(done, lr), &loss) in queued.iter().zip(&report.losses) {
            self.logged(objective, done, loss, lr)?;
        }
        Ok(())
    }

    /// Logs step `done`'s loss: a non-finite loss saves a checkpoint and stops the run.
    fn logged(&mut self, objective: &mut dyn Objective, done: u64, loss: f32, lr: f32) -> Result<()> {
        self.out.steps_run += 1;
        if !loss.is_finite() {
            self.queued.clear();
            self.run.save()?;
            return Err(run::diverged(done - 1, loss));
        }
        self.run.loss_log.push((done, loss, lr));
        let extra = objective.after_step(self.run.backend.as_mut(), done)?;
        self.progress(done, loss, extra);
        Ok(())
    }

    fn progress(&self, done: u64, loss: f32, extra: Option<String>) {
        let steps = self.spec.steps;
        if let Some(observe) = &self.opts.on_step {
            observe(done, steps, loss);
        }
        let seconds = (self.out.train_seconds + self.out.sample_seconds).max(1e-9);
        let ran = done - self.start;
        let rate = ran as f64 * self.spec.samples_per_step as f64 / seconds / 1e3;
        let rate = format!("{rate:.0}k samples/s");
        let extra = extra.map(|e| format!("  {e}")).unwrap_or_default();
        if let Some(b) = &self.bar {
            b.set_position(done);
            b.set_message(format!("loss {loss:.4e}  {rate}{extra}"));
        } else if self.opts.progress
            && (done % (steps / 10).max(1) == 0
                || done == steps
                || ran == 1
                || self.printed.get().elapsed().as_secs_f64() >= PROGRESS_EVERY_SECONDS)
        {
            let per_step = seconds / ran as f64;
            let left = per_step * (steps - done) as f64;
            let pace = if per_step >= 1.0 { format!("  {per_step:.1} s/step") } else { String::new() };
            eprintln!(
                "step {done}/{steps}  loss {loss:.4e}  {rate}{pace}  {} left{extra}",
                format_seconds(left)
            );
            self.printed.set(Instant::now());
        }
    }
}

/// `42 s`, `12 min 5 s`, `3 h 20 min`.
fn format_seconds(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::select::choose;
    use crate::config::DeviceConfig;
    use crate::encoding::Encoding;
    use crate::encoding::EncodingConfig;
    use crate::model::Mlp;
    use crate::model::ModelConfig;
    use crate::sample::CounterRng;

    /// MSE against a fixed target at fixed points, through the general (non-pointwise) path.
    struct Fixed {
        points: Vec<f32>,
        target: Vec<f32>,
    }
    impl Objective for Fixed {
        fn batch(&mut self, _step: u64) -> Result<Batch<'_>> {
            Ok(Batch { points: &self.points, targets: None })
        }
        fn loss(&mut self, _step: u64, z: &[f32], dz: &mut [f32]) -> Result<f32> {
            let n = z.len() as f32;
            let mut total = 0.0;
            for ((d, &z), &t) in dz.iter_mut().zip(z).zip(&self.target) {
                total += 0.5 * (z - t) * (z - t);
                *d = (z - t) / n;
            }
            Ok(total / n)
        }
    }

    fn run_in(dir: &Path) -> Run {
        let rng = CounterRng::new(3, 0);
        let cfg = EncodingConfig::Gaussian { sigma: 2.0, features: 8, normalize: false };
        let e = Encoding::build(&cfg, 3, &rng);
        let mlp = Mlp::init(Mlp::sizes_for(e.n_features(), &ModelConfig { depth: 3, width: 16 }, 1), &rng);
        let cpu = DeviceConfig::on(crate::config::DeviceKind::Cpu);
        let backend = choose(&cpu, e, mlp, crate::train::Adam::default(), 1).unwrap().backend;
        Run { dir: dir.to_path_buf(), backend, loss_log: vec![], n_params: 0, extra: HashMap::new() }
    }

    /// Chunked evaluation and accumulated backward give the unchunked step's parameters (to the
    /// rounding of a different summation order).
    #[test]
    fn chunked_steps_match_whole_steps() {
        let dir = std::env::temp_dir().join(format!("ffvol-fit-chunks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rng = CounterRng::new(5, 1);
        let n = 100;
        let points: Vec<f32> = (0..3 * n).map(|i| rng.uniform(i as u64)).collect();
        let target: Vec<f32> = (0..n).map(|i| rng.uniform(1000 + i as u64)).collect();
        let mut spec = LoopSpec::new(5, 1e-2, LrSchedule::Constant, 0, 100);
        let mut whole = run_in(&dir);
        whole
            .train(
                &spec,
                &mut Fixed { points: points.clone(), target: target.clone() },
                &FitOptions::default(),
            )
            .unwrap();
        spec.chunk = Some(17);
        let mut chunked = run_in(&dir);
        chunked.train(&spec, &mut Fixed { points, target }, &FitOptions::default()).unwrap();
        let (a, b) = (whole.backend.state().unwrap().mlp.params, chunked.backend.state().unwrap().mlp.params);
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "chunked and whole steps differ by {worst}");
        assert_eq!(whole.loss_log.len(), 5);
        for (x, y) in whole.loss_log.iter().zip(&chunked.loss_log) {
            assert!((x.1 - y.1).abs() <= 1e-6 * x.1.abs().max(1e-6), "{x:?} {y:?}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A stop before a step writes a checkpoint and reports the step.
    #[test]
    fn stop_after_interrupts_with_a_checkpoint() {
        let dir = std::env::temp_dir().join(format!("ffvol-fit-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = LoopSpec::new(10, 1e-2, LrSchedule::Constant, 0, 100);
        let mut run = run_in(&dir);
        let opts = FitOptions { stop_after: Some(4), ..Default::default() };
        let rng = CounterRng::new(5, 1);
        let points: Vec<f32> = (0..30).map(|i| rng.uniform(i as u64)).collect();
        let out = run.train(&spec, &mut Fixed { points, target: vec![0.5; 10] }, &opts).unwrap();
        assert_eq!(out.interrupted, Some(4));
        assert_eq!(out.steps_run, 4);
        assert_eq!(run.loss_log.len(), 4);
        assert!(dir.join(CHECKPOINT).is_file());
        std::fs::remove_dir_all(&dir).ok();
    }
}
