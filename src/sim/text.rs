//! Text images as the paper's second image set: random strings at random sizes and colours.
//!
//! On a white square of side N, lines of random characters (letters, digits, punctuation and
//! spaces) are drawn left to right until the right edge, each line with its own glyph height
//! (uniform in [N/16, N/4]: 32 to 128 pixels at 512²) and its own colour (each channel uniform
//! in [0, 0.8], so every line contrasts with the white), from the top down until the next line
//! would leave the image. Glyphs are the 8×8 bitmaps of the `font8x8` crate, scaled to the line's
//! height (non-integer scales allowed) and anti-aliased by 4 × 4 supersampling of each pixel.
//! Everything is drawn from (seed) alone, so `ffvol simulate text --seed S` is reproducible.

use crate::io::png::Image;
use crate::sample::CounterRng;
use crate::{Error, Result};

/// Stream of the generator's draws.
const STREAM_TEXT: u64 = 0x7e_01;
/// Sub-samples per pixel along each axis.
const SUPERSAMPLE: usize = 4;
/// The characters strings are drawn from (space twice as likely as each other character).
const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.,;:!?&@#%  ";
/// Largest side `text_image` draws.
pub const MAX_SIDE: usize = 4096;

/// One line of text: its top row, glyph height and width in pixels, colour and characters.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub top: f64,
    pub cell: f64,
    pub left: f64,
    pub colour: [f32; 3],
    pub text: Vec<u8>,
}

/// The lines of the text image of side `size` for `seed`.
pub fn layout(size: usize, seed: u64) -> Vec<Line> {
    let rng = CounterRng::new(seed, STREAM_TEXT);
    let mut k = 0u64;
    let mut next = move || {
        k += 1;
        rng.uniform_f64(k)
    };
    let n = size as f64;
    let mut lines = Vec::new();
    let mut top = next() * 0.05 * n;
    loop {
        let height = n / 16.0 + next() * (n / 4.0 - n / 16.0);
        if top + height > n {
            break;
        }
        let cell = height / 8.0;
        let colour = [0.8 * next() as f32, 0.8 * next() as f32, 0.8 * next() as f32];
        let left = next() * 0.1 * n;
        let count = ((n - left) / height).floor().max(0.0) as usize;
        let text = (0..count)
            .map(|_| CHARS[((next() * CHARS.len() as f64) as usize).min(CHARS.len() - 1)])
            .collect();
        lines.push(Line { top, cell, left, colour, text });
        top += height + next() * 0.25 * height;
    }
    lines
}

/// The text image of side `size` (16..=[`MAX_SIDE`]) for `seed`: RGB in [0, 1].
pub fn text_image(size: usize, seed: u64) -> Result<Image> {
    if !(16..=MAX_SIDE).contains(&size) {
        return Err(Error::Config(format!("text image: --size must be in 16..={MAX_SIDE}, got {size}")));
    }
    let mut data = vec![1f32; size * size * 3];
    let ss = SUPERSAMPLE as f64;
    for line in layout(size, seed) {
        let height = 8.0 * line.cell;
        let (y0, y1) = (line.top.floor() as usize, ((line.top + height).ceil() as usize).min(size));
        let x1 = ((line.left + height * line.text.len() as f64).ceil() as usize).min(size);
        for py in y0..y1 {
            for px in (line.left.floor() as usize)..x1 {
                let mut covered = 0usize;
                for sy in 0..SUPERSAMPLE {
                    let gy = ((py as f64 + (sy as f64 + 0.5) / ss) - line.top) / line.cell;
                    if !(0.0..8.0).contains(&gy) {
                        continue;
                    }
                    for sx in 0..SUPERSAMPLE {
                        let u = ((px as f64 + (sx as f64 + 0.5) / ss) - line.left) / line.cell;
                        if u < 0.0 {
                            continue;
                        }
                        let (ci, gx) = ((u / 8.0) as usize, (u % 8.0) as usize);
                        let Some(&ch) = line.text.get(ci) else { continue };
                        let rows = crate::export::plot::glyph(ch as char);
                        if rows[gy as usize] >> gx & 1 == 1 {
                            covered += 1;
                        }
                    }
                }
                if covered > 0 {
                    let a = covered as f32 / (SUPERSAMPLE * SUPERSAMPLE) as f32;
                    let p = &mut data[(py * size + px) * 3..(py * size + px) * 3 + 3];
                    for (v, c) in p.iter_mut().zip(line.colour) {
                        *v = a * c + (1.0 - a) * *v;
                    }
                }
            }
        }
    }
    Ok(Image { width: size, height: size, channels: 3, data })
}
