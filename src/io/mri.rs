//! MRI inputs: a volume and/or measured k-space with its mask (each checked against the other),
//! or k-space simulated from the volume through a sampling mask; the problem `fit mri` solves.

use crate::io::volume::{identity_affine, load_volume, Intensity};
use crate::io::{NpyData, WorldFromVoxel};
use crate::job::mri::MriConfig;
use crate::operator::fft::{ifftshift, MaskedFft, C64};
use crate::{Error, Result};
use rustfft::num_complex::Complex;

/// The problem the network is fitted to.
pub struct MriProblem {
    pub dims: [usize; 3],
    pub world_from_voxel: WorldFromVoxel,
    /// The truth in [0, 1], when known.
    pub truth: Option<Vec<f32>>,
    pub intensity: Intensity,
    pub operator: MaskedFft,
    /// Measured coefficients, unshifted, zero outside the mask.
    pub kspace: Vec<C64>,
}

/// Loads the volume / k-space / mask a config names, or simulates the measurements.
pub fn prepare(cfg: &MriConfig) -> Result<MriProblem> {
    let volume = cfg.volume.as_ref().map(|p| load_volume(p).map(|v| (p, v))).transpose()?;
    let measured = match &cfg.kspace {
        Some(path) => {
            let (values, dims) = crate::io::read_npy(path)?.complex_volume(path)?;
            if let Some((vpath, v)) = &volume {
                if v.dims != dims {
                    return Err(Error::format(
                        path,
                        format!(
                            "k-space shape {dims:?} does not match the volume {} ({:?})",
                            vpath.display(),
                            v.dims
                        ),
                    ));
                }
            }
            if let Some(i) = values.iter().position(|c| !(c[0].is_finite() && c[1].is_finite())) {
                return Err(Error::format(path, format!("k-space entry {i} is not finite")));
            }
            let values: Vec<C64> = values.iter().map(|c| Complex::new(c[0] as f64, c[1] as f64)).collect();
            Some((path, ifftshift(&values, dims), dims))
        }
        None => None,
    };
    let dims = match (&volume, &measured) {
        (Some((_, v)), _) => v.dims,
        (None, Some((_, _, d))) => *d,
        (None, None) => return Err(Error::Config("the MRI job needs a volume or k-space".into())),
    };
    let mask = match &cfg.mask {
        Some(path) => {
            let arr = crate::io::read_npy(path)?;
            if arr.shape != dims.to_vec() {
                return Err(Error::format(
                    path,
                    format!("mask shape {:?} does not match the data's {dims:?}", arr.shape),
                ));
            }
            if matches!(arr.data, NpyData::C64(_)) {
                return Err(Error::format(path, "a mask must be real (bool, uint8, int16, float)"));
            }
            let (values, _) = arr.real_volume(path)?;
            if values.iter().any(|v| !v.is_finite()) {
                return Err(Error::format(path, "the mask has a non-finite entry"));
            }
            let centred: Vec<bool> = values.iter().map(|&v| v != 0.0).collect();
            if !centred.iter().any(|&m| m) {
                return Err(Error::format(path, "the mask samples nothing"));
            }
            ifftshift(&centred, dims)
        }
        None => match &measured {
            Some((_, y, _)) => y.iter().map(|c| c.norm_sqr() > 0.0).collect(),
            None => ifftshift(&cfg.sampling.build(dims, cfg.common.seed), dims),
        },
    };
    let operator = MaskedFft::new(dims, mask)?;
    let (truth, intensity, world_from_voxel) = match &volume {
        Some((path, v)) => {
            let intensity = cfg.normalize.fit(&v.data, path)?;
            (Some(intensity.to_unit(&v.data)), intensity, v.world_from_voxel)
        }
        None => (None, Intensity { lo: 0.0, hi: 1.0 }, identity_affine()),
    };
    let kspace = match (measured, &truth) {
        (Some((path, mut y, _)), truth) => {
            operator.apply_mask(&mut y);
            if truth.is_none() {
                let mut zf = operator.zero_filled(&y);
                zf.sort_by(f32::total_cmp);
                let scale = zf[((zf.len() - 1) as f64 * 0.995) as usize] as f64;
                if !(scale > 0.0) {
                    return Err(Error::format(
                        path,
                        "the zero-filled image is not positive anywhere: cannot scale the k-space",
                    ));
                }
                y.iter_mut().for_each(|c| *c /= scale);
            }
            y
        }
        (None, Some(g)) => operator.apply_real(g),
        (None, None) => return Err(Error::Config("the MRI job needs a volume or k-space".into())),
    };
    Ok(MriProblem { dims, world_from_voxel, truth, intensity, operator, kspace })
}
