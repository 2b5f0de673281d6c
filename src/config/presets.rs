//! Presets: the named starting points of every job, as data. `ffvol fit JOB --preset NAME`
//! starts from one of these; a `--config` file and the flags then override it
//! ([`crate::config::resolve`]). Also here: the mapping an `--encoding NAME` switch brings,
//! with each job's defaults.

use crate::config::{Common, OccupancyConfig};
use crate::config::{EvalConfig, ExportConfig, TrainConfig};
use crate::encoding::EncodingConfig;
use crate::io::volume::Normalize;
use crate::io::MeshFormat;
use crate::job::ct::{CtConfig, CtTrainConfig, Render};
use crate::job::field::{FieldExport, FieldTrain};
use crate::job::mri::MriConfig;
use crate::job::volume::VolumeConfig;
use crate::model::ModelConfig;
use crate::sample::kspace::Sampling;
use crate::train::LrSchedule;
use crate::{Error, Result};
use std::path::PathBuf;

/// Named starting points of `fit occupancy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Finishes in under two minutes on 2 CPU cores.
    Fast,
    /// The paper's protocol: 8 × 256, m = 256, σ = 12, batch 32,768, 10,000 steps.
    Paper,
}

/// `fit occupancy --preset`.
pub fn occupancy(preset: Preset) -> OccupancyConfig {
    let base = OccupancyConfig {
        job: "occupancy".into(),
        mesh: PathBuf::from(crate::io::DEFAULT_MESH),
        common: Common::new(
            EncodingConfig::Gaussian { sigma: 10.0, features: 128, normalize: false },
            ModelConfig { depth: 4, width: 128 },
        ),
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
            common: Common::new(
                EncodingConfig::Gaussian { sigma: 12.0, features: 256, normalize: true },
                ModelConfig { depth: 8, width: 256 },
            ),
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

/// `fit volume`: settings that fit the bundled 32³ brain in well under a minute on 2 cores (σ_g = 4
/// cycles per unit box: at 32 voxels a side, larger scales start to fit noise between the
/// training voxels).
pub fn volume() -> VolumeConfig {
    VolumeConfig {
        job: "volume".into(),
        volume: PathBuf::from(crate::io::volume::DEFAULT_VOLUME),
        common: Common::new(
            EncodingConfig::Gaussian { sigma: 4.0, features: 128, normalize: false },
            ModelConfig { depth: 4, width: 128 },
        ),
        normalize: Normalize::MinMax,
        train: FieldTrain {
            steps: 1000,
            lr: 2e-3,
            schedule: LrSchedule::Cosine { warmup: 20, final_fraction: 0.05 },
            batch: 8192,
            train_fraction: 0.5,
            checkpoint_every: 500,
            tv: 0.0,
            tv_anisotropic: false,
            tv_epsilon: crate::train::regularise::DEFAULT_EPSILON,
        },
        export: FieldExport { upsample: 1, montage: true },
    }
}

/// Named starting points of `fit mri`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MriPreset {
    /// The default: a hash grid (8 levels, 8 cells → the voxel grid's side) into 3 × 64 with TV (λ = 100), Adam
    /// 1e-2 cosine, 800 steps: about 4 minutes on 2 CPU cores at 48³, ahead of BART's
    /// l1-wavelet compressed sensing on the paper's mask. CPU only (no hash-grid kernels).
    #[value(name = "hashgrid")]
    HashGrid,
    /// 4 × 128, m = 128, 400 steps: minutes on 2 cores at 32³–48³.
    Fast,
    /// The paper's settings: Gaussian mask, 4 × 256, m = 256, σ_g = 5, Adam lr 2e-3, 1000 steps.
    Paper,
}

impl MriPreset {
    /// Its `--preset` name.
    pub fn name(self) -> &'static str {
        match self {
            MriPreset::HashGrid => "hashgrid",
            MriPreset::Fast => "fast",
            MriPreset::Paper => "paper",
        }
    }

    /// The preset `fit mri` starts from when none is named: `fast` (Gaussian features) when the
    /// settings given name a Fourier mapping (`encoding`, any but hashgrid) or tune one
    /// (`features`, `sigma`, `frequencies` without `encoding = hashgrid`), so the Gaussian
    /// mapping's settings keep working without `--preset`; otherwise the hash grid. The CLI and
    /// Python's `fit_mri` both take it from here.
    pub fn default_for(encoding: Option<&str>, tunes_fourier: bool) -> MriPreset {
        let fourier = match encoding {
            Some("hashgrid") => false,
            Some(_) => true,
            None => tunes_fourier,
        };
        if fourier {
            MriPreset::Fast
        } else {
            MriPreset::HashGrid
        }
    }
}

