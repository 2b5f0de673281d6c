//! NIfTI-1 volumes: single-file `.nii.gz` (or `.nii`), written by hand so every header field is
//! under our control; read back through the `nifti` crate.
//!
//! Data are indexed with x fastest: `data[x + nx * (y + ny * z)]`, which is NIfTI's own order.
//! `world_from_voxel` maps voxel indices (i, j, k, 1) to world millimetres. It is stored exactly in
//! the sform (code 1) and, as rotation + spacing + offset, in the qform (code 1).

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use glam::{DMat3, DVec3};

use super::atomic::write_atomic;
use crate::{Error, Result};

/// Maps voxel indices (i, j, k, 1) to world millimetres; row-major, last row (0, 0, 0, 1).
pub type WorldFromVoxel = [[f64; 4]; 4];

/// Size of the NIfTI-1 header.
const HEADER_LEN: usize = 348;
/// Header plus the 4-byte extension flag (all zero: no extensions).
const VOX_OFFSET: usize = 352;
const DT_UINT8: i16 = 2;
const DT_FLOAT32: i16 = 16;
/// xyzt_units: millimetres, seconds.
const UNITS_MM_SEC: u8 = 2 | 8;

/// Writes a `f32` volume. `.nii.gz` is gzip-compressed, `.nii` is not.
pub fn write_nifti_f32(
    path: &Path,
    data: &[f32],
    dims: [usize; 3],
    world_from_voxel: WorldFromVoxel,
) -> Result<()> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_volume(path, &bytes, dims, world_from_voxel, DT_FLOAT32, 32)
}

/// Writes a `u8` volume (labels, masks). `.nii.gz` is gzip-compressed, `.nii` is not.
pub fn write_nifti_u8(
    path: &Path,
    data: &[u8],
    dims: [usize; 3],
    world_from_voxel: WorldFromVoxel,
) -> Result<()> {
    write_volume(path, data, dims, world_from_voxel, DT_UINT8, 8)
}

fn write_volume(
    path: &Path,
    voxel_bytes: &[u8],
    dims: [usize; 3],
    world_from_voxel: WorldFromVoxel,
    datatype: i16,
    bitpix: i16,
) -> Result<()> {
    let n_voxels = voxel_bytes.len() / (bitpix as usize / 8);
    let input_error = |msg: String| Error::Input(format!("cannot write {}: {msg}", path.display()));
    if dims.iter().any(|&d| d == 0 || d > i16::MAX as usize) {
        return Err(input_error(format!("volume dimensions {dims:?} must each be in 1..=32767")));
    }
    if dims.iter().product::<usize>() != n_voxels {
        return Err(input_error(format!("{n_voxels} values for a {dims:?} volume")));
    }
    if world_from_voxel.iter().flatten().any(|v| !v.is_finite()) {
        return Err(input_error("the affine has a non-finite entry".into()));
    }
    let header = header_bytes(dims, world_from_voxel, datatype, bitpix);
    let gz = is_gz(path);
    write_atomic(path, |w| {
        if gz {
            let mut enc = GzEncoder::new(w, Compression::fast());
            enc.write_all(&header)?;
            enc.write_all(voxel_bytes)?;
            enc.finish()?;
        } else {
            w.write_all(&header)?;
            w.write_all(voxel_bytes)?;
        }
        Ok(())
    })
}

