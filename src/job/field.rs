//! What the volume and MRI jobs share: their `[train]` and `[export]` settings, the run's
//! metadata in the checkpoint, and `ffvol export` of their runs (NIfTI on the input grid or a
//! finer one, iso-surface meshes).
//!
//! Coordinates: voxel (i, j, k) of an (nx, ny, nz) grid sits at ((i+½)/nx, (j+½)/ny, (k+½)/nz) in
//! the unit box, its centre. A grid K times finer samples the same box at ((i'+½)/(K·nx), …), so
//! fine voxel i' sits at input voxel index (i'+½)/K − ½, and `world_from_voxel` follows
//! ([`upsampled_affine`]).

use crate::export::grid::{predict_grid, upsampled_affine};
use crate::export::surface::{iso_surface, write_iso_view, MeshView};
use crate::io::volume::Intensity;
use crate::io::{MeshFormat, WorldFromVoxel};
use crate::model::checkpoint::Checkpoint;
use crate::train::run::CHECKPOINT;
use crate::train::LrSchedule;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    pub fn to_extra(&self) -> Result<std::collections::HashMap<String, String>> {
        let json = serde_json::to_string(self).map_err(|e| Error::Config(format!("volume metadata: {e}")))?;
        Ok([(META_KEY.to_string(), json)].into())
    }
    pub fn from_checkpoint(path: &Path, ck: &Checkpoint) -> Result<Self> {
        let text =
            ck.extra.get(META_KEY).ok_or_else(|| Error::format(path, "not a volume or MRI checkpoint"))?;
        let meta: Self =
            serde_json::from_str(text).map_err(|e| Error::format(path, format!("volume metadata: {e}")))?;
        // the export allocates from these: checked like a NIfTI header (≤ 2^31 voxels)
        let n = meta.dims.iter().try_fold(1u64, |p, &d| p.checked_mul(d as u64).filter(|_| d > 0));
        if n.is_none_or(|n| n > 1 << 31) {
            return Err(Error::format(
                path,
                format!("volume metadata: grid dims {:?} are not 1 to 2^31 voxels", meta.dims),
            ));
        }
        let (lo, hi) = (meta.intensity.lo, meta.intensity.hi);
        if meta.world_from_voxel.iter().flatten().chain([&lo, &hi]).any(|v| !v.is_finite()) {
            return Err(Error::format(
                path,
                "volume metadata: the affine or the intensity range is not finite",
            ));
        }
        Ok(meta)
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
    /// Weight λ of the total variation of the field added to the loss (MRI) (0: none)
    /// ([`crate::train::regularise`]).
    #[serde(default, skip_serializing_if = "crate::train::regularise::is_zero")]
    pub tv: f32,
    /// Anisotropic TV (Σ_a |∂_a p|) instead of isotropic (|∇p|).
    #[serde(default, skip_serializing_if = "crate::train::regularise::is_false")]
    pub tv_anisotropic: bool,
    /// Charbonnier ε of TV's smoothed |·|.
    #[serde(
        default = "crate::train::regularise::default_epsilon",
        skip_serializing_if = "crate::train::regularise::is_default_epsilon"
    )]
    pub tv_epsilon: f32,
}

crate::train_settings!(FieldTrain);

impl FieldTrain {
    /// The total-variation term these settings ask for (`None`: λ = 0).
    pub fn total_variation(&self) -> Option<crate::train::regularise::TotalVariation> {
        crate::train::regularise::TotalVariation::new(self.tv, self.tv_anisotropic, self.tv_epsilon)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.steps == 0 {
            return bad("train.steps must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("train.lr must be positive, got {}", self.lr));
        }
        crate::train::regularise::TotalVariation::validate(self.tv, self.tv_epsilon, "train")?;
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

pub fn validate_upsample(upsample: usize) -> Result<()> {
    if !(1..=16).contains(&upsample) {
        return Err(Error::Config(format!("export.upsample must be in 1..=16, got {upsample}")));
    }
    Ok(())
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
    let value = crate::config::read_toml(&dir.join(crate::train::run::RUN_TOML))?;
    Ok(value.get("job").and_then(|j| j.as_str()).map(str::to_string))
}

/// Re-evaluates a saved volume or MRI run and writes the requested exports into its folder.
/// Returns the paths written.
pub fn export_run(dir: &Path, req: &ExportRequest) -> Result<Vec<PathBuf>> {
    export_run_view(dir, req, &MeshView::default())
}

/// [`export_run`] with the mesh made for viewing as `view` says (normals, simplification,
/// colours).
pub fn export_run_view(dir: &Path, req: &ExportRequest, view: &MeshView) -> Result<Vec<PathBuf>> {
    let config = crate::config::RunConfig::load_run(dir)?;
    let device = config.device();
    let ck_path = dir.join(CHECKPOINT);
    let ck = crate::train::run::load_checkpoint(dir, config.common(), 3)?;
    let meta = FieldMeta::from_checkpoint(&ck_path, &ck)?;
    if !(1..=16).contains(&req.upsample) {
        return Err(Error::Config(format!("--upsample must be in 1..=16, got {}", req.upsample)));
    }
    let k = req.upsample;
    let n = (meta.dims.iter().product::<usize>() as u64).saturating_mul((k * k * k) as u64);
    let area = (n as f64).powf(2.0 / 3.0) as u64;
    crate::train::memory::check_export(
        &format!("export ×{k} (use a lower --upsample)"),
        &[
            ("field", n.saturating_mul(4)),
            ("raw intensities", n.saturating_mul(4)),
            ("NIfTI data", n.saturating_mul(4)),
            ("iso-surface", if req.mesh.is_some() { area.saturating_mul(200) } else { 0 }),
        ],
    )?;
    let mut backend = crate::train::run::saved_backend(&ck, &device, req.threads)?;
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
        let field = crate::export::normals::FieldGradient::new(ck.encoding.clone(), ck.state.mlp.clone())?;
        let view_files =
            write_iso_view(dir, mesh, *level, k, formats, view, &field, meta.dims, meta.world_from_voxel)?;
        written.extend(view_files);
    }
    Ok(written)
}
