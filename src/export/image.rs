//! Images out: slice montages of volumes (truth, fit, error).

use crate::Result;
use std::path::Path;

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
