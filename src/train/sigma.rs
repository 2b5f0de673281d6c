//! `--sigma auto`: choose the encoding's scale σ on the job's own validation data.
//!
//! The search runs short fits over a log-spaced range of σ — a coarse grid, then a finer grid
//! around the coarse grid's best — scores each on held-out validation data that is neither
//! trained on nor part of the test set (each job says which: image pixels of the two mixed-parity
//! grids, held-out voxels, validation points, held-out k-space samples or views), keeps the best,
//! and the job then trains the full fit with it. The short fits share the full fit's budget:
//! with `n` trials each gets `budget / n` of the full fit's network evaluations, so the search
//! costs at most `budget` (30 %) of the full fit; the run records the fraction it took and the
//! seconds. Point-sampled jobs (image, volume, occupancy) spend a trial's share on random
//! mini-batches of the fit's points, so a trial takes more, smaller steps. Grid jobs (MRI, CT),
//! whose every step evaluates the network at every voxel, solve the same problem on a coarser
//! grid of the same box ([`SigmaSearch::proxy_grid`]: halved until a trial gets at least half
//! the fit's steps, no side below 16 voxels) and score the trial's field on the fit's own grid
//! (MRI: on the held-out samples inside the coarse grid's band, the only ones a trial is trained
//! to predict); on their fit's grid a trial got 8 of 200 steps, after which the validation error
//! did not rank σ (tests/sigma_auto.rs has the figures).
//!
//! The run folder gets `sigma_sweep.csv` (σ, validation error, stage), `sigma_sweep.png`
//! (validation error against σ, the choice marked) and, in `run.toml`, the chosen σ in the
//! encoding and a `[sigma_search]` table; a resumed run keeps the chosen σ and does not search
//! again.

use crate::encoding::EncodingConfig;
use crate::export::plot::{Plot, Series, COLORS};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const SWEEP_CSV: &str = "sigma_sweep.csv";
pub const SWEEP_PNG: &str = "sigma_sweep.png";

/// The settings and the outcome of a σ search (`[sigma_search]` in `run.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigmaSearch {
    /// Lowest and highest σ of the coarse grid (log-spaced), in the encoding's units.
    pub lo: f32,
    pub hi: f32,
    /// σ values of the coarse grid.
    pub coarse: usize,
    /// σ values of the finer grid around the coarse grid's best.
    pub refine: usize,
    /// Largest fraction of the full fit's network evaluations the search may take.
    pub budget: f32,
    /// Each short fit trains on random mini-batches of this fraction of the full fit's batch
    /// (at least 256 points), so it takes proportionally more steps for the same cost: a short
    /// fit's ranking of σ is then closer to the full fit's than a few full-batch steps'.
    #[serde(default = "default_batch_fraction")]
    pub batch_fraction: f32,
    /// What the validation error is ("mse", "kspace-mse", "projection-mse", "1-iou").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metric: String,
    /// The σ chosen (filled in by the search; a resumed run keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<f32>,
    /// Its validation error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_error: Option<f64>,
    /// Steps of each short fit, and its batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_steps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_batch: Option<usize>,
    /// The grid of a grid job's short fits (MRI, CT), when coarser than the fit's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_grid: Option<[usize; 3]>,
    /// Network evaluations of the search over those of the full fit (≤ budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_fraction: Option<f64>,
    /// Seconds the search took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

fn default_batch_fraction() -> f32 {
    0.125
}

