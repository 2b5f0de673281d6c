//! Stanford PLY: read any encoding through `ply-rs-bw`, write binary little-endian by hand.
//!
//! Reading accepts ASCII and binary (both byte orders), vertex `x y z` of any scalar type, faces
//! as a `vertex_indices` or `vertex_index` list of any integer type, and ignores every other
//! element and property (normals, colours, ...). Polygons are fan-triangulated. Triangle strips
//! (`element tristrips` with a `vertex_indices` list, as many scanned models store their surface)
//! are read with the usual conventions: −1 restarts the strip, every second triangle of a strip
//! has its winding reversed so all face the same way, and triangles repeating a vertex (the
//! strip's joins) are dropped.

use std::io::Write;
use std::path::Path;

use glam::Vec3;
use ply_rs_bw::parser::{Parser, Reader};
use ply_rs_bw::ply::{
    DefaultElement, Encoding, Header, PropertyAccess, PropertyAccessResult, PropertyType, ScalarType,
};

use super::atomic::write_atomic;
use crate::geometry::mesh::TriMesh;
use crate::Result;

/// Parses a whole PLY file. The message says what is wrong; the caller adds the file name.
pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<TriMesh, String> {
    // The parser validates what it reads and we never index by file data, so a panic here
    // would be a bug in ply-rs; catch it anyway so bad input can never take the process down.
    super::firewall::guard(|| parse_unguarded(bytes))
        .unwrap_or_else(|()| Err("malformed PLY file (the PLY parser failed)".into()))
}

fn parse_unguarded(bytes: &[u8]) -> std::result::Result<TriMesh, String> {
    if !bytes.starts_with(b"ply") {
        return Err("not a PLY file (it does not start with \"ply\")".into());
    }
    check_raw_header(bytes)?;
    let mut reader = Reader::new(bytes);
    let header = Parser::<DefaultElement>::new()
        .read_header(&mut reader)
        .map_err(|e| format!("bad PLY header: {}", clean_message(&e.to_string())))?;
    check_header(&header)?;

    // ply-rs counts "lines" in binary payloads too; there the element counts say more.
    let binary = header.encoding != Encoding::Ascii;
    let describe = |what: &str, e: ply_rs_bw::parser::ParseError| {
        let text = e.to_string();
        let text = if binary { strip_line_prefix(&text) } else { &text };
        format!("{what}: {}", clean_message(text))
    };
    let mut positions = Vec::new();
    let mut triangles = Vec::new();
    let mut vertex_count = None;
    for (name, def) in &header.elements {
        match name.as_str() {
            "vertex" => {
                let verts = Parser::<PlyVertex>::new()
                    .read_payload_for_element(&mut reader, def, &header)
                    .map_err(|e| describe("bad vertex data", e))?;
                positions = verts
                    .iter()
                    .map(|v| Vec3::new(v.xyz[0] as f32, v.xyz[1] as f32, v.xyz[2] as f32))
                    .collect();
                vertex_count = Some(verts.len());
            }
            "face" => {
                let faces = Parser::<PlyFace>::new()
                    .read_payload_for_element(&mut reader, def, &header)
                    .map_err(|e| describe("bad face data", e))?;
                let Some(n) = vertex_count else {
                    return Err("the face element comes before the vertex element".into());
                };
                triangles.reserve(faces.len());
                let mut polygon = Vec::new();
                for (f, face) in faces.iter().enumerate() {
                    if face.indices.len() < 3 {
                        return Err(format!(
                            "face {f} has {} vertex indices; a face needs at least 3",
                            face.indices.len()
                        ));
                    }
                    polygon.clear();
                    for &i in &face.indices {
                        if i < 0 || i as u64 >= n as u64 {
                            return Err(format!(
                                "face {f} refers to vertex {i} but the file has {n} vertices"
                            ));
                        }
                        polygon.push(i as u32);
                    }
                    super::push_fan(&polygon, &mut triangles);
                }
            }
            "tristrips" => {
                let strips = Parser::<PlyFace>::new()
                    .read_payload_for_element(&mut reader, def, &header)
                    .map_err(|e| describe("bad tristrips data", e))?;
                let Some(n) = vertex_count else {
                    return Err("the tristrips element comes before the vertex element".into());
                };
                for (s, strip) in strips.iter().enumerate() {
                    push_strip(&strip.indices, n, &mut triangles).map_err(|i| {
                        format!("strip {s} refers to vertex {i} but the file has {n} vertices")
                    })?;
                }
            }
            _ => {
                Parser::<Ignored>::new()
                    .read_payload_for_element(&mut reader, def, &header)
                    .map_err(|e| describe(&format!("bad data in element '{name}'"), e))?;
            }
        }
    }
    let rest = reader.get_ref();
    let trailing = if binary { rest.len() } else { rest.iter().filter(|b| !b.is_ascii_whitespace()).count() };
    if trailing > 0 {
        return Err(format!(
            "{} bytes follow the last element the header declares (a wrong element count, or a damaged file)",
            rest.len()
        ));
    }
    Ok(TriMesh::new(positions, triangles))
}

