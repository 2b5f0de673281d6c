//! Volumes in: NIfTI-1 or .npy scalar volumes with their affine, checked, and the intensity
//! normalisation to [0, 1] a fit uses.

use crate::io::WorldFromVoxel;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A scalar volume, x fastest, with its NIfTI affine.
#[derive(Clone, Debug)]
pub struct Volume {
    pub data: Vec<f32>,
    pub dims: [usize; 3],
    pub world_from_voxel: WorldFromVoxel,
}

/// The default volume of `fit volume` and `fit mri` (relative to the working directory; the copy
/// built into the binary is used when it is not there).
pub const DEFAULT_VOLUME: &str = "datasets/mni152_t1_32.nii.gz";

/// `datasets/mni152_t1_32.nii.gz`, built into the binary so the default runs work from any
/// directory and after `cargo install` (11 kB).
const BUNDLED_VOLUME: &[u8] = include_bytes!("../../datasets/mni152_t1_32.nii.gz");

/// For the default path when no such file exists here: the built-in copy, written once to
/// `<temp>/ffvol-bundled/` (atomically) so the readers can take it as a file.
fn bundled_volume(path: &Path) -> Result<Option<std::path::PathBuf>> {
    if path != Path::new(DEFAULT_VOLUME) || path.exists() {
        return Ok(None);
    }
    let copy = std::env::temp_dir().join("ffvol-bundled").join("mni152_t1_32.nii.gz");
    let current = std::fs::read(&copy).map(|b| b == BUNDLED_VOLUME).unwrap_or(false);
    if !current {
        let dir = copy.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        crate::io::write_bytes_atomic(&copy, BUNDLED_VOLUME)?;
    }
    Ok(Some(copy))
}

/// Reads `.nii`, `.nii.gz` or `.npy` (3-D, real), a MATLAB v5 `.mat` file (its one 3-D array),
/// or a DICOM series: a folder, a `.txt` list of files, or one (multi-frame) file (`.dcm`, or any
/// file with the DICOM magic); see [`crate::io::dicom`]. `.npy` and `.mat` volumes get a 1 mm
/// identity affine. A non-finite voxel, a volume with fewer than 2 voxels along an axis, or a
/// constant volume is an error naming the file.
pub fn load_volume(path: &Path) -> Result<Volume> {
    let v = read_volume(path)?;
    if v.dims.iter().any(|&d| d < 2) {
        return Err(Error::format(
            path,
            format!("a {:?} volume is too small: every axis needs at least 2 voxels", v.dims),
        ));
    }
    Ok(v)
}

/// [`load_volume`] without the size check: a single slice (`[nx, ny, 1]`) is read too (a 2-D
/// phantom for `simulate ct`).
pub fn read_volume(path: &Path) -> Result<Volume> {
    let bundled = bundled_volume(path)?;
    let path = bundled.as_deref().unwrap_or(path);
    if !path.is_dir() {
        crate::io::check_regular_file(path)?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
    let dicom = |v: Volume| (v.data, v.dims, v.world_from_voxel);
    let (data, dims, world_from_voxel) = if path.is_dir() {
        dicom(crate::io::dicom::read_dicom_dir(path)?)
    } else if name.ends_with(".txt") {
        dicom(crate::io::dicom::read_dicom_list(path)?)
    } else if name.ends_with(".mat") {
        dicom(crate::io::mat::read_mat(path)?)
    } else if name.ends_with(".dcm") || name.ends_with(".dicom") || crate::io::dicom::has_dicom_magic(path) {
        dicom(crate::io::dicom::read_dicom_files(&[path.to_path_buf()], path)?)
    } else if name.ends_with(".npy") {
        let arr = crate::io::read_npy(path)?;
        let (data, dims) = arr.real_volume(path)?;
        (data, dims, identity_affine())
    } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        check_nifti1_header(path, name.ends_with(".gz"))?;
        crate::io::read_nifti_f32(path)?
    } else {
        return Err(Error::format(
            path,
            "unknown volume format (expected .nii, .nii.gz, .npy, .mat, a DICOM file or folder, or a .txt list of DICOM files)",
        ));
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
    Ok(Volume { data, dims, world_from_voxel })
}

/// What the `nifti` crate lets through: `sizeof_hdr` must be 348 (either byte order) and the
/// magic `n+1` (single file) or `ni1` (header of a pair).
fn check_nifti1_header(path: &Path, gz: bool) -> Result<()> {
    use std::io::Read;
    let file = crate::io::open_file(path)?;
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