/// `fit mri --preset`. Fast:
/// Smaller and shorter, for 2 CPU cores and the bundled 32³ volume: 4 × 128, m = 128,
/// σ_g = 2.5, lr 5e-3, 400 steps. The Gaussian mask's width scales with the grid (4.6 voxels at
/// 32³ against 13.9 at 96³), and σ_g follows it: the paper's σ_g = 5 at 96³ is ≈ 1.7 at 32³;
/// 1.5–2.5 fit best at 32³, 4 and above over-fit the unmeasured frequencies.
pub fn mri(preset: MriPreset) -> MriConfig {
    match preset {
        // tuned on the validation k-space (the 48³ MNI152 under a mask of seed 7; BENCHMARKS.md)
        MriPreset::HashGrid => {
            let mut c = mri(MriPreset::Paper);
            c.common.encoding = EncodingConfig::HashGrid {
                levels: 8,
                log2_table: 19,
                features_per_level: 2,
                base_resolution: 8,
                finest_resolution: crate::encoding::GRID_FINEST,
                fourier_features: 0,
                fourier_sigma: 0.0,
            };
            c.common.model = ModelConfig { depth: 3, width: 64 };
            c.train.lr = 1e-2;
            c.train.schedule = LrSchedule::Cosine { warmup: 10, final_fraction: 0.05 };
            c.train.steps = 800;
            c.train.checkpoint_every = 200;
            c.train.tv = 100.0;
            c
        }
        MriPreset::Paper => MriConfig {
            job: "mri".into(),
            volume: Some(PathBuf::from(crate::io::volume::DEFAULT_VOLUME)),
            kspace: None,
            mask: None,
            sampling: Sampling::paper(),
            common: Common::new(
                EncodingConfig::Gaussian { sigma: 5.0, features: 256, normalize: false },
                ModelConfig { depth: 4, width: 256 },
            ),
            normalize: Normalize::MinMax,
            train: FieldTrain {
                steps: 1000,
                lr: 2e-3,
                schedule: LrSchedule::Constant,
                batch: 0,
                train_fraction: 1.0,
                checkpoint_every: 250,
                tv: 0.0,
                tv_anisotropic: false,
                tv_epsilon: crate::train::regularise::DEFAULT_EPSILON,
            },
            export: FieldExport { upsample: 1, montage: true },
        },
        MriPreset::Fast => {
            let mut c = mri(MriPreset::Paper);
            c.common.encoding = EncodingConfig::Gaussian { sigma: 2.5, features: 128, normalize: false };
            c.common.model = ModelConfig { depth: 4, width: 128 };
            c.train.lr = 5e-3;
            c.train.steps = 400;
            c
        }
    }
}

/// Named starting points for `fit ct`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CtPreset {
    /// The default: a hash grid (8 levels, 16 → 256 cells) into 3 × 64, a SART warm start (50
    /// steps, σ′ floored at 0.05), the ramp-weighted loss (β = 100) and TV (λ = 1e-2), 250
    /// steps: about a minute on 2 CPU cores at 256², ahead of SART and ASD-POCS on sparse views.
    /// For a 3D scan ([`ct_for`]): grid rendering, TV λ = 3e-2, projector step 1 voxel, 150
    /// steps (chosen on noisy 64³ cone-beam validation volumes; about 3 minutes at 64³).
    #[value(name = "hashgrid")]
    HashGrid,
    /// Gaussian Fourier features, small and quick on 2 CPU cores: 4 × 128, m = 128, 300 steps.
    Fast,
    /// The paper's 2D CT protocol: 4 × 256, m = 256, σ_g = 4 (σ_p = 3), 1000 full-batch steps.
    PaperCt,
}