/// A parser message without the parser's internals (`ParseError { location: LineCol … }`),
/// on one line.
fn clean_message(text: &str) -> String {
    let flat: Vec<String> = text
        .lines()
        .map(|l| l.trim().trim_start_matches("Error: ").trim_end_matches(['.', ',', ' ']))
        .filter(|l| !l.is_empty())
        .map(|l| match l.find("ParseError {") {
            // peg's Debug form: keep what it expected, drop the location struct
            Some(_) => match l.split_once("expected: ExpectedSet { expected: {") {
                Some((_, rest)) => format!("expected one of {}", rest.split('}').next().unwrap_or("").trim()),
                None => "it does not parse".to_string(),
            },
            None => l.to_string(),
        })
        .collect();
    flat.join("; ")
}

/// The most elements of one kind a PLY header may declare (indices are 32-bit).
const MAX_ELEMENTS: u64 = u32::MAX as u64;

/// Reads the header lines ourselves before the parser does, for what it would accept and then
/// mis-read, loop on or allocate from: duplicate element or property definitions, elements with
/// no properties, counts that do not parse or are beyond 32-bit indices, and a body too short
/// for the counts declared (each element needs at least one byte per property, in ASCII and in
/// binary). Returns the body (the bytes after `end_header`).
fn check_raw_header(bytes: &[u8]) -> std::result::Result<&[u8], String> {
    let end = bytes
        .windows(10)
        .position(|w| w == b"end_header")
        .ok_or("the PLY header has no end_header line (a truncated or damaged file)")?;
    let mut body_start = end + 10;
    while body_start < bytes.len() && bytes[body_start] != b'\n' {
        if !bytes[body_start].is_ascii_whitespace() {
            return Err("text follows end_header on its line".into());
        }
        body_start += 1;
    }
    let body = bytes.get(body_start + 1..).unwrap_or(&[]);
    let header = std::str::from_utf8(&bytes[..end]).map_err(|_| "the PLY header is not text")?;
    let mut binary = false;
    // (name, count, properties' minimum bytes)
    let mut elements: Vec<(String, u64, Vec<(String, u64)>)> = Vec::new();
    for (i, line) in header.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["format", f, ..] => binary = *f != "ascii",
            ["element", name, count] => {
                let count: u64 = count.parse().map_err(|_| {
                    format!("header line {}: element '{name}' count {count:?} is not a count", i + 1)
                })?;
                if count > MAX_ELEMENTS {
                    return Err(format!(
                        "header line {}: element '{name}' declares {count} entries, more than 32-bit indices can address",
                        i + 1
                    ));
                }
                if elements.iter().any(|e| e.0 == *name) {
                    return Err(format!("header line {}: element '{name}' is defined twice", i + 1));
                }
                elements.push((name.to_string(), count, vec![]));
            }
            ["element", ..] => {
                return Err(format!("header line {}: {line:?} is not 'element NAME COUNT'", i + 1))
            }
            ["property", rest @ ..] => {
                let Some(e) = elements.last_mut() else {
                    return Err(format!("header line {}: a property before any element", i + 1));
                };
                let (name, min) = match rest {
                    ["list", count_type, _, name] => (*name, scalar_bytes(count_type).unwrap_or(1)),
                    [ty, name] => (*name, scalar_bytes(ty).unwrap_or(1)),
                    _ => return Err(format!("header line {}: {line:?} is not a property definition", i + 1)),
                };
                if e.2.iter().any(|p| p.0 == name) {
                    return Err(format!(
                        "header line {}: element '{}' defines property '{name}' twice",
                        i + 1,
                        e.0
                    ));
                }
                e.2.push((name.to_string(), if binary { min } else { 1 }));
            }
            _ => {}
        }
    }
    let mut need: u64 = 0;
    for (name, count, props) in &elements {
        if props.is_empty() && *count > 0 {
            return Err(format!("element '{name}' declares {count} entries but has no properties"));
        }
        let per: u64 = props.iter().map(|p| p.1).sum();
        need = count
            .checked_mul(per)
            .and_then(|b| b.checked_add(need))
            .ok_or_else(|| format!("element '{name}': {count} entries overflow the file size"))?;
    }
    if need > body.len() as u64 {
        return Err(format!(
            "the header declares {} but the file holds {} bytes of data, fewer than the {need} they need at the least (a truncated file, or wrong counts)",
            elements.iter().map(|e| format!("{} {}", e.1, e.0)).collect::<Vec<_>>().join(", "),
            body.len()
        ));
    }
    Ok(body)
}

