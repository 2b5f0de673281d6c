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

/// A decoded image: row-major, the top row first, `channels` values per pixel in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    /// 1 (grey) or 3 (RGB); an alpha channel is dropped when read.
    pub channels: usize,
    pub data: Vec<f32>,
}

/// Largest image [`read_png`] accepts: 2^26 pixels (8192² pixels; 768 MiB as RGB f32).
pub const MAX_PNG_PIXELS: usize = 1 << 26;

/// Reads a PNG (8- or 16-bit; grey, grey + alpha, RGB, RGBA or palette) as values in [0, 1]:
/// grey images keep one channel, the others become RGB, and alpha is dropped (the colour
/// values are used as stored, not composited). The header's size is checked before anything is
/// allocated from it; a truncated or corrupt file is an error naming the file.
pub fn read_png(path: &Path) -> Result<Image> {
    let file = crate::io::open_file(path)?;
    let bad = |m: String| Error::format(path, m);
    let mut decoder = ::png::Decoder::new_with_limits(
        std::io::BufReader::new(file),
        ::png::Limits { bytes: MAX_PNG_PIXELS * 8 + (1 << 20) },
    );
    decoder.set_transformations(::png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| bad(format!("not a readable PNG: {e}")))?;
    let (width, height) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    let pixels = width
        .checked_mul(height)
        .filter(|&p| p > 0 && p <= MAX_PNG_PIXELS)
        .ok_or_else(|| bad(format!("image size {width}×{height}: expected 1 to {MAX_PNG_PIXELS} pixels")))?;
    let (color, depth) = reader.output_color_type();
    let stored = color.samples();
    let bytes_per_sample = match depth {
        ::png::BitDepth::Eight => 1,
        ::png::BitDepth::Sixteen => 2,
        other => return Err(bad(format!("bit depth {other:?} after expansion; expected 8 or 16"))),
    };
    let size = pixels
        .checked_mul(stored * bytes_per_sample)
        .ok_or_else(|| bad(format!("image size {width}×{height} overflows")))?;
    let mut buf = vec![0u8; size.max(reader.output_buffer_size())];
    let frame = reader.next_frame(&mut buf).map_err(|e| bad(format!("cannot decode the image data: {e}")))?;
    let line = frame.line_size;
    let channels = if stored <= 2 { 1 } else { 3 };
    let max = if bytes_per_sample == 1 { 255.0 } else { 65535.0 };
    let mut data = Vec::with_capacity(pixels * channels);
    for y in 0..height {
        let row = &buf[y * line..y * line + width * stored * bytes_per_sample];
        for x in 0..width {
            for c in 0..channels {
                let s = x * stored + c;
                let v = if bytes_per_sample == 1 {
                    row[s] as f32
                } else {
                    u16::from_be_bytes([row[2 * s], row[2 * s + 1]]) as f32
                };
                data.push(v / max);
            }
        }
    }
    Ok(Image { width, height, channels, data })
}

/// Writes `image` (values clipped to [0, 1]) as an 8-bit grey or RGB PNG.
pub fn write_png_image(path: &Path, image: &Image) -> Result<()> {
    let bytes: Vec<u8> = image.data.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    match image.channels {
        1 => write_png_gray8(path, image.width, image.height, &bytes),
        3 => write_png_rgb8(path, image.width, image.height, &bytes),
        c => Err(Error::Input(format!("cannot write {}: {c} channels (1 or 3)", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grey and RGB 8-bit images survive a write and a read; a truncated file is an error.
    #[test]
    fn round_trip_and_truncation() {
        let dir = std::env::temp_dir().join(format!("ffvol-png-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for channels in [1, 3] {
            let (w, h) = (7, 5);
            let data: Vec<f32> = (0..w * h * channels).map(|i| ((i * 37) % 256) as f32 / 255.0).collect();
            let img = Image { width: w, height: h, channels, data };
            let path = dir.join(format!("c{channels}.png"));
            write_png_image(&path, &img).unwrap();
            let back = read_png(&path).unwrap();
            assert_eq!(back, img);
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
            let err = read_png(&path).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        std::fs::write(dir.join("x.png"), b"not a png").unwrap();
        let err = read_png(&dir.join("x.png")).unwrap_err().to_string();
        assert!(err.contains("not a readable PNG"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
