//! NumPy `.npy` arrays, read and written by hand (the format is a magic string, a Python-dict
//! header and the raw data).
//!
//! Element types: `u8` (`|u1`, and `|b1` read as 0/1), `i16`, `u16`, `f32`, `f64` and `complex64`
//! (`c8`, for k-space), little- or big-endian on reading, little-endian on writing; C or Fortran
//! order. Files of format version 1, 2 and 3 are read; version 1 is written (2 when the header
//! does not fit in 64 KiB).
//!
//! Volumes: a 3-D array indexed `[x, y, z]` (as nibabel's `get_fdata()` returns it) maps to our
//! x-fastest layout `data[x + nx·(y + ny·z)]`: a Fortran-order file already is in that layout, a
//! C-order file is transposed on reading. [`write_npy`] writes Fortran order, so the data go out as
//! they are.

use std::io::Write;
use std::path::Path;

use super::atomic::write_atomic;
use crate::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The elements of an array as stored in the file (file order, native endianness).
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// complex64: (real, imaginary) pairs of f32.
    C64(Vec<[f32; 2]>),
}

impl NpyData {
    pub fn len(&self) -> usize {
        match self {
            NpyData::U8(v) => v.len(),
            NpyData::I16(v) => v.len(),
            NpyData::U16(v) => v.len(),
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
            NpyData::C64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The NumPy type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            NpyData::U8(_) => "uint8",
            NpyData::I16(_) => "int16",
            NpyData::U16(_) => "uint16",
            NpyData::F32(_) => "float32",
            NpyData::F64(_) => "float64",
            NpyData::C64(_) => "complex64",
        }
    }
}

/// An array read from a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub fortran_order: bool,
    pub data: NpyData,
}

/// An element type [`write_npy`] can write.
pub trait NpyElement: Copy {
    /// The `descr` of the header, e.g. `<f4`.
    const DESCR: &'static str;
    fn put_le(&self, out: &mut Vec<u8>);
}

impl NpyElement for u8 {
    const DESCR: &'static str = "|u1";
    fn put_le(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}
impl NpyElement for i16 {
    const DESCR: &'static str = "<i2";
    fn put_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NpyElement for u16 {
    const DESCR: &'static str = "<u2";
    fn put_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn put_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NpyElement for f64 {
    const DESCR: &'static str = "<f8";
    fn put_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl NpyElement for [f32; 2] {
    const DESCR: &'static str = "<c8";
    fn put_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self[0].to_le_bytes());
        out.extend_from_slice(&self[1].to_le_bytes());
    }
}

/// Writes `data` (in the order `fortran_order` says) with `shape`, atomically.
pub fn write_npy<T: NpyElement>(path: &Path, data: &[T], shape: &[usize], fortran_order: bool) -> Result<()> {
    let bytes = npy_bytes(data, shape, fortran_order)
        .map_err(|m| Error::Input(format!("cannot write {}: {m}", path.display())))?;
    write_atomic(path, |w| w.write_all(&bytes))
}

/// The bytes of a `.npy` file.
pub fn npy_bytes<T: NpyElement>(
    data: &[T],
    shape: &[usize],
    fortran_order: bool,
) -> std::result::Result<Vec<u8>, String> {
    let n: usize = shape.iter().product();
    if n != data.len() {
        return Err(format!("{} values for shape {shape:?}", data.len()));
    }
    let shape_text = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': {}, 'shape': {}, }}",
        T::DESCR,
        if fortran_order { "True" } else { "False" },
        shape_text
    );
    // magic (6) + version (2) + length (2 or 4) + dict + padding + '\n', a multiple of 64.
    let (version, len_bytes) = if dict.len() + 11 < 65_536 { (1u8, 2) } else { (2u8, 4) };
    let unpadded = 8 + len_bytes + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let header_len = total - 8 - len_bytes;
    let mut out = Vec::with_capacity(total + n * std::mem::size_of::<T>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    for v in data {
        v.put_le(&mut out);
    }
    Ok(out)
}

/// Reads a `.npy` file; every problem is an error naming the file.
///
/// The header is read first and its shape × element size checked against the file's size; the
/// data are then read in 1 MiB pieces into the one array of [`NpyData`], reserved fallibly, so
/// the file's bytes are never held beside it, and an array larger than the memory this process
/// may allocate is an error, not an abort.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let file = crate::io::open_file(path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    read_from(std::io::BufReader::new(file), len).map_err(|f| match f {
        Fail::Bad(m) => Error::format(path, format!("bad .npy file: {m}")),
        Fail::Memory(m) => Error::Memory(format!("{}: {m}", path.display())),
        Fail::Io(e) => Error::io(path, e),
    })
}

