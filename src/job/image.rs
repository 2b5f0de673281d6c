//! The image job (the paper's first experiment, 2D image regression): fit an RGB or grey image
//! as a field on [0,1]², d = 2 inputs and one output per channel through a sigmoid.
//!
//! The image is centre-cropped to a square and resampled (by area) to `train.size`² pixels.
//! Pixel (x, y) (column x, row y from the top) sits at ((x+½)/N, (y+½)/N). The paper's protocol:
//! train on the even grid (x, y both even, (N/2)² pixels), test on the offset grid (both odd);
//! the σ search of `--sigma auto` trains its short fits on half of the training grid (a
//! checkerboard of it) and validates on the other half, never on a test pixel ([`Splits`]).
//! Every step is full batch: ½·mean over pixels and channels of (σ(z) − g)², Adam. At the end: PSNR on the training and test pixels (and the whole image),
//! `reconstruction.png` (the field at every pixel), `error.png` (|error| × 4) and `truth.png` (the
//! image as fitted), metrics.json; `ffvol export RUN --upsample K` renders the field K times finer.

use crate::config::Common;
use crate::io::png::{read_png, write_png_image, Image};
use crate::model::checkpoint::Checkpoint;
use crate::train::fit::{Batch, Objective, Run, RunStats, TrainSettings};
use crate::train::image_metrics::psnr;
use crate::train::loss::{sigmoid, through_sigmoid};
use crate::train::memory::{bytes, network_bytes_per_point, network_sizes, MemoryPlan};
use crate::train::run::{log, FitOptions, CHECKPOINT};
use crate::train::LrSchedule;
use crate::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The bundled photograph (scikit-image's `astronaut`, public domain; datasets/README.md).
pub const DEFAULT_IMAGE: &str = "datasets/astronaut.png";
pub const RECONSTRUCTION: &str = "reconstruction.png";
const META_KEY: &str = "image_field";

/// Everything an image fit depends on; written back as the run's `run.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Always "image".
    pub job: String,
    /// The PNG to fit (8/16-bit grey, RGB, palette; alpha is dropped).
    pub image: PathBuf,
    #[serde(flatten)]
    pub common: Common,
    pub train: ImageTrain,
    pub export: ImageExport,
}

/// `[train]` of an image fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageTrain {
    pub steps: u64,
    /// Base learning rate of Adam.
    pub lr: f32,
    pub schedule: LrSchedule,
    /// Side N of the square the image is cropped and resampled to (even; 0 = the centre crop
    /// as it is, cut to an even side). The paper: 512.
    pub size: usize,
    /// Write a checkpoint every this many steps (0 = only at the end and on Ctrl-C).
    pub checkpoint_every: u64,
}

crate::train_settings!(ImageTrain);

/// `[export]` of an image fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageExport {
    /// Also render the field on a grid this many times finer (`reconstruction_xK.png`).
    pub upsample: usize,
}

crate::job_config!(ImageConfig, "image");

/// Named starting points of `fit image`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImagePreset {
    /// A 256² image, 4 × 128, m = 128, σ_g = 5 (the paper's 10 at 512², scaled to the side),
    /// 300 full-batch steps at lr 2e-3: under a minute on 2 free cores.
    Fast,
    /// The paper's protocol: 512², 4 × 256, m = 256, σ_g = 10, 2000 full-batch steps, lr 1e-3.
    Paper,
}

impl ImageConfig {
    /// `fit image --preset`.
    pub fn preset(preset: ImagePreset) -> Self {
        use crate::encoding::EncodingConfig;
        use crate::model::ModelConfig;
        let paper = ImageConfig {
            job: "image".into(),
            image: PathBuf::from(DEFAULT_IMAGE),
            common: Common::new(
                EncodingConfig::Gaussian { sigma: 10.0, features: 256, normalize: false },
                ModelConfig { depth: 4, width: 256 },
            ),
            train: ImageTrain {
                steps: 2000,
                lr: 1e-3,
                schedule: LrSchedule::Constant,
                size: 512,
                checkpoint_every: 500,
            },
            export: ImageExport { upsample: 1 },
        };
        match preset {
            ImagePreset::Paper => paper,
            ImagePreset::Fast => {
                let mut c = paper;
                c.common.encoding = EncodingConfig::Gaussian { sigma: 5.0, features: 128, normalize: false };
                c.common.model = ModelConfig { depth: 4, width: 128 };
                c.train.size = 256;
                c.train.steps = 300;
                c.train.lr = 2e-3;
                c.train.checkpoint_every = 100;
                c
            }
        }
    }