/// Bytes of a PLY scalar type, by any of its names.
fn scalar_bytes(ty: &str) -> Option<u64> {
    Some(match ty {
        "char" | "uchar" | "int8" | "uint8" => 1,
        "short" | "ushort" | "int16" | "uint16" => 2,
        "int" | "uint" | "float" | "int32" | "uint32" | "float32" => 4,
        "double" | "float64" => 8,
        _ => return None,
    })
}

/// "Line 12: message" → "message".
fn strip_line_prefix(text: &str) -> &str {
    match text.split_once(": ") {
        Some((head, rest)) if head.starts_with("Line ") && head[5..].chars().all(|c| c.is_ascii_digit()) => {
            rest
        }
        _ => text,
    }
}

/// Checks the header describes a mesh we can read, before reading any data.
fn check_header(header: &Header) -> std::result::Result<(), String> {
    let vertex = header.elements.get("vertex").ok_or("the PLY header has no 'vertex' element")?;
    if vertex.count > u32::MAX as usize {
        return Err(format!("{} vertices is more than 32-bit indices can address", vertex.count));
    }
    for axis in ["x", "y", "z"] {
        match vertex.properties.get(axis).map(|p| &p.data_type) {
            Some(PropertyType::Scalar(_)) => {}
            Some(PropertyType::List(..)) => {
                return Err(format!("vertex property '{axis}' is a list, not a number"))
            }
            None => return Err(format!("the vertex element has no '{axis}' property")),
        }
    }
    for (name, what) in [("face", "face"), ("tristrips", "tristrips")] {
        let Some(element) = header.elements.get(name) else { continue };
        let list = element
            .properties
            .get("vertex_indices")
            .or_else(|| element.properties.get("vertex_index"))
            .ok_or(format!("the {what} element has no 'vertex_indices' (or 'vertex_index') property"))?;
        match &list.data_type {
            PropertyType::List(_, ScalarType::Float | ScalarType::Double) => {
                return Err(format!("{what} vertex indices are floating-point, not integers"))
            }
            PropertyType::List(..) => {}
            PropertyType::Scalar(_) => return Err(format!("{what} vertex indices are a number, not a list")),
        }
    }
    Ok(())
}

/// Appends the triangles of a strip (`-1` restarts it) to `out`: triangle k of a run is
/// (v_k, v_k+1, v_k+2) for even k and (v_k+1, v_k, v_k+2) for odd k, so all face the same way;
/// triangles repeating a vertex are dropped (they keep the parity). `Err(i)`: index `i` is
/// neither −1 nor a vertex below `n`.
fn push_strip(indices: &[i64], n: usize, out: &mut Vec<[u32; 3]>) -> std::result::Result<(), i64> {
    let mut run: Vec<u32> = Vec::new();
    let flush = |run: &mut Vec<u32>, out: &mut Vec<[u32; 3]>| {
        for (k, w) in run.windows(3).enumerate() {
            let t = if k % 2 == 0 { [w[0], w[1], w[2]] } else { [w[1], w[0], w[2]] };
            if t[0] != t[1] && t[1] != t[2] && t[0] != t[2] {
                out.push(t);
            }
        }
        run.clear();
    };
    for &i in indices {
        if i == -1 {
            flush(&mut run, out);
        } else if i < 0 || i as u64 >= n as u64 {
            return Err(i);
        } else {
            run.push(i as u32);
        }
    }
    flush(&mut run, out);
    Ok(())
}

/// One vertex as read: x, y, z in double precision whatever the file's type.
struct PlyVertex {
    xyz: [f64; 3],
}

