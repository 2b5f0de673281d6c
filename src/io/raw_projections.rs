//! Raw projections: a stack of detector frames with dark and flat (white) fields, turned into
//! line integrals.
//!
//! Two ways in:
//!
//! - the HDF5 "Data Exchange" layout synchrotron beamlines and tomopy write: `/exchange/data`
//!   `[views, rows, cols]`, `/exchange/data_dark` and `/exchange/data_white` `[frames, rows,
//!   cols]`, `/exchange/theta` (one angle per view, in degrees), read with the pure-Rust
//!   `rust-hdf5` crate (no libhdf5); contiguous or chunked, deflate-compressed or not;
//! - `.npy` stacks (`[views, cols]` or `[views, rows, cols]`) with `.npy` darks and flats
//!   (`[frames, …]` with the same frame shape, or one frame), the angles from a geometry TOML.
//!
//! Element types: float32, float64, uint8, uint16, int16, uint32, int32 (converted to f32).
//!
//! Normalisation ([`line_integrals`]): the dark and flat fields are the per-pixel **median** over
//! their frames (robust to the zingers and hot frames a mean would smear into every view; tomopy's
//! `normalize` takes the mean), the transmission is `(data − dark) / (flat − dark)` and the line
//! integral `−ln(transmission)`. A transmission at or below the floor (zero, negative or dead
//! pixels, non-finite values) is set to the floor and counted. A detector pixel whose flat is not
//! above its dark is dead in every view: its line integrals are interpolated from the nearest
//! live pixels of the same row, and counted.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The largest stack read into memory (elements of data, darks or flats), checked before reading.
pub const MAX_ELEMENTS: usize = 1 << 30;
/// The default floor of the transmission: line integrals are at most −ln(1e-4) ≈ 9.2.
pub const DEFAULT_FLOOR: f64 = 1e-4;

/// Where the rotation axis is on the detector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Center {
    /// A column index (0-based, pixel centres at integers, fractional allowed).
    Column(f64),
    /// `"auto"`: estimated from the projections ([`crate::recon::center`]).
    Named(CenterName),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CenterName {
    Auto,
}

impl Center {
    pub const AUTO: Center = Center::Named(CenterName::Auto);

    /// `auto` or a column index.
    pub fn parse(s: &str) -> std::result::Result<Center, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Center::AUTO);
        }
        s.parse::<f64>()
            .ok()
            .filter(|c| c.is_finite())
            .map(Center::Column)
            .ok_or_else(|| format!("--center {s:?}: expected `auto` or a detector column (e.g. 296.5)"))
    }
}

/// How the projections file is read: the `[input]` table of a CT run (every field optional; an
/// empty table is not written, so runs on line integrals keep their run.toml).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionInput {
    /// Dark-field frames (.npy) of a raw `.npy` stack (an HDF5 file carries its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dark: Option<PathBuf>,
    /// Flat-field (white) frames (.npy) of a raw `.npy` stack; giving it makes the stack raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flat: Option<PathBuf>,
    /// Detector rows kept, `[first, end)`; one row makes a 2D (slice) scan. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<[usize; 2]>,
    /// Keep this many evenly spaced views (sparse-view studies). Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<usize>,
    /// The rotation axis: a detector column or `"auto"`. Default: `auto` for HDF5 files (their
    /// geometry is derived), the geometry's detector offset otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center: Option<Center>,
    /// Floor of the transmission (raw stacks); default [`DEFAULT_FLOOR`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<f64>,
    /// Reconstruction grid: N × N voxels in the slice plane over the same field of view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<usize>,
}

impl ProjectionInput {
    pub fn is_empty(&self) -> bool {
        *self == ProjectionInput::default()
    }