/// Parses the bytes of a `.npy` file (the same reader as [`read_npy`]).
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    read_from(bytes, bytes.len() as u64).map_err(|f| match f {
        Fail::Bad(m) | Fail::Memory(m) => m,
        Fail::Io(e) => e.to_string(),
    })
}

/// Why reading failed.
enum Fail {
    /// Not a valid `.npy` file.
    Bad(String),
    /// An allocation the (valid) file needs failed.
    Memory(String),
    Io(std::io::Error),
}

impl From<&str> for Fail {
    fn from(m: &str) -> Fail {
        Fail::Bad(m.to_string())
    }
}

impl From<String> for Fail {
    fn from(m: String) -> Fail {
        Fail::Bad(m)
    }
}

/// The longest header read (numpy writes a few hundred bytes; its own reader stops at 10 000).
const MAX_HEADER: usize = 1 << 20;
/// The size of the pieces the data are read in.
const PIECE: usize = 1 << 20;

/// `read_exact`, with the end of the input reported as `what` (a format error).
fn read_exact(r: &mut impl std::io::Read, buf: &mut [u8], what: &str) -> std::result::Result<(), Fail> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Fail::Bad(what.to_string())
        } else {
            Fail::Io(e)
        }
    })
}

/// An empty vector with room for `n` values, reserved fallibly (`what` names it in the error).
pub(crate) fn try_vec<T>(n: usize, what: &str) -> std::result::Result<Vec<T>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        let mib = (n as u128 * std::mem::size_of::<T>() as u128) >> 20;
        format!("the {what} ({n} values) needs {mib} MiB, more than this process can allocate")
    })?;
    Ok(v)
}