    pub fn to_toml(&self) -> Result<String> {
        crate::config::to_toml(self)
    }

    pub fn validate(&self) -> Result<()> {
        self.common.validate("image")?;
        let t = &self.train;
        if t.steps == 0 {
            return Err(Error::Config("train.steps must be at least 1".into()));
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return Err(Error::Config(format!("train.lr must be positive, got {}", t.lr)));
        }
        if t.size != 0 && (t.size < 4 || t.size % 2 != 0 || t.size > 8192) {
            return Err(Error::Config(format!("train.size must be 0 or even in 4..=8192, got {}", t.size)));
        }
        if !(1..=16).contains(&self.export.upsample) {
            return Err(Error::Config(format!(
                "export.upsample must be in 1..=16, got {}",
                self.export.upsample
            )));
        }
        Ok(())
    }
}

/// The image mappings by name at side `size` (0: 512): σ_g = 10 at 512² (the paper's) and
/// σ_p = 6 at 512² (our choice: PAPER.md gives no image σ_p; 6 keeps the highest frequency, 63
/// cycles, under the training grid's Nyquist limit of 128), with m/2 frequencies per axis (m
/// in all, as the paper's positional encoding); basic; none. σ is in cycles per unit box, so
/// the detail a σ fits scales with the side: at side N the Gaussian σ is 10·N/512 and the
/// positional one 6 − log2(512/N) (the same frequencies per pixel).
pub fn image_encoding(name: &str, m: usize, size: usize) -> Result<crate::encoding::EncodingConfig> {
    use crate::encoding::EncodingConfig;
    let scale = if size == 0 { 1.0 } else { size as f32 / 512.0 };
    Ok(match name {
        "none" => EncodingConfig::None,
        "basic" => EncodingConfig::Basic { normalize: false },
        "positional" => EncodingConfig::Positional {
            sigma: (6.0 + scale.log2()).max(0.5),
            features: (m / 2).max(1),
            normalize: false,
        },
        "gaussian" => EncodingConfig::Gaussian { sigma: 10.0 * scale, features: m, normalize: false },
        other => {
            return Err(Error::Config(format!(
                "unknown encoding {other:?}: none, basic, positional or gaussian"
            )))
        }
    })
}

/// The image as fitted: a centre crop to a square, resampled by area to `size`² (0: the crop,
/// cut to an even side).
pub fn prepare(image: &Image, size: usize, path: &Path) -> Result<Image> {
    let side = image.width.min(image.height);
    let n = if size == 0 { side - side % 2 } else { size };
    if side < 4 || n < 4 {
        return Err(Error::format(
            path,
            format!("image {}×{}: needs at least 4×4 pixels", image.width, image.height),
        ));
    }
    let (x0, y0) = ((image.width - side) / 2, (image.height - side) / 2);
    let c = image.channels;
    let mut crop = Vec::with_capacity(side * side * c);
    for y in 0..side {
        let row = (y0 + y) * image.width + x0;
        crop.extend_from_slice(&image.data[row * c..(row + side) * c]);
    }
    if n == side {
        return Ok(Image { width: n, height: n, channels: c, data: crop });
    }
    let weights = area_weights(side, n);
    // along x, then along y
    let mut along_x = vec![0f32; side * n * c];
    for y in 0..side {
        for (o, w) in weights.iter().enumerate() {
            for ch in 0..c {
                along_x[(y * n + o) * c + ch] =
                    w.iter().map(|&(i, wt)| wt * crop[(y * side + i) * c + ch]).sum();
            }
        }
    }
    let mut out = vec![0f32; n * n * c];
    for (o, w) in weights.iter().enumerate() {
        for x in 0..n {
            for ch in 0..c {
                out[(o * n + x) * c + ch] = w.iter().map(|&(i, wt)| wt * along_x[(i * n + x) * c + ch]).sum();
            }
        }
    }
    Ok(Image { width: n, height: n, channels: c, data: out })
}