impl SigmaSearch {
    /// The default search for `job`'s `encoding`: Gaussian σ over [lo, hi] cycles per unit box
    /// (each job's range brackets the paper's choice by about a factor of 8 either way),
    /// positional σ (log2 of the highest frequency) over [1, 10]; 5 coarse and 2 fine trials
    /// within 30 % of the full fit, on mini-batches of an eighth of the fit's batch (image,
    /// volume, occupancy) or on the whole grid (MRI and CT, whose operators see every voxel).
    pub fn default_for(job: &str, encoding: &EncodingConfig) -> Result<Self> {
        let (lo, hi) = match encoding {
            EncodingConfig::Gaussian { .. } => match job {
                "image" => (1.0, 64.0),
                "occupancy" => (1.0, 64.0),
                "volume" | "mri" | "ct" => (0.5, 32.0),
                _ => (0.5, 32.0),
            },
            EncodingConfig::Positional { .. } => (1.0, 10.0),
            other => {
                return Err(Error::Config(format!(
                    "--sigma auto: the {} mapping has no scale σ to choose (use gaussian or positional)",
                    other.name()
                )))
            }
        };
        Ok(SigmaSearch {
            lo,
            hi,
            coarse: 5,
            refine: 2,
            budget: 0.3,
            batch_fraction: if matches!(job, "mri" | "ct") { 1.0 } else { default_batch_fraction() },
            metric: String::new(),
            chosen: None,
            validation_error: None,
            short_steps: None,
            short_batch: None,
            short_grid: None,
            cost_fraction: None,
            seconds: None,
        })
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("sigma_search: {m}")));
        if !(self.lo.is_finite() && self.hi.is_finite() && self.lo > 0.0 && self.hi > self.lo) {
            return bad(format!("needs 0 < lo < hi, got lo {} hi {}", self.lo, self.hi));
        }
        if !(2..=64).contains(&self.coarse) || self.refine > 64 {
            return bad(format!(
                "coarse must be in 2..=64 and refine ≤ 64, got {} and {}",
                self.coarse, self.refine
            ));
        }
        if !(self.budget > 0.0 && self.budget <= 1.0) {
            return bad(format!("budget must be in (0, 1], got {}", self.budget));
        }
        if !(self.batch_fraction > 0.0 && self.batch_fraction <= 1.0) {
            return bad(format!("batch_fraction must be in (0, 1], got {}", self.batch_fraction));
        }
        Ok(())
    }

    /// Trials the search runs.
    pub fn trials(&self) -> usize {
        self.coarse + self.refine
    }

    /// (steps, batch) of each short fit of a full fit of `steps` steps on `batch` points: the
    /// batch is `batch_fraction` of the fit's (at least 256 points, at most the fit's), the
    /// steps ⌊budget · steps · batch / (trials · short batch)⌋; an error when that is below 1.
    pub fn short_plan(&self, steps: u64, batch: usize) -> Result<(u64, usize)> {
        let short_batch =
            ((batch as f64 * self.batch_fraction as f64).ceil() as usize).max(256).min(batch).max(1);
        let s = (self.budget as f64 * steps as f64 * batch as f64
            / (self.trials() as f64 * short_batch as f64))
            .floor() as u64;
        if s == 0 {
            return Err(self.no_step(steps));
        }
        Ok((s, short_batch))
    }

    fn no_step(&self, steps: u64) -> Error {
        Error::Config(format!(
            "--sigma auto: {} trials within {:.0} % of {steps} steps leave no step per trial; train longer or lower sigma_search.coarse/refine",
            self.trials(),
            100.0 * self.budget
        ))
    }

    /// Steps of each short fit of a grid job ([`Proxy`]) within the budget: each trial's share
    /// of `budget · steps · batch` network evaluations, less its validation's, over the proxy's
    /// points a step; at most the fit's `steps` (a longer short fit would rank nothing better).
    pub fn proxy_steps(&self, steps: u64, batch: usize, proxy: &Proxy) -> Result<u64> {
        let share = self.budget as f64 * steps as f64 * batch as f64 / self.trials() as f64;
        let s = ((share - proxy.validation_points as f64) / proxy.points.max(1) as f64).floor();
        if s < 1.0 {
            return Err(self.no_step(steps));
        }
        Ok((s as u64).min(steps))
    }

    /// The grid of a grid job's short fits (MRI, CT: every step evaluates the network at every
    /// voxel, so on the fit's own grid 7 trials within 30 % get 4 % of its steps each, and after
    /// that few steps the validation error does not rank σ): `grid` halved along every axis of
    /// at least 2 · [`MIN_PROXY_SIDE`] voxels until a short fit gets at least half the fit's
    /// steps or no axis can be halved; `validation_points` is what scoring one trial evaluates.
    pub fn proxy_grid(&self, steps: u64, grid: [usize; 3], validation_points: usize) -> Result<Proxy> {
        let batch: usize = grid.iter().product();
        let mut c = grid;
        loop {
            let proxy = Proxy { grid: c, points: c.iter().product(), validation_points };
            let next = c.map(|n| if n / 2 >= MIN_PROXY_SIDE { n / 2 } else { n });
            let enough = self.proxy_steps(steps, batch, &proxy).is_ok_and(|s| 2 * s >= steps);
            if enough || next == c {
                return Ok(proxy);
            }
            c = next;
        }
    }
}