    /// Parses `A` (one row) or `A:B` (rows A..B).
    pub fn parse_rows(s: &str) -> std::result::Result<[usize; 2], String> {
        let bad = || format!("--rows {s:?}: expected a row `K` or a range `A:B` (B excluded)");
        let (a, b) = match s.split_once(':') {
            Some((a, b)) => (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?),
            None => {
                let a: usize = s.trim().parse().map_err(|_| bad())?;
                (a, a + 1)
            }
        };
        if b <= a {
            return Err(bad());
        }
        Ok([a, b])
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(f) = self.floor {
            if !(f.is_finite() && f > 0.0 && f < 1.0) {
                return Err(Error::Config(format!("input.floor must be in (0, 1), got {f}")));
            }
        }
        if self.views == Some(0) {
            return Err(Error::Config("input.views must be at least 1".into()));
        }
        if let Some(g) = self.grid {
            if !(1..=8192).contains(&g) {
                return Err(Error::Config(format!("input.grid must be in 1..=8192, got {g}")));
            }
        }
        if let Some([a, b]) = self.rows {
            if b <= a {
                return Err(Error::Config(format!("input.rows [{a}, {b}] is empty")));
            }
        }
        if self.dark.is_some() && self.flat.is_none() {
            return Err(Error::Config(
                "input.dark needs input.flat (a raw stack needs its flat field)".into(),
            ));
        }
        Ok(())
    }
}

/// A stack of frames `[frames, rows, cols]`, f32, C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Frames {
    pub data: Vec<f32>,
    /// [frames, rows, cols]
    pub shape: [usize; 3],
}

impl Frames {
    pub fn frame_len(&self) -> usize {
        self.shape[1] * self.shape[2]
    }
}

/// What a Data Exchange file holds (the rows asked for).
#[derive(Clone, Debug)]
pub struct RawStack {
    pub data: Frames,
    pub dark: Option<Frames>,
    pub flat: Frames,
    /// One per view, degrees, as stored.
    pub theta_degrees: Option<Vec<f64>>,
    /// Rows of the detector in the file (before selection).
    pub file_rows: usize,
}

/// Whether `path` is an HDF5 file (its signature at offset 0, 512, 1024, …, as userblocks allow).
pub fn is_hdf5(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    const SIG: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
    let Ok(mut f) = crate::io::open_file(path) else { return false };
    let mut buf = [0u8; 8];
    for off in [0u64, 512, 1024, 2048, 4096] {
        if f.seek(SeekFrom::Start(off)).is_err() || f.read_exact(&mut buf).is_err() {
            return false;
        }
        if &buf == SIG {
            return true;
        }
    }
    false
}

fn h5_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::format(path, format!("cannot read it as HDF5: {e}"))
}

/// The detector rows of a Data Exchange file's `/exchange/data`, from its shape alone.
pub fn data_exchange_rows(path: &Path) -> Result<usize> {
    crate::io::check_regular_file(path)?;
    let file = rust_hdf5::H5File::open(path).map_err(|e| h5_error(path, e))?;
    let ds = file
        .dataset("exchange/data")
        .map_err(|e| Error::format(path, format!("no dataset /exchange/data (the projections): {e}")))?;
    Ok(frame_shape(&ds.shape(), path, "/exchange/data")?.0)
}

/// Reads a Data Exchange file: data, darks, flats and theta; only `rows` (default all) are read.
pub fn read_data_exchange(path: &Path, rows: Option<[usize; 2]>) -> Result<RawStack> {
    crate::io::check_regular_file(path)?;
    let file = rust_hdf5::H5File::open(path).map_err(|e| h5_error(path, e))?;
    let open = |name: &str, what: &str| {
        file.dataset(name).map_err(|e| {
            Error::format(
                path,
                format!(
                    "no dataset /{name} ({what}; the Data Exchange layout has /exchange/data, \
                     /exchange/data_dark, /exchange/data_white and /exchange/theta): {e}"
                ),
            )
        })
    };
    let data_ds = open("exchange/data", "the projections")?;
    let (file_rows, _) = frame_shape(&data_ds.shape(), path, "/exchange/data")?;
    let rows = rows.unwrap_or([0, file_rows]);
    if rows[1] > file_rows {
        return Err(Error::format(
            path,
            format!(
                "rows {}..{} asked for, but /exchange/data has {file_rows} detector rows",
                rows[0], rows[1]
            ),
        ));
    }
    let data = read_frames(&data_ds, path, "/exchange/data", rows)?;
    let dark =
        read_frames(&open("exchange/data_dark", "the dark fields")?, path, "/exchange/data_dark", rows)?;
    let flat =
        read_frames(&open("exchange/data_white", "the flat fields")?, path, "/exchange/data_white", rows)?;
    let theta_ds = open("exchange/theta", "the angle of each view, degrees")?;
    let shape = theta_ds.shape();
    if shape.len() != 1 {
        return Err(Error::format(
            path,
            format!("/exchange/theta has shape {shape:?}, expected one angle per view"),
        ));
    }
    if shape[0] != data.shape[0] {
        return Err(Error::format(
            path,
            format!(
                "/exchange/theta lists {} angles but /exchange/data holds {} views",
                shape[0], data.shape[0]
            ),
        ));
    }
    let theta: Vec<f64> = match theta_ds.datatype().map_err(|e| h5_error(path, e))? {
        rust_hdf5::DatatypeMessage::FloatingPoint {
            size: 8,
            byte_order: rust_hdf5::ByteOrder::LittleEndian,
            ..
        } => theta_ds.read_raw::<f64>().map_err(|e| h5_error(path, e))?,
        rust_hdf5::DatatypeMessage::FloatingPoint {
            size: 4,
            byte_order: rust_hdf5::ByteOrder::LittleEndian,
            ..
        } => theta_ds.read_raw::<f32>().map_err(|e| h5_error(path, e))?.into_iter().map(f64::from).collect(),
        other => {
            return Err(Error::format(
                path,
                format!("/exchange/theta has type {other:?}, expected float32 or float64"),
            ))
        }
    };
    if let Some(i) = theta.iter().position(|t| !t.is_finite()) {
        return Err(Error::format(path, format!("/exchange/theta[{i}] is {} (not finite)", theta[i])));
    }
    Ok(RawStack { data, dark: Some(dark), flat, theta_degrees: Some(theta), file_rows })
}