/// For each of `n` output samples over `side` input samples: the inputs it covers and the
/// fraction of its extent each covers (weights sum to 1).
fn area_weights(side: usize, n: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = side as f64 / n as f64;
    (0..n)
        .map(|o| {
            let (a, b) = (o as f64 * scale, (o + 1) as f64 * scale);
            let mut w = Vec::new();
            let mut i = a.floor() as usize;
            while (i as f64) < b && i < side {
                let overlap = (b.min(i as f64 + 1.0) - a.max(i as f64)).max(0.0);
                if overlap > 0.0 {
                    w.push((i, (overlap / scale) as f32));
                }
                i += 1;
            }
            w
        })
        .collect()
}

/// Which pixels of an N×N image each split holds (row-major indices).
pub struct Splits {
    /// Both coordinates even (the paper's training grid).
    pub train: Vec<usize>,
    /// Both odd (the paper's test grid).
    pub test: Vec<usize>,
    /// The σ search's split of the training grid: the quincunx (checkerboard) half of the even
    /// pixels with x/2 + y/2 even, which the short fits train on ...
    pub search_train: Vec<usize>,
    /// ... and the other half (x/2 + y/2 odd), which scores them. Each validation pixel is the
    /// centre of four `search_train` pixels, as each test pixel is the centre of four training
    /// pixels: the test's geometry, rotated by 45° (and √2 coarser). The mixed grids (one
    /// coordinate odd) would not do: a pixel there lies between two training pixels on a
    /// training row, which rewards a larger σ than the test does (at 64²: validation best at
    /// σ 2.7 against the test's 1.2, after the full 300 steps).
    pub validation: Vec<usize>,
}

pub fn splits(n: usize) -> Splits {
    let (mut train, mut test, mut search_train, mut validation) = (vec![], vec![], vec![], vec![]);
    for y in 0..n {
        for x in 0..n {
            let i = y * n + x;
            match (x % 2, y % 2) {
                (0, 0) => {
                    train.push(i);
                    if (x / 2 + y / 2) % 2 == 0 {
                        search_train.push(i)
                    } else {
                        validation.push(i)
                    }
                }
                (1, 1) => test.push(i),
                _ => {}
            }
        }
    }
    Splits { train, test, search_train, validation }
}

/// Unit-box coordinates of the pixels `idx` of an N×N grid (x, y per point).
pub fn pixel_points(n: usize, idx: &[usize]) -> Vec<f32> {
    idx.iter().flat_map(|&i| [((i % n) as f32 + 0.5) / n as f32, ((i / n) as f32 + 0.5) / n as f32]).collect()
}

/// Every pixel of an M×M grid, row by row.
pub fn grid_points_2d(m: usize) -> Vec<f32> {
    let all: Vec<usize> = (0..m * m).collect();
    pixel_points(m, &all)
}

/// The training pixels' points and targets; ½·mean((σ(z) − g)²) over pixels and channels.
pub struct PixelObjective {
    pub points: Vec<f32>,
    pub targets: Vec<f32>,
}

impl Objective for PixelObjective {
    fn batch(&mut self, _step: u64) -> Result<Batch<'_>> {
        Ok(Batch { points: &self.points, targets: None })
    }

    fn loss(&mut self, _step: u64, z: &[f32], dz: &mut [f32]) -> Result<f32> {
        let inv_n = 1.0 / z.len() as f32;
        z.par_iter().zip(self.targets.par_iter()).zip(dz.par_iter_mut()).for_each(|((&z, &g), d)| {
            let p = sigmoid(z);
            *d = through_sigmoid((p - g) * inv_n, p);
        });
        let t = &self.targets;
        let loss = crate::train::metrics::ordered_sum(z.len(), |i| {
            let r = (sigmoid(z[i]) - t[i]) as f64;
            0.5 * r * r
        });
        Ok((loss / z.len() as f64) as f32)
    }
}

/// Stream of the σ search's mini-batches.
const STREAM_SEARCH_BATCH: u64 = 19;

