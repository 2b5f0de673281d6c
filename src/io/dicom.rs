//! DICOM series in: a folder of slices, a list of files, or one multi-frame file, read with the
//! dicom-rs crates (`dicom-object` parses, `dicom-pixeldata` decodes) into one [`Volume`].
//!
//! - **Which files.** A folder: every regular file in it (not its subfolders; hidden files and a
//!   `DICOMDIR` are skipped). Anything else in the folder that is not a DICOM image is an error
//!   naming it. A list: a `.txt` file with one path a line (relative to the list's folder; blank
//!   lines and `#` comments ignored). One file: a single- or multi-frame image.
//! - **One series.** Every image must share its SeriesInstanceUID, Rows × Columns, orientation
//!   (ImageOrientationPatient) and PixelSpacing; a folder holding several series is an error that
//!   lists them, so a user can list one series' files.
//! - **Slice order.** Slices (single-frame files, or the frames of multi-frame files) are sorted
//!   by their position along the slice normal, `ImagePositionPatient · (row × column cosines)`,
//!   never by file name or InstanceNumber. Multi-frame files place their frames by the Per-frame
//!   Functional Groups (Plane Position / Orientation, Pixel Measures, Pixel Value Transformation;
//!   the Shared groups where a frame has none), or for RT Dose by the Grid Frame Offset Vector.
//! - **Spacing.** The slices must be evenly spaced along one line: a gap of about a whole
//!   multiple of the spacing is reported as missing slices, any other step that differs from the
//!   median by more than [`SPACING_REL_TOL`] of it (or [`SPACING_ABS_TOL`] mm, whichever is
//!   larger) as unequal spacing, two slices at one position as several volumes in one series.
//! - **Values.** Stored values (BitsStored bits at HighBit, signed or not) × RescaleSlope +
//!   RescaleIntercept, per frame where the functional groups give them (CT in Hounsfield units);
//!   RT Dose × DoseGridScaling (Gy). Only single-sample (grey-level) images are read.
//! - **Affine.** Voxel `(i, j, k)` is column `i`, row `j` of slice `k` (sorted), x fastest. In
//!   DICOM's patient frame (LPS) its centre is `P₀ + i·Δc·r + j·Δr·c + k·s`, with `r`, `c` the
//!   row and column direction cosines, `Δr, Δc` = PixelSpacing, `P₀` the first slice's position
//!   and `s` the step from the first slice to the last divided by the slice count less one.
//!   `world_from_voxel` is that map in NIfTI's RAS frame (x and y negated), as nibabel and
//!   dicom2nifti write it (without their optional reorientation).
//! - **Transfer syntaxes.** Uncompressed (implicit and explicit VR, little and big endian),
//!   deflated, RLE Lossless and JPEG (baseline, extended, lossless), through dicom-rs's pure-Rust
//!   decoders; any other (JPEG 2000, JPEG-LS, ...) is an error that names the syntax. Tested:
//!   uncompressed in all three encodings, RLE and JPEG Lossless (process 14). dicom-rs's RLE
//!   decoder refuses pydicom's 32-bit multi-frame `rtdose_rle.dcm` ("cannot decode the pixel
//!   data", an error, not wrong values).
//! - **Sizes.** Every count in a header is checked against the file before anything is sized by
//!   it: uncompressed pixel data must be in the file, compressed data may expand at most
//!   [`MAX_EXPANSION`]-fold, and a volume is at most [`MAX_VOXELS`] voxels.

use crate::io::volume::Volume;
use crate::io::WorldFromVoxel;
use crate::{Error, Result};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions, Tag};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The most voxels a series may have (8 GiB as f32).
pub const MAX_VOXELS: usize = 1 << 31;
/// How many times larger than its file a compressed image may decode to.
pub const MAX_EXPANSION: u64 = 256;
/// Slice steps may differ from the median step by this fraction of it ...
pub const SPACING_REL_TOL: f64 = 0.01;
/// ... or by this many millimetres, whichever is larger (positions are decimal strings).
pub const SPACING_ABS_TOL: f64 = 0.01;
/// Direction cosines of slices of one volume agree to this.
const ORIENTATION_TOL: f64 = 1e-4;
/// Files decoded at once (the converted frames of a batch are held until copied).
const BATCH: usize = 32;

/// Whether `path` is a DICOM file: the magic `DICM` after the 128-byte preamble.
pub fn has_dicom_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    crate::io::check_regular_file(path).is_ok()
        && std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok()
        && &head[128..] == b"DICM"
}