/// (rows, cols) of a `[n, rows, cols]` or `[n, cols]` dataset.
fn frame_shape(shape: &[usize], path: &Path, name: &str) -> Result<(usize, usize)> {
    let (n, r, c) = match *shape {
        [n, r, c] => (n, r, c),
        [n, c] => (n, 1, c),
        _ => {
            return Err(Error::format(
                path,
                format!("{name} has shape {shape:?}, expected [frames, rows, cols] or [frames, cols]"),
            ))
        }
    };
    if n == 0 || r == 0 || c == 0 {
        return Err(Error::format(path, format!("{name} has shape {shape:?}: it is empty")));
    }
    Ok((r, c))
}

fn check_count(n: usize, r: usize, c: usize, path: &Path, name: &str) -> Result<usize> {
    let total = n.checked_mul(r).and_then(|x| x.checked_mul(c)).filter(|&t| t <= MAX_ELEMENTS);
    total.ok_or_else(|| {
        Error::format(
            path,
            format!(
                "{name} would be {n} × {r} × {c} values, more than the {MAX_ELEMENTS} ffvol reads into memory \
                 (select detector rows with --rows)"
            ),
        )
    })
}

/// Deflate's largest expansion: 1032 output bytes an input byte (zlib's "technical details").
const DEFLATE_MAX_RATIO: u64 = 1032;

/// The declared layout of dataset `name` against the file, before rust-hdf5 allocates from it
/// (fuzz findings 2026-12-02): rust-hdf5 zero-fills a decoded image of the declared chunk size
/// for every chunk it decodes (a 12 kB file declaring chunks of 206·10^9 values aborted the
/// process), and the output of the declared shape before it reads (a 12 kB file declaring 286 M
/// values made it fill 572 MB before its deflate stream failed). A chunk may not hold more
/// values than the dataset (or 2^24, for an extendible dataset's first chunk), and the data may
/// not be more bytes than the file holds, or than deflate can expand the file to when the
/// chunks are deflated (shuffle and Fletcher-32 change no sizes); other filters have no such
/// bound and are left to `MAX_ELEMENTS`.
fn check_storage(ds: &rust_hdf5::H5Dataset, path: &Path, name: &str, shape: &[usize]) -> Result<()> {
    let total = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).unwrap_or(u64::MAX);
    if let Some(chunk) = ds.chunk_dims() {
        let values = chunk.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        if chunk.len() != shape.len() || values.is_none_or(|v| v == 0 || v > total.max(1 << 24)) {
            return Err(Error::format(
                path,
                format!(
                    "{name} declares chunks of {chunk:?} values for a dataset of shape {shape:?}: the \
                     layout is damaged"
                ),
            ));
        }
    }
    let filters = ds.filters().map_err(|e| Error::format(path, format!("{name}: {e}")))?;
    let ratio = if filters.is_empty() {
        1
    } else if filters.iter().all(|f| matches!(f.id, 1..=3)) {
        DEFLATE_MAX_RATIO
    } else {
        return Ok(());
    };
    let file_len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    let bytes = total.saturating_mul(ds.element_size() as u64);
    if bytes > file_len.saturating_mul(ratio) {
        let how =
            if ratio == 1 { "uncompressed".to_string() } else { format!("deflated (at most {ratio}:1)") };
        return Err(Error::format(
            path,
            format!(
                "{name} declares {shape:?} values of {} bytes ({bytes} bytes), more than the {file_len}-byte \
                 file can hold {how}: damaged or truncated",
                ds.element_size()
            ),
        ));
    }
    Ok(())
}

