//! From flags to a job's config: every job goes through [`ffvol::config::resolve`] (preset →
//! `--config` file → flags → validation); the flags all jobs share are applied once, by
//! [`RunArgs::apply`].

use super::args::{
    CtArgs, FieldArgs, ImageArgs, MriArgs, OccupancyArgs, RunArgs, SigmaArg, TvArgs, VolumeArgs,
};
use ffvol::config::presets::{self, encoding_for};
use ffvol::config::{resolve, Common, OccupancyConfig};
use ffvol::encoding::EncodingConfig;
use ffvol::io::volume::{parse_normalize, Normalize};
use ffvol::job::ct::CtConfig;
use ffvol::job::field::{FieldExport, FieldTrain};
use ffvol::job::mri::MriConfig;
use ffvol::job::volume::VolumeConfig;
use ffvol::sample::kspace::Sampling;
use ffvol::train::fit::TrainSettings;
use ffvol::train::run::{data_stem, run_folder};
use ffvol::train::LrSchedule;
use ffvol::{Error, Result};
use std::path::PathBuf;

/// The settings of a job's config that [`RunArgs`] sets.
pub struct Shared<'a> {
    pub job: &'static str,
    pub common: &'a mut Common,
    pub train: &'a mut dyn TrainSettings,
    /// The feature normalisation flag of `fit occupancy` (`--normalize true|false`).
    pub normalize_features: Option<bool>,
}

impl RunArgs {
    /// Applies the shared flags, each where given.
    pub fn apply(&self, s: Shared) -> Result<()> {
        let c = s.common;
        let (steps, lr, schedule, checkpoint_every) = s.train.loop_fields();
        self.apply_encoding(s.job, &mut c.encoding, s.normalize_features)?;
        if s.job == "ct" && self.encoding.is_some() {
            // the paper's learning rate for the mapping, unless --lr
            *lr = presets::ct_lr(&c.encoding);
        }
        c.model.depth = self.depth.unwrap_or(c.model.depth);
        c.model.width = self.width.unwrap_or(c.model.width);
        *steps = self.steps.unwrap_or(*steps);
        *lr = self.lr.unwrap_or(*lr);
        if let Some(text) = &self.schedule {
            *schedule = LrSchedule::parse(text)?;
        }
        *checkpoint_every = self.checkpoint_every.unwrap_or(*checkpoint_every);
        c.seed = self.seed.unwrap_or(c.seed);
        c.threads = self.threads.unwrap_or(c.threads);
        c.device.kind = self.device.unwrap_or(c.device.kind);
        c.device.precision = self.precision.unwrap_or(c.device.precision);
        c.frequencies = self.frequencies.unwrap_or(c.frequencies);
        if self.sigma == Some(SigmaArg::Auto) {
            c.sigma_search = Some(ffvol::train::sigma::SigmaSearch::default_for(s.job, &c.encoding)?);
        } else if self.sigma.is_some() || self.encoding.is_some() {
            c.sigma_search = None; // a σ given (or a new mapping) replaces a --config file's search
        }
        if let Some(wd) = self.weight_decay {
            let ffvol::config::OptimiserConfig::Adam { weight_decay, .. } = &mut c.optimiser;
            *weight_decay = wd;
        }
        Ok(())
    }

