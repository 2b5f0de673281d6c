//! What the volume and MRI jobs share: loading and normalising a volume, the voxel grid in the
//! unit box, the sigmoid output, the training loop, the run's metadata in the checkpoint, and the
//! exports (NIfTI on the input grid or a finer one, slice montages, iso-surface meshes).
//!
//! Coordinates: voxel (i, j, k) of an (nx, ny, nz) grid sits at ((i+½)/nx, (j+½)/ny, (k+½)/nz) in
//! the unit box, its centre. A grid K times finer samples the same box at ((i'+½)/(K·nx), …), so
//! fine voxel i' sits at input voxel index (i'+½)/K − ½, and `world_from_voxel` follows
//! ([`upsampled_affine`]).

use crate::backend::Backend;
use crate::encoding::EncodingConfig;
use crate::geometry::marching_cubes::{marching_cubes_padded, Grid3};
use crate::geometry::TriMesh;
use crate::io::{MeshFormat, WorldFromVoxel};
use crate::model::checkpoint::Checkpoint;
use crate::model::ModelConfig;
pub use crate::task::occupancy::log;
use crate::task::occupancy::FitOptions;
use crate::task::run::{CHECKPOINT, RUN_TOML};
use crate::train::LrSchedule;
use crate::{Error, Result};
use glam::Vec3;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A scalar volume, x fastest, with its NIfTI affine.
#[derive(Clone, Debug)]
pub struct Volume {
    pub data: Vec<f32>,
    pub dims: [usize; 3],
    pub world_from_voxel: WorldFromVoxel,
}

/// Reads `.nii`, `.nii.gz` or `.npy` (3-D, real). `.npy` volumes get a 1 mm identity affine.
/// A non-finite voxel, a volume with fewer than 2 voxels along an axis, or a constant volume is
/// an error naming the file.
pub fn load_volume(path: &Path) -> Result<Volume> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
    let (data, dims, world_from_voxel) = if name.ends_with(".npy") {
        let arr = crate::io::read_npy(path)?;
        let (data, dims) = arr.real_volume(path)?;
        (data, dims, identity_affine())
    } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        check_nifti1_header(path, name.ends_with(".gz"))?;
        crate::io::read_nifti_f32(path)?
    } else {
        return Err(Error::format(path, "unknown volume extension (expected .nii, .nii.gz or .npy)"));
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        let [nx, ny, _] = dims;
        return Err(Error::format(
            path,
            format!(
                "voxel ({}, {}, {}) is {} (the volume must be finite everywhere)",
                i % nx,
                (i / nx) % ny,
                i / (nx * ny),
                data[i]
            ),
        ));
    }
    if dims.iter().any(|&d| d < 2) {
        return Err(Error::format(
            path,
            format!("a {dims:?} volume is too small: every axis needs at least 2 voxels"),
        ));
    }
    Ok(Volume { data, dims, world_from_voxel })
}

/// What the `nifti` crate lets through: `sizeof_hdr` must be 348 (either byte order) and the
/// magic `n+1` (single file) or `ni1` (header of a pair).
fn check_nifti1_header(path: &Path, gz: bool) -> Result<()> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::with_capacity(348);
    let read = if gz {
        flate2::read::MultiGzDecoder::new(file).take(348).read_to_end(&mut head)
    } else {
        file.take(348).read_to_end(&mut head)
    };
    read.map_err(|e| Error::format(path, format!("cannot read the NIfTI header: {e}")))?;
    if head.len() < 348 {
        return Err(Error::format(
            path,
            format!("a NIfTI-1 header is 348 bytes, the file has {}", head.len()),
        ));
    }
    let size = [head[0], head[1], head[2], head[3]];
    if i32::from_le_bytes(size) != 348 && i32::from_be_bytes(size) != 348 {
        return Err(Error::format(
            path,
            format!("sizeof_hdr is {}, not 348: not a NIfTI-1 file", i32::from_le_bytes(size)),
        ));
    }
    if &head[344..347] != b"n+1" && &head[344..347] != b"ni1" {
        return Err(Error::format(path, "the NIfTI-1 magic (n+1 or ni1) is missing"));
    }
    Ok(())
}