/// Random mini-batches of the training pixels (the σ search's short fits), drawn from (seed, step).
struct PixelBatches<'a> {
    all_points: &'a [f32],
    all_targets: &'a [f32],
    channels: usize,
    rng: crate::sample::CounterRng,
    inner: PixelObjective,
}

impl Objective for PixelBatches<'_> {
    fn batch(&mut self, step: u64) -> Result<Batch<'_>> {
        let (b, c) = (self.inner.points.len() / 2, self.channels);
        let n = (self.all_points.len() / 2) as u64;
        for k in 0..b {
            let i = self.rng.below(step * b as u64 + k as u64, n) as usize;
            self.inner.points[2 * k..2 * k + 2].copy_from_slice(&self.all_points[2 * i..2 * i + 2]);
            self.inner.targets[c * k..c * k + c].copy_from_slice(&self.all_targets[c * i..c * i + c]);
        }
        Ok(Batch { points: &self.inner.points, targets: None })
    }

    fn loss(&mut self, step: u64, z: &[f32], dz: &mut [f32]) -> Result<f32> {
        self.inner.loss(step, z, dz)
    }
}

/// The values of pixels `idx` (all channels).
fn gather(image: &Image, idx: &[usize]) -> Vec<f32> {
    let c = image.channels;
    idx.iter().flat_map(|&i| image.data[i * c..(i + 1) * c].iter().copied()).collect()
}

/// What a checkpoint of an image run carries so it can be exported without the image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageMeta {
    pub size: usize,
    pub channels: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageMetrics {
    /// PSNR (dB, data range 1) on the training pixels (the even grid).
    pub psnr_train: f64,
    /// PSNR on the test pixels (the odd grid): the paper's figure.
    pub psnr_test: f64,
    /// PSNR over every pixel.
    pub psnr_all: f64,
    pub size: usize,
    pub channels: usize,
    pub encoding: String,
    /// σ of the mapping (null for none and basic).
    pub sigma: Option<f32>,
    #[serde(flatten)]
    pub run: RunStats,
    /// Seconds of the σ search (`--sigma auto`), not included in `train_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_search_seconds: Option<f64>,
}

pub enum ImageOutcome {
    Finished(Box<ImageMetrics>),
    Interrupted { step: u64 },
}

/// Mean squared error of σ(z) against `targets`.
fn mse(z: &[f32], targets: &[f32]) -> f64 {
    let s = crate::train::metrics::ordered_sum(z.len(), |i| {
        let r = (sigmoid(z[i]) - targets[i]) as f64;
        r * r
    });
    s / z.len().max(1) as f64
}

/// The σ of a Gaussian or positional mapping.
pub fn encoding_sigma(e: &crate::encoding::EncodingConfig) -> Option<f32> {
    use crate::encoding::EncodingConfig;
    match e {
        EncodingConfig::Gaussian { sigma, .. } | EncodingConfig::Positional { sigma, .. } => Some(*sigma),
        _ => None,
    }
}

