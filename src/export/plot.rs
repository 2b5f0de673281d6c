//! Line plots as PNG, drawn by our own small rasteriser (no Python, no plotting library): the
//! σ sweep of `--sigma auto` and the kernel figures of `ffvol ntk`.
//!
//! Axes are linear or log10; ticks are "nice" numbers (1, 2, 5 × 10^k) or powers of ten; labels
//! use the 8×8 bitmap glyphs of the `font8x8` crate. Non-finite points break a line.

use crate::{Error, Result};
use std::path::Path;

/// One curve: its points (x, y), colour and whether each point gets a marker.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: [u8; 3],
    pub markers: bool,
    /// Draw the line between points (false: markers only).
    pub line: bool,
}

impl Series {
    pub fn line(label: &str, points: Vec<(f64, f64)>, color: [u8; 3]) -> Self {
        Series { label: label.into(), points, color, markers: false, line: true }
    }
    pub fn markers(label: &str, points: Vec<(f64, f64)>, color: [u8; 3]) -> Self {
        Series { label: label.into(), points, color, markers: true, line: false }
    }
}

/// A figure: axes, curves, and vertical marker lines (e.g. the chosen σ).
#[derive(Clone, Debug, Default)]
pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
    /// Vertical lines at these x, with a label.
    pub marks: Vec<(f64, String)>,
}

/// A palette of distinguishable colours for several series.
pub const COLORS: [[u8; 3]; 8] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [23, 190, 207],
];

/// An RGB canvas.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, background: [u8; 3]) -> Self {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            rgb.extend_from_slice(&background);
        }
        Canvas { width, height, rgb }
    }

    pub fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = 3 * (y as usize * self.width + x as usize);
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// A line two pixels wide from (x0, y0) to (x1, y1).
    pub fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3], thick: bool) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as i64).clamp(1, 100_000);
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let (x, y) = ((x0 + t * (x1 - x0)).round() as i64, (y0 + t * (y1 - y0)).round() as i64);
            self.set(x, y, c);
            if thick {
                self.set(x + 1, y, c);
                self.set(x, y + 1, c);
            }
        }
    }

    /// Text with the 8×8 glyphs scaled by `scale`, its top-left corner at (x, y).
    pub fn text(&mut self, x: i64, y: i64, text: &str, c: [u8; 3], scale: usize) {
        for (k, ch) in text.chars().enumerate() {
            let glyph = glyph(ch);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                let px = x + ((k * 8 + col) * scale + dx) as i64;
                                self.set(px, y + (row * scale + dy) as i64, c);
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        crate::io::write_png_rgb8(path, self.width, self.height, &self.rgb)
    }
}

/// The 8×8 glyph of `ch` (rows top to bottom, bit 0 the leftmost pixel); printable ASCII, `?` else.
pub fn glyph(ch: char) -> [u8; 8] {
    let code = ch as u32;
    let code = if (32..127).contains(&code) { code } else { '?' as u32 };
    font8x8::legacy::BASIC_LEGACY[code as usize]
}

/// Tick positions for [lo, hi]: 1, 2 or 5 × 10^k steps, about `n` of them.
fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-300);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last.min(first + 50)).map(|k| k as f64 * step).collect()
}

/// A tick label: short, without trailing zeros.
fn tick_label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.0e}");
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// One axis: its data range, its scale and the ticks.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn fit(values: impl Iterator<Item = f64>, log: bool) -> Axis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            let v = if log {
                if v > 0.0 {
                    v.log10()
                } else {
                    continue;
                }
            } else {
                v
            };
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-12 * lo.abs().max(1.0) {
            (lo, hi) = (lo - 0.5, hi + 0.5);
        }
        let pad = 0.04 * (hi - lo);
        Axis { lo: lo - pad, hi: hi + pad, log }
    }

    /// Position in [0, 1] of the data value `v` (NaN when it cannot be drawn).
    fn unit(&self, v: f64) -> f64 {
        let v = if self.log {
            if v > 0.0 {
                v.log10()
            } else {
                f64::NAN
            }
        } else {
            v
        };
        (v - self.lo) / (self.hi - self.lo)
    }

    /// (data value, label) of each tick.
    fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            let (a, b) = (self.lo.ceil() as i64, self.hi.floor() as i64);
            if b - a >= 1 {
                return (a..=b.min(a + 40))
                    .map(|k| (10f64.powi(k as i32), tick_label(10f64.powi(k as i32))))
                    .collect();
            }
            // less than a decade: nice ticks on the values themselves
            return nice_ticks(10f64.powf(self.lo), 10f64.powf(self.hi), 5)
                .into_iter()
                .filter(|v| *v > 0.0)
                .map(|v| (v, tick_label(v)))
                .collect();
        }
        nice_ticks(self.lo, self.hi, 6).into_iter().map(|v| (v, tick_label(v))).collect()
    }
}