impl PlyVertex {
    fn set(&mut self, name: &str, value: f64) -> PropertyAccessResult {
        match name {
            "x" => self.xyz[0] = value,
            "y" => self.xyz[1] = value,
            "z" => self.xyz[2] = value,
            _ => return PropertyAccessResult::Ignored,
        }
        PropertyAccessResult::Set
    }
}

/// A scalar setter of [`PlyVertex`]: every type widens to f64.
macro_rules! set_coordinate {
    ($fname:ident, $ty:ty) => {
        fn $fname(&mut self, name: &str, v: $ty) -> PropertyAccessResult {
            self.set(name, v.into())
        }
    };
}

impl PropertyAccess for PlyVertex {
    fn new() -> Self {
        PlyVertex { xyz: [0.0; 3] }
    }
    set_coordinate!(set_char, i8);
    set_coordinate!(set_uchar, u8);
    set_coordinate!(set_short, i16);
    set_coordinate!(set_ushort, u16);
    set_coordinate!(set_int, i32);
    set_coordinate!(set_uint, u32);
    set_coordinate!(set_float, f32);
    set_coordinate!(set_double, f64);
}

/// One face as read: its vertex indices, widened so negative values can be reported.
struct PlyFace {
    indices: Vec<i64>,
}

fn is_index_list(name: &str) -> bool {
    name == "vertex_indices" || name == "vertex_index"
}

macro_rules! set_index_list {
    ($fname:ident, $ty:ty) => {
        fn $fname(&mut self, name: &str, values: Vec<$ty>) -> PropertyAccessResult {
            if !is_index_list(name) {
                return PropertyAccessResult::Ignored;
            }
            self.indices = values.into_iter().map(i64::from).collect();
            PropertyAccessResult::Set
        }
    };
}

impl PropertyAccess for PlyFace {
    fn new() -> Self {
        PlyFace { indices: Vec::new() }
    }
    set_index_list!(set_list_char, i8);
    set_index_list!(set_list_uchar, u8);
    set_index_list!(set_list_short, i16);
    set_index_list!(set_list_ushort, u16);
    set_index_list!(set_list_int, i32);
    set_index_list!(set_list_uint, u32);
}

/// An element we skip: the parser still reads (and checks) its data, we keep nothing.
struct Ignored;

impl PropertyAccess for Ignored {
    fn new() -> Self {
        Ignored
    }
}

/// Writes `mesh` as binary little-endian PLY: float x y z, float nx ny nz when the mesh has
/// normals, and `property list uchar int vertex_indices`. The caller has checked the mesh.
pub fn write(path: &Path, mesh: &TriMesh) -> Result<()> {
    if mesh.positions.len() > i32::MAX as usize {
        return Err(crate::Error::Input(format!(
            "cannot write {}: {} vertices do not fit PLY's int indices",
            path.display(),
            mesh.positions.len()
        )));
    }
    write_atomic(path, |w| {
        let mut header = String::from("ply\nformat binary_little_endian 1.0\ncomment written by ffvol\n");
        header += &format!("element vertex {}\n", mesh.positions.len());
        header += "property float x\nproperty float y\nproperty float z\n";
        if mesh.normals.is_some() {
            header += "property float nx\nproperty float ny\nproperty float nz\n";
        }
        header += &format!("element face {}\n", mesh.triangles.len());
        header += "property list uchar int vertex_indices\nend_header\n";
        w.write_all(header.as_bytes())?;
        for (i, p) in mesh.positions.iter().enumerate() {
            for c in p.to_array() {
                w.write_all(&c.to_le_bytes())?;
            }
            if let Some(normals) = &mesh.normals {
                for c in normals[i].to_array() {
                    w.write_all(&c.to_le_bytes())?;
                }
            }
        }
        for t in &mesh.triangles {
            w.write_all(&[3u8])?;
            for &i in t {
                w.write_all(&(i as i32).to_le_bytes())?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_quad_is_triangulated() {
        let text = b"ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n\
element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n";
        let mesh = parse(text).expect("parse");
        assert_eq!(mesh.positions.len(), 4);
        assert_eq!(mesh.triangles, vec![[0, 1, 2], [0, 2, 3]]);
    }

    #[test]
    fn negative_index_is_an_error() {
        let text = b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n\
element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n1 1 0\n3 0 -1 2\n";
        let err = parse(text).expect_err("negative index");
        assert!(err.contains("-1"), "{err}");
    }

    #[test]
    fn missing_z_is_an_error() {
        let text =
            b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n0 0\n";
        let err = parse(text).expect_err("no z");
        assert!(err.contains("'z'"), "{err}");
    }
}
