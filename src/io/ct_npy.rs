//! Minimal NumPy `.npy` for projections: write little-endian f32 in C order; read f32 or f64
//! (little-endian, C order), format versions 1–3.

use super::atomic::write_bytes_atomic;
use crate::{Error, Result};
use std::path::Path;

/// Writes `data` with `shape` as `<f4`, C order, atomically.
pub fn write_npy_f32(path: &Path, data: &[f32], shape: &[usize]) -> Result<()> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(Error::Input(format!("cannot write {}: {} values for shape {shape:?}", path.display(), data.len())));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic(6) + version(2) + len(2) + header + '\n', padded to a multiple of 64
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_bytes_atomic(path, &bytes)
}

/// Reads a `.npy` of `<f4` or `<f8` in C order as f32, with its shape.
pub fn read_npy_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes).map_err(|m| Error::format(path, m))
}

fn parse(bytes: &[u8]) -> std::result::Result<(Vec<f32>, Vec<usize>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes.get(start..start + hlen).ok_or("the .npy header is cut short")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        let rest = &header[i + key.len() + 2..];
        Some(rest[rest.find(':')? + 1..].trim_start())
    };
    let descr = field("descr").ok_or("the .npy header has no descr")?;
    let width = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        return Err(format!("dtype {} is not supported (need little-endian float32 or float64)", descr.split(',').next().unwrap_or("")));
    };
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err("Fortran-ordered arrays are not supported (save with C order)".into());
    }
    let shape_text = field("shape").ok_or("the .npy header has no shape")?;
    let open = shape_text.find('(').ok_or("bad shape in the .npy header")?;
    let close = shape_text.find(')').ok_or("bad shape in the .npy header")?;
    let shape: Vec<usize> = shape_text[open + 1..close]
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad dimension {s:?} in the .npy shape")))
        .collect::<std::result::Result<_, _>>()?;
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("the .npy shape overflows")?;
    let body = &bytes[start + hlen..];
    if body.len() != n * width {
        return Err(format!("shape {shape:?} needs {} bytes of data but the file has {}", n * width, body.len()));
    }
    let data: Vec<f32> = if width == 4 {
        body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    } else {
        body.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect()
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(format!("value {i} is not finite"));
    }
    Ok((data, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("ffvol-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
        write_npy_f32(&p, &data, &[2, 3, 4]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 96) % 4, 0);
        assert_eq!(read_npy_f32(&p).unwrap(), (data, vec![2, 3, 4]));
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let e = read_npy_f32(&p).unwrap_err().to_string();
        assert!(e.contains("a.npy") && e.contains("bytes"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
