//! PNG images (slice montages), through the `png` crate, written atomically.

use std::path::Path;

use super::atomic::write_atomic;
use crate::{Error, Result};

/// Writes an 8-bit greyscale image, rows top to bottom, `width` pixels each.
pub fn write_png_gray8(path: &Path, width: usize, height: usize, pixels: &[u8]) -> Result<()> {
    write_png(path, width, height, pixels, ::png::ColorType::Grayscale, 1)
}

/// Writes an 8-bit RGB image, rows top to bottom, `3·width` bytes each.
pub fn write_png_rgb8(path: &Path, width: usize, height: usize, pixels: &[u8]) -> Result<()> {
    write_png(path, width, height, pixels, ::png::ColorType::Rgb, 3)
}

fn write_png(
    path: &Path,
    width: usize,
    height: usize,
    pixels: &[u8],
    color: ::png::ColorType,
    channels: usize,
) -> Result<()> {
    let bad = |m: String| Error::Input(format!("cannot write {}: {m}", path.display()));
    if width == 0 || height == 0 || width > u32::MAX as usize || height > u32::MAX as usize {
        return Err(bad(format!("image size {width}×{height}")));
    }
    if width * height * channels != pixels.len() {
        return Err(bad(format!(
            "{} bytes for a {width}×{height} image with {channels} channels",
            pixels.len()
        )));
    }
    write_atomic(path, |w| {
        let mut enc = ::png::Encoder::new(w, width as u32, height as u32);
        enc.set_color(color);
        enc.set_depth(::png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(pixels).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
}