    /// `--encoding NAME` (with the job's defaults), then `--sigma` and `--features`; either of
    /// those on a mapping that has no σ or m is an error.
    fn apply_encoding(&self, job: &str, enc: &mut EncodingConfig, normalize: Option<bool>) -> Result<()> {
        // `auto` keeps the mapping's σ until the search replaces it
        let given_sigma = match self.sigma {
            Some(SigmaArg::Value(v)) => Some(v),
            _ => None,
        };
        if let Some(name) = &self.encoding {
            let m = self.features.unwrap_or(match enc {
                EncodingConfig::Gaussian { features, .. } => *features,
                _ => 256,
            });
            *enc = encoding_for(job, name, *enc, m)?;
        }
        match enc {
            EncodingConfig::Gaussian { sigma, features, normalize: n } => {
                *sigma = given_sigma.unwrap_or(*sigma);
                *features = self.features.unwrap_or(*features);
                *n = normalize.unwrap_or(*n);
            }
            EncodingConfig::Positional { sigma, features, normalize: n } => {
                *sigma = given_sigma.unwrap_or(*sigma);
                // CT's and image's positional mappings take m/2 per axis from --features (already applied)
                if job != "ct" && job != "image" {
                    *features = self.features.unwrap_or(*features);
                }
                *n = normalize.unwrap_or(*n);
            }
            EncodingConfig::Basic { normalize: n } => {
                if self.sigma.is_some() || self.features.is_some() {
                    return Err(Error::Config(
                        "--sigma and --features do not apply to --encoding basic".into(),
                    ));
                }
                *n = normalize.unwrap_or(*n);
            }
            EncodingConfig::None => {
                if self.sigma.is_some() || self.features.is_some() {
                    return Err(Error::Config(
                        "--sigma and --features do not apply to --encoding none".into(),
                    ));
                }
            }
            EncodingConfig::HashGrid {
                levels,
                log2_table,
                features_per_level,
                base_resolution,
                finest_resolution,
                fourier_features,
                fourier_sigma,
            } => {
                *levels = self.levels.unwrap_or(*levels);
                *log2_table = self.log2_table.unwrap_or(*log2_table);
                *features_per_level = self.features_per_level.unwrap_or(*features_per_level);
                *base_resolution = self.base_resolution.unwrap_or(*base_resolution);
                *finest_resolution = self.finest_resolution.unwrap_or(*finest_resolution);
                // --features and --sigma: Gaussian features before the grid's
                *fourier_features = self.features.unwrap_or(*fourier_features);
                *fourier_sigma = given_sigma.unwrap_or(*fourier_sigma);
                if *fourier_features > 0 && *fourier_sigma == 0.0 {
                    return Err(Error::Config(
                        "--encoding hashgrid --features M adds Gaussian features: give their --sigma too"
                            .into(),
                    ));
                }
                return Ok(());
            }
        }
        let grid_flags = [
            ("--levels", self.levels.is_some()),
            ("--log2-table", self.log2_table.is_some()),
            ("--features-per-level", self.features_per_level.is_some()),
            ("--base-resolution", self.base_resolution.is_some()),
            ("--finest-resolution", self.finest_resolution.is_some()),
        ];
        if let Some((flag, _)) = grid_flags.iter().find(|f| f.1) {
            return Err(Error::Config(format!(
                "{flag} sets the hash grid; it does not apply to --encoding {} (use --encoding hashgrid)",
                enc.name()
            )));
        }
        Ok(())
    }

    /// The run folder: `--output`, or `runs/<stem>` numbered.
    fn folder(&self, stem: &str) -> Result<PathBuf> {
        run_folder(self.output.as_deref(), self.force, stem)
    }
}

pub fn occupancy(a: &OccupancyArgs) -> Result<OccupancyConfig> {
    resolve(OccupancyConfig::preset(a.preset), a.run.config.as_deref(), |c| {
        if let Some(m) = &a.mesh {
            c.mesh = m.clone();
        }
        a.run.apply(Shared {
            job: "occupancy",
            common: &mut c.common,
            train: &mut c.train,
            normalize_features: a.normalize,
        })?;
        c.train.batch = a.batch.unwrap_or(c.train.batch);
        c.train.surface_fraction = a.surface_fraction.unwrap_or(c.train.surface_fraction);
        c.eval.test_points = a.test_points.unwrap_or(c.eval.test_points);
        c.export.resolution = a.resolution.unwrap_or(c.export.resolution);
        c.export.min_component = a.min_component.unwrap_or(c.export.min_component);
        if let Some(f) = &a.format {
            c.export.formats = f.clone();
        }
        c.common.output = a.run.folder(&data_stem(&c.mesh))?;
        Ok(())
    })
}

impl TvArgs {
    /// `--tv`, `--tv-anisotropic` and `--tv-epsilon`, each where given.
    fn apply(&self, tv: &mut f32, anisotropic: &mut bool, epsilon: &mut f32) {
        *tv = self.tv.unwrap_or(*tv);
        *anisotropic = self.tv_anisotropic.unwrap_or(*anisotropic);
        *epsilon = self.tv_epsilon.unwrap_or(*epsilon);
    }
}

/// The flags of `fit volume` and `fit mri` on the parts of their configs they share.
fn field(
    a: &FieldArgs,
    job: &'static str,
    common: &mut Common,
    train: &mut FieldTrain,
    normalize: &mut Normalize,
    export: &mut FieldExport,
) -> Result<()> {
    a.run.apply(Shared { job, common, train, normalize_features: None })?;
    if let Some(n) = &a.normalize {
        *normalize = parse_normalize(n).map_err(|e| Error::Config(format!("--normalize: {e}")))?;
    }
    export.upsample = a.upsample.unwrap_or(export.upsample);
    Ok(())
}

pub fn volume(a: &VolumeArgs) -> Result<VolumeConfig> {
    resolve(VolumeConfig::fast(), a.common.run.config.as_deref(), |c| {
        if let Some(v) = &a.volume {
            c.volume = v.clone();
        }
        field(&a.common, "volume", &mut c.common, &mut c.train, &mut c.normalize, &mut c.export)?;
        c.train.train_fraction = a.train_fraction.unwrap_or(c.train.train_fraction);
        c.train.batch = a.batch.unwrap_or(c.train.batch);
        c.common.output = a.common.run.folder(&format!("{}-volume", data_stem(&c.volume)))?;
        Ok(())
    })
}