/// A `.npy` file of `file_len` bytes from `r`.
fn read_from(mut r: impl std::io::Read, file_len: u64) -> std::result::Result<NpyArray, Fail> {
    let mut pre = [0u8; 12];
    if file_len < 10 {
        return Err("missing the \\x93NUMPY magic string".into());
    }
    read_exact(&mut r, &mut pre[..10], "missing the \\x93NUMPY magic string")?;
    if &pre[..6] != MAGIC {
        return Err("missing the \\x93NUMPY magic string".into());
    }
    let (header_len, start) = match pre[6] {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10usize),
        2 | 3 => {
            read_exact(&mut r, &mut pre[10..12], "truncated header")?;
            (u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported format version {v}").into()),
    };
    let end =
        (start as u64).checked_add(header_len as u64).filter(|&e| e <= file_len).ok_or("truncated header")?;
    if header_len > MAX_HEADER {
        return Err(format!(
            "the header declares {header_len} bytes, more than the {MAX_HEADER} a .npy header may have"
        )
        .into());
    }
    let mut header = vec![0u8; header_len];
    read_exact(&mut r, &mut header, "truncated header")?;
    let header = std::str::from_utf8(&header).map_err(|_| "the header is not text")?;
    let descr = dict_value(header, "descr").ok_or("the header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran_order =
        match dict_value(header, "fortran_order").ok_or("the header has no 'fortran_order'")? {
            "True" => true,
            "False" => false,
            other => return Err(format!("fortran_order is {other:?}, not True or False").into()),
        };
    let shape_text = dict_value(header, "shape").ok_or("the header has no 'shape'")?;
    let shape = parse_shape(shape_text)?;
    let n = shape.iter().try_fold(1usize, |a, &s| a.checked_mul(s)).ok_or("the shape overflows")?;

    let (big_endian, code) = match descr.as_bytes().first() {
        Some(b'<') | Some(b'|') | Some(b'=') => (false, &descr[1..]),
        Some(b'>') => (true, &descr[1..]),
        _ => (false, descr),
    };
    let item = match code {
        "u1" | "b1" => 1,
        "i2" | "u2" => 2,
        "f4" => 4,
        "f8" | "c8" => 8,
        other => {
            return Err(format!(
                "element type {descr:?} ({other}) is not supported (uint8, bool, int16, uint16, float32, float64, complex64)"
            )
            .into())
        }
    };
    // the declared size against the file's, before anything is sized by it
    let body = file_len - end;
    let expected = n.checked_mul(item).ok_or("the shape overflows")?;
    if body != expected as u64 {
        return Err(format!(
            "shape {shape:?} of {descr} needs {expected} bytes of data, the file has {body}"
        )
        .into());
    }
    let word = |c: &[u8]| -> [u8; 8] {
        let mut w = [0u8; 8];
        if big_endian {
            for (k, b) in c.iter().rev().enumerate() {
                w[k] = *b;
            }
        } else {
            w[..c.len()].copy_from_slice(c);
        }
        w
    };
    let mut input = Pieces { r: &mut r, n, item, piece: Vec::new() };
    let data = match code {
        "u1" => NpyData::U8(input.values("uint8 array", |c| c[0])?),
        "b1" => NpyData::U8(input.values("bool array", |c| u8::from(c[0] != 0))?),
        "i2" => NpyData::I16(input.values("int16 array", |c| {
            let w = word(c);
            i16::from_le_bytes([w[0], w[1]])
        })?),
        "u2" => NpyData::U16(input.values("uint16 array", |c| {
            let w = word(c);
            u16::from_le_bytes([w[0], w[1]])
        })?),
        "f4" => NpyData::F32(input.values("float32 array", |c| {
            let w = word(c);
            f32::from_le_bytes([w[0], w[1], w[2], w[3]])
        })?),
        "f8" => NpyData::F64(input.values("float64 array", |c| f64::from_le_bytes(word(c)))?),
        _ => NpyData::C64(input.values("complex64 array", |c| {
            let (re, im) = (word(&c[..4]), word(&c[4..]));
            [
                f32::from_le_bytes([re[0], re[1], re[2], re[3]]),
                f32::from_le_bytes([im[0], im[1], im[2], im[3]]),
            ]
        })?),
    };
    Ok(NpyArray { shape, fortran_order, data })
}

/// The data of an array: `n` elements of `item` bytes, read in pieces of [`PIECE`] bytes.
struct Pieces<'a, R: std::io::Read> {
    r: &'a mut R,
    n: usize,
    item: usize,
    piece: Vec<u8>,
}

impl<R: std::io::Read> Pieces<'_, R> {
    /// The elements, each converted from its bytes by `conv`, into one vector reserved fallibly.
    fn values<T>(&mut self, what: &str, conv: impl Fn(&[u8]) -> T) -> std::result::Result<Vec<T>, Fail> {
        let mut out = try_vec(self.n, what).map_err(Fail::Memory)?;
        let per = (PIECE / self.item).max(1);
        self.piece.resize(per.min(self.n) * self.item, 0);
        while out.len() < self.n {
            let k = per.min(self.n - out.len());
            let piece = &mut self.piece[..k * self.item];
            read_exact(self.r, piece, "truncated data")?;
            out.extend(piece.chunks_exact(self.item).map(&conv));
        }
        Ok(out)
    }
}

/// The text after `'key':` up to the next top-level comma or closing brace.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pos = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[pos + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(rest[..=i].trim());
                }
            }
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn parse_shape(text: &str) -> std::result::Result<Vec<usize>, String> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("shape {text:?} is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("shape {text:?} has a bad entry {s:?}"))
        })
        .collect()
}

