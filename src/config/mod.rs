//! Run configuration: presets, `run.toml` files and command-line overrides, resolved in that
//! order by [`resolve`] (the one path every job takes) into the job's config, which is written
//! back as the run's `run.toml` and read again, as a [`RunConfig`], by `ffvol fit --resume` and
//! `ffvol export`.
//!
//! `run.toml` holds everything that can change a result: `job`, the data, the encoding
//! (`[encoding] type = …`), the model, the optimiser (`[optimiser] type = "adam"`), the
//! schedule (`[train.schedule] type = …`), and the device with its number format and GPU code
//! paths (`[device] type = "auto" | "cpu" | "cuda"`, `precision`, `resident`, `gpu_operator`,
//! `cublaslt`, `graph`). A resumed run takes them all from the file, so an fp32 run continues
//! in fp32. The presets are named data in [`presets`].

pub mod presets;

use crate::encoding::EncodingConfig;
use crate::io::MeshFormat;
use crate::model::ModelConfig;
use crate::train::LrSchedule;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A run's configuration, whichever its job (the `job` key of `run.toml`).
#[derive(Clone, Debug, PartialEq)]
pub enum RunConfig {
    Occupancy(OccupancyConfig),
    Volume(crate::job::volume::VolumeConfig),
    Mri(crate::job::mri::MriConfig),
    Ct(crate::job::ct::CtConfig),
    Image(crate::job::image::ImageConfig),
}

impl RunConfig {
    /// Reads `RUN/run.toml` as the config of the job it names; `output` becomes `dir` (run
    /// folders can be moved).
    pub fn load_run(dir: &Path) -> crate::Result<Self> {
        let path = dir.join(crate::train::run::RUN_TOML);
        let mut c = Self::from_value(read_toml(&path)?, &path)?;
        c.common_mut().output = dir.to_path_buf();
        // checked here, so `fit --resume` and `export` both refuse a damaged run.toml, naming it
        c.validate().map_err(|e| crate::Error::format(&path, e.to_string()))?;
        Ok(c)
    }

    /// A config from TOML (`origin` names where it came from in errors), as the job its `job`
    /// key names; unknown keys are an error.
    pub fn from_value(value: toml::Value, origin: &Path) -> crate::Result<Self> {
        let job = value.get("job").and_then(|j| j.as_str()).unwrap_or("");
        Ok(match job {
            "occupancy" => RunConfig::Occupancy(from_value_strict(value, origin)?),
            "volume" => RunConfig::Volume(from_value_strict(value, origin)?),
            "mri" => RunConfig::Mri(from_value_strict(value, origin)?),
            "ct" => RunConfig::Ct(from_value_strict(value, origin)?),
            "image" => RunConfig::Image(from_value_strict(value, origin)?),
            other => {
                return Err(crate::Error::format(
                    origin,
                    format!("job = {other:?}: expected occupancy, volume, mri, ct or image"),
                ))
            }
        })
    }

    /// The config as a TOML value (what `run.toml` holds).
    pub fn to_value(&self) -> crate::Result<toml::Value> {
        let v = match self {
            RunConfig::Occupancy(c) => toml::Value::try_from(c),
            RunConfig::Volume(c) => toml::Value::try_from(c),
            RunConfig::Mri(c) => toml::Value::try_from(c),
            RunConfig::Ct(c) => toml::Value::try_from(c),
            RunConfig::Image(c) => toml::Value::try_from(c),
        };
        v.map_err(|e| crate::Error::Config(format!("cannot write the settings as TOML: {e}")))
    }

    /// Each job's own checks ([`JobConfig::validate`]).
    pub fn validate(&self) -> crate::Result<()> {
        use crate::train::fit::TrainSettings;
        // the learning rate and schedule as the loop checks them (a NaN schedule factor in a
        // run.toml was accepted by `export` and refused by a resume only after its checks)
        let spec = match self {
            RunConfig::Occupancy(c) => c.validate().map(|()| c.train.loop_spec(1)),
            RunConfig::Volume(c) => c.validate().map(|()| c.train.loop_spec(1)),
            RunConfig::Mri(c) => c.validate().map(|()| c.train.loop_spec(1)),
            RunConfig::Ct(c) => c.validate().map(|()| c.train.loop_spec(1)),
            RunConfig::Image(c) => c.validate().map(|()| c.train.loop_spec(1)),
        }?;
        spec.validate()
    }