pub fn identity_affine() -> WorldFromVoxel {
    let mut m = [[0.0; 4]; 4];
    for (k, row) in m.iter_mut().enumerate() {
        row[k] = 1.0;
    }
    m
}

/// How raw intensities are mapped to [0, 1], as written in `run.toml` (`[normalize]`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Normalize {
    /// (v − min) / (max − min).
    MinMax,
    /// (v − P_low) / (P_high − P_low), clipped to [0, 1]; percentiles in 0..=100.
    Percentile { low: f64, high: f64 },
}

/// The affine intensity map a run used: `unit = clamp((raw − lo) / (hi − lo), 0, 1)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Intensity {
    pub lo: f64,
    pub hi: f64,
}

impl Intensity {
    pub fn to_unit(&self, raw: &[f32]) -> Vec<f32> {
        let s = 1.0 / (self.hi - self.lo);
        raw.iter().map(|&v| (((v as f64 - self.lo) * s) as f32).clamp(0.0, 1.0)).collect()
    }
    pub fn to_raw(&self, unit: &[f32]) -> Vec<f32> {
        unit.iter().map(|&v| (self.lo + v as f64 * (self.hi - self.lo)) as f32).collect()
    }
}

impl Normalize {
    pub fn validate(&self) -> Result<()> {
        if let Normalize::Percentile { low, high } = *self {
            let ordered = (0.0..100.0).contains(&low) && low < high && high <= 100.0;
            if !ordered {
                return Err(Error::Config(format!(
                    "normalize percentiles must satisfy 0 ≤ low < high ≤ 100, got {low}, {high}"
                )));
            }
        }
        Ok(())
    }

    /// The intensity map for `data`; a constant volume is an error naming `path`.
    pub fn fit(&self, data: &[f32], path: &Path) -> Result<Intensity> {
        let (lo, hi) = match *self {
            Normalize::MinMax => data
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v as f64), b.max(v as f64))),
            Normalize::Percentile { low, high } => {
                let mut sorted: Vec<f32> = data.to_vec();
                sorted.sort_by(f32::total_cmp);
                let at = |p: f64| {
                    let pos = p / 100.0 * (sorted.len() - 1) as f64;
                    let (i, f) = (pos.floor() as usize, pos.fract());
                    let j = (i + 1).min(sorted.len() - 1);
                    sorted[i] as f64 * (1.0 - f) + sorted[j] as f64 * f
                };
                (at(low), at(high))
            }
        };
        if !(hi > lo) {
            return Err(Error::format(
                path,
                format!("intensities span [{lo}, {hi}]: nothing to normalise (a constant volume?)"),
            ));
        }
        Ok(Intensity { lo, hi })
    }
}

/// Parses `minmax` or `percentile[:LOW:HIGH]` (default 0.5:99.5).
pub fn parse_normalize(s: &str) -> std::result::Result<Normalize, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts[0] {
        "minmax" if parts.len() == 1 => Ok(Normalize::MinMax),
        "percentile" => {
            let num = |i: usize, d: f64| {
                parts
                    .get(i)
                    .map(|p| p.parse::<f64>().map_err(|_| format!("{p:?} is not a number")))
                    .unwrap_or(Ok(d))
            };
            Ok(Normalize::Percentile { low: num(1, 0.5)?, high: num(2, 99.5)? })
        }
        _ => Err(format!("normalisation {s:?}: use minmax or percentile[:LOW:HIGH]")),
    }
}