/// A grid job's short fits run on a grid of at least this many voxels a side (where the fit's
/// has as many).
pub const MIN_PROXY_SIDE: usize = 16;

/// What a grid job's short fits solve: the same problem on the coarser grid `grid` (the same
/// box), `points` network evaluations a step, and `validation_points` evaluations to score one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proxy {
    pub grid: [usize; 3],
    pub points: usize,
    pub validation_points: usize,
}

/// One short fit of the search.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    pub sigma: f32,
    /// Validation error (lower is better).
    pub error: f64,
    /// "coarse" or "refine".
    pub stage: &'static str,
}

/// All trials, and the best.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub trials: Vec<Trial>,
    pub best: f32,
    pub best_error: f64,
}

/// Runs the search: `eval(σ)` trains a short fit with σ and returns its validation error.
/// A non-finite error (a metric that cannot be computed) is an error of the search, never a
/// score; `log` receives a line per trial.
pub fn search(
    spec: &SigmaSearch,
    mut eval: impl FnMut(f32) -> Result<f64>,
    mut log: impl FnMut(&str),
) -> Result<Sweep> {
    spec.validate()?;
    let (a, b) = ((spec.lo as f64).ln(), (spec.hi as f64).ln());
    let h = (b - a) / (spec.coarse - 1) as f64;
    let mut trials: Vec<Trial> = Vec::new();
    let mut run = |t: f64, stage: &'static str, trials: &mut Vec<Trial>| -> Result<()> {
        let sigma = t.exp() as f32;
        let error = eval(sigma)?;
        if !error.is_finite() {
            return Err(Error::Input(format!(
                "--sigma auto: the validation error of σ = {sigma} is {error}; it cannot rank σ"
            )));
        }
        log(&format!("σ search ({stage}): σ = {sigma:.4}  validation error {error:.6e}"));
        trials.push(Trial { sigma, error, stage });
        Ok(())
    };
    for k in 0..spec.coarse {
        run(a + h * k as f64, "coarse", &mut trials)?;
    }
    let best_k = argmin(&trials);
    // the finer grid: evenly between the best coarse point and its neighbours, on both sides
    // when it is inside the range, else inward only
    let (left, right) = (best_k > 0, best_k + 1 < spec.coarse);
    let centre = a + h * best_k as f64;
    let sides = left as usize + right as usize;
    let per_side = spec.refine.div_ceil(sides.max(1));
    let mut offsets = Vec::new();
    for j in 1..=per_side {
        let off = h * j as f64 / (per_side + 1) as f64;
        if left {
            offsets.push(-off);
        }
        if right {
            offsets.push(off);
        }
    }
    offsets.truncate(spec.refine);
    offsets.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
    for off in offsets {
        run(centre + off, "refine", &mut trials)?;
    }
    let best = argmin(&trials);
    if best_k == 0 || best_k + 1 == spec.coarse {
        log(&format!(
            "σ search: the best coarse σ ({:.4}) is at the edge of [{}, {}]; the range may not hold the best σ",
            trials[best_k].sigma, spec.lo, spec.hi
        ));
    }
    Ok(Sweep { best: trials[best].sigma, best_error: trials[best].error, trials })
}

fn argmin(trials: &[Trial]) -> usize {
    let mut best = 0;
    for (i, t) in trials.iter().enumerate() {
        if t.error < trials[best].error {
            best = i;
        }
    }
    best
}

/// Writes `sigma_sweep.csv` and `sigma_sweep.png` (validation error against σ, log–log, the
/// chosen σ marked) into `dir`.
pub fn write_sweep(dir: &Path, sweep: &Sweep, metric: &str, job: &str) -> Result<()> {
    let mut csv = String::from("sigma,validation_error,stage\n");
    let mut sorted = sweep.trials.clone();
    sorted.sort_by(|x, y| x.sigma.partial_cmp(&y.sigma).unwrap_or(std::cmp::Ordering::Equal));
    for t in &sorted {
        csv.push_str(&format!("{},{:e},{}\n", t.sigma, t.error, t.stage));
    }
    crate::io::write_bytes_atomic(&dir.join(SWEEP_CSV), csv.as_bytes())?;
    let points =
        |stage: &str| sorted.iter().filter(|t| t.stage == stage).map(|t| (t.sigma as f64, t.error)).collect();
    let all: Vec<(f64, f64)> = sorted.iter().map(|t| (t.sigma as f64, t.error)).collect();
    let log_y = sorted.iter().all(|t| t.error > 0.0);
    let plot = Plot {
        title: format!("{job}: validation error of short fits against sigma"),
        x_label: "sigma".into(),
        y_label: format!("validation {metric}"),
        log_x: true,
        log_y,
        series: vec![
            Series::line("", all, [150, 150, 150]),
            Series::markers("coarse", points("coarse"), COLORS[0]),
            Series::markers("refine", points("refine"), COLORS[1]),
        ],
        marks: vec![(sweep.best as f64, format!("chosen {:.3}", sweep.best))],
    };
    plot.write(&dir.join(SWEEP_PNG))
}