fn is_gz(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The 348-byte header followed by the 4-byte (empty) extension flag, little-endian.
fn header_bytes(dims: [usize; 3], m: WorldFromVoxel, datatype: i16, bitpix: i16) -> [u8; VOX_OFFSET] {
    let mut h = [0u8; VOX_OFFSET];
    let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    let (qfac, spacing, quat, offset) = qform_from_affine(m);

    put(0, &(HEADER_LEN as i32).to_le_bytes()); // sizeof_hdr
    put(38, b"r"); // regular
    let dim: [i16; 8] = [3, dims[0] as i16, dims[1] as i16, dims[2] as i16, 1, 1, 1, 1];
    for (k, d) in dim.iter().enumerate() {
        put(40 + 2 * k, &d.to_le_bytes());
    }
    put(70, &datatype.to_le_bytes());
    put(72, &bitpix.to_le_bytes());
    let pixdim = [qfac, spacing[0], spacing[1], spacing[2], 1.0, 1.0, 1.0, 1.0];
    for (k, p) in pixdim.iter().enumerate() {
        put(76 + 4 * k, &(*p as f32).to_le_bytes());
    }
    put(108, &(VOX_OFFSET as f32).to_le_bytes()); // vox_offset
    put(112, &1f32.to_le_bytes()); // scl_slope: values are stored as they are
    put(116, &0f32.to_le_bytes()); // scl_inter
    put(123, &[UNITS_MM_SEC]);
    put(148, b"ffvol");
    put(252, &1i16.to_le_bytes()); // qform_code: scanner anatomical
    put(254, &1i16.to_le_bytes()); // sform_code
    for (k, q) in quat.iter().chain(offset.iter()).enumerate() {
        put(256 + 4 * k, &(*q as f32).to_le_bytes()); // quatern_b,c,d, qoffset_x,y,z
    }
    for (row, at) in m.iter().zip([280, 296, 312]) {
        for (col, v) in row.iter().enumerate() {
            put(at + 4 * col, &(*v as f32).to_le_bytes()); // srow_x, srow_y, srow_z
        }
    }
    put(344, b"n+1\0");
    h
}

/// Splits an affine into NIfTI's qform parts: (qfac, spacing, quaternion b c d, offset).
///
/// Spacing is the column norms; the rotation is the nearest orthogonal matrix to the normalised
/// columns (polar decomposition, as nifti1_io does), so a sheared affine gets the closest qform
/// and keeps its exact form in the sform.
fn qform_from_affine(m: WorldFromVoxel) -> (f64, [f64; 3], [f64; 3], [f64; 3]) {
    let col = |c: usize| DVec3::new(m[0][c], m[1][c], m[2][c]);
    let cols = [col(0), col(1), col(2)];
    let spacing = cols.map(|c| c.length());
    let unit = |k: usize| {
        if spacing[k] > 0.0 {
            cols[k] / spacing[k]
        } else {
            DVec3::AXES[k]
        }
    };
    let mut r = DMat3::from_cols(unit(0), unit(1), unit(2));
    if r.determinant().abs() < 1e-12 {
        r = DMat3::IDENTITY;
    }
    for _ in 0..30 {
        r = 0.5 * (r + r.inverse().transpose());
    }
    let qfac = if r.determinant() < 0.0 {
        r.z_axis = -r.z_axis;
        -1.0
    } else {
        1.0
    };
    // nifti1_io's mat44_to_quatern, with (r11, r12, ...) = row-major entries of r.
    let (r11, r12, r13) = (r.x_axis.x, r.y_axis.x, r.z_axis.x);
    let (r21, r22, r23) = (r.x_axis.y, r.y_axis.y, r.z_axis.y);
    let (r31, r32, r33) = (r.x_axis.z, r.y_axis.z, r.z_axis.z);
    let trace = r11 + r22 + r33 + 1.0;
    let (mut a, mut b, mut c, mut d);
    if trace > 0.5 {
        a = 0.5 * trace.sqrt();
        b = 0.25 * (r32 - r23) / a;
        c = 0.25 * (r13 - r31) / a;
        d = 0.25 * (r21 - r12) / a;
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r12 + r21) / b;
            d = 0.25 * (r13 + r31) / b;
            a = 0.25 * (r32 - r23) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r12 + r21) / c;
            d = 0.25 * (r23 + r32) / c;
            a = 0.25 * (r13 - r31) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r13 + r31) / d;
            c = 0.25 * (r23 + r32) / d;
            a = 0.25 * (r21 - r12) / d;
        }
        if a < 0.0 {
            (a, b, c, d) = (-a, -b, -c, -d);
        }
    }
    let _ = a;
    (qfac, spacing, [b, c, d], [m[0][3], m[1][3], m[2][3]])
}