/// Voxel centres of the `upsample`-times finer grid, flat (x, y, z) triples in the unit box, x fastest.
pub fn grid_points(dims: [usize; 3], upsample: usize) -> Vec<f32> {
    let d = dims.map(|n| n * upsample);
    let mut pts = Vec::with_capacity(3 * d[0] * d[1] * d[2]);
    for k in 0..d[2] {
        for j in 0..d[1] {
            for i in 0..d[0] {
                pts.push((i as f32 + 0.5) / d[0] as f32);
                pts.push((j as f32 + 0.5) / d[1] as f32);
                pts.push((k as f32 + 0.5) / d[2] as f32);
            }
        }
    }
    pts
}

/// `world_from_voxel` of the K-times finer grid over the same box: fine voxel i' is input voxel
/// (i' + ½)/K − ½.
pub fn upsampled_affine(m: WorldFromVoxel, k: usize) -> WorldFromVoxel {
    let k = k as f64;
    let shift = (1.0 / k - 1.0) / 2.0;
    let mut out = m;
    for row in out.iter_mut().take(3) {
        let lin = [row[0], row[1], row[2]];
        for c in 0..3 {
            row[c] = lin[c] / k;
        }
        row[3] += (lin[0] + lin[1] + lin[2]) * shift;
    }
    out
}

pub use crate::train::loss::sigmoid;

/// The field on the grid K times finer than `dims`, as intensities in [0, 1] (sigmoid outputs).
pub fn predict_grid(backend: &mut dyn Backend, dims: [usize; 3], upsample: usize) -> Result<Vec<f32>> {
    let pts = grid_points(dims, upsample);
    let mut out = vec![0.0; pts.len() / 3];
    backend.predict(&pts, &mut out)?;
    out.iter_mut().for_each(|z| *z = sigmoid(*z));
    Ok(out)
}

/// Writes the fit at the end of a volume or MRI run: `fit.nii.gz` on the input grid and, with
/// `upsample` K > 1, `fit_xK.nii.gz` on the grid K times finer, in the raw intensity units.
/// Returns the fit on the input grid, in [0, 1].
pub fn write_fit(
    backend: &mut dyn Backend,
    dir: &Path,
    dims: [usize; 3],
    world_from_voxel: WorldFromVoxel,
    intensity: &Intensity,
    upsample: usize,
) -> Result<Vec<f32>> {
    let fit = predict_grid(backend, dims, 1)?;
    crate::io::write_nifti_f32(&dir.join("fit.nii.gz"), &intensity.to_raw(&fit), dims, world_from_voxel)?;
    let k = upsample;
    if k > 1 {
        let fine = predict_grid(backend, dims, k)?;
        crate::io::write_nifti_f32(
            &dir.join(format!("fit_x{k}.nii.gz")),
            &intensity.to_raw(&fine),
            dims.map(|d| d * k),
            upsampled_affine(world_from_voxel, k),
        )?;
    }
    Ok(fit)
}

/// What a checkpoint of a volume or MRI run carries so it can be exported without its data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FieldMeta {
    /// "volume" or "mri".
    pub job: String,
    pub dims: [usize; 3],
    pub world_from_voxel: WorldFromVoxel,
    /// Raw intensity = lo + unit·(hi − lo).
    pub intensity: Intensity,
}

pub const META_KEY: &str = "volume_field";

impl FieldMeta {
    pub fn to_extra(&self) -> std::collections::HashMap<String, String> {
        let mut extra = std::collections::HashMap::new();
        extra.insert(META_KEY.into(), serde_json::to_string(self).unwrap_or_default());
        extra
    }
    pub fn from_checkpoint(path: &Path, ck: &Checkpoint) -> Result<Self> {
        let text =
            ck.extra.get(META_KEY).ok_or_else(|| Error::format(path, "not a volume or MRI checkpoint"))?;
        serde_json::from_str(text).map_err(|e| Error::format(path, format!("volume metadata: {e}")))
    }
}