/// Reads the series in folder `dir` (its regular files; see the module docs).
pub fn read_dicom_dir(dir: &Path) -> Result<Volume> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.eq_ignore_ascii_case("DICOMDIR") {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            subdirs.push(name);
        } else if meta.is_file() {
            files.push(path);
        }
    }
    files.sort();
    subdirs.sort();
    if files.is_empty() {
        let hint = if subdirs.is_empty() {
            String::new()
        } else {
            format!(
                "; it has {} subfolder(s) ({}): pass the one that holds the series",
                subdirs.len(),
                subdirs.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )
        };
        return Err(Error::format(dir, format!("no files in the folder{hint}")));
    }
    read_series(&files, dir, Mode::Folder)
}

/// Reads the series whose files `list` names, one path a line (relative paths from the list's
/// folder; blank lines and lines starting with `#` ignored).
pub fn read_dicom_list(list: &Path) -> Result<Volume> {
    let text = crate::io::read_text(list)?;
    let base = list.parent().unwrap_or(Path::new("."));
    let files: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| base.join(l))
        .collect();
    if files.is_empty() {
        return Err(Error::format(list, "the list names no files (one DICOM file a line)"));
    }
    read_dicom_files(&files, list)
}

/// Reads the series made of `files` (one multi-frame file, or the slices of a series); `source`
/// names the input in messages about the series as a whole.
pub fn read_dicom_files(files: &[PathBuf], source: &Path) -> Result<Volume> {
    if files.is_empty() {
        return Err(Error::format(source, "no DICOM files given"));
    }
    read_series(files, source, Mode::List)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Every file of a folder: non-image DICOM objects and other files are listed together.
    Folder,
    /// Files named by the user: the first bad one is the error.
    List,
}

/// What pass 1 learns from a file's header (everything before the pixel data).
struct Header {
    path: PathBuf,
    series_uid: String,
    description: String,
    rows: usize,
    cols: usize,
    bits_allocated: u16,
    bits_stored: u16,
    high_bit: u16,
    signed: bool,
    frames: Vec<Frame>,
}

/// One slice: a single-frame file or one frame of a multi-frame file.
#[derive(Clone)]
struct Frame {
    file: usize,
    frame: u32,
    position: [f64; 3],
    /// Row direction cosine (along a row: increasing column), then column direction cosine.
    orientation: [f64; 6],
    /// PixelSpacing: between rows, between columns (mm).
    spacing: [f64; 2],
    /// SpacingBetweenSlices or SliceThickness: the step of a single-slice volume.
    thickness: Option<f64>,
    slope: f64,
    intercept: f64,
}

fn read_series(files: &[PathBuf], source: &Path, mode: Mode) -> Result<Volume> {
    // Pass 1: headers only, in parallel.
    let parsed: Vec<Result<Option<Header>>> = files.par_iter().map(|p| read_header(p)).collect();
    let mut headers = Vec::new();
    let mut rejected: Vec<(PathBuf, String)> = Vec::new();
    for (path, r) in files.iter().zip(parsed) {
        match r {
            Ok(Some(h)) => headers.push(h),
            Ok(None) => {} // a DICOMDIR
            Err(e) if mode == Mode::Folder => rejected.push((path.clone(), error_text(&e, path))),
            Err(e) => return Err(e),
        }
    }
    if !rejected.is_empty() {
        let shown: Vec<String> = rejected
            .iter()
            .take(3)
            .map(|(p, why)| format!("{} ({why})", p.file_name().unwrap_or_default().to_string_lossy()))
            .collect();
        return Err(Error::format(
            source,
            format!(
                "{} of the folder's {} files {} not DICOM images of a volume: {}{}; remove them, \
                 or list the series' files in a .txt file (one path a line) and pass that",
                rejected.len(),
                files.len(),
                if rejected.len() == 1 { "is" } else { "are" },
                shown.join("; "),
                if rejected.len() > 3 { ", ..." } else { "" }
            ),
        ));
    }
    if headers.is_empty() {
        return Err(Error::format(source, "no DICOM images (only a DICOMDIR)"));
    }
    check_one_series(&headers, source)?;
    for (i, h) in headers.iter_mut().enumerate() {
        for f in &mut h.frames {
            f.file = i;
        }
    }
    let mut frames: Vec<Frame> = headers.iter().flat_map(|h| h.frames.iter().cloned()).collect();
    let (rows, cols) = (headers[0].rows, headers[0].cols);
    let world_from_voxel = sort_and_place(&mut frames, &headers, source)?;

    // Sizes: checked against the files in read_header; the total here.
    let slice_len = rows * cols;
    let n = frames.len();
    let voxels = slice_len.checked_mul(n).filter(|&v| v <= MAX_VOXELS).ok_or_else(|| {
        Error::format(
            source,
            format!("{cols} × {rows} × {n} voxels is more than the {MAX_VOXELS} a volume may have"),
        )
    })?;

    // Pass 2: decode file by file (in batches, in parallel) into the sorted slices.
    let mut slot_of: Vec<Vec<(u32, usize)>> = vec![Vec::new(); headers.len()];
    for (k, f) in frames.iter().enumerate() {
        slot_of[f.file].push((f.frame, k));
    }
    let mut data = vec![0f32; voxels];
    let order: Vec<usize> = (0..headers.len()).collect();
    for batch in order.chunks(BATCH) {
        let decoded: Vec<Result<Vec<(usize, Vec<f32>)>>> = batch
            .par_iter()
            .map(|&i| {
                let wanted: Vec<(u32, usize, f64, f64)> = slot_of[i]
                    .iter()
                    .map(|&(frame, k)| (frame, k, frames[k].slope, frames[k].intercept))
                    .collect();
                decode_file(&headers[i], &wanted)
            })
            .collect();
        for r in decoded {
            for (k, values) in r? {
                data[k * slice_len..(k + 1) * slice_len].copy_from_slice(&values);
            }
        }
    }
    Ok(Volume { data, dims: [cols, rows, n], world_from_voxel })
}

