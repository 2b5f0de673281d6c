//! Run configuration: presets, `run.toml` files and command-line overrides, resolved in that
//! order into one struct that is written back as the run's `run.toml`.

use crate::encoding::EncodingConfig;
use crate::io::MeshFormat;
use crate::model::ModelConfig;
use crate::train::LrSchedule;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything an occupancy fit depends on. Reproducible from this and nothing else.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OccupancyConfig {
    /// Always "occupancy": lets `ffvol fit --resume RUN` find the job.
    pub job: String,
    /// The triangle mesh to fit (PLY, OBJ or STL).
    pub mesh: PathBuf,
    /// Run folder.
    pub output: PathBuf,
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// `auto`, `cpu` or `cuda`.
    pub device: String,
    pub encoding: EncodingConfig,
    pub model: ModelConfig,
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

/// Named starting points for the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Finishes in under two minutes on 2 CPU cores.
    Fast,
    /// The paper's protocol: 8 × 256, m = 256, σ = 12, batch 32,768, 10,000 steps.
    Paper,
}

impl OccupancyConfig {
    pub fn preset(preset: Preset) -> Self {
        let base = OccupancyConfig {
            job: "occupancy".into(),
            mesh: PathBuf::from("datasets/bunny.ply"),
            output: PathBuf::new(),
            seed: 0,
            threads: 0,
            device: "auto".into(),
            encoding: EncodingConfig::Gaussian { sigma: 10.0, features: 128, normalize: false },
            model: ModelConfig { depth: 4, width: 128 },
            train: TrainConfig {
                batch: 8192,
                steps: 2000,
                lr: 2e-3,
                schedule: LrSchedule::Cosine { warmup: 50, final_fraction: 0.02 },
                surface_fraction: 0.5,
                surface_sigma: 0.01,
                checkpoint_every: 500,
            },
            eval: EvalConfig { test_points: 262_144, surface_sigma: 0.01 },
            export: ExportConfig {
                resolution: 256,
                formats: vec![MeshFormat::Ply],
                nifti: true,
                coarse_to_fine: true,
                min_component: 1e-3,
            },
        };
        match preset {
            Preset::Fast => base,
            Preset::Paper => OccupancyConfig {
                encoding: EncodingConfig::Gaussian { sigma: 12.0, features: 256, normalize: true },
                model: ModelConfig { depth: 8, width: 256 },
                train: TrainConfig {
                    batch: 32_768,
                    steps: 10_000,
                    lr: 5e-4,
                    schedule: LrSchedule::Exponential { factor: 0.1, every: 5000 },
                    surface_fraction: 0.0,
                    surface_sigma: 0.01,
                    checkpoint_every: 1000,
                },
                ..base
            },
        }
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
        self.encoding.validate()?;
        self.model.validate()?;
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
        crate::train::run::validate_device(&self.device)
    }
}

/// `value` as TOML (a run's `run.toml`); a value TOML cannot hold is an error, never an empty file.
pub fn to_toml<T: Serialize>(value: &T) -> crate::Result<String> {
    toml::to_string_pretty(value)
        .map_err(|e| crate::Error::Config(format!("cannot write the settings as TOML: {e}")))
}

/// `value` as JSON (metrics, checkpoint metadata); an error, never an empty string, when it fails.
pub fn to_json<T: Serialize>(value: &T) -> crate::Result<String> {
    serde_json::to_string_pretty(value)
        .map_err(|e| crate::Error::Config(format!("cannot write as JSON: {e}")))
}

/// Overlays a TOML file onto any job's config: keys in the file win, keys it leaves out keep their
/// value, and unknown keys are an error naming the file (the configs deny unknown fields).
pub fn overlay_toml<T: Serialize + serde::de::DeserializeOwned>(base: &T, path: &Path) -> crate::Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
    let file: toml::Value = toml::from_str(&text).map_err(|e| crate::Error::format(path, e.to_string()))?;
    let mut merged = toml::Value::try_from(base).map_err(|e| crate::Error::Config(e.to_string()))?;
    merge(&mut merged, file);
    merged.try_into().map_err(|e: toml::de::Error| crate::Error::format(path, e.to_string()))
}

/// Deep merge of TOML tables: `over` wins. A table whose `type` changes replaces the old one
/// whole (an encoding switched from gaussian to none must not keep `sigma`).
fn merge(base: &mut toml::Value, over: toml::Value) {
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
        assert_eq!(c.seed, 9);
        assert_eq!(c.train.steps, 17);
        assert_eq!(c.train.batch, 32_768);
        assert_eq!(c.encoding, EncodingConfig::None);
        std::fs::write(&path, "[train]\nstepz = 17\n").unwrap();
        let err = OccupancyConfig::preset(Preset::Fast).overlay_file(&path).unwrap_err().to_string();
        assert!(err.contains("run.toml") && err.contains("stepz"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