    /// The job's name (the `job` key).
    pub fn job(&self) -> &'static str {
        match self {
            RunConfig::Occupancy(_) => "occupancy",
            RunConfig::Volume(_) => "volume",
            RunConfig::Mri(_) => "mri",
            RunConfig::Ct(_) => "ct",
            RunConfig::Image(_) => "image",
        }
    }

    /// A job's preset by its name, as `ffvol fit JOB --preset NAME` starts from (`None`: the
    /// job's default preset).
    pub fn preset(job: &str, name: Option<&str>) -> crate::Result<Self> {
        use clap::ValueEnum;
        fn pick<P: ValueEnum>(job: &str, name: Option<&str>, default: P) -> crate::Result<P> {
            match name {
                None => Ok(default),
                Some(n) => P::from_str(n, true).map_err(|_| {
                    let names: Vec<String> = P::value_variants()
                        .iter()
                        .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
                        .collect();
                    crate::Error::Config(format!("unknown {job} preset {n:?}: {}", names.join(", ")))
                }),
            }
        }
        use presets::{CtPreset, MriPreset, Preset};
        Ok(match job {
            "occupancy" => RunConfig::Occupancy(OccupancyConfig::preset(pick(job, name, Preset::Fast)?)),
            "volume" => match name {
                None | Some("fast") => RunConfig::Volume(presets::volume()),
                Some(n) => return Err(crate::Error::Config(format!("unknown volume preset {n:?}: fast"))),
            },
            "mri" => RunConfig::Mri(presets::mri(pick(job, name, MriPreset::HashGrid)?)),
            "ct" => RunConfig::Ct(crate::job::ct::CtConfig::preset(pick(job, name, CtPreset::HashGrid)?)),
            "image" => {
                use crate::job::image::{ImageConfig, ImagePreset};
                RunConfig::Image(ImageConfig::preset(pick(job, name, ImagePreset::Fast)?))
            }
            other => {
                return Err(crate::Error::Config(format!(
                    "unknown job {other:?}: occupancy, volume, mri, ct or image"
                )))
            }
        })
    }

    /// The settings every job has.
    pub fn common(&self) -> &Common {
        match self {
            RunConfig::Occupancy(c) => &c.common,
            RunConfig::Volume(c) => &c.common,
            RunConfig::Mri(c) => &c.common,
            RunConfig::Ct(c) => &c.common,
            RunConfig::Image(c) => &c.common,
        }
    }

    pub fn common_mut(&mut self) -> &mut Common {
        match self {
            RunConfig::Occupancy(c) => &mut c.common,
            RunConfig::Volume(c) => &mut c.common,
            RunConfig::Mri(c) => &mut c.common,
            RunConfig::Ct(c) => &mut c.common,
            RunConfig::Image(c) => &mut c.common,
        }
    }

    /// The device settings the run was made with.
    pub fn device(&self) -> DeviceConfig {
        self.common().device
    }
}

/// What the one resolution path ([`resolve`]) needs of a job's config.
pub trait JobConfig: Serialize + serde::de::DeserializeOwned + Clone {
    /// The `job` key.
    const JOB: &'static str;
    fn validate(&self) -> crate::Result<()>;
}

/// `impl JobConfig` for a job's config whose own `validate` checks it: `job_config!(T, "job")`.
#[macro_export]
macro_rules! job_config {
    ($t:ty, $job:literal) => {
        impl $crate::config::JobConfig for $t {
            const JOB: &'static str = $job;
            fn validate(&self) -> $crate::Result<()> {
                <$t>::validate(self)
            }
        }
    };
}

