//! MATLAB v5 `.mat` files in (the format `save -v7` and `scipy.io.savemat` write): the one real
//! numeric 3-D array of a file, as a [`Volume`] with a 1 mm identity affine (a `.mat` file has
//! no spacing). TIGRE's phantoms (`head.mat`, variable `img`) come this way.
//!
//! MATLAB stores arrays column-major, so the first index varies fastest: voxel `(x, y, z)` of the
//! volume is `img(x+1, y+1, z+1)` in MATLAB and `loadmat(...)["img"][x, y, z]` in scipy, which is
//! also TIGRE's axis order (x, y, then z, the rotation axis).
//!
//! Read: little- and big-endian files, compressed (`miCOMPRESSED`, zlib) and plain variables,
//! every numeric class (double, single, 8- to 64-bit integers, logical) stored as any numeric
//! type. Not read: v7.3 files (HDF5), v4 files, complex, sparse, cell, struct and object arrays.
//! Sizes come from the file's own element lengths and are checked before anything is sized by
//! them; a compressed variable is inflated only as far as its data actually goes.

use crate::io::volume::{identity_affine, Volume};
use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

/// The most elements an array may have (2³¹, 8 GiB as f32).
pub const MAX_ELEMENTS: u64 = 1 << 31;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// A variable's description: what [`read_mat`] chooses among.
#[derive(Clone, Debug, PartialEq)]
pub struct MatVariable {
    pub name: String,
    /// MATLAB's class name (`double`, `single`, `uint8`, ..., `cell`, `struct`).
    pub class: &'static str,
    pub dims: Vec<u64>,
    pub complex: bool,
}

impl MatVariable {
    fn is_numeric(&self) -> bool {
        !matches!(self.class, "cell" | "struct" | "object" | "char" | "sparse" | "unknown")
    }
}

fn class_name(class: u8) -> &'static str {
    match class {
        1 => "cell",
        2 => "struct",
        3 => "object",
        4 => "char",
        5 => "sparse",
        6 => "double",
        7 => "single",
        8 => "int8",
        9 => "uint8",
        10 => "int16",
        11 => "uint16",
        12 => "int32",
        13 => "uint32",
        14 => "int64",
        15 => "uint64",
        _ => "unknown",
    }
}