/// The paper's learning rate for a mapping: 1e-3 for Gaussian and positional, 1e-2 otherwise.
pub fn ct_lr(encoding: &EncodingConfig) -> f32 {
    match encoding {
        EncodingConfig::Gaussian { .. } | EncodingConfig::Positional { .. } => 1e-3,
        _ => 1e-2,
    }
}

/// The hash grid `--encoding hashgrid` switches `job` to: 16 levels of 2^19 entries with 2
/// features each (Müller et al.'s defaults), from 16 cells a side to the job's finest
/// resolution (occupancy 1024, CT 512, image 256; volume and MRI: the voxel grid's side,
/// [`crate::encoding::GRID_FINEST`]), without Fourier features.
pub fn hashgrid(job: &str) -> EncodingConfig {
    let finest_resolution = match job {
        "occupancy" => 1024,
        "ct" => 512,
        "volume" | "mri" => crate::encoding::GRID_FINEST,
        _ => 256,
    };
    EncodingConfig::HashGrid {
        levels: 16,
        log2_table: 19,
        features_per_level: 2,
        base_resolution: 16,
        finest_resolution,
        fourier_features: 0,
        fourier_sigma: 0.0,
    }
}

/// The paper's CT mappings by name: σ_g = 4 with m frequencies, σ_p = 3 with m/2 per axis (2D);
/// and the hash grid ([`hashgrid`]).
pub fn ct_encoding(name: &str, m: usize) -> Result<EncodingConfig> {
    Ok(match name {
        "hashgrid" => hashgrid("ct"),
        "none" => EncodingConfig::None,
        "basic" => EncodingConfig::Basic { normalize: false },
        "positional" => EncodingConfig::Positional { sigma: 3.0, features: m / 2, normalize: false },
        "gaussian" => EncodingConfig::Gaussian { sigma: 4.0, features: m, normalize: false },
        other => {
            return Err(Error::Config(format!(
                "unknown encoding {other:?}: none, basic, positional, gaussian or hashgrid"
            )))
        }
    })
}

/// `fit ct --preset` for a scan of `dims` dimensions: [`ct`], with the `hashgrid` preset's 3D
/// settings for a 3D scan. Those were chosen on three validation volumes (the 3D Shepp–Logan
/// perturbed, seeds 1001–1003; 64³, 50 cone views, TIGRE noise; BENCHMARKS.md): the 2D
/// default's ray rendering in 3D has no warm start, ramp weighting or grid TV, TV 1e-2 (chosen
/// on noise-free 2D phantoms) is too weak for noisy 3D data (3e-2: +3.4 dB), and a projector
/// step of 1 voxel gives the same PSNR as ½ in 0.69× the time.
pub fn ct_for(preset: CtPreset, dims: usize) -> CtConfig {
    let mut c = ct(preset);
    if preset == CtPreset::HashGrid && dims == 3 {
        c.train.render = Render::Grid;
        c.train.tv = 3e-2;
        c.train.projector_step = 1.0;
        c.train.steps = 150;
        // a fifth of the steps, which is what the validation runs' 50 came to under the cap
        c.train.warm_start = 30;
    }
    c
}