/// The one resolution path of every job: the preset, then a TOML file over it (keys in the file
/// win), then the command line's flags, then validation.
pub fn resolve<C: JobConfig>(
    preset: C,
    file: Option<&Path>,
    flags: impl FnOnce(&mut C) -> crate::Result<()>,
) -> crate::Result<C> {
    let mut c = match file {
        Some(path) => {
            let value = read_toml(path)?;
            match value.get("job").map(|j| j.as_str()) {
                Some(Some(job)) if job != C::JOB => {
                    return Err(crate::Error::format(
                        path,
                        format!("these are the settings of a {job} run, not of `ffvol fit {}`", C::JOB),
                    ))
                }
                Some(None) => return Err(crate::Error::format(path, "`job` must be a string")),
                _ => {}
            }
            overlay_value(&preset, value, path)?
        }
        None => preset,
    };
    flags(&mut c)?;
    c.validate()?;
    Ok(c)
}

/// `value` as TOML (a run's `run.toml`); a value TOML cannot hold is an error, never an empty file.
pub fn to_toml<T: Serialize>(value: &T) -> crate::Result<String> {
    toml::to_string_pretty(value)
        .map_err(|e| crate::Error::Config(format!("cannot write the settings as TOML: {e}")))
}

/// `value` as JSON (metrics); an error, never an empty string, when it fails.
pub fn to_json<T: Serialize>(value: &T) -> crate::Result<String> {
    serde_json::to_string_pretty(value)
        .map_err(|e| crate::Error::Config(format!("cannot write as JSON: {e}")))
}

/// What every job's config has, at the top level of its `run.toml`: the run folder, the seed,
/// the threads, the device, the network and the optimiser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Common {
    /// Run folder.
    pub output: PathBuf,
    pub seed: u64,
    /// Worker threads on the host (0 = all cores).
    pub threads: usize,
    pub device: DeviceConfig,
    pub encoding: EncodingConfig,
    pub model: ModelConfig,
    pub optimiser: OptimiserConfig,
    /// The distribution of the Gaussian mapping's frequencies, scaled to σ (`frequencies =
    /// "uniform"`; left out of `run.toml` when Gaussian, the paper's).
    #[serde(default, skip_serializing_if = "crate::encoding::Distribution::is_gaussian")]
    pub frequencies: crate::encoding::Distribution,
    /// `--sigma auto`: the σ search run before the fit, and what it chose (`[sigma_search]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_search: Option<crate::train::sigma::SigmaSearch>,
}

/// The most worker threads a run may ask for (each is an OS thread with its own stack).
pub const MAX_THREADS: usize = 1024;

/// `threads` (0 = all cores) is at most [`MAX_THREADS`].
pub fn check_threads(threads: usize) -> crate::Result<()> {
    if threads > MAX_THREADS {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        return Err(crate::Error::Config(format!(
            "threads = {threads}: at most {MAX_THREADS} worker threads (this machine has {cores} cores; 0 uses them all)"
        )));
    }
    Ok(())
}

impl Common {
    /// Seed 0, all cores, the default device and optimiser, no run folder yet.
    pub fn new(encoding: EncodingConfig, model: ModelConfig) -> Self {
        Common {
            output: PathBuf::new(),
            seed: 0,
            threads: 0,
            device: DeviceConfig::default(),
            encoding,
            model,
            optimiser: OptimiserConfig::default(),
            frequencies: Default::default(),
            sigma_search: None,
        }
    }

    /// The settings every job shares, for the job `job` ("occupancy", "volume", "mri", "ct",
    /// "image", "ntk").
    pub fn validate(&self, job: &str) -> crate::Result<()> {
        check_threads(self.threads)?;
        self.encoding.validate()?;
        // a hash grid's finest level at the voxel grid's side needs a job with a voxel grid,
        // which resolves it when it loads the data (`EncodingConfig::fit_finest_to_grid`)
        if !matches!(job, "mri" | "volume") {
            self.encoding.require_finest(job)?;
        }
        if !self.frequencies.is_gaussian() && !matches!(self.encoding, EncodingConfig::Gaussian { .. }) {
            return Err(crate::Error::Config(format!(
                "frequencies = {:?} applies to the gaussian mapping only, not to {}",
                self.frequencies.name(),
                self.encoding.name()
            )));
        }
        if let Some(search) = &self.sigma_search {
            search.validate()?;
        }
        self.model.validate()?;
        self.optimiser.validate()
    }
}