fn read_frames(ds: &rust_hdf5::H5Dataset, path: &Path, name: &str, rows: [usize; 2]) -> Result<Frames> {
    use rust_hdf5::{ByteOrder::LittleEndian, DatatypeMessage as T};
    let shape = ds.shape();
    let (r, c) = frame_shape(&shape, path, name)?;
    if rows[1] > r {
        return Err(Error::format(
            path,
            format!("{name} has {r} detector rows, rows {}..{} asked for", rows[0], rows[1]),
        ));
    }
    let n = shape[0];
    let nr = rows[1] - rows[0];
    check_count(n, nr, c, path, name)?;
    check_storage(ds, path, name, &shape)?;
    let (starts, counts) =
        if shape.len() == 3 { (vec![0, rows[0], 0], vec![n, nr, c]) } else { (vec![0, 0], vec![n, c]) };
    let err = |e: rust_hdf5::Hdf5Error| Error::format(path, format!("{name}: {e}"));
    let dt = ds.datatype().map_err(err)?;
    let data: Vec<f32> = match dt {
        T::FloatingPoint { size: 4, byte_order: LittleEndian, .. } => {
            ds.read_slice::<f32>(&starts, &counts).map_err(err)?
        }
        T::FloatingPoint { size: 8, byte_order: LittleEndian, .. } => {
            ds.read_slice::<f64>(&starts, &counts).map_err(err)?.into_iter().map(|x| x as f32).collect()
        }
        T::FixedPoint { size: 1, signed: false, .. } => {
            ds.read_slice::<u8>(&starts, &counts).map_err(err)?.into_iter().map(f32::from).collect()
        }
        T::FixedPoint { size: 2, byte_order: LittleEndian, signed: false, .. } => {
            ds.read_slice::<u16>(&starts, &counts).map_err(err)?.into_iter().map(f32::from).collect()
        }
        T::FixedPoint { size: 2, byte_order: LittleEndian, signed: true, .. } => {
            ds.read_slice::<i16>(&starts, &counts).map_err(err)?.into_iter().map(f32::from).collect()
        }
        T::FixedPoint { size: 4, byte_order: LittleEndian, signed: false, .. } => {
            ds.read_slice::<u32>(&starts, &counts).map_err(err)?.into_iter().map(|x| x as f32).collect()
        }
        T::FixedPoint { size: 4, byte_order: LittleEndian, signed: true, .. } => {
            ds.read_slice::<i32>(&starts, &counts).map_err(err)?.into_iter().map(|x| x as f32).collect()
        }
        other => {
            return Err(Error::format(
                path,
                format!(
                    "{name} has element type {other:?}; supported: little-endian float32, float64, uint8, \
                     uint16, int16, uint32, int32"
                ),
            ))
        }
    };
    if data.len() != n * nr * c {
        return Err(Error::format(
            path,
            format!("{name}: read {} values, expected {}", data.len(), n * nr * c),
        ));
    }
    Ok(Frames { data, shape: [n, nr, c] })
}

/// Reads a `.npy` stack `[n, cols]` or `[n, rows, cols]` (or, when `frame` is the projections' frame shape, one frame
/// `[cols]` / `[rows, cols]` matching `frame`) as f32 frames.
pub fn read_npy_frames(path: &Path, what: &str, frame: Option<[usize; 2]>) -> Result<Frames> {
    let arr = crate::io::read_npy(path)?;
    let (values, shape) = arr.real_c_order(path)?;
    let shape3 = match (shape.len(), frame) {
        (3, _) => [shape[0], shape[1], shape[2]],
        (2, Some([r, c])) if r > 1 && shape == [r, c] => [1, r, c],
        (2, _) => [shape[0], 1, shape[1]],
        (1, Some([1, c])) if shape[0] == c => [1, 1, c],
        _ => {
            return Err(Error::format(
                path,
                format!("{what} of shape {shape:?}: expected [frames, cols] or [frames, rows, cols]"),
            ))
        }
    };
    if shape3.contains(&0) {
        return Err(Error::format(path, format!("{what} of shape {shape:?} is empty")));
    }
    Ok(Frames { data: values, shape: shape3 })
}