/// The affine a qform describes (NIfTI-1 method 2).
fn affine_from_qform(quat: [f64; 3], offset: [f64; 3], pixdim: [f64; 4]) -> WorldFromVoxel {
    let [b, c, d] = quat;
    let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
    let rot = [
        [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
        [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
        [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
    ];
    let qfac = if pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let scale = [pixdim[1], pixdim[2], qfac * pixdim[3]];
    let mut m = [[0.0; 4]; 4];
    for ((row, rot_row), t) in m.iter_mut().zip(rot).zip(offset) {
        for ((out, r), s) in row.iter_mut().zip(rot_row).zip(scale) {
            *out = r * s;
        }
        row[3] = t;
    }
    m[3][3] = 1.0;
    m
}

/// The largest volume read (voxels): 2³¹, 8 GiB as f32.
const MAX_VOXELS: u64 = 1 << 31;

/// Reads a single-file NIfTI-1 (`.nii`, `.nii.gz`): the header (through the `nifti` crate's
/// parser), checked before anything is allocated from it — a 3-D rank and positive sizes, a
/// datatype we read whose `bitpix` agrees, a `vox_offset` at or past the header, and (`.nii`)
/// a file long enough for the data — then the data itself from `vox_offset`, in the header's
/// byte order, scaled by `scl_slope`/`scl_inter` when the slope is set. A `.nii.gz` is read to
/// its end, so a bad CRC or a missing trailer is an error.
fn read_nifti_data(path: &Path) -> Result<(::nifti::NiftiHeader, Vec<f32>)> {
    use std::io::Read;
    let file = crate::io::open_file(path)?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    let gz = is_gz(path);
    let mut input: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let bad = |m: String| Error::format(path, m);
    let mut head = [0u8; 348];
    input.read_exact(&mut head).map_err(|e| bad(format!("cannot read the 348-byte NIfTI-1 header: {e}")))?;
    let h =
        ::nifti::NiftiHeader::from_reader(&head[..]).map_err(|e| bad(format!("bad NIfTI-1 header: {e}")))?;
    if &h.magic[..3] != b"n+1" {
        return Err(bad(format!(
            "magic {:?}: only single-file NIfTI-1 (.nii, .nii.gz; magic \"n+1\") is read",
            String::from_utf8_lossy(&h.magic[..3])
        )));
    }
    let rank = usize::from(h.dim[0]);
    if !(1..=7).contains(&rank) {
        return Err(bad(format!("dim[0] = {} is not a valid rank", h.dim[0])));
    }
    if h.dim[1..=rank].iter().any(|&d| d == 0 || d > i16::MAX as u16) {
        return Err(bad(format!("dimensions {:?}: each must be positive", &h.dim[1..=rank])));
    }
    if h.dim[4..=rank.max(3)].iter().any(|&d| d > 1) {
        return Err(bad(format!("expected a 3-D volume, found dimensions {:?}", &h.dim[1..=rank])));
    }
    let n = h.dim[1..=rank.min(3)].iter().fold(1u64, |p, &d| p * u64::from(d));
    if n > MAX_VOXELS {
        return Err(bad(format!("{n} voxels is more than the {MAX_VOXELS} this reader takes")));
    }
    let (size, name) = match h.datatype {
        2 => (1, "uint8"),
        4 => (2, "int16"),
        8 => (4, "int32"),
        16 => (4, "float32"),
        64 => (8, "float64"),
        256 => (1, "int8"),
        512 => (2, "uint16"),
        768 => (4, "uint32"),
        1024 => (8, "int64"),
        1280 => (8, "uint64"),
        t => return Err(bad(format!("datatype {t} is not a real scalar type this reader takes"))),
    };
    if i64::from(h.bitpix) != 8 * size as i64 {
        return Err(bad(format!("bitpix {} does not match datatype {name} ({} bits)", h.bitpix, 8 * size)));
    }
    let offset = h.vox_offset;
    if !(offset.is_finite() && offset >= 348.0 && offset.fract() == 0.0 && offset < (1u64 << 31) as f32) {
        return Err(bad(format!("vox_offset {offset} is not a byte offset at or past the 348-byte header")));
    }
    let (offset, bytes) = (offset as u64, n * size as u64);
    if !gz && meta.len() < offset + bytes {
        return Err(bad(format!(
            "truncated: the header declares {bytes} bytes of data at offset {offset}, the file has {} bytes",
            meta.len()
        )));
    }
    // the extension area and any padding, then the data
    std::io::copy(&mut (&mut input).take(offset - 348), &mut std::io::sink())
        .map_err(|e| bad(format!("cannot read up to vox_offset {offset}: {e}")))?;
    let little = h.endianness == ::nifti::Endianness::Little;
    let word = |c: &[u8]| -> [u8; 8] {
        let mut w = [0u8; 8];
        if little {
            w[..c.len()].copy_from_slice(c);
        } else {
            c.iter().rev().enumerate().for_each(|(i, &b)| w[i] = b);
        }
        w
    };
    let value = |c: &[u8]| -> f64 {
        let w = word(c);
        match h.datatype {
            2 => f64::from(w[0]),
            256 => f64::from(w[0] as i8),
            4 => f64::from(i16::from_le_bytes([w[0], w[1]])),
            512 => f64::from(u16::from_le_bytes([w[0], w[1]])),
            8 => f64::from(i32::from_le_bytes([w[0], w[1], w[2], w[3]])),
            768 => f64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])),
            16 => f64::from(f32::from_le_bytes([w[0], w[1], w[2], w[3]])),
            64 => f64::from_le_bytes(w),
            1024 => i64::from_le_bytes(w) as f64,
            _ => u64::from_le_bytes(w) as f64,
        }
    };
    let (slope, inter) = (f64::from(h.scl_slope), f64::from(h.scl_inter));
    let scaled = slope != 0.0 && slope.is_finite() && inter.is_finite();
    // The data in pieces, converted as they come: never the raw bytes and the f32 volume at
    // once, and a .nii.gz whose header declares more than its stream holds fails as truncated
    // after what it holds, not after allocating what it declares. The f32 volume is reserved
    // fallibly (all of it for a .nii, whose size was checked; as the data comes for a .nii.gz),
    // so a volume larger than the memory this process may use is an error, not an abort.
    let n = n as usize;
    let too_big = |_| {
        Error::Memory(format!(
            "{}: the {n}-voxel volume needs {} MiB as f32, more than this process can allocate",
            path.display(),
            (n as u64 * 4) >> 20
        ))
    };
    let mut data: Vec<f32> = Vec::new();
    if !gz {
        data.try_reserve_exact(n).map_err(too_big)?;
    }
    let piece_values = (1usize << 20) / size;
    let mut raw = vec![0u8; piece_values.min(n) * size];
    while data.len() < n {
        let values = piece_values.min(n - data.len());
        let piece = &mut raw[..values * size];
        if let Err(e) = input.read_exact(piece) {
            return Err(bad(format!(
                "truncated: cannot read the {bytes} bytes of data the header declares at offset {offset} \
                 (read {} before: {e})",
                data.len() * size
            )));
        }
        if data.capacity() - data.len() < values {
            let want = n.min(data.capacity().saturating_mul(2).max(data.len() + values));
            data.try_reserve_exact(want - data.len()).map_err(too_big)?;
        }
        data.extend(piece.chunks_exact(size).map(|c| {
            if scaled {
                (value(c) * slope + inter) as f32
            } else {
                value(c) as f32
            }
        }));
    }
    if gz {
        // to the end of the stream: the gzip trailer's CRC and length are checked there
        std::io::copy(&mut input, &mut std::io::sink())
            .map_err(|e| bad(format!("corrupt gzip stream: {e}")))?;
    }
    Ok((h, data))
}