pub fn mri(a: &MriArgs) -> Result<MriConfig> {
    // a Fourier mapping's flags without --encoding hashgrid ask for the Gaussian preset
    let r = &a.common.run;
    let tunes = r.features.is_some() || r.sigma.is_some() || r.frequencies.is_some();
    let preset = a.preset.unwrap_or(presets::MriPreset::default_for(r.encoding.as_deref(), tunes));
    resolve(presets::mri(preset), a.common.run.config.as_deref(), |c| {
        if a.kspace.is_some() {
            c.kspace = a.kspace.clone();
            c.volume = None;
        }
        if a.volume.is_some() {
            c.volume = a.volume.clone();
        }
        if a.mask.is_some() {
            c.mask = a.mask.clone();
        }
        if let Some(s) = &a.sampling {
            if c.mask.is_some() {
                return Err(Error::Config(
                    "--sampling builds a mask; it cannot be combined with --mask".into(),
                ));
            }
            c.sampling = Sampling::parse(s).map_err(|e| Error::Config(format!("--sampling: {e}")))?;
        }
        field(&a.common, "mri", &mut c.common, &mut c.train, &mut c.normalize, &mut c.export)?;
        a.tv.apply(&mut c.train.tv, &mut c.train.tv_anisotropic, &mut c.train.tv_epsilon);
        let name = c.volume.clone().or_else(|| c.kspace.clone());
        let stem = name.as_deref().map_or("run".to_string(), data_stem);
        c.common.output = a.common.run.folder(&format!("{stem}-mri"))?;
        Ok(())
    })
}

pub fn ct(a: &CtArgs) -> Result<CtConfig> {
    let settings = |preset: CtConfig| {
        resolve(preset, a.run.config.as_deref(), |c| {
            c.projections = a.projections.clone();
            c.geometry = crate::cli::args::geometry_or_hdf5(&a.geometry, &a.projections)
                .map_err(|e| ffvol::Error::Config(e.to_string()))?;
            a.input.apply(&mut c.input);
            c.truth = a.truth.clone().or(c.truth.take());
            a.run.apply(Shared {
                job: "ct",
                common: &mut c.common,
                train: &mut c.train,
                normalize_features: None,
            })?;
            c.train.render = a.render.unwrap_or(c.train.render);
            c.train.rays_per_batch = a.rays_per_batch.unwrap_or(c.train.rays_per_batch);
            c.train.samples_per_ray = a.samples_per_ray.unwrap_or(c.train.samples_per_ray);
            a.tv.apply(&mut c.train.tv, &mut c.train.tv_anisotropic, &mut c.train.tv_epsilon);
            c.train.ramp_weight = a.ramp_weight.unwrap_or(c.train.ramp_weight);
            c.train.warm_start = a.warm_start.unwrap_or(c.train.warm_start);
            c.train.warm_start_image = a.warm_start_image.unwrap_or(c.train.warm_start_image);
            c.train.warm_start_floor = a.warm_start_floor.unwrap_or(c.train.warm_start_floor);
            c.train.ramp_final = a.ramp_final.unwrap_or(c.train.ramp_final);
            c.common.output = a.run.folder("ct")?;
            Ok(())
        })
    };
    // the preset depends on the scan's dimensions (the hash grid's 3D settings), which the
    // resolved inputs tell (the geometry, or an HDF5 file's rows); a 3D scan resolves again
    // from its preset, so the file's keys and the flags still win over it
    let c = settings(CtConfig::preset(a.preset))?;
    match ffvol::io::ct::scan_dims(&c.geometry, &c.input)? {
        2 => Ok(c),
        dims => settings(CtConfig::preset_for(a.preset, dims)),
    }
}

pub fn image(a: &ImageArgs) -> Result<ffvol::job::image::ImageConfig> {
    use ffvol::job::image::ImageConfig;
    resolve(ImageConfig::preset(a.preset), a.run.config.as_deref(), |c| {
        if let Some(i) = &a.image {
            c.image = i.clone();
        }
        a.run.apply(Shared {
            job: "image",
            common: &mut c.common,
            train: &mut c.train,
            normalize_features: None,
        })?;
        c.train.size = a.size.unwrap_or(c.train.size);
        // --encoding without --sigma: the mapping's σ scaled to the image's side (the shared
        // path above knows no size and takes the 512² defaults)
        if let (Some(name), None) = (&a.run.encoding, &a.run.sigma) {
            let m = match c.common.encoding {
                EncodingConfig::Gaussian { features, .. } => features,
                EncodingConfig::Positional { features, .. } => 2 * features,
                _ => 256,
            };
            c.common.encoding = ffvol::job::image::image_encoding(name, m, c.train.size)?;
        }
        c.export.upsample = a.upsample.unwrap_or(c.export.upsample);
        c.common.output = a.run.folder(&format!("{}-image", data_stem(&c.image).trim_end_matches(".png")))?;
        Ok(())
    })
}