/// Trains (or resumes) the run in `cfg.common.output`, then evaluates and exports.
pub fn fit(cfg: &ImageConfig, opts: &FitOptions) -> Result<ImageOutcome> {
    cfg.validate()?;
    let started = Instant::now();
    let raw = read_png(&cfg.image)?;
    let image = prepare(&raw, cfg.train.size, &cfg.image)?;
    let (n, c) = (image.width, image.channels);
    log(
        opts,
        &format!(
            "image {}: {}×{} {}, fitted at {n}×{n} (centre crop, area resampling)",
            cfg.image.display(),
            raw.width,
            raw.height,
            if c == 1 { "grey" } else { "RGB" }
        ),
    );
    let split = splits(n);
    let sizes = network_sizes(&cfg.common, 2);
    let sizes: Vec<usize> = sizes[..sizes.len() - 1].iter().copied().chain([c]).collect();
    let batch = split.train.len();
    let mut plan = MemoryPlan::new("fit image");
    let k = cfg.export.upsample;
    plan.host("image", bytes(n * n * c, 4 * 3))
        .host("training points and targets", bytes(batch, 8 + 4 * c))
        .host(
            format!("network (batch of {batch})"),
            bytes(batch, 1).saturating_mul(network_bytes_per_point(&sizes)),
        )
        .host(format!("export (×{k})"), bytes(n * n * k * k, 8 + 4 * c + 3 * c));
    log(opts, &plan.describe());
    plan.check(&opts.memory_limits(None))?;

    let dir = cfg.common.output.clone();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut cfg = cfg.clone();
    let train_points = pixel_points(n, &split.train);
    let train_targets = gather(&image, &split.train);
    let search_seconds = {
        let (search_points, search_targets) =
            (pixel_points(n, &split.search_train), gather(&image, &split.search_train));
        let val_points = pixel_points(n, &split.validation);
        let val_targets = gather(&image, &split.validation);
        let steps = cfg.train.steps;
        let (lr, schedule) = (cfg.train.lr, cfg.train.schedule);
        crate::train::sigma::run_auto(
            &mut cfg.common,
            &dir,
            "image",
            "mse",
            steps,
            batch,
            None,
            opts,
            |common, short, short_batch, scratch| {
                let mut run = Run::scratch(scratch, common, 2, c)?;
                let spec = crate::train::fit::LoopSpec::new(short, lr, schedule, 0, short_batch);
                let mut objective = PixelBatches {
                    all_points: &search_points,
                    all_targets: &search_targets,
                    channels: c,
                    rng: crate::sample::CounterRng::new(common.seed, STREAM_SEARCH_BATCH),
                    inner: PixelObjective {
                        points: vec![0.0; 2 * short_batch],
                        targets: vec![0.0; c * short_batch],
                    },
                };
                run.train(&spec, &mut objective, &FitOptions::default())?;
                let mut z = vec![0.0; val_targets.len()];
                run.backend.predict(&val_points, &mut z)?;
                Ok(mse(&z, &val_targets))
            },
        )?
    };

    let meta = ImageMeta { size: n, channels: c };
    let json = serde_json::to_string(&meta).map_err(|e| Error::Config(format!("image metadata: {e}")))?;
    let extra = [(META_KEY.to_string(), json)].into();
    let mut run = Run::start_outputs(&dir, &cfg.to_toml()?, &cfg.common, 2, c, extra, opts)?;
    let mut objective = PixelObjective { points: train_points, targets: train_targets };
    let spec = cfg.train.loop_spec(batch);
    let trained = run.train(&spec, &mut objective, opts)?;
    if let Some(step) = trained.interrupted {
        return Ok(ImageOutcome::Interrupted { step });
    }

    let mut z = vec![0.0; n * n * c];
    run.backend.predict(&grid_points_2d(n), &mut z)?;
    let fit: Vec<f32> = z.iter().map(|&v| sigmoid(v)).collect();
    let keep = |idx: &[usize]| {
        let mut k = vec![false; n * n * c];
        for &i in idx {
            k[i * c..(i + 1) * c].iter_mut().for_each(|b| *b = true);
        }
        k
    };
    let (psnr_train, psnr_test) = (
        psnr(&fit, &image.data, Some(&keep(&split.train))),
        psnr(&fit, &image.data, Some(&keep(&split.test))),
    );
    if !(psnr_train.is_finite() || psnr_train == f64::INFINITY) || psnr_test.is_nan() {
        return Err(Error::Input("image: PSNR could not be computed (no training or test pixels)".into()));
    }
    write_png_image(&dir.join("truth.png"), &image)?;
    write_png_image(&dir.join(RECONSTRUCTION), &Image { data: fit.clone(), ..image.clone() })?;
    let err: Vec<f32> = fit.iter().zip(&image.data).map(|(a, b)| ((a - b).abs() * 4.0).min(1.0)).collect();
    write_png_image(&dir.join("error.png"), &Image { data: err, ..image.clone() })?;
    if k > 1 {
        render(run.backend.as_mut(), &dir, &meta, k)?;
    }
    let metrics = ImageMetrics {
        psnr_train,
        psnr_test,
        psnr_all: psnr(&fit, &image.data, None),
        size: n,
        channels: c,
        encoding: cfg.common.encoding.name().into(),
        sigma: encoding_sigma(&cfg.common.encoding),
        run: run.stats(&trained, cfg.train.steps, started),
        sigma_search_seconds: search_seconds,
    };
    crate::train::run::write_metrics(&dir, &metrics)?;
    Ok(ImageOutcome::Finished(Box::new(metrics)))
}