/// Parses `value` as a `T`, refusing keys `T` does not have (what `deny_unknown_fields` does for
/// the tables that can use it: the job configs flatten [`Common`] into their top level, which
/// serde's `deny_unknown_fields` cannot check). The error names `path` and the first such key.
pub fn from_value_strict<T: Serialize + serde::de::DeserializeOwned>(
    value: toml::Value,
    path: &Path,
) -> crate::Result<T> {
    let parsed: T =
        value.clone().try_into().map_err(|e: toml::de::Error| crate::Error::format(path, e.to_string()))?;
    let back = toml::Value::try_from(&parsed).map_err(|e| crate::Error::Config(e.to_string()))?;
    fn unknown(given: &toml::Value, known: &toml::Value, at: &str) -> Option<String> {
        let (toml::Value::Table(g), toml::Value::Table(k)) = (given, known) else { return None };
        for (key, v) in g {
            let here = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
            match k.get(key) {
                None => return Some(here),
                Some(kv) => {
                    if let Some(u) = unknown(v, kv, &here) {
                        return Some(u);
                    }
                }
            }
        }
        None
    }
    match unknown(&value, &back, "") {
        Some(key) => Err(crate::Error::format(path, format!("unknown setting `{key}`"))),
        None => Ok(parsed),
    }
}

/// Where the network runs, and how (`[device]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// `auto` (CUDA when it is usable, else the CPU, and the log says why), `cpu` or `cuda`.
    #[serde(rename = "type")]
    pub kind: DeviceKind,
    /// Number format of the matrix products on CUDA; the CPU computes in fp32.
    pub precision: Precision,
    /// MRI and CT on the grid: keep the whole step on the GPU (the grid uploaded once).
    pub resident: bool,
    /// MRI and CT on the grid: run the operator on the GPU (cuFFT, the GPU projector).
    pub gpu_operator: bool,
    /// Matrix products through cuBLASLt with fused bias and ReLU (else cuBLAS and our kernels).
    pub cublaslt: bool,
    /// Replay the occupancy step as a CUDA graph.
    pub graph: bool,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            kind: DeviceKind::Auto,
            precision: Precision::Fp16,
            resident: true,
            gpu_operator: true,
            cublaslt: true,
            graph: true,
        }
    }
}

impl DeviceConfig {
    /// The default settings on `kind`.
    pub fn on(kind: DeviceKind) -> Self {
        DeviceConfig { kind, ..Default::default() }
    }
}

/// `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Auto,
    Cpu,
    Cuda,
}

/// Number format of the products on a GPU (`--precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp16 operands on tensor cores with fp32 accumulation and fp32 master weights.
    Fp16,
    /// fp32 throughout: the mode the parity tests check against the CPU.
    Fp32,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
        }
    }

    /// `fp16` or `fp32`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        match s {
            "fp16" => Ok(Precision::Fp16),
            "fp32" => Ok(Precision::Fp32),
            other => Err(crate::Error::Config(format!("precision {other:?}: use fp32 or fp16"))),
        }
    }
}

/// The optimiser (`[optimiser]`); the learning rate and its schedule are in `[train]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimiserConfig {
    Adam {
        beta1: f32,
        beta2: f32,
        epsilon: f32,
        /// Decoupled weight decay (AdamW); 0, the default, is plain Adam (`--weight-decay`).
        #[serde(default, skip_serializing_if = "is_zero")]
        weight_decay: f32,
    },
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

impl Default for OptimiserConfig {
    fn default() -> Self {
        let a = crate::train::Adam::default();
        OptimiserConfig::Adam { beta1: a.beta1, beta2: a.beta2, epsilon: a.eps, weight_decay: 0.0 }
    }
}

impl OptimiserConfig {
    pub fn adam(&self) -> crate::train::Adam {
        let OptimiserConfig::Adam { beta1, beta2, epsilon, weight_decay } = *self;
        crate::train::Adam { beta1, beta2, eps: epsilon, weight_decay }
    }