/// `fit ct --preset` (a 2D scan's settings; see [`ct_for`]).
pub fn ct(preset: CtPreset) -> CtConfig {
    let base = CtConfig {
        job: "ct".into(),
        projections: PathBuf::new(),
        geometry: PathBuf::new(),
        truth: None,
        input: Default::default(),
        common: Common::new(
            EncodingConfig::Gaussian { sigma: 4.0, features: 128, normalize: false },
            ModelConfig { depth: 4, width: 128 },
        ),
        train: CtTrainConfig {
            steps: 300,
            lr: 1e-3,
            schedule: LrSchedule::Constant,
            render: Render::Auto,
            rays_per_batch: 1024,
            samples_per_ray: 64,
            projector_step: 0.5,
            eval_every: 50,
            checkpoint_every: 100,
            tv: 0.0,
            tv_anisotropic: false,
            tv_epsilon: crate::train::regularise::DEFAULT_EPSILON,
            ramp_weight: 0.0,
            warm_start: 0,
            warm_start_image: crate::job::ct::WarmImage::Sart,
            warm_start_floor: 0.0,
            ramp_final: 1.0,
        },
    };
    match preset {
        CtPreset::Fast => base,
        // tuned on the validation phantom (seed 1001, 256², 20 views; BENCHMARKS.md)
        CtPreset::HashGrid => CtConfig {
            common: Common::new(
                EncodingConfig::HashGrid {
                    levels: 8,
                    log2_table: 19,
                    features_per_level: 2,
                    base_resolution: 16,
                    finest_resolution: 256,
                    fourier_features: 0,
                    fourier_sigma: 0.0,
                },
                ModelConfig { depth: 3, width: 64 },
            ),
            train: CtTrainConfig {
                steps: 250,
                lr: 1e-2,
                schedule: LrSchedule::Cosine { warmup: 10, final_fraction: 0.05 },
                tv: 1e-2,
                ramp_weight: 100.0,
                warm_start: 50,
                // the dead zone of the warm start (BENCHMARKS.md): +0.11 dB on the four 2D
                // validation phantoms, +9.8 and +12.0 dB on two of three 3D validation volumes
                warm_start_floor: 0.05,
                ..base.train
            },
            ..base
        },
        CtPreset::PaperCt => CtConfig {
            common: Common::new(
                EncodingConfig::Gaussian { sigma: 4.0, features: 256, normalize: false },
                ModelConfig { depth: 4, width: 256 },
            ),
            train: CtTrainConfig { steps: 1000, render: Render::Grid, eval_every: 100, ..base.train },
            ..base
        },
    }
}

/// The mapping `--encoding NAME` switches a job to, with that job's defaults: for occupancy,
/// volume and MRI, `positional` with the job's σ_p and 85 frequencies per axis, and `gaussian`
/// keeping `current` when it is Gaussian already (else the job's σ_g); for CT, the paper's CT
/// mappings with `m` frequencies ([`ct_encoding`]).
pub fn encoding_for(job: &str, name: &str, current: EncodingConfig, m: usize) -> Result<EncodingConfig> {
    let (sigma_g, sigma_p, m_g) = match job {
        "occupancy" => (10.0, 6.0, 128),
        "volume" => (8.0, 6.0, 256),
        "mri" => (5.0, 4.0, 256),
        // a hash grid stays the preset's (the default preset has one)
        "ct" if name == "hashgrid" && matches!(current, EncodingConfig::HashGrid { .. }) => {
            return Ok(current)
        }
        "ct" => return ct_encoding(name, m),
        "image" => return crate::job::image::image_encoding(name, m, 512),
        other => return Err(Error::Config(format!("no encoding defaults for job {other:?}"))),
    };
    Ok(match name {
        "none" => EncodingConfig::None,
        "basic" => EncodingConfig::Basic { normalize: false },
        "positional" => EncodingConfig::Positional { sigma: sigma_p, features: 85, normalize: false },
        "gaussian" => match current {
            g @ EncodingConfig::Gaussian { .. } => g,
            _ => EncodingConfig::Gaussian { sigma: sigma_g, features: m_g, normalize: false },
        },
        "hashgrid" => match current {
            h @ EncodingConfig::HashGrid { .. } => h,
            _ => hashgrid(job),
        },
        other => {
            return Err(Error::Config(format!(
                "unknown encoding {other:?}: none, basic, positional, gaussian or hashgrid"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JobConfig;

    /// Every preset is valid and survives `run.toml` unchanged.
    #[test]
    fn presets_are_valid_and_round_trip() {
        fn check<C: JobConfig + PartialEq + std::fmt::Debug>(c: C) {
            c.validate().unwrap();
            let text = crate::config::to_toml(&c).unwrap();
            let back: C = toml::from_str(&text).unwrap();
            assert_eq!(back, c);
        }
        check(occupancy(Preset::Fast));
        check(occupancy(Preset::Paper));
        check(volume());
        check(mri(MriPreset::HashGrid));
        check(mri(MriPreset::Fast));
        check(mri(MriPreset::Paper));
        for p in [CtPreset::Fast, CtPreset::PaperCt] {
            let mut c = ct(p);
            c.projections = "p.npy".into();
            c.geometry = "g.toml".into();
            check(c);
        }
    }
}