/// Writes a real array as `<f4` in C order (last index fastest), atomically.
pub fn write_npy_f32(path: &Path, data: &[f32], shape: &[usize]) -> Result<()> {
    write_npy(path, data, shape, false)
}

/// Reads a real array of any rank as f32 in C order (last index fastest), with its shape.
pub fn read_npy_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    read_npy(path)?.real_c_order(path)
}

impl NpyArray {
    /// The array, of any rank, as f32 in C order (a Fortran-order file is transposed). The
    /// result is the one allocation (fallible) besides the array itself.
    pub fn real_c_order(&self, path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
        let f = self.fortran_order;
        let values = match &self.data {
            NpyData::U8(v) => c_order(v, &self.shape, f, |x| x as f32),
            NpyData::I16(v) => c_order(v, &self.shape, f, |x| x as f32),
            NpyData::U16(v) => c_order(v, &self.shape, f, |x| x as f32),
            NpyData::F32(v) => c_order(v, &self.shape, f, |x| x),
            NpyData::F64(v) => c_order(v, &self.shape, f, |x| x as f32),
            NpyData::C64(_) => return Err(Error::format(path, "expected a real array, found complex64")),
        }
        .map_err(|m| memory(path, m))?;
        Ok((values, self.shape.clone()))
    }

    /// The array as a 3-D volume indexed `[x, y, z]`, in x-fastest order, with its dims.
    /// Complex arrays are refused (use [`NpyArray::complex_volume`]). The result is the one
    /// allocation (fallible) besides the array itself.
    pub fn real_volume(&self, path: &Path) -> Result<(Vec<f32>, [usize; 3])> {
        let dims = self.dims3(path)?;
        let f = self.fortran_order;
        let values = match &self.data {
            NpyData::U8(v) => x_fastest(v, dims, f, |x| x as f32),
            NpyData::I16(v) => x_fastest(v, dims, f, |x| x as f32),
            NpyData::U16(v) => x_fastest(v, dims, f, |x| x as f32),
            NpyData::F32(v) => x_fastest(v, dims, f, |x| x),
            NpyData::F64(v) => x_fastest(v, dims, f, |x| x as f32),
            NpyData::C64(_) => return Err(Error::format(path, "expected a real volume, found complex64")),
        }
        .map_err(|m| memory(path, m))?;
        Ok((values, dims))
    }

    /// A complex 3-D array (complex64, or a real array with zero imaginary part) in x-fastest order.
    pub fn complex_volume(&self, path: &Path) -> Result<(Vec<[f32; 2]>, [usize; 3])> {
        let dims = self.dims3(path)?;
        let f = self.fortran_order;
        let values = match &self.data {
            NpyData::C64(v) => x_fastest(v, dims, f, |x| x),
            NpyData::F32(v) => x_fastest(v, dims, f, |x| [x, 0.0]),
            NpyData::F64(v) => x_fastest(v, dims, f, |x| [x as f32, 0.0]),
            other => {
                return Err(Error::format(
                    path,
                    format!("expected complex64 k-space, found {}", other.type_name()),
                ))
            }
        }
        .map_err(|m| memory(path, m))?;
        Ok((values, dims))
    }

    fn dims3(&self, path: &Path) -> Result<[usize; 3]> {
        match self.shape[..] {
            [nx, ny, nz] if nx > 0 && ny > 0 && nz > 0 => Ok([nx, ny, nz]),
            _ => Err(Error::format(
                path,
                format!("expected a non-empty 3-D array, found shape {:?}", self.shape),
            )),
        }
    }
}

fn memory(path: &Path, m: String) -> Error {
    Error::Memory(format!("{}: {m}", path.display()))
}