/// `encoding` with its scale set to `sigma` (Gaussian and positional).
pub fn with_sigma(encoding: EncodingConfig, sigma: f32) -> EncodingConfig {
    match encoding {
        EncodingConfig::Gaussian { features, normalize, .. } => {
            EncodingConfig::Gaussian { sigma, features, normalize }
        }
        EncodingConfig::Positional { features, normalize, .. } => {
            EncodingConfig::Positional { sigma, features, normalize }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SigmaSearch {
        SigmaSearch::default_for(
            "image",
            &EncodingConfig::Gaussian { sigma: 1.0, features: 4, normalize: false },
        )
        .unwrap()
    }

    /// On a smooth bowl in log σ the search lands within a refine step of the minimum, and
    /// spends exactly coarse + refine trials.
    #[test]
    fn finds_the_minimum_of_a_bowl() {
        for target in [1.7f64, 9.0, 30.0, 60.0] {
            let sweep = search(&spec(), |s| Ok((s as f64 / target).ln().powi(2) + 0.1), |_| {}).unwrap();
            assert_eq!(sweep.trials.len(), 7);
            let coarse_step = (64f64).ln() / 4.0;
            let miss = (sweep.best as f64 / target).ln().abs();
            assert!(miss <= coarse_step / 4.0 + 1e-9, "target {target}: best {} (miss {miss})", sweep.best);
        }
    }

    #[test]
    fn a_non_finite_error_stops_the_search() {
        let err = search(&spec(), |s| Ok(if s > 10.0 { f64::NAN } else { 1.0 }), |_| {}).unwrap_err();
        assert!(err.to_string().contains("cannot rank"), "{err}");
    }

    #[test]
    fn budget_sets_the_short_fits() {
        let s = spec();
        // 7 trials, 30 %, an eighth of the batch: 8 · 0.3 / 7 of the steps each
        assert_eq!(s.short_plan(1000, 8192).unwrap(), (342, 1024));
        assert_eq!(s.short_plan(1000, 100).unwrap(), (42, 100));
        assert!(s.short_plan(10, 100).is_err());
        assert!(SigmaSearch::default_for("image", &EncodingConfig::None).is_err());
    }

    /// A grid job's short fits: halved until each gets half the fit's steps, no side below 16;
    /// the validation's evaluations come out of the trial's share.
    #[test]
    fn proxy_grids() {
        let s = spec();
        // 64² CT, 200 steps: 8 steps on 64², 34 on 32², 137 on 16²
        let p = s.proxy_grid(200, [64, 64, 1], 0).unwrap();
        assert_eq!((p.grid, p.points), ([16, 16, 1], 256));
        assert_eq!(s.proxy_steps(200, 4096, &p).unwrap(), 137);
        // with a 4096-point validation per trial: ⌊(0.3·200·4096/7 − 4096)/256⌋
        let p = s.proxy_grid(200, [64, 64, 1], 4096).unwrap();
        assert_eq!(s.proxy_steps(200, 4096, &p).unwrap(), 121);
        // 32³ MRI: 16³ is as coarse as it goes (68 steps, under half of 200)
        let p = s.proxy_grid(200, [32, 32, 32], 32768).unwrap();
        assert_eq!(p.grid, [16, 16, 16]);
        assert_eq!(s.proxy_steps(200, 32768, &p).unwrap(), 60);
        // never more steps than the fit's; a grid too small to halve is kept
        let p = s.proxy_grid(10, [512, 512, 1], 0).unwrap();
        assert_eq!(p.grid, [128, 128, 1]);
        assert_eq!(s.proxy_steps(10, 512 * 512, &p).unwrap(), 6);
        assert_eq!(s.proxy_grid(200, [20, 31, 1], 0).unwrap().grid, [20, 31, 1]);
        assert!(s
            .proxy_steps(5, 1000, &Proxy { grid: [10, 10, 10], points: 1000, validation_points: 0 })
            .is_err());
    }
}

/// `--sigma auto` for a job: when `common.sigma_search` asks for a search that has not chosen
/// yet, runs it (`trial(common with σ, short steps, scratch folder)` trains one short fit and
/// returns its validation error), writes the sweep into `dir`, and sets the encoding's σ and the
/// search's outcome in `common`, so the run's `run.toml` records them. A search that has chosen
/// (a resumed run) only checks that its σ is the encoding's. Returns the search's seconds.
///
/// `proxy` (from [`SigmaSearch::proxy_grid`]): a grid job's short fits solve the same problem on
/// that coarser grid; the trial's batch argument is then the proxy's points a step, and the cost
/// counts each trial's validation evaluations too. None: the fit's grid, or mini-batches of its
/// points ([`SigmaSearch::short_plan`]).
#[allow(clippy::too_many_arguments)]
pub fn run_auto(
    common: &mut crate::config::Common,
    dir: &Path,
    job: &str,
    metric: &str,
    full_steps: u64,
    full_batch: usize,
    proxy: Option<Proxy>,
    opts: &crate::train::FitOptions,
    mut trial: impl FnMut(&crate::config::Common, u64, usize, &Path) -> Result<f64>,
) -> Result<Option<f64>> {
    let Some(spec) = common.sigma_search.clone() else { return Ok(None) };
    if let Some(chosen) = spec.chosen {
        common.encoding = with_sigma(common.encoding, chosen);
        return Ok(spec.seconds);
    }
    let started = std::time::Instant::now();
    let (short, short_batch) = match &proxy {
        Some(p) => (spec.proxy_steps(full_steps, full_batch, p)?, p.points),
        None => spec.short_plan(full_steps, full_batch)?,
    };
    let on = match &proxy {
        Some(p) => {
            format!(" on a {} grid", p.grid.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("×"))
        }
        None => String::new(),
    };
    crate::train::run::log(
        opts,
        &format!(
            "σ search: {} short fits of {short} steps × {short_batch} points{on} over σ in [{}, {}] (log), ≤ {:.0} % of the fit's {full_steps} steps × {full_batch}",
            spec.trials(),
            spec.lo,
            spec.hi,
            100.0 * spec.budget
        ),
    );
    let scratch = dir.join(".sigma_trial");
    let base = crate::config::Common { sigma_search: None, ..common.clone() };
    let sweep = search(
        &spec,
        |sigma| {
            let c = crate::config::Common { encoding: with_sigma(base.encoding, sigma), ..base.clone() };
            trial(&c, short, short_batch, &scratch)
        },
        |line| crate::train::run::log(opts, line),
    );
    std::fs::remove_dir_all(&scratch).ok();
    let sweep = sweep?;
    write_sweep(dir, &sweep, metric, job)?;
    let seconds = started.elapsed().as_secs_f64();
    let validation = proxy.map_or(0, |p| p.validation_points) as f64;
    let cost = (sweep.trials.len() as f64 * (short as f64 * short_batch as f64 + validation))
        / (full_steps as f64 * full_batch as f64);
    if cost > spec.budget as f64 + 1e-9 {
        return Err(Error::Config(format!(
            "σ search cost {cost:.3} of the fit, over its budget {}",
            spec.budget
        )));
    }
    crate::train::run::log(
        opts,
        &format!(
            "σ search: chose σ = {:.4} (validation {metric} {:.4e}) in {seconds:.1} s; cost {:.1} % of the fit's network evaluations",
            sweep.best,
            sweep.best_error,
            100.0 * cost
        ),
    );
    common.encoding = with_sigma(common.encoding, sweep.best);
    common.sigma_search = Some(SigmaSearch {
        metric: metric.into(),
        chosen: Some(sweep.best),
        validation_error: Some(sweep.best_error),
        short_steps: Some(short),
        short_batch: Some(short_batch),
        short_grid: proxy.filter(|p| p.points < full_batch).map(|p| p.grid),
        cost_fraction: Some(cost),
        seconds: Some(seconds),
        ..spec
    });
    Ok(Some(seconds))
}