/// Settings of the optimisation shared by both jobs (`[train]` in `run.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTrain {
    pub steps: u64,
    /// Base learning rate of Adam.
    pub lr: f32,
    pub schedule: LrSchedule,
    /// Points per step (volume job): 0 = every training voxel every step. The MRI job always
    /// evaluates the whole grid.
    pub batch: usize,
    /// Fraction of voxels trained on (volume job); the rest are held out for testing.
    pub train_fraction: f32,
    /// Write a checkpoint every this many steps (0 = only at the end and on Ctrl-C).
    pub checkpoint_every: u64,
}

impl FieldTrain {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.steps == 0 {
            return bad("train.steps must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("train.lr must be positive, got {}", self.lr));
        }
        if !(self.train_fraction > 0.0 && self.train_fraction <= 1.0) {
            return bad(format!("train.train_fraction must be in (0, 1], got {}", self.train_fraction));
        }
        Ok(())
    }
}

/// Exports written at the end of a fit (`[export]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldExport {
    /// Also write the fit on a grid this many times finer (1 = only the input grid).
    pub upsample: usize,
    /// Write `montage.png` (three orthogonal slices: truth, fit, |error|).
    pub montage: bool,
}

pub fn validate_common(
    device: &str,
    encoding: &EncodingConfig,
    model: &ModelConfig,
    upsample: usize,
) -> Result<()> {
    encoding.validate()?;
    model.validate()?;
    crate::task::run::validate_device(device)?;
    if !(1..=16).contains(&upsample) {
        return Err(Error::Config(format!("export.upsample must be in 1..=16, got {upsample}")));
    }
    Ok(())
}

/// A run being trained: its folder, its backend and its loss log.
pub struct Session {
    pub dir: PathBuf,
    pub backend: Box<dyn Backend>,
    pub loss_log: Vec<(u64, f32, f32)>,
    pub n_params: usize,
    pub meta: FieldMeta,
}

impl Session {
    /// Builds the network from the seed (or the checkpoint when resuming).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        dir: &Path,
        run_toml: &str,
        seed: u64,
        encoding: &EncodingConfig,
        model: &ModelConfig,
        device: &str,
        threads: usize,
        meta: FieldMeta,
        opts: &FitOptions,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        crate::io::write_bytes_atomic(&dir.join(RUN_TOML), run_toml.as_bytes())?;
        let net = crate::task::run::build_network(encoding, 3, model, seed, device, threads)?;
        let (mut backend, n_params) = (net.backend, net.n_params);
        log(opts, &format!("device: {} ({})", backend.describe(), net.reason));
        log(
            opts,
            &format!(
                "network: {} encoding → {} features → {}×{} MLP with sigmoid output, {} parameters",
                encoding.name(),
                backend.encoding().n_features(),
                model.depth,
                model.width,
                n_params
            ),
        );
        let mut loss_log = Vec::new();
        if opts.resume {
            loss_log = crate::task::run::resume(backend.as_mut(), dir)?;
            log(
                opts,
                &format!(
                    "resumed from {} at step {}",
                    dir.join(CHECKPOINT).display(),
                    backend.state().adam.step
                ),
            );
        }
        Ok(Session { dir: dir.to_path_buf(), backend, loss_log, n_params, meta })
    }

    pub fn save(&self) -> Result<()> {
        crate::task::run::save(&self.dir, self.backend.as_ref(), self.meta.to_extra(), &self.loss_log)
    }

    /// Runs steps from the checkpoint's step to `train.steps`; `step_fn(backend, step, lr)` does one
    /// step and returns its loss. Returns `Some(step)` when interrupted (checkpoint written), and
    /// the seconds per step spent in `step_fn` in this session (0 when no step ran).
    pub fn train(
        &mut self,
        train: &FieldTrain,
        opts: &FitOptions,
        mut step_fn: impl FnMut(&mut dyn Backend, u64, f32) -> Result<f32>,
    ) -> Result<(Option<u64>, f64)> {
        let start = self.backend.state().adam.step;
        let steps = train.steps;
        let mut seconds = 0.0;
        let every = (steps / 10).max(1);
        for step in start..steps {
            if opts.should_stop(step) {
                self.save()?;
                return Ok((Some(step), seconds / (step - start).max(1) as f64));
            }
            let lr = train.schedule.lr(train.lr, step, steps);
            let t = Instant::now();
            let loss = step_fn(self.backend.as_mut(), step, lr)?;
            seconds += t.elapsed().as_secs_f64();
            if !loss.is_finite() {
                self.save()?;
                return Err(crate::task::run::diverged(step, loss));
            }
            let done = step + 1;
            self.loss_log.push((done, loss, lr));
            if opts.progress && (done % every == 0 || done == steps) {
                let left = seconds / (done - start) as f64 * (steps - done) as f64;
                eprintln!(
                    "step {done}/{steps}  loss {loss:.6}  {:.2} s/step  {left:.0} s left",
                    seconds / (done - start) as f64
                );
            }
            if crate::task::run::checkpoint_due(train.checkpoint_every, done, steps) {
                self.save()?;
            }
        }
        self.save()?;
        Ok((None, seconds / steps.saturating_sub(start).max(1) as f64))
    }

    /// Mean loss over the last 1 % of logged steps.
    pub fn final_loss(&self) -> f64 {
        crate::task::run::final_loss(&self.loss_log)
    }
}