/// The message of `e` without the file name in front (it is shown beside it).
fn error_text(e: &Error, path: &Path) -> String {
    let s = e.to_string();
    let prefix = format!("{}: ", path.display());
    s.strip_prefix(&prefix).map(str::to_string).unwrap_or(s)
}

fn open(path: &Path, until_pixels: bool) -> Result<DefaultDicomObject> {
    if until_pixels {
        // pass 1, before dicom-object allocates from any declared length (pass 2 reads the
        // same file)
        super::dicom_check::check_declared_lengths(path)?;
    }
    let opts = OpenFileOptions::new();
    let opts = if until_pixels { opts.read_until(tags::PIXEL_DATA) } else { opts };
    opts.open_file(path).map_err(|e| {
        let why = e.to_string();
        if has_dicom_magic(path) {
            Error::format(path, format!("cannot read the DICOM file: {why}"))
        } else {
            Error::format(path, format!("not a DICOM file (no 'DICM' after the 128-byte preamble): {why}"))
        }
    })
}

/// An attribute's text, `None` when absent or empty.
fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok()??;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string();
    (!s.is_empty()).then_some(s)
}

/// An attribute's numbers, `Ok(None)` when absent or empty, an error when it does not parse.
fn numbers(obj: &InMemDicomObject, tag: Tag, name: &str) -> std::result::Result<Option<Vec<f64>>, String> {
    let Some(e) = obj.element_opt(tag).map_err(|e| format!("{name}: {e}"))? else {
        return Ok(None);
    };
    if e.to_str().is_ok_and(|t| t.trim_matches(|c: char| c == '\0' || c.is_whitespace()).is_empty()) {
        return Ok(None);
    }
    let v = if e.vr() == dicom_core::VR::UN {
        // Written with VR UN (unknown; pydicom's rtdose_rle.dcm does it): the bytes of the
        // attribute's text form, as the dictionary's DS / IS.
        let bytes = e.to_bytes().map_err(|err| format!("{name}: {err}"))?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        text.split('\\')
            .map(|t| {
                t.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("{name} ({text:?}, VR UN) is not a list of numbers"))
            })
            .collect::<std::result::Result<Vec<f64>, String>>()?
    } else {
        e.to_multi_float64().map_err(|err| format!("{name} is not a list of numbers: {err}"))?
    };
    if v.is_empty() {
        return Ok(None);
    }
    if let Some(x) = v.iter().find(|x| !x.is_finite()) {
        return Err(format!("{name} has the value {x}"));
    }
    Ok(Some(v))
}

/// Exactly `n` numbers, or none.
fn numbers_n(
    obj: &InMemDicomObject,
    tag: Tag,
    name: &str,
    n: usize,
) -> std::result::Result<Option<Vec<f64>>, String> {
    match numbers(obj, tag, name)? {
        Some(v) if v.len() != n => Err(format!("{name} has {} values, not {n}", v.len())),
        v => Ok(v),
    }
}

fn integer(obj: &InMemDicomObject, tag: Tag, name: &str) -> std::result::Result<Option<i64>, String> {
    match numbers(obj, tag, name)? {
        None => Ok(None),
        Some(v) => {
            let x = v[0];
            if x.fract() != 0.0 || x.abs() > 1e15 {
                return Err(format!("{name} is {x}, not an integer"));
            }
            Ok(Some(x as i64))
        }
    }
}

