//! STL, ASCII and binary. Vertices are welded by exact position so the mesh comes back indexed;
//! writing produces binary STL with facet normals.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use glam::Vec3;

use super::atomic::write_atomic;
use crate::geometry::mesh::TriMesh;
use crate::Result;

const HEADER_LEN: usize = 80;
const FACET_LEN: usize = 50;

/// Parses an STL file. Binary when the size matches the triangle count at byte 80 (whatever the
/// header says, since many binary files start with "solid"), ASCII when it starts with "solid".
pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<TriMesh, String> {
    let declared =
        bytes.get(HEADER_LEN..HEADER_LEN + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if let Some(n) = declared {
        if (HEADER_LEN + 4) as u64 + FACET_LEN as u64 * u64::from(n) == bytes.len() as u64 {
            return Ok(parse_binary(&bytes[HEADER_LEN + 4..], n as usize));
        }
    }
    let trimmed = bytes.trim_ascii_start();
    if trimmed.starts_with(b"solid") {
        match bytes.iter().position(|&b| b == 0) {
            None => return parse_ascii(&String::from_utf8_lossy(bytes)),
            // text with a NUL in it: damaged ASCII, not a binary file (the size said so)
            Some(at) if looks_like_ascii_stl(bytes) => {
                let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                return Err(format!(
                    "an ASCII STL (it starts with \"solid\" and has facets) with a NUL byte at offset {at} (line {line}): a damaged file"
                ));
            }
            Some(_) => {}
        }
    }
    match declared {
        Some(n) => Err(format!(
            "binary STL declares {n} triangles ({} bytes) but the file has {} bytes (truncated or not an STL file)",
            (HEADER_LEN + 4) as u64 + FACET_LEN as u64 * u64::from(n),
            bytes.len()
        )),
        None => Err(format!("not an STL file ({} bytes, shorter than a binary STL header)", bytes.len())),
    }
}

/// Whether the text holds ASCII STL's keywords (`facet`, `vertex`), for a file that starts
/// with "solid" but is not a binary STL of its size.
fn looks_like_ascii_stl(bytes: &[u8]) -> bool {
    let has = |word: &[u8]| bytes.windows(word.len()).any(|w| w == word);
    has(b"facet") && has(b"vertex")
}

fn parse_binary(facets: &[u8], n: usize) -> TriMesh {
    let mut welder = Welder::with_capacity(n / 2);
    let mut triangles = Vec::with_capacity(n);
    for facet in facets.chunks_exact(FACET_LEN) {
        let corner = |k: usize| {
            let at = 12 + 12 * k;
            let f = |o: usize| {
                f32::from_le_bytes([facet[at + o], facet[at + o + 1], facet[at + o + 2], facet[at + o + 3]])
            };
            Vec3::new(f(0), f(4), f(8))
        };
        super::push_fan(&[0, 1, 2].map(|k| welder.index(corner(k))), &mut triangles);
    }
    TriMesh::new(welder.positions, triangles)
}

fn parse_ascii(text: &str) -> std::result::Result<TriMesh, String> {
    let mut welder = Welder::with_capacity(0);
    let mut triangles = Vec::new();
    let mut corners: Vec<u32> = Vec::new();
    let mut in_loop = false;
    for (line_no, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        let mut tokens = line.split_whitespace();
        match tokens.next() {
            Some("outer") => {
                if in_loop {
                    return Err(format!("line {line_no}: 'outer loop' inside a loop"));
                }
                in_loop = true;
                corners.clear();
            }
            Some("vertex") => {
                if !in_loop {
                    return Err(format!("line {line_no}: 'vertex' outside 'outer loop'"));
                }
                corners.push(welder.index(super::parse_xyz(tokens, line_no)?));
            }
            Some("endloop") => {
                if !in_loop {
                    return Err(format!("line {line_no}: 'endloop' without 'outer loop'"));
                }
                if corners.len() < 3 {
                    return Err(format!("line {line_no}: a facet needs 3 vertices, found {}", corners.len()));
                }
                super::push_fan(&corners, &mut triangles);
                in_loop = false;
            }
            _ => {}
        }
    }
    if in_loop {
        return Err("the file ends inside a facet (truncated?)".into());
    }
    Ok(TriMesh::new(welder.positions, triangles))
}

/// Merges vertices with bit-identical coordinates (after turning -0.0 into 0.0).
struct Welder {
    positions: Vec<Vec3>,
    index_of: HashMap<[u32; 3], u32>,
}

impl Welder {
    fn with_capacity(n: usize) -> Self {
        Welder { positions: Vec::with_capacity(n), index_of: HashMap::with_capacity(n) }
    }

    fn index(&mut self, p: Vec3) -> u32 {
        let p = p + Vec3::ZERO; // -0.0 + 0.0 == +0.0
        let key = p.to_array().map(f32::to_bits);
        let next = self.positions.len() as u32;
        *self.index_of.entry(key).or_insert_with(|| {
            self.positions.push(p);
            next
        })
    }
}

/// Writes `mesh` as binary STL with unit facet normals (zero for degenerate triangles).
pub fn write(path: &Path, mesh: &TriMesh) -> Result<()> {
    let count = u32::try_from(mesh.triangles.len()).map_err(|_| {
        crate::Error::Input(format!("cannot write {}: too many triangles for STL", path.display()))
    })?;
    write_atomic(path, |w| {
        let mut header = [b' '; HEADER_LEN];
        let text = b"binary STL written by ffvol";
        header[..text.len()].copy_from_slice(text);
        w.write_all(&header)?;
        w.write_all(&count.to_le_bytes())?;
        let mut facet = [0u8; FACET_LEN];
        for t in &mesh.triangles {
            let [a, b, c] = t.map(|i| mesh.positions[i as usize]);
            let normal = (b - a).cross(c - a).normalize_or_zero();
            for (k, v) in [normal, a, b, c].iter().enumerate() {
                for (j, x) in v.to_array().iter().enumerate() {
                    let at = 12 * k + 4 * j;
                    facet[at..at + 4].copy_from_slice(&x.to_le_bytes());
                }
            }
            w.write_all(&facet)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASCII: &str = "solid tri\n facet normal 0 0 1\n  outer loop\n   vertex 0 0 0\n   vertex 1 0 0\n   vertex 0 1 0\n  endloop\n endfacet\n\
 facet normal 0 0 1\n  outer loop\n   vertex 1 0 0\n   vertex 1 1 0\n   vertex -0 1 0\n  endloop\n endfacet\nendsolid tri\n";

    #[test]
    fn ascii_is_welded() {
        let mesh = parse(ASCII.as_bytes()).expect("parse");
        assert_eq!(mesh.positions.len(), 4, "shared corners welded, -0 == 0");
        assert_eq!(mesh.triangles, vec![[0, 1, 2], [1, 3, 2]]);
    }

    #[test]
    fn binary_with_solid_header_is_binary() {
        let mut bytes = b"solid but actually binary".to_vec();
        bytes.resize(HEADER_LEN, b' ');
        bytes.extend_from_slice(&1u32.to_le_bytes());
        for v in [[0f32, 0., 1.], [0., 0., 0.], [1., 0., 0.], [0., 1., 0.]] {
            for x in v {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        bytes.extend_from_slice(&[0, 0]);
        let mesh = parse(&bytes).expect("parse");
        assert_eq!(mesh.positions.len(), 3);
        assert_eq!(mesh.triangles, vec![[0, 1, 2]]);
    }

    #[test]
    fn truncated_ascii_is_an_error() {
        let cut = &ASCII[..ASCII.find("endloop").unwrap_or(0)];
        assert_eq!(parse(cut.as_bytes()).unwrap_err(), "the file ends inside a facet (truncated?)");
    }
}
