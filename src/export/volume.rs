//! Volumes out: a fitted field as NIfTI in raw intensity units (on the input grid and finer),
//! and CT reconstructions as NIfTI with a PNG of the middle slice.

use crate::backend::Backend;
use crate::export::grid::{predict_grid, upsampled_affine};
use crate::io::png::write_png_gray;
use crate::io::volume::Intensity;
use crate::io::WorldFromVoxel;
use crate::operator::ct_geometry::Scan;
use crate::Result;
use std::path::Path;

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

/// Writes a volume on the scan's grid as .nii.gz, plus a PNG of the (middle) slice beside it
/// ([`preview_path`]).
pub fn write_volume(scan: &Scan, data: &[f32], path: &Path) -> Result<()> {
    crate::io::write_nifti_f32(path, data, scan.voxels, scan.world_from_voxel())?;
    write_preview(scan, data, &preview_path(path))
}

/// The PNG [`write_volume`] writes beside the volume `path` (`truth.nii.gz` → `truth.png`).
pub fn preview_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("").with_extension("png")
}

/// The PNG of the middle slice of a volume on the scan's grid, to `png`.
pub fn write_preview(scan: &Scan, data: &[f32], png: &Path) -> Result<()> {
    let [nx, ny, nz] = scan.voxels;
    let z = nz / 2;
    let slice = &data[z * nx * ny..(z + 1) * nx * ny];
    // images show y up: row 0 is the largest y
    let rows: Vec<f32> = (0..ny).rev().flat_map(|y| slice[y * nx..(y + 1) * nx].iter().copied()).collect();
    write_png_gray(png, &rows, nx, ny, 0.0, 1.0)
}