/// The first item of sequence `seq` in `obj`.
fn first_item(obj: &InMemDicomObject, seq: Tag) -> Option<&InMemDicomObject> {
    obj.element_opt(seq).ok()??.items()?.first()
}

/// `attr` of the functional group `seq`: the frame's own, else the shared one.
fn group_numbers(
    per_frame: Option<&InMemDicomObject>,
    shared: Option<&InMemDicomObject>,
    seq: Tag,
    attr: Tag,
    name: &str,
    n: usize,
) -> std::result::Result<Option<Vec<f64>>, String> {
    for g in [per_frame, shared].into_iter().flatten() {
        if let Some(item) = first_item(g, seq) {
            if let Some(v) = numbers_n(item, attr, name, n)? {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

/// Pass 1 for one file: its series, image format and frames, checked against the file's size.
/// `Ok(None)` for a DICOMDIR.
fn read_header(path: &Path) -> Result<Option<Header>> {
    let obj = open(path, true)?;
    let fail = |msg: String| Error::format(path, msg);
    let sop_class = obj.meta().media_storage_sop_class_uid().trim_end_matches('\0').to_string();
    if sop_class == uids::MEDIA_STORAGE_DIRECTORY_STORAGE {
        return Ok(None);
    }
    let ts_uid = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .ok_or_else(|| fail(format!("unknown transfer syntax {ts_uid}")))?;
    if !ts.can_decode_all() {
        return Err(fail(format!(
            "its transfer syntax {ts_uid} ({}) is not supported: ffvol decodes uncompressed, deflated, \
             RLE and JPEG (baseline, extended, lossless) pixel data; decompress the files first \
             (e.g. `gdcmconv --raw IN OUT` or `dcmdjpls` / `dcmdjp2k`)",
            ts.name()
        )));
    }
    let ds: &InMemDicomObject = &obj;
    let num = |tag: Tag, name: &str| integer(ds, tag, name).map_err(&fail);
    let Some(rows) = num(tags::ROWS, "Rows")? else {
        let kind = text(ds, tags::MODALITY).unwrap_or_else(|| sop_class.clone());
        return Err(fail(format!("a DICOM object without an image (no Rows; {kind})")));
    };
    let cols = num(tags::COLUMNS, "Columns")?.ok_or_else(|| fail("no Columns".into()))?;
    if !(1..=65535).contains(&rows) || !(1..=65535).contains(&cols) {
        return Err(fail(format!("the image is {cols} × {rows} pixels")));
    }
    let (rows, cols) = (rows as usize, cols as usize);
    let samples = num(tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
    if samples != 1 {
        let pi = text(ds, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
        return Err(fail(format!(
            "a colour image ({samples} samples per pixel, {pi}): a volume needs grey levels"
        )));
    }
    let bits_allocated =
        num(tags::BITS_ALLOCATED, "BitsAllocated")?.ok_or_else(|| fail("no BitsAllocated".into()))?;
    if ![8, 16, 32].contains(&bits_allocated) {
        return Err(fail(format!("BitsAllocated is {bits_allocated} (ffvol reads 8, 16 or 32)")));
    }
    let bits_stored = num(tags::BITS_STORED, "BitsStored")?.unwrap_or(bits_allocated);
    let high_bit = num(tags::HIGH_BIT, "HighBit")?.unwrap_or(bits_stored - 1);
    if bits_stored < 1 || high_bit + 1 < bits_stored || high_bit >= bits_allocated {
        return Err(fail(format!(
            "BitsStored {bits_stored} with HighBit {high_bit} does not fit in {bits_allocated} bits"
        )));
    }
    let signed = match num(tags::PIXEL_REPRESENTATION, "PixelRepresentation")?.unwrap_or(0) {
        0 => false,
        1 => true,
        p => return Err(fail(format!("PixelRepresentation is {p} (0 or 1)"))),
    };
    let n_frames = num(tags::NUMBER_OF_FRAMES, "NumberOfFrames")?.unwrap_or(1);
    if n_frames < 1 || n_frames as u64 > u32::MAX as u64 {
        return Err(fail(format!("NumberOfFrames is {n_frames}")));
    }
    let n_frames = n_frames as usize;

    // The pixel data must be there (uncompressed) or may expand at most MAX_EXPANSION-fold.
    let file_len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    let claimed = (rows as u64) * (cols as u64) * (n_frames as u64) * (bits_allocated as u64 / 8);
    if ts.is_encapsulated_pixel_data() {
        if claimed > MAX_EXPANSION.saturating_mul(file_len) + (1 << 20) {
            return Err(fail(format!(
                "{n_frames} frames of {cols} × {rows} × {bits_allocated} bits is {claimed} bytes, more than \
                 {MAX_EXPANSION} times the {file_len}-byte file: the header is wrong"
            )));
        }
    } else if claimed > file_len && !ts_uid.starts_with("1.2.840.10008.1.2.1.99") {
        return Err(fail(format!(
            "{n_frames} frames of {cols} × {rows} × {bits_allocated} bits need {claimed} bytes, but the \
             file has {file_len}: truncated?"
        )));
    }

    let series_uid = text(ds, tags::SERIES_INSTANCE_UID).unwrap_or_default();
    let description = text(ds, tags::SERIES_DESCRIPTION).unwrap_or_default();
    let frames = read_frames(ds, n_frames, &fail)?;
    Ok(Some(Header {
        path: path.to_path_buf(),
        series_uid,
        description,
        rows,
        cols,
        bits_allocated: bits_allocated as u16,
        bits_stored: bits_stored as u16,
        high_bit: high_bit as u16,
        signed,
        frames,
    }))
}

/// The position, orientation, spacing and rescale of each frame of a file.
fn read_frames(ds: &InMemDicomObject, n_frames: usize, fail: &dyn Fn(String) -> Error) -> Result<Vec<Frame>> {
    let top = |tag, name, n| numbers_n(ds, tag, name, n).map_err(fail);
    let thickness = match top(tags::SPACING_BETWEEN_SLICES, "SpacingBetweenSlices", 1)? {
        Some(v) => Some(v[0]),
        None => top(tags::SLICE_THICKNESS, "SliceThickness", 1)?.map(|v| v[0]),
    }
    .filter(|t| *t > 0.0);
    let top_slope = match top(tags::RESCALE_SLOPE, "RescaleSlope", 1)? {
        Some(v) => Some(v[0]),
        None => top(tags::DOSE_GRID_SCALING, "DoseGridScaling", 1)?.map(|v| v[0]),
    };
    let top_intercept = top(tags::RESCALE_INTERCEPT, "RescaleIntercept", 1)?.map(|v| v[0]);
    let shared = first_item(ds, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame: Option<&[InMemDicomObject]> =
        ds.element_opt(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).ok().flatten().and_then(|e| e.items());
    if let Some(items) = per_frame {
        if items.len() != n_frames {
            return Err(fail(format!(
                "{} Per-frame Functional Groups items for {n_frames} frames",
                items.len()
            )));
        }
    }
    let grid_offsets = top(tags::GRID_FRAME_OFFSET_VECTOR, "GridFrameOffsetVector", n_frames)?;
    if n_frames > 1 && per_frame.is_none() && grid_offsets.is_none() {
        return Err(fail(format!(
            "a multi-frame image ({n_frames} frames) without Per-frame Functional Groups or a Grid Frame \
             Offset Vector: its frames have no positions"
        )));
    }
    let mut frames = Vec::with_capacity(n_frames);
    for k in 0..n_frames {
        let item = per_frame.map(|items| &items[k]);
        let at =
            |what: &str| if n_frames > 1 { format!("frame {}: {what}", k + 1) } else { what.to_string() };
        let grp = |seq, attr, name: &str, n| {
            group_numbers(item, shared, seq, attr, name, n).map_err(|m| fail(at(&m)))
        };
        let position = match grp(
            tags::PLANE_POSITION_SEQUENCE,
            tags::IMAGE_POSITION_PATIENT,
            "ImagePositionPatient",
            3,
        )? {
            Some(v) => v,
            None => top(tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient", 3)?
                .ok_or_else(|| fail(at("no ImagePositionPatient: the slice cannot be placed")))?,
        };
        let orientation = match grp(
            tags::PLANE_ORIENTATION_SEQUENCE,
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
            6,
        )? {
            Some(v) => v,
            None => top(tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient", 6)?
                .ok_or_else(|| fail(at("no ImageOrientationPatient: the slice cannot be placed")))?,
        };
        let spacing = match grp(tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING, "PixelSpacing", 2)? {
            Some(v) => v,
            None => {
                top(tags::PIXEL_SPACING, "PixelSpacing", 2)?.ok_or_else(|| fail(at("no PixelSpacing")))?
            }
        };
        if spacing.iter().any(|s| *s <= 0.0) {
            return Err(fail(at(&format!("PixelSpacing is {spacing:?}"))));
        }
        let slope = grp(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, tags::RESCALE_SLOPE, "RescaleSlope", 1)?
            .map(|v| v[0])
            .or(top_slope)
            .unwrap_or(1.0);
        let intercept =
            grp(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, tags::RESCALE_INTERCEPT, "RescaleIntercept", 1)?
                .map(|v| v[0])
                .or(top_intercept)
                .unwrap_or(0.0);
        let mut position = [position[0], position[1], position[2]];
        let orientation =
            [orientation[0], orientation[1], orientation[2], orientation[3], orientation[4], orientation[5]];
        if let (Some(offsets), None) = (&grid_offsets, per_frame) {
            // RT Dose (PS3.3 C.8.8.3.2): offsets along the normal from the first frame, which sits at
            // ImagePositionPatient (relative offsets start at 0; absolute ones at its position).
            let n = normal(&orientation).map_err(|m| fail(at(&m)))?;
            let d = offsets[k] - offsets[0];
            for a in 0..3 {
                position[a] += d * n[a];
            }
        }
        frames.push(Frame {
            file: 0,
            frame: k as u32,
            position,
            orientation,
            spacing: [spacing[0], spacing[1]],
            thickness,
            slope,
            intercept,
        });
    }
    Ok(frames)
}

/// The unit slice normal `row × column` of an orientation, which must be two orthogonal unit vectors.
fn normal(o: &[f64; 6]) -> std::result::Result<[f64; 3], String> {
    let (r, c) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    if (dot(r, r).sqrt() - 1.0).abs() > 1e-3
        || (dot(c, c).sqrt() - 1.0).abs() > 1e-3
        || dot(r, c).abs() > 1e-3
    {
        return Err(format!("ImageOrientationPatient {o:?} is not two orthogonal unit vectors"));
    }
    let n = [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]];
    let len = dot(n, n).sqrt();
    Ok([n[0] / len, n[1] / len, n[2] / len])
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

/// One series, one image size, one orientation and pixel spacing across all files.
fn check_one_series(headers: &[Header], source: &Path) -> Result<()> {
    let mut series: Vec<(&str, &str, usize, &Path)> = Vec::new();
    for h in headers {
        match series.iter_mut().find(|s| s.0 == h.series_uid) {
            Some(s) => s.2 += 1,
            None => series.push((&h.series_uid, &h.description, 1, &h.path)),
        }
    }
    if series.len() > 1 {
        let list: Vec<String> = series
            .iter()
            .take(6)
            .map(|(uid, desc, n, p)| {
                let desc = if desc.is_empty() { String::new() } else { format!(" \"{desc}\"") };
                format!("{uid}{desc}: {n} file(s), e.g. {}", file_name(p))
            })
            .collect();
        return Err(Error::format(
            source,
            format!(
                "the files hold {} series (SeriesInstanceUID): {}{}; pass one series (a folder of its \
                 own, or a .txt list of its files)",
                series.len(),
                list.join("; "),
                if series.len() > 6 { "; ..." } else { "" }
            ),
        ));
    }
    let first = &headers[0];
    let f0 = &first.frames[0];
    for h in headers {
        if (h.rows, h.cols) != (first.rows, first.cols) {
            return Err(Error::format(
                source,
                format!(
                    "{} is {} × {} pixels but {} is {} × {}: the slices of one volume have one size",
                    file_name(&h.path),
                    h.cols,
                    h.rows,
                    file_name(&first.path),
                    first.cols,
                    first.rows
                ),
            ));
        }
        for f in &h.frames {
            if f.orientation.iter().zip(&f0.orientation).any(|(a, b)| (a - b).abs() > ORIENTATION_TOL) {
                return Err(Error::format(
                    source,
                    format!(
                        "{}{} has ImageOrientationPatient {:?} but {} has {:?}: the slices of one volume \
                         share an orientation (several stacks or a localizer in the series?)",
                        file_name(&h.path),
                        frame_label(h, f),
                        f.orientation,
                        file_name(&first.path),
                        f0.orientation
                    ),
                ));
            }
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1.0);
            if !(close(f.spacing[0], f0.spacing[0]) && close(f.spacing[1], f0.spacing[1])) {
                return Err(Error::format(
                    source,
                    format!(
                        "{}{} has PixelSpacing {:?} but {} has {:?}",
                        file_name(&h.path),
                        frame_label(h, f),
                        f.spacing,
                        file_name(&first.path),
                        f0.spacing
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn frame_label(h: &Header, f: &Frame) -> String {
    if h.frames.len() > 1 {
        format!(" (frame {})", f.frame + 1)
    } else {
        String::new()
    }
}

/// Sorts the frames along the slice normal, checks that they are evenly spaced on one line, and
/// returns the RAS `world_from_voxel`.
fn sort_and_place(frames: &mut [Frame], headers: &[Header], source: &Path) -> Result<WorldFromVoxel> {
    let o = frames[0].orientation;
    let n = normal(&o).map_err(|m| Error::format(&headers[frames[0].file].path, m))?;
    let along = |f: &Frame| f.position[0] * n[0] + f.position[1] * n[1] + f.position[2] * n[2];
    frames.sort_by(|a, b| along(a).total_cmp(&along(b)));
    let name =
        |f: &Frame| format!("{}{}", file_name(&headers[f.file].path), frame_label(&headers[f.file], f));
    let count = frames.len();
    let step = if count == 1 {
        let t = frames[0].thickness.unwrap_or(1.0);
        [n[0] * t, n[1] * t, n[2] * t]
    } else {
        let d: Vec<f64> = frames.windows(2).map(|w| along(&w[1]) - along(&w[0])).collect();
        let mut sorted = d.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let tol = (SPACING_REL_TOL * median.abs()).max(SPACING_ABS_TOL);
        // Duplicates first: a repeated position also leaves a gap elsewhere.
        for (k, &dk) in d.iter().enumerate() {
            let (a, b) = (&frames[k], &frames[k + 1]);
            if dk <= tol {
                return Err(Error::format(
                    source,
                    format!(
                        "{} and {} are at one position ({:.4} mm along the slice normal): several volumes \
                         in one series (echoes, phases, time points)? Pass the files of one of them",
                        name(a),
                        name(b),
                        along(a)
                    ),
                ));
            }
        }
        for (k, &dk) in d.iter().enumerate() {
            let (a, b) = (&frames[k], &frames[k + 1]);
            if (dk - median).abs() > tol {
                let m = (dk / median).round();
                let what = if m >= 2.0 && (dk - m * median).abs() <= tol * m {
                    format!("{} slice(s) missing between", m as usize - 1)
                } else {
                    "unequal slice spacing between".to_string()
                };
                return Err(Error::format(
                    source,
                    format!(
                        "{what} {} ({:.4} mm) and {} ({:.4} mm): {dk:.4} mm apart, the other slices \
                         {median:.4} mm (tolerance {tol:.4} mm)",
                        name(a),
                        along(a),
                        name(b),
                        along(b)
                    ),
                ));
            }
        }
        let (p0, p1) = (frames[0].position, frames[count - 1].position);
        let s = [0, 1, 2].map(|a| (p1[a] - p0[a]) / (count - 1) as f64);
        let len = (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]).sqrt();
        let tol = (SPACING_REL_TOL * len).max(SPACING_ABS_TOL);
        for (k, f) in frames.iter().enumerate() {
            let off = [0, 1, 2].map(|a| f.position[a] - p0[a] - k as f64 * s[a]);
            let dev = (off[0] * off[0] + off[1] * off[1] + off[2] * off[2]).sqrt();
            if dev > tol {
                return Err(Error::format(
                    source,
                    format!(
                        "{} at {:?} is {dev:.4} mm off the line through the first and last slices: the \
                         slice positions do not form one evenly spaced stack",
                        name(f),
                        f.position
                    ),
                ));
            }
        }
        s
    };
    let [dr, dc] = frames[0].spacing;
    let p0 = frames[0].position;
    let lps = [
        [o[0] * dc, o[3] * dr, step[0], p0[0]],
        [o[1] * dc, o[4] * dr, step[1], p0[1]],
        [o[2] * dc, o[5] * dr, step[2], p0[2]],
        [0.0, 0.0, 0.0, 1.0],
    ];
    // LPS to RAS: negate x and y (and write no −0).
    let mut ras = lps;
    for row in ras.iter_mut().take(2) {
        for v in row.iter_mut() {
            *v = if *v == 0.0 { 0.0 } else { -*v };
        }
    }
    Ok(ras)
}

const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

/// How the bytes of decoded samples are ordered.
#[derive(Clone, Copy, PartialEq)]
enum Order {
    /// The machine's order (everything but uncompressed big-endian data).
    Native,
    /// 16-bit words in the machine's order, the most significant word first.
    BigEndianWords,
    /// Bytes as in a big-endian file.
    BigEndianBytes,
}

/// Pass 2 for one file: decodes it and converts the `wanted` frames (frame, slot, slope,
/// intercept) to rescaled values.
fn decode_file(h: &Header, wanted: &[(u32, usize, f64, f64)]) -> Result<Vec<(usize, Vec<f32>)>> {
    let path = &h.path;
    let obj = open(path, false)?;
    if obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
        let other = [tags::FLOAT_PIXEL_DATA, tags::DOUBLE_FLOAT_PIXEL_DATA]
            .iter()
            .any(|t| obj.element_opt(*t).ok().flatten().is_some());
        let why = if other { "float pixel data is not supported" } else { "no Pixel Data" };
        return Err(Error::format(path, why));
    }
    // Uncompressed big-endian data: dicom-rs hands OW words over in the machine's order, which is
    // right for 16-bit samples; 32-bit samples then have their two words swapped, and OB bytes
    // are still in the file's order.
    let order = if obj.meta().transfer_syntax().trim_end_matches('\0') == EXPLICIT_VR_BIG_ENDIAN {
        match obj.element(tags::PIXEL_DATA).map(|e| e.value()) {
            Ok(dicom_core::DicomValue::Primitive(dicom_core::PrimitiveValue::U16(_))) => {
                Order::BigEndianWords
            }
            Ok(dicom_core::DicomValue::Primitive(dicom_core::PrimitiveValue::U8(_))) => Order::BigEndianBytes,
            _ => Order::Native,
        }
    } else {
        Order::Native
    };
    let bytes = h.bits_allocated as usize / 8;
    if obj.meta().transfer_syntax().trim_end_matches('\0') == uids::RLE_LOSSLESS && bytes <= 2 {
        // the RLE decoder indexes by each fragment's segment table and segment output (a
        // short segment panicked in it: fuzz finding dicom-rle-panic-415998cb,
        // tests/corpus/volume); checked here first (32-bit samples it refuses on its own)
        if let Ok(dicom_core::DicomValue::PixelSequence(seq)) =
            obj.element(tags::PIXEL_DATA).map(|e| e.value())
        {
            for (i, fragment) in seq.fragments().iter().enumerate() {
                super::dicom_check::check_rle_fragment(fragment, h.rows, h.cols, bytes).map_err(|m| {
                    Error::format(path, format!("cannot decode the pixel data: RLE frame {}: {m}", i + 1))
                })?;
            }
        }
    }
    // the last firewall: a decoder that still indexes out of bounds on data the checks above
    // let through is an error, not a panic
    let decoded = super::firewall::guard(|| obj.decode_pixel_data())
        .map_err(|()| {
            Error::format(path, "cannot decode the pixel data: the decoder failed on malformed data")
        })?
        .map_err(|e| Error::format(path, format!("cannot decode the pixel data: {e}")))?;
    let frame_bytes = h.rows * h.cols * bytes;
    let data = decoded.data();
    let n_frames = h.frames.len();
    if data.len() < frame_bytes * n_frames {
        return Err(Error::format(
            path,
            format!(
                "the pixel data has {} bytes, {n_frames} frame(s) of {} × {} × {} bits need {}",
                data.len(),
                h.cols,
                h.rows,
                h.bits_allocated,
                frame_bytes * n_frames
            ),
        ));
    }
    let shift = (h.high_bit + 1 - h.bits_stored) as u32;
    let bits = h.bits_stored as u32;
    let mask: u64 = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let signed = h.signed;
    let value = move |raw: u64| -> f64 {
        let v = (raw >> shift) & mask;
        if signed && bits < 64 && v >> (bits - 1) & 1 == 1 {
            v as f64 - (1u64 << bits) as f64
        } else {
            v as f64
        }
    };
    let mut out = Vec::with_capacity(wanted.len());
    for &(frame, slot, slope, intercept) in wanted {
        let src = &data[frame as usize * frame_bytes..(frame as usize + 1) * frame_bytes];
        let conv = |raw: u64| (value(raw) * slope + intercept) as f32;
        let values: Vec<f32> = match bytes {
            1 => src.iter().map(|&b| conv(b as u64)).collect(),
            2 => src
                .chunks_exact(2)
                .map(|c| {
                    let b = [c[0], c[1]];
                    conv(if order == Order::BigEndianBytes {
                        u16::from_be_bytes(b)
                    } else {
                        u16::from_ne_bytes(b)
                    } as u64)
                })
                .collect(),
            _ => src
                .chunks_exact(4)
                .map(|c| {
                    let v = match order {
                        Order::Native => u32::from_ne_bytes([c[0], c[1], c[2], c[3]]),
                        Order::BigEndianBytes => u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                        Order::BigEndianWords => {
                            let (hi, lo) =
                                (u16::from_ne_bytes([c[0], c[1]]), u16::from_ne_bytes([c[2], c[3]]));
                            (hi as u32) << 16 | lo as u32
                        }
                    };
                    conv(v as u64)
                })
                .collect(),
        };
        out.push((slot, values));
    }
    Ok(out)
}
