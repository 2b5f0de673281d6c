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

/// Writes an 8-bit grey PNG of a row-major `w`×`h` image, mapping [lo, hi] to [0, 255].
pub fn write_png_gray(path: &Path, img: &[f32], w: usize, h: usize, lo: f32, hi: f32) -> Result<()> {
    let span = (hi - lo).max(1e-12);
    let bytes: Vec<u8> =
        img.iter().map(|&v| (((v - lo) / span).clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    crate::io::write_atomic(path, |out| {
        let mut enc = png::Encoder::new(out, w as u32, h as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(&bytes).map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
}