/// `src` (file order, Fortran if `fortran`) of `shape` converted by `conv`, in C order.
fn c_order<T: Copy, U>(
    src: &[T],
    shape: &[usize],
    fortran: bool,
    conv: impl Fn(T) -> U,
) -> std::result::Result<Vec<U>, String> {
    let mut out = try_vec(src.len(), "converted array")?;
    if !fortran || shape.len() < 2 {
        out.extend(src.iter().map(|&x| conv(x)));
        return Ok(out);
    }
    // Fortran order: the first index is fastest. Walk the C-order output and gather.
    let rank = shape.len();
    let mut index = vec![0usize; rank];
    for _ in 0..src.len() {
        let mut at = 0;
        for a in (0..rank).rev() {
            at = at * shape[a] + index[a];
        }
        out.push(conv(src[at]));
        for a in (0..rank).rev() {
            index[a] += 1;
            if index[a] < shape[a] {
                break;
            }
            index[a] = 0;
        }
    }
    Ok(out)
}

/// `src` (file order) of a 3-D array indexed `[x, y, z]` converted by `conv`, in x-fastest order
/// (a Fortran-order file already is; a C-order one is transposed).
fn x_fastest<T: Copy, U>(
    src: &[T],
    dims: [usize; 3],
    fortran: bool,
    conv: impl Fn(T) -> U,
) -> std::result::Result<Vec<U>, String> {
    let mut out = try_vec(src.len(), "volume")?;
    if fortran {
        out.extend(src.iter().map(|&x| conv(x)));
        return Ok(out);
    }
    let [nx, ny, nz] = dims;
    for z in 0..nz {
        for y in 0..ny {
            out.extend((0..nx).map(|x| conv(src[(x * ny + y) * nz + z])));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_reads_back_in_c_order() {
        // a 2×3 array [[0,1,2],[3,4,5]] stored in Fortran order is 0,3,1,4,2,5
        let bytes = npy_bytes(&[0.0f32, 3.0, 1.0, 4.0, 2.0, 5.0], &[2, 3], true).unwrap();
        let a = parse_npy(&bytes).unwrap();
        let (v, shape) = a.real_c_order(Path::new("t.npy")).unwrap();
        assert_eq!((v, shape), (vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0], vec![2, 3]));
    }

    #[test]
    fn header_is_padded_to_64_and_parses_back() {
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
        let bytes = npy_bytes(&data, &[2, 3, 4], false).unwrap();
        let header_end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!(header_end % 64, 0);
        assert_eq!(bytes[header_end - 1], b'\n');
        let back = parse_npy(&bytes).unwrap();
        assert_eq!(back.shape, vec![2, 3, 4]);
        assert!(!back.fortran_order);
        assert_eq!(back.data, NpyData::F32(data));
    }

    #[test]
    fn c_order_volume_is_transposed_to_x_fastest() {
        // C order, shape (2, 3, 4): value at [x, y, z] = 100x + 10y + z, z fastest in the file.
        let mut c = Vec::new();
        for x in 0..2 {
            for y in 0..3 {
                for z in 0..4 {
                    c.push((100 * x + 10 * y + z) as i16);
                }
            }
        }
        let arr = parse_npy(&npy_bytes(&c, &[2, 3, 4], false).unwrap()).unwrap();
        let (v, dims) = arr.real_volume(Path::new("t.npy")).unwrap();
        assert_eq!(dims, [2, 3, 4]);
        assert_eq!(v[1 + 2 * (2 + 3 * 3)], 123.0);
        assert_eq!(v[2 * (1 + 3 * 2)], 12.0);
    }

    #[test]
    fn big_endian_and_bool_are_read() {
        let mut bytes = npy_bytes(&[1.5f64, -2.0], &[2], false).unwrap();
        let pos = bytes.windows(3).position(|w| w == b"<f8").unwrap();
        bytes[pos] = b'>';
        let n = bytes.len();
        for chunk in bytes[n - 16..].chunks_mut(8) {
            chunk.reverse();
        }
        assert_eq!(parse_npy(&bytes).unwrap().data, NpyData::F64(vec![1.5, -2.0]));
        let mut b = npy_bytes(&[0u8, 7], &[2], false).unwrap();
        let pos = b.windows(3).position(|w| w == b"|u1").unwrap();
        b[pos + 1] = b'b';
        assert_eq!(parse_npy(&b).unwrap().data, NpyData::U8(vec![0, 1]));
    }
}