/// Scales an error image for the montage: |error| × this, clipped to 1.
pub const MONTAGE_ERROR_GAIN: f32 = 4.0;

/// A greyscale PNG of the three central orthogonal slices (columns: sagittal x = nx/2, coronal
/// y = ny/2, axial z = nz/2; the second axis of each slice points up) for each volume in `rows`
/// (values in [0, 1]), with nearest-neighbour magnification so a tile is at least 128 pixels.
pub fn write_montage(path: &Path, dims: [usize; 3], rows: &[&[f32]]) -> Result<()> {
    let [nx, ny, nz] = dims;
    let tile = nx.max(ny).max(nz);
    let zoom = (128 / tile).max(1);
    let gap = 2;
    let cell = tile * zoom + gap;
    let (width, height) = (3 * cell + gap, rows.len() * cell + gap);
    let mut img = vec![32u8; width * height];
    for (r, vol) in rows.iter().enumerate() {
        // (slice width, slice height, value at (u, v) with v up)
        type Slice<'a> = Box<dyn Fn(usize, usize) -> f32 + 'a>;
        let views: [(usize, usize, Slice); 3] = [
            (ny, nz, Box::new(|u, v| vol[nx / 2 + nx * (u + ny * v)])),
            (nx, nz, Box::new(|u, v| vol[u + nx * (ny / 2 + ny * v)])),
            (nx, ny, Box::new(|u, v| vol[u + nx * (v + ny * (nz / 2))])),
        ];
        for (c, (w, h, at)) in views.iter().enumerate() {
            let (x0, y0) = (gap + c * cell, gap + r * cell);
            for py in 0..h * zoom {
                for px in 0..w * zoom {
                    let (u, v) = (px / zoom, h - 1 - py / zoom);
                    let value = at(u, v).clamp(0.0, 1.0);
                    img[(y0 + py) * width + x0 + px] = (value * 255.0 + 0.5) as u8;
                }
            }
        }
    }
    crate::io::write_png_gray8(path, width, height, &img)
}

/// |fit − truth| × [`MONTAGE_ERROR_GAIN`], for the montage's third row.
pub fn error_image(fit: &[f32], truth: &[f32]) -> Vec<f32> {
    fit.iter().zip(truth).map(|(a, b)| ((a - b).abs() * MONTAGE_ERROR_GAIN).min(1.0)).collect()
}