/// What normalisation did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NormaliseReport {
    pub dark_frames: usize,
    pub flat_frames: usize,
    /// Values whose transmission was at or below the floor (or not finite), set to the floor.
    pub floored: usize,
    /// Detector pixels whose flat is not above their dark, interpolated along their row.
    pub dead_pixels: usize,
    pub floor: f64,
}

impl NormaliseReport {
    pub fn describe(&self) -> String {
        format!(
            "raw projections: median of {} dark and {} flat frames; transmission floored at {:e} in {} values; \
             {} dead detector pixels (flat ≤ dark) interpolated along their rows",
            self.dark_frames, self.flat_frames, self.floor, self.floored, self.dead_pixels
        )
    }
}

/// The per-pixel median over the frames of `f`.
fn median_frame(f: &Frames) -> Vec<f64> {
    let (n, p) = (f.shape[0], f.frame_len());
    let mut col = Vec::with_capacity(n);
    (0..p)
        .map(|i| {
            col.clear();
            col.extend((0..n).map(|k| f.data[k * p + i] as f64));
            col.sort_by(|a, b| a.total_cmp(b));
            if n % 2 == 1 {
                col[n / 2]
            } else {
                0.5 * (col[n / 2 - 1] + col[n / 2])
            }
        })
        .collect()
}

/// Line integrals `−ln((data − dark) / (flat − dark))` of a raw stack, C order `[views, rows,
/// cols]`. `names` = (data, dark, flat) for messages.
pub fn line_integrals(
    data: &Frames,
    dark: Option<&Frames>,
    flat: &Frames,
    floor: f64,
    names: [&str; 3],
) -> Result<(Vec<f32>, NormaliseReport)> {
    let [_, rows, cols] = data.shape;
    let frame = [rows, cols];
    let bad = |m: String| Err(Error::Input(m));
    for (f, name) in [(Some(flat), names[2]), (dark, names[1])] {
        if let Some(f) = f {
            if [f.shape[1], f.shape[2]] != frame {
                return bad(format!(
                    "{name}: frames of {} × {} pixels, but the projections ({}) are {rows} × {cols} (rows × cols)",
                    f.shape[1], f.shape[2], names[0]
                ));
            }
        }
    }
    let flat_m = median_frame(flat);
    let dark_m = dark.map(median_frame).unwrap_or_else(|| vec![0.0; rows * cols]);
    let gain: Vec<f64> = flat_m.iter().zip(&dark_m).map(|(f, d)| f - d).collect();
    let live: Vec<bool> = gain.iter().map(|g| g.is_finite() && *g > 0.0).collect();
    let dead = live.iter().filter(|l| !**l).count();
    if dead == live.len() {
        return bad(format!(
            "{}: the flat field is not above the dark field ({}) at any pixel (all-zero or missing flats?)",
            names[2],
            if dark.is_some() { names[1] } else { "zero" }
        ));
    }
    for r in 0..rows {
        if !live[r * cols..(r + 1) * cols].iter().any(|&l| l) {
            return bad(format!("{}: detector row {r} has no pixel whose flat is above its dark", names[2]));
        }
    }
    let min_t = floor;
    let p_max = -min_t.ln();
    let views = data.shape[0];
    let mut out = vec![0.0f32; views * rows * cols];
    let mut floored = 0usize;
    for v in 0..views {
        for r in 0..rows {
            let base = (v * rows + r) * cols;
            let fbase = r * cols;
            for c in 0..cols {
                let i = fbase + c;
                if !live[i] {
                    continue;
                }
                let t = (data.data[base + c] as f64 - dark_m[i]) / gain[i];
                out[base + c] = if t > min_t {
                    (-t.ln()) as f32
                } else {
                    floored += 1;
                    p_max as f32
                };
            }
            if dead > 0 {
                interpolate_dead(&mut out[base..base + cols], &live[fbase..fbase + cols]);
            }
        }
    }
    Ok((
        out,
        NormaliseReport {
            dark_frames: dark.map_or(0, |d| d.shape[0]),
            flat_frames: flat.shape[0],
            floored,
            dead_pixels: dead,
            floor,
        },
    ))
}