/// Reads the one real numeric 3-D array of `path`. A file with none, or with several, is an error
/// that lists its variables.
pub fn read_mat(path: &Path) -> Result<Volume> {
    let bytes = crate::io::read_file(path)?;
    let file = MatFile::parse(&bytes).map_err(|m| Error::format(path, m))?;
    let vars = file.variables().map_err(|m| Error::format(path, m))?;
    let candidates: Vec<usize> = (0..vars.len())
        .filter(|&i| vars[i].0.is_numeric() && !vars[i].0.complex && vars[i].0.dims.len() == 3)
        .collect();
    let listing = || {
        vars.iter()
            .map(|(v, _)| {
                let dims: Vec<String> = v.dims.iter().map(|d| d.to_string()).collect();
                format!(
                    "{} ({}{} {})",
                    v.name,
                    if v.complex { "complex " } else { "" },
                    v.class,
                    dims.join("×")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let i = match candidates.as_slice() {
        [i] => *i,
        [] => {
            return Err(Error::format(
                path,
                format!(
                    "no real numeric 3-D array among the variables: {}",
                    if vars.is_empty() { "none".into() } else { listing() }
                ),
            ))
        }
        _ => {
            return Err(Error::format(
                path,
                format!(
                    "several 3-D arrays ({}): ffvol reads a file with one; save the one you want alone",
                    listing()
                ),
            ))
        }
    };
    let (var, at) = &vars[i];
    let data =
        file.read_array(*at).map_err(|m| Error::format(path, format!("variable {}: {m}", var.name)))?;
    let d = &var.dims;
    let dims = [d[0] as usize, d[1] as usize, d[2] as usize];
    Ok(Volume { data, dims, world_from_voxel: identity_affine() })
}

/// The variables of `path` (name, class, dimensions), without reading their data.
pub fn list_mat(path: &Path) -> Result<Vec<MatVariable>> {
    let bytes = crate::io::read_file(path)?;
    let file = MatFile::parse(&bytes).map_err(|m| Error::format(path, m))?;
    Ok(file.variables().map_err(|m| Error::format(path, m))?.into_iter().map(|(v, _)| v).collect())
}

type Msg = std::result::Result<u32, String>;

struct MatFile<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

/// A little reader over a stream of data elements, with the file's byte order.
struct Elements<R: Read> {
    r: R,
    big_endian: bool,
}

impl<R: Read> Elements<R> {
    fn u32(&mut self) -> Msg {
        let mut b = [0u8; 4];
        self.r.read_exact(&mut b).map_err(|e| format!("the data ends early ({e})"))?;
        Ok(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    /// A data element's tag: (type, byte count, whether it was a small element whose data are the
    /// next 4 bytes).
    fn tag(&mut self) -> std::result::Result<(u32, u32, bool), String> {
        let first = self.u32()?;
        if first >> 16 != 0 {
            Ok((first & 0xffff, first >> 16, true))
        } else {
            Ok((first, self.u32()?, false))
        }
    }

    /// The data of an element of `n` bytes (and its padding to 8, or to 4 for a small element),
    /// read as they arrive so that a wrong count cannot allocate more than is there.
    fn data(&mut self, n: u32, small: bool) -> std::result::Result<Vec<u8>, String> {
        let padded = if small { 4 } else { (n as u64).div_ceil(8) * 8 };
        if small && n > 4 {
            return Err(format!("a small data element of {n} bytes (at most 4)"));
        }
        let mut out = Vec::new();
        (&mut self.r).take(padded).read_to_end(&mut out).map_err(|e| format!("cannot read the data: {e}"))?;
        if (out.len() as u64) < padded.min(n as u64) {
            return Err(format!("an element of {n} bytes, but only {} are there", out.len()));
        }
        out.truncate(n as usize);
        Ok(out)
    }

    fn typed(&mut self, expect: &[u32], what: &str) -> std::result::Result<(u32, Vec<u8>), String> {
        let (ty, n, small) = self.tag()?;
        if !expect.contains(&ty) {
            return Err(format!("{what}: data type {ty}, expected one of {expect:?}"));
        }
        Ok((ty, self.data(n, small)?))
    }

    /// The header of a matrix element: flags, dimensions and name.
    fn matrix_header(&mut self) -> std::result::Result<MatVariable, String> {
        let (_, flags) = self.typed(&[MI_UINT32], "array flags")?;
        if flags.len() < 8 {
            return Err("array flags shorter than 8 bytes".into());
        }
        let big_endian = self.big_endian;
        let word = |b: &[u8]| {
            let a = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        let f = word(&flags[..4]);
        let class = class_name((f & 0xff) as u8);
        let complex = f & 0x800 != 0;
        let (_, dims) = self.typed(&[MI_INT32], "dimensions")?;
        let dims: Vec<u64> = dims.chunks_exact(4).map(|c| word(c) as i32).map(|d| d.max(0) as u64).collect();
        if dims.len() < 2 {
            return Err(format!("{} dimensions (MATLAB arrays have at least 2)", dims.len()));
        }
        let (_, name) = self.typed(&[MI_INT8, MI_UINT8], "array name")?;
        let name = String::from_utf8_lossy(&name).into_owned();
        Ok(MatVariable { name, class, dims, complex })
    }
}

impl<'a> MatFile<'a> {
    fn parse(bytes: &'a [u8]) -> std::result::Result<Self, String> {
        if bytes.len() < 128 {
            return Err(format!("{} bytes: too short for a MATLAB v5 file (128-byte header)", bytes.len()));
        }
        let text = String::from_utf8_lossy(&bytes[..116]);
        if text.starts_with("MATLAB 7.3") || bytes.get(512..).is_some_and(|b| b.starts_with(b"\x89HDF")) {
            return Err(
                "a MATLAB v7.3 (HDF5) file: save it with `save(..., '-v7')` or scipy.io.savemat".into()
            );
        }
        if !text.starts_with("MATLAB 5.0 MAT-file") {
            return Err(
                "not a MATLAB v5 file (the header does not start with \"MATLAB 5.0 MAT-file\")".into()
            );
        }
        let big_endian = match &bytes[126..128] {
            b"IM" => false,
            b"MI" => true,
            other => return Err(format!("endian indicator {other:?}, expected \"IM\" or \"MI\"")),
        };
        Ok(MatFile { bytes, big_endian })
    }

    /// Every top-level element: (type, byte offset of its data, byte count).
    fn elements(&self) -> std::result::Result<Vec<(u32, usize, usize)>, String> {
        let mut out = Vec::new();
        let mut at = 128usize;
        while at < self.bytes.len() {
            if self.bytes.len() - at < 8 {
                return Err(format!("{} stray bytes at the end of the file", self.bytes.len() - at));
            }
            let mut el = Elements { r: &self.bytes[at..], big_endian: self.big_endian };
            let (ty, n, small) = el.tag()?;
            if small {
                at += 8;
                continue;
            }
            let start = at + 8;
            let n = n as usize;
            if n > self.bytes.len() - start {
                return Err(format!(
                    "a variable at byte {at} claims {n} bytes, but the file has {} after it",
                    self.bytes.len() - start
                ));
            }
            out.push((ty, start, n));
            // Compressed elements are not padded; plain ones are, to 8 bytes.
            let next = if ty == MI_COMPRESSED { start + n } else { start + n.div_ceil(8) * 8 };
            at = next.min(self.bytes.len());
        }
        Ok(out)
    }

    /// The element stream of the variable at `(type, start, len)` (inflated when compressed), and
    /// the matrix's byte count.
    fn matrix(
        &self,
        (ty, start, len): (u32, usize, usize),
    ) -> std::result::Result<Option<(Elements<Box<dyn Read + 'a>>, u32)>, String> {
        let raw = &self.bytes[start..start + len];
        let r: Box<dyn Read + 'a> = match ty {
            MI_COMPRESSED => Box::new(flate2::read::ZlibDecoder::new(raw)),
            MI_MATRIX => {
                // Re-read from the tag so that both paths start at a matrix tag.
                Box::new(&self.bytes[start - 8..start + len])
            }
            _ => return Ok(None),
        };
        let mut el = Elements { r, big_endian: self.big_endian };
        let (inner, n, small) = el.tag().map_err(|m| format!("a compressed variable: {m}"))?;
        if inner != MI_MATRIX || small {
            return Ok(None); // e.g. MATLAB's function-handle workspace: not an array
        }
        Ok(Some((el, n)))
    }

    fn variables(&self) -> std::result::Result<Vec<(MatVariable, (u32, usize, usize))>, String> {
        let mut out = Vec::new();
        for e in self.elements()? {
            if let Some((mut el, _)) = self.matrix(e)? {
                out.push((el.matrix_header()?, e));
            }
        }
        Ok(out)
    }

    /// The real part of the array at `e`, column-major, as f32.
    fn read_array(&self, e: (u32, usize, usize)) -> std::result::Result<Vec<f32>, String> {
        let (mut el, _) = self.matrix(e)?.ok_or("not an array")?;
        let var = el.matrix_header()?;
        let count = var
            .dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|&c| c <= MAX_ELEMENTS)
            .ok_or_else(|| {
            format!("{:?} is more than the {MAX_ELEMENTS} elements ffvol reads", var.dims)
        })?;
        let (ty, n, small) = el.tag()?;
        let size = match ty {
            MI_INT8 | MI_UINT8 => 1,
            MI_INT16 | MI_UINT16 => 2,
            MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
            MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
            _ => return Err(format!("real part of data type {ty}: not a numeric type")),
        };
        if n as u64 != count * size {
            return Err(format!(
                "dimensions {:?} need {} bytes of data type {ty}, the element has {n}",
                var.dims,
                count * size
            ));
        }
        let bytes = el.data(n, small)?;
        let be = self.big_endian;
        let arr = |c: &[u8]| -> [u8; 8] {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            b
        };
        let v: Vec<f32> = bytes
            .chunks_exact(size as usize)
            .map(|c| {
                let b = arr(c);
                let (b2, b4) = ([b[0], b[1]], [b[0], b[1], b[2], b[3]]);
                match (ty, be) {
                    (MI_INT8, _) => b[0] as i8 as f32,
                    (MI_UINT8, _) => b[0] as f32,
                    (MI_INT16, false) => i16::from_le_bytes(b2) as f32,
                    (MI_INT16, true) => i16::from_be_bytes(b2) as f32,
                    (MI_UINT16, false) => u16::from_le_bytes(b2) as f32,
                    (MI_UINT16, true) => u16::from_be_bytes(b2) as f32,
                    (MI_INT32, false) => i32::from_le_bytes(b4) as f32,
                    (MI_INT32, true) => i32::from_be_bytes(b4) as f32,
                    (MI_UINT32, false) => u32::from_le_bytes(b4) as f32,
                    (MI_UINT32, true) => u32::from_be_bytes(b4) as f32,
                    (MI_SINGLE, false) => f32::from_le_bytes(b4),
                    (MI_SINGLE, true) => f32::from_be_bytes(b4),
                    (MI_DOUBLE, false) => f64::from_le_bytes(b) as f32,
                    (MI_DOUBLE, true) => f64::from_be_bytes(b) as f32,
                    (MI_INT64, false) => i64::from_le_bytes(b) as f32,
                    (MI_INT64, true) => i64::from_be_bytes(b) as f32,
                    (MI_UINT64, false) => u64::from_le_bytes(b) as f32,
                    (_, _) => u64::from_be_bytes(b) as f32,
                }
            })
            .collect();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain (uncompressed) little-endian v5 file with one variable.
    fn mat_file(name: &str, class: u8, dims: &[i32], ty: u32, data: &[u8]) -> Vec<u8> {
        let mut header = b"MATLAB 5.0 MAT-file, written by a test".to_vec();
        header.resize(116, b' ');
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&0x0100u16.to_le_bytes());
        header.extend_from_slice(b"IM");
        let el = |ty: u32, d: &[u8]| {
            let mut v = ty.to_le_bytes().to_vec();
            v.extend_from_slice(&(d.len() as u32).to_le_bytes());
            v.extend_from_slice(d);
            v.resize(v.len().div_ceil(8) * 8, 0);
            v
        };
        let mut m =
            el(MI_UINT32, &[class as u32, 0].iter().flat_map(|x: &u32| x.to_le_bytes()).collect::<Vec<_>>());
        m.extend(el(MI_INT32, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<_>>()));
        m.extend(el(MI_INT8, name.as_bytes()));
        m.extend(el(ty, data));
        header.extend(el(MI_MATRIX, &m));
        header
    }

    fn parse_one(bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
        let f = MatFile::parse(bytes)?;
        let vars = f.variables()?;
        f.read_array(vars[0].1)
    }

    #[test]
    fn a_plain_uint8_array_is_read_column_major() {
        let data: Vec<u8> = (0..24).collect();
        let bytes = mat_file("v", 9, &[2, 3, 4], MI_UINT8, &data);
        let f = MatFile::parse(&bytes).unwrap();
        let vars = f.variables().unwrap();
        assert_eq!(
            vars[0].0,
            MatVariable { name: "v".into(), class: "uint8", dims: vec![2, 3, 4], complex: false }
        );
        assert_eq!(parse_one(&bytes).unwrap(), (0..24).map(|x| x as f32).collect::<Vec<_>>());
    }

    #[test]
    fn a_data_count_that_disagrees_with_the_dimensions_is_an_error() {
        let bytes = mat_file("v", 9, &[2, 3, 5], MI_UINT8, &[0; 24]);
        let err = parse_one(&bytes).unwrap_err();
        assert_eq!(err, "dimensions [2, 3, 5] need 30 bytes of data type 2, the element has 24");
        let huge = mat_file("v", 9, &[65536, 65536, 65536], MI_UINT8, &[0; 8]);
        let err = parse_one(&huge).unwrap_err();
        assert!(err.contains("more than the 2147483648 elements"), "{err}");
    }

    #[test]
    fn a_variable_longer_than_the_file_is_an_error() {
        let mut bytes = mat_file("v", 9, &[2, 3, 4], MI_UINT8, &[0; 24]);
        bytes.truncate(bytes.len() - 16);
        let err = MatFile::parse(&bytes).unwrap().elements().unwrap_err();
        assert!(err.contains("claims"), "{err}");
    }

    #[test]
    fn other_formats_are_named() {
        let mut v73 = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".to_vec();
        v73.resize(600, 0);
        assert!(MatFile::parse(&v73).err().unwrap().contains("v7.3 (HDF5)"));
        assert!(MatFile::parse(&[0u8; 200]).err().unwrap().contains("not a MATLAB v5 file"));
    }
}