impl Plot {
    /// Draws the plot on a `width`×`height` canvas.
    pub fn render(&self, width: usize, height: usize) -> Canvas {
        let (black, grey, white) = ([0, 0, 0], [225, 225, 225], [255, 255, 255]);
        let mut c = Canvas::new(width, height, white);
        let (left, right, top, bottom) = (78.0, 16.0, 30.0, 46.0);
        let (w, h) = (width as f64 - left - right, height as f64 - top - bottom);
        let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let xs: Vec<f64> = xs.chain(self.marks.iter().map(|m| m.0)).collect();
        let x_axis = Axis::fit(xs.into_iter(), self.log_x);
        let y_axis = Axis::fit(self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), self.log_y);
        let px = |x: f64| left + x_axis.unit(x) * w;
        let py = |y: f64| top + (1.0 - y_axis.unit(y)) * h;
        for (v, label) in x_axis.ticks() {
            let x = px(v);
            c.line((x, top), (x, top + h), grey, false);
            c.text(x as i64 - 4 * label.len() as i64, (top + h + 6.0) as i64, &label, black, 1);
        }
        for (v, label) in y_axis.ticks() {
            let y = py(v);
            c.line((left, y), (left + w, y), grey, false);
            c.text(left as i64 - 6 - 8 * label.len() as i64, y as i64 - 4, &label, black, 1);
        }
        c.line((left, top), (left, top + h), black, false);
        c.line((left, top + h), (left + w, top + h), black, false);
        c.line((left + w, top), (left + w, top + h), black, false);
        c.line((left, top), (left + w, top), black, false);
        for (x, label) in &self.marks {
            let x = px(*x);
            if x.is_finite() {
                let mut y = top;
                while y < top + h {
                    c.line((x, y), (x, (y + 5.0).min(top + h)), [90, 90, 90], false);
                    y += 9.0;
                }
                c.text(x as i64 + 4, top as i64 + 4, label, [90, 90, 90], 1);
            }
        }
        for s in &self.series {
            let mut last: Option<(f64, f64)> = None;
            for &(x, y) in &s.points {
                let p = (px(x), py(y));
                if !(p.0.is_finite() && p.1.is_finite()) {
                    last = None;
                    continue;
                }
                if let (Some(q), true) = (last, s.line) {
                    c.line(q, p, s.color, true);
                }
                if s.markers {
                    for d in -3i64..=3 {
                        c.line((p.0 - 3.0, p.1 + d as f64), (p.0 + 3.0, p.1 + d as f64), s.color, false);
                    }
                }
                last = Some(p);
            }
        }
        c.text(left as i64, 8, &self.title, black, 1);
        let xl = &self.x_label;
        c.text((left + w / 2.0) as i64 - 4 * xl.len() as i64, height as i64 - 16, xl, black, 1);
        c.text(4, 18, &self.y_label, black, 1);
        let mut y = top as i64 + 6;
        for s in self.series.iter().filter(|s| !s.label.is_empty()) {
            let x = (left + w) as i64 - 8 * s.label.len() as i64 - 30;
            c.line((x as f64, y as f64 + 4.0), (x as f64 + 18.0, y as f64 + 4.0), s.color, true);
            c.text(x + 24, y, &s.label, black, 1);
            y += 12;
        }
        c
    }

    /// Renders (720 × 460) and writes the PNG atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        if self.series.iter().all(|s| s.points.is_empty()) {
            return Err(Error::Input(format!("cannot plot {}: no points", path.display())));
        }
        self.render(720, 460).write(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        assert_eq!(nice_ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        let a = Axis { lo: -1.0, hi: 2.0, log: true };
        let t: Vec<f64> = a.ticks().into_iter().map(|t| t.0).collect();
        assert_eq!(t, vec![0.1, 1.0, 10.0, 100.0]);
        assert_eq!(tick_label(2.5), "2.5");
        assert_eq!(tick_label(1e-6), "1e-6");
    }

    /// A line from the lower left to the upper right colours pixels near both corners of the
    /// plot area, and only its own colour there.
    #[test]
    fn a_rising_line_is_drawn_where_it_should_be() {
        let red = [200, 0, 0];
        let plot =
            Plot { series: vec![Series::line("", vec![(0.0, 0.0), (1.0, 1.0)], red)], ..Default::default() };
        let c = plot.render(300, 200);
        let is_red = |x: usize, y: usize| c.rgb[3 * (y * c.width + x)..3 * (y * c.width + x) + 3] == red;
        let count = (0..c.height)
            .flat_map(|y| (0..c.width).map(move |x| (x, y)))
            .filter(|&(x, y)| is_red(x, y))
            .count();
        assert!(count > 150, "{count} red pixels");
        // the plot area spans x in [78, 284], y in [30, 154]: the line starts near the bottom left
        let near =
            |x0: usize, y0: usize| (x0 - 12..x0 + 12).any(|x| (y0 - 12..y0 + 12).any(|y| is_red(x, y)));
        assert!(near(86, 149) && near(276, 35));
        assert!(!near(276, 149) && !near(86, 35));
    }
}