/// Reads a 3-D NIfTI-1 volume (`.nii` or `.nii.gz`, any numeric type) as `f32` with
/// `scl_slope`/`scl_inter` applied. Returns the data (x fastest), the dimensions and
/// `world_from_voxel`: the sform if `sform_code > 0`, else the qform if `qform_code > 0`, else
/// the voxel spacing alone.
pub fn read_nifti_f32(path: &Path) -> Result<(Vec<f32>, [usize; 3], WorldFromVoxel)> {
    let (h, data) = read_nifti_data(path)?;
    let rank = usize::from(h.dim[0]);
    let dims = [0, 1, 2].map(|k| if k < rank { usize::from(h.dim[k + 1]) } else { 1 });

    let world_from_voxel = if h.sform_code > 0 {
        let mut m = [[0.0; 4]; 4];
        for (row, srow) in [h.srow_x, h.srow_y, h.srow_z].iter().enumerate() {
            m[row] = srow.map(f64::from);
        }
        m[3][3] = 1.0;
        m
    } else if h.qform_code > 0 {
        affine_from_qform(
            [h.quatern_b, h.quatern_c, h.quatern_d].map(f64::from),
            [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from),
            [h.pixdim[0], h.pixdim[1], h.pixdim[2], h.pixdim[3]].map(f64::from),
        )
    } else {
        let mut m = [[0.0; 4]; 4];
        for (k, row) in m.iter_mut().enumerate().take(3) {
            row[k] = f64::from(h.pixdim[k + 1]);
        }
        m[3][3] = 1.0;
        m
    };
    if world_from_voxel.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::format(path, "the header's affine has a non-finite entry"));
    }
    Ok((data, dims, world_from_voxel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotated_affine(qfac: f64) -> WorldFromVoxel {
        // Rotation by 30° about (1, 2, 2)/3, spacing (0.5, 1.25, 3 * qfac), offset (-90, 12.5, 40).
        let rot = DMat3::from_axis_angle(DVec3::new(1.0, 2.0, 2.0) / 3.0, 30f64.to_radians());
        let lin = rot * DMat3::from_diagonal(DVec3::new(0.5, 1.25, 3.0 * qfac));
        let offset = [-90.0, 12.5, 40.0, 1.0];
        std::array::from_fn(|i| {
            std::array::from_fn(|j| match (i, j) {
                (3, 3) => 1.0,
                (3, _) => 0.0,
                (_, 3) => offset[i],
                _ => lin.col(j)[i],
            })
        })
    }

    #[test]
    fn qform_reproduces_rotation_spacing_and_flip() {
        for qfac in [1.0, -1.0] {
            let m = rotated_affine(qfac);
            let (q, spacing, quat, offset) = qform_from_affine(m);
            assert_eq!(q, qfac);
            let back = affine_from_qform(quat, offset, [q, spacing[0], spacing[1], spacing[2]]);
            for i in 0..4 {
                for j in 0..4 {
                    assert!(
                        (back[i][j] - m[i][j]).abs() < 1e-9,
                        "qfac {qfac} [{i}][{j}]: {} vs {}",
                        back[i][j],
                        m[i][j]
                    );
                }
            }
        }
    }

    #[test]
    fn header_fields_sit_where_nifti1_says() {
        let h = header_bytes([4, 5, 6], rotated_affine(1.0), DT_FLOAT32, 32);
        let i16_at = |at: usize| i16::from_le_bytes([h[at], h[at + 1]]);
        let f32_at = |at: usize| f32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        assert_eq!(i32::from_le_bytes([h[0], h[1], h[2], h[3]]), 348);
        assert_eq!([i16_at(40), i16_at(42), i16_at(44), i16_at(46), i16_at(48)], [3, 4, 5, 6, 1]);
        assert_eq!((i16_at(70), i16_at(72)), (16, 32));
        assert_eq!(f32_at(108), 352.0);
        assert!(
            (f32_at(80) - 0.5).abs() < 1e-6
                && (f32_at(84) - 1.25).abs() < 1e-6
                && (f32_at(88) - 3.0).abs() < 1e-6
        );
        assert_eq!((i16_at(252), i16_at(254)), (1, 1));
        assert_eq!(f32_at(292), -90.0); // srow_x[3]
        assert_eq!(&h[344..348], b"n+1\0");
        assert_eq!(&h[348..352], &[0, 0, 0, 0]);
    }
}