    pub fn validate(&self) -> crate::Result<()> {
        let OptimiserConfig::Adam { beta1, beta2, epsilon, weight_decay } = *self;
        if !(weight_decay.is_finite() && (0.0..1.0).contains(&weight_decay)) {
            return Err(crate::Error::Config(format!(
                "optimiser: weight_decay must be in [0, 1), got {weight_decay}"
            )));
        }
        let unit = |b: f32| (0.0..1.0).contains(&b);
        if !(unit(beta1) && unit(beta2) && epsilon.is_finite() && epsilon > 0.0) {
            return Err(crate::Error::Config(format!(
                "optimiser: Adam needs 0 ≤ beta1, beta2 < 1 and epsilon > 0, got {beta1}, {beta2}, {epsilon}"
            )));
        }
        Ok(())
    }
}

/// Everything an occupancy fit depends on. Reproducible from this and nothing else.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OccupancyConfig {
    /// Always "occupancy": lets `ffvol fit --resume RUN` find the job.
    pub job: String,
    /// The triangle mesh to fit (PLY, OBJ or STL).
    pub mesh: PathBuf,
    #[serde(flatten)]
    pub common: Common,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    pub export: ExportConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Points per step, drawn fresh and labelled every step.
    pub batch: usize,
    pub steps: u64,
    /// Base learning rate of Adam.
    pub lr: f32,
    pub schedule: LrSchedule,
    /// Fraction of each batch drawn near the surface (face point + N(0, surface_sigma²)) rather
    /// than uniformly in the box. The paper trains on uniform points only (0).
    pub surface_fraction: f32,
    /// Noise of the near-surface training points, in unit-box lengths.
    pub surface_sigma: f32,
    /// Write a checkpoint every this many steps (0 = only at the end and on Ctrl-C).
    pub checkpoint_every: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Points in each test set (the paper: 64³ = 262,144).
    pub test_points: usize,
    /// Noise of the near-surface test points (the paper: 0.01).
    pub surface_sigma: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Grid points per axis for the exported mesh and occupancy volume.
    pub resolution: usize,
    /// Mesh formats to write (`mesh.<ext>`).
    pub formats: Vec<MeshFormat>,
    /// Also write the occupancy probabilities as `occupancy.nii.gz`.
    pub nifti: bool,
    /// Evaluate the fine grid only near the surface (see `export::grid::sample_grid`).
    #[serde(default = "yes")]
    pub coarse_to_fine: bool,
    /// Drop mesh components (floaters, specks, tiny cavities) whose enclosed volume is below this
    /// fraction of the largest component's; 0 keeps everything.
    #[serde(default = "default_min_component")]
    pub min_component: f64,
}

fn yes() -> bool {
    true
}

fn default_min_component() -> f64 {
    1e-3
}

pub use presets::Preset;

crate::train_settings!(TrainConfig);

impl OccupancyConfig {
    /// The named starting point (see [`presets`]).
    pub fn preset(preset: Preset) -> Self {
        presets::occupancy(preset)
    }

    /// Overlays a TOML file onto `self`: keys in the file win, keys it leaves out keep their value.
    pub fn overlay_file(&self, path: &Path) -> crate::Result<Self> {
        overlay_toml(self, path)
    }

    pub fn to_toml(&self) -> crate::Result<String> {
        crate::config::to_toml(self)
    }

    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        self.common.validate("occupancy")?;
        let t = &self.train;
        if t.batch == 0 || t.batch > 1 << 24 {
            return bad(format!("train.batch must be in 1..=16777216, got {}", t.batch));
        }
        if t.steps == 0 {
            return bad("train.steps must be at least 1".into());
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad(format!("train.lr must be positive, got {}", t.lr));
        }
        if !(0.0..=1.0).contains(&t.surface_fraction) {
            return bad(format!("train.surface_fraction must be in [0, 1], got {}", t.surface_fraction));
        }
        let nonneg = |x: f32| x.is_finite() && x >= 0.0;
        if !nonneg(t.surface_sigma) || !nonneg(self.eval.surface_sigma) {
            return bad("surface_sigma must be ≥ 0".into());
        }
        if self.eval.test_points == 0 {
            return bad("eval.test_points must be at least 1".into());
        }
        if self.export.resolution < 2 || self.export.resolution > 2048 {
            return bad(format!("export.resolution must be in 2..=2048, got {}", self.export.resolution));
        }
        if !(0.0..=1.0).contains(&self.export.min_component) {
            return bad(format!("export.min_component must be in [0, 1], got {}", self.export.min_component));
        }
        Ok(())
    }
}