/// Fills the dead entries of `row` linearly from the nearest live ones (constant past the ends).
fn interpolate_dead(row: &mut [f32], live: &[bool]) {
    let n = row.len();
    let mut prev: Option<usize> = None;
    let mut i = 0;
    while i < n {
        if live[i] {
            prev = Some(i);
            i += 1;
            continue;
        }
        let next = (i..n).find(|&k| live[k]);
        let end = next.unwrap_or(n);
        for k in i..end {
            row[k] = match (prev, next) {
                (Some(a), Some(b)) => {
                    let t = (k - a) as f32 / (b - a) as f32;
                    (1.0 - t) * row[a] + t * row[b]
                }
                (Some(a), None) => row[a],
                (None, Some(b)) => row[b],
                (None, None) => 0.0,
            };
        }
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_dark_flat_and_floor() {
        // 2 views × 1 row × 4 cols; pixel 3 dead in the flat
        let data = Frames { data: vec![50.0, 10.0, 0.0, 7.0, 110.0, 55.0, -3.0, 7.0], shape: [2, 1, 4] };
        let dark = Frames {
            data: vec![10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 1e6, 1e6, 1e6, 1e6],
            shape: [3, 1, 4],
        };
        let flat =
            Frames { data: vec![110.0, 110.0, 110.0, 5.0, 110.0, 110.0, 110.0, 5.0], shape: [2, 1, 4] };
        let (p, rep) = line_integrals(&data, Some(&dark), &flat, 1e-3, ["d", "k", "f"]).unwrap();
        assert_eq!((rep.dead_pixels, rep.floored, rep.dark_frames, rep.flat_frames), (1, 3, 3, 2));
        assert!((p[0] - (-(0.4f64).ln()) as f32).abs() < 1e-6, "{p:?}"); // the median dark ignores the 1e6 frame
        assert!((p[1] - (-(1e-3f64).ln()) as f32).abs() < 1e-6); // zero transmission: floored
        assert_eq!(p[3], p[2]); // dead pixel: copied from its live neighbour
        assert!((p[4] - 0.0).abs() < 1e-6 && (p[5] - (-(0.45f64).ln()) as f32).abs() < 1e-6);
        let zero = Frames { data: vec![0.0; 4], shape: [1, 1, 4] };
        let e =
            line_integrals(&data, Some(&dark), &zero, 1e-3, ["d", "k", "flat.npy"]).unwrap_err().to_string();
        assert!(e.contains("flat.npy") && e.contains("at any pixel"), "{e}");
        let wrong = Frames { data: vec![1.0; 3], shape: [1, 1, 3] };
        let e =
            line_integrals(&data, Some(&wrong), &flat, 1e-3, ["d", "dark.npy", "f"]).unwrap_err().to_string();
        assert!(e.contains("dark.npy") && e.contains("1 × 3"), "{e}");
    }

    #[test]
    fn dead_pixels_interpolate_linearly() {
        let mut row = [1.0, 0.0, 0.0, 4.0, 0.0];
        interpolate_dead(&mut row, &[true, false, false, true, false]);
        assert_eq!(row, [1.0, 2.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn center_and_rows_parse() {
        assert_eq!(Center::parse("auto"), Ok(Center::AUTO));
        assert_eq!(Center::parse("296.5"), Ok(Center::Column(296.5)));
        assert!(Center::parse("nan").is_err() && Center::parse("x").is_err());
        assert_eq!(ProjectionInput::parse_rows("3"), Ok([3, 4]));
        assert_eq!(ProjectionInput::parse_rows("0:2"), Ok([0, 2]));
        assert!(ProjectionInput::parse_rows("2:2").is_err());
        let i = ProjectionInput { center: Some(Center::AUTO), rows: Some([0, 1]), ..Default::default() };
        let t = toml::to_string(&i).unwrap();
        assert_eq!(toml::from_str::<ProjectionInput>(&t).unwrap(), i, "{t}");
        let j: ProjectionInput = toml::from_str("center = 296.25").unwrap();
        assert_eq!(j.center, Some(Center::Column(296.25)));
    }
}