/// Renders the field on a grid `k` times finer than the fitted image: `reconstruction_xK.png`.
fn render(
    backend: &mut dyn crate::backend::Backend,
    dir: &Path,
    meta: &ImageMeta,
    k: usize,
) -> Result<PathBuf> {
    let m = meta.size.checked_mul(k).filter(|&m| m <= 16_384).ok_or_else(|| {
        Error::Config(format!("--upsample {k}: a {}² image {k} times finer is too large", meta.size))
    })?;
    let mut z = vec![0.0; m * m * meta.channels];
    backend.predict(&grid_points_2d(m), &mut z)?;
    let path = dir.join(format!("reconstruction_x{k}.png"));
    let data = z.iter().map(|&v| sigmoid(v)).collect();
    write_png_image(&path, &Image { width: m, height: m, channels: meta.channels, data })?;
    Ok(path)
}

/// `ffvol export RUN [--upsample K]` of an image run: `reconstruction_xK.png`.
pub fn export_run(dir: &Path, upsample: usize, threads: usize) -> Result<Vec<PathBuf>> {
    if !(1..=16).contains(&upsample) {
        return Err(Error::Config(format!("--upsample must be in 1..=16, got {upsample}")));
    }
    let config = crate::config::RunConfig::load_run(dir)?;
    let device = config.device();
    let ck_path = dir.join(CHECKPOINT);
    let ck = Checkpoint::load(&ck_path)?;
    let text = ck.extra.get(META_KEY).ok_or_else(|| Error::format(&ck_path, "not an image checkpoint"))?;
    let meta: ImageMeta =
        serde_json::from_str(text).map_err(|e| Error::format(&ck_path, format!("image metadata: {e}")))?;
    // the network run.toml describes, checked before any of the checkpoint is used
    ck.check_layout(
        &crate::train::run::expected_tensors(config.common(), 2, meta.channels),
        &dir.join(crate::train::run::RUN_TOML).display().to_string(),
    )
    .map_err(|m| Error::format(&ck_path, m))?;
    let mut backend = crate::train::run::saved_backend(&ck, &device, threads)?;
    Ok(vec![render(backend.as_mut(), dir, &meta, upsample)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_partition_the_grid() {
        let s = splits(6);
        assert_eq!((s.train.len(), s.test.len(), s.search_train.len(), s.validation.len()), (9, 9, 5, 4));
        let mut all: Vec<usize> = s.search_train.iter().chain(&s.validation).copied().collect();
        all.sort();
        assert_eq!(all, s.train);
        // a validation pixel is the centre of the search pixels 2 away along x and y
        assert!(s.validation.contains(&(2 * 6 + 4)));
        for i in [2 * 6 + 2, 4 * 6 + 4, 4] {
            assert!(s.search_train.contains(&i), "{i}");
        }
        assert_eq!(&pixel_points(4, &[6]), &[2.5 / 4.0, 1.5 / 4.0]);
    }

    /// Area resampling keeps the mean and halves a 2×2-block image exactly.
    #[test]
    fn area_resampling() {
        let (w, h) = (8, 10); // crop: rows 1..9
        let data: Vec<f32> = (0..w * h).map(|i| ((i / w) / 2 * 10 + (i % w) / 2) as f32 / 100.0).collect();
        let img = Image { width: w, height: h, channels: 1, data };
        let out = prepare(&img, 4, Path::new("x.png")).unwrap();
        assert_eq!((out.width, out.height), (4, 4));
        let crop = prepare(&img, 0, Path::new("x.png")).unwrap();
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean(&out.data) - mean(&crop.data)).abs() < 1e-6);
        let odd = prepare(&img, 6, Path::new("x.png")).unwrap();
        assert!((mean(&odd.data) - mean(&crop.data)).abs() < 1e-5);
        for w in area_weights(8, 6) {
            assert!((w.iter().map(|p| p.1).sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }
}