crate::job_config!(OccupancyConfig, "occupancy");

/// Overlays a TOML file onto any job's config: keys in the file win, keys it leaves out keep their
/// value, and unknown keys are an error naming the file (the configs deny unknown fields).
pub fn overlay_toml<T: Serialize + serde::de::DeserializeOwned>(base: &T, path: &Path) -> crate::Result<T> {
    overlay_value(base, read_toml(path)?, path)
}

/// [`overlay_toml`] with the file already read (`file` is `path`'s contents).
pub fn overlay_value<T: Serialize + serde::de::DeserializeOwned>(
    base: &T,
    file: toml::Value,
    path: &Path,
) -> crate::Result<T> {
    let mut merged = toml::Value::try_from(base).map_err(|e| crate::Error::Config(e.to_string()))?;
    merge(&mut merged, file);
    from_value_strict(merged, path)
}

/// A TOML file's contents; an error naming the file when it cannot be read or parsed.
pub fn read_toml(path: &Path) -> crate::Result<toml::Value> {
    let text = crate::io::read_text(path)?;
    toml::from_str(&text).map_err(|e| crate::Error::format(path, e.to_string()))
}

/// Deep merge of TOML tables: `over` wins. A table whose `type` changes replaces the old one
/// whole (an encoding switched from gaussian to none must not keep `sigma`).
/// Merges `over` into `base`: tables key by key; a table whose `type` changes is replaced whole.
pub fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            let type_changed = o.get("type").is_some() && o.get("type") != b.get("type");
            if type_changed {
                *b = o;
                return;
            }
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, o) => *slot = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_through_toml() {
        for p in [Preset::Fast, Preset::Paper] {
            let c = OccupancyConfig::preset(p);
            c.validate().unwrap();
            let back: OccupancyConfig = toml::from_str(&c.to_toml().unwrap()).unwrap();
            assert_eq!(back, c);
        }
    }

    #[test]
    fn file_overlays_only_what_it_names() {
        let dir = std::env::temp_dir().join(format!("ffvol-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.toml");
        std::fs::write(&path, "seed = 9\n[train]\nsteps = 17\n[encoding]\ntype = \"none\"\n").unwrap();
        let c = OccupancyConfig::preset(Preset::Paper).overlay_file(&path).unwrap();
        assert_eq!(c.common.seed, 9);
        assert_eq!(c.train.steps, 17);
        assert_eq!(c.train.batch, 32_768);
        assert_eq!(c.common.encoding, EncodingConfig::None);
        std::fs::write(&path, "[train]\nstepz = 17\n").unwrap();
        let err = OccupancyConfig::preset(Preset::Fast).overlay_file(&path).unwrap_err().to_string();
        assert!(err.contains("run.toml") && err.contains("stepz"), "{err}");
        // top-level keys too, though the shared settings are flattened into the job's table
        std::fs::write(&path, "seeed = 9\n").unwrap();
        let err = OccupancyConfig::preset(Preset::Fast).overlay_file(&path).unwrap_err().to_string();
        assert_eq!(err, format!("{}: unknown setting `seeed`", path.display()));
        std::fs::write(&path, "[device]\nprecison = \"fp32\"\n").unwrap();
        let err = OccupancyConfig::preset(Preset::Fast).overlay_file(&path).unwrap_err().to_string();
        assert!(err.contains("precison"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A file from another job's run is refused by name, before its keys are read.
    #[test]
    fn resolve_refuses_another_jobs_settings() {
        let dir = std::env::temp_dir().join(format!("ffvol-config-job-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.toml");
        std::fs::write(&path, "job = \"volume\"\n[export]\nmontage = true\n").unwrap();
        let err = resolve(OccupancyConfig::preset(Preset::Fast), Some(&path), |_| Ok(())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: these are the settings of a volume run, not of `ffvol fit occupancy`",
                path.display()
            )
        );
        std::fs::write(&path, "job = \"occupancy\"\nseed = 5\n").unwrap();
        let c = resolve(OccupancyConfig::preset(Preset::Fast), Some(&path), |_| Ok(())).unwrap();
        assert_eq!(c.common.seed, 5);
        std::fs::remove_dir_all(&dir).ok();
    }
}