/// The `level` iso-surface of a grid of `values` (x fastest) in world millimetres, with the
/// inside where values are greater than `level`.
pub fn iso_surface(
    values: &[f32],
    dims: [usize; 3],
    world_from_voxel: WorldFromVoxel,
    level: f32,
) -> TriMesh {
    let grid = Grid3 { dims, values };
    let in_voxels = marching_cubes_padded(&grid, level, Vec3::ZERO, Vec3::ONE, true);
    let m = world_from_voxel;
    let positions = in_voxels
        .positions
        .iter()
        .map(|p| {
            let v = [p.x as f64, p.y as f64, p.z as f64];
            let w = |r: usize| (m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2] + m[r][3]) as f32;
            Vec3::new(w(0), w(1), w(2))
        })
        .collect();
    let mut mesh = TriMesh::new(positions, in_voxels.triangles);
    // A mirroring affine (negative determinant) turns the faces inside out: wind them back.
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det < 0.0 {
        mesh.triangles.iter_mut().for_each(|t| t.swap(1, 2));
    }
    mesh.compute_vertex_normals();
    mesh
}

/// What `ffvol export RUN` writes for a volume or MRI run.
pub struct ExportRequest {
    /// Write `fit_xK.nii.gz` on the grid K times finer (and use that grid for the mesh).
    pub upsample: usize,
    /// Iso-surface level in [0, 1] (normalised intensity) and mesh formats, when a mesh is wanted.
    pub mesh: Option<(f32, Vec<MeshFormat>)>,
    pub threads: usize,
}

/// The `job` named in `RUN/run.toml`, if any.
pub fn run_job(dir: &Path) -> Result<Option<String>> {
    let value: toml::Value = crate::task::run::load_run_toml(dir)?;
    Ok(value.get("job").and_then(|j| j.as_str()).map(str::to_string))
}

/// Re-evaluates a saved volume or MRI run and writes the requested exports into its folder.
/// Returns the paths written.
pub fn export_run(dir: &Path, req: &ExportRequest) -> Result<Vec<PathBuf>> {
    let value: toml::Value = crate::task::run::load_run_toml(dir)?;
    let device = value.get("device").and_then(|d| d.as_str()).unwrap_or("auto").to_string();
    let ck_path = dir.join(CHECKPOINT);
    let ck = Checkpoint::load(&ck_path)?;
    let meta = FieldMeta::from_checkpoint(&ck_path, &ck)?;
    if !(1..=16).contains(&req.upsample) {
        return Err(Error::Config(format!("--upsample must be in 1..=16, got {}", req.upsample)));
    }
    let mut backend = crate::task::run::saved_backend(&ck, &device, req.threads)?;
    let k = req.upsample;
    let values = predict_grid(backend.as_mut(), meta.dims, k)?;
    let dims = meta.dims.map(|n| n * k);
    let affine = upsampled_affine(meta.world_from_voxel, k);
    let mut written = Vec::new();
    if k > 1 || req.mesh.is_none() {
        let path = dir.join(format!("fit_x{k}.nii.gz"));
        crate::io::write_nifti_f32(&path, &meta.intensity.to_raw(&values), dims, affine)?;
        written.push(path);
    }
    if let Some((level, formats)) = &req.mesh {
        if !(0.0..=1.0).contains(level) {
            return Err(Error::Config(format!("--level is a normalised intensity in [0, 1], got {level}")));
        }
        let mesh = iso_surface(&values, dims, affine, *level);
        written.extend(write_iso_meshes(dir, &mesh, *level, k, formats)?);
    }
    Ok(written)
}

/// Writes the `level` iso-surface exported on the grid `k` times finer as `iso_{level}_x{k}.{ext}`
/// in each format (volume, MRI and CT runs). Returns the paths written.
pub fn write_iso_meshes(
    dir: &Path,
    mesh: &TriMesh,
    level: f32,
    k: usize,
    formats: &[MeshFormat],
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for &format in formats {
        let path = dir.join(format!("iso_{level}_x{k}.{}", format.extension()));
        crate::io::write_mesh(&path, mesh, format)?;
        written.push(path);
    }
    Ok(written)
}
