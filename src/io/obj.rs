//! Wavefront OBJ: `v` and `f` lines; everything else (vt, vn, o, g, s, usemtl, mtllib, comments)
//! is ignored. Face corners may be `i`, `i/j`, `i/j/k` or `i//k`, with 1-based or negative
//! (relative) indices; polygons are fan-triangulated.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use glam::Vec3;

use super::atomic::write_atomic;
use crate::geometry::mesh::TriMesh;
use crate::Result;

/// Parses a whole OBJ file; errors say the line number.
pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<TriMesh, String> {
    if bytes.contains(&0) {
        return Err("not an OBJ file (it contains binary data)".into());
    }
    let text = String::from_utf8_lossy(bytes);
    let mut positions: Vec<Vec3> = Vec::new();
    let mut triangles = Vec::new();
    let mut polygon = Vec::new();
    // The largest 1-based index seen and its line: checked once all vertices are known, since
    // OBJ allows a face to come before the vertices it uses.
    let mut max_index: Option<(u64, usize)> = None;
    for (line_no, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        let line = line.split('#').next().unwrap_or("");
        let mut tokens = line.split_whitespace();
        match tokens.next() {
            Some("v") => positions.push(super::parse_xyz(tokens, line_no)?),
            Some("f") => {
                polygon.clear();
                for corner in tokens {
                    let token = corner.split('/').next().unwrap_or("");
                    let index: i64 =
                        token.parse().map_err(|_| format!("line {line_no}: bad vertex index '{corner}'"))?;
                    let zero_based = match index {
                        0 => return Err(format!("line {line_no}: vertex index 0 (OBJ indices start at 1)")),
                        i if i > 0 => {
                            let i = i as u64;
                            if max_index.is_none_or(|(m, _)| i > m) {
                                max_index = Some((i, line_no));
                            }
                            i - 1
                        }
                        i => {
                            let back = i.unsigned_abs();
                            if back > positions.len() as u64 {
                                return Err(format!(
                                    "line {line_no}: relative vertex index {i} but only {} vertices so far",
                                    positions.len()
                                ));
                            }
                            positions.len() as u64 - back
                        }
                    };
                    let zero_based = u32::try_from(zero_based)
                        .map_err(|_| format!("line {line_no}: vertex index {index} is too large"))?;
                    polygon.push(zero_based);
                }
                if polygon.len() < 3 {
                    return Err(format!(
                        "line {line_no}: a face needs at least 3 vertices, found {}",
                        polygon.len()
                    ));
                }
                super::push_fan(&polygon, &mut triangles);
            }
            _ => {}
        }
    }
    if let Some((i, line_no)) = max_index {
        if i > positions.len() as u64 {
            return Err(format!(
                "line {line_no}: vertex index {i} but the file has {} vertices",
                positions.len()
            ));
        }
    }
    Ok(TriMesh::new(positions, triangles))
}

/// Writes `mesh` as OBJ: `v` lines, `vn` lines when the mesh has normals, and `f a//a b//b c//c`
/// (or `f a b c` without normals). Coordinates use the shortest text that reads back exactly.
pub fn write(path: &Path, mesh: &TriMesh) -> Result<()> {
    write_atomic(path, |w| {
        writeln!(
            w,
            "# written by ffvol: {} vertices, {} triangles",
            mesh.positions.len(),
            mesh.triangles.len()
        )?;
        let mut line = String::new();
        for p in &mesh.positions {
            line.clear();
            let _ = writeln!(line, "v {} {} {}", p.x, p.y, p.z);
            w.write_all(line.as_bytes())?;
        }
        if let Some(normals) = &mesh.normals {
            for n in normals {
                line.clear();
                let _ = writeln!(line, "vn {} {} {}", n.x, n.y, n.z);
                w.write_all(line.as_bytes())?;
            }
        }
        for t in &mesh.triangles {
            let [a, b, c] = t.map(|i| u64::from(i) + 1);
            line.clear();
            let _ = if mesh.normals.is_some() {
                writeln!(line, "f {a}//{a} {b}//{b} {c}//{c}")
            } else {
                writeln!(line, "f {a} {b} {c}")
            };
            w.write_all(line.as_bytes())?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corner_forms_and_relative_indices() {
        let text =
            b"# cube corner\nmtllib x.mtl\no thing\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvn 0 0 1\n\
g grp\ns off\nusemtl m\nf 1/1 2/1/1 3//1\nf -4 -2 -1\nf 1 2 3 4 # quad\n";
        let mesh = parse(text).expect("parse");
        assert_eq!(mesh.positions.len(), 4);
        assert_eq!(mesh.triangles, vec![[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3]]);
    }

    #[test]
    fn errors_name_the_line() {
        let err = |text: &[u8]| parse(text).expect_err("an error");
        assert_eq!(err(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n"), "line 4: bad vertex index 'x'");
        assert_eq!(
            err(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n"),
            "line 4: vertex index 7 but the file has 3 vertices"
        );
        assert_eq!(err(b"v 0 0\n"), "line 1: a vertex needs 3 coordinates, found 2");
        assert_eq!(
            err(b"v 0 0 0\nf -2 1 1\n"),
            "line 2: relative vertex index -2 but only 1 vertices so far"
        );
        assert_eq!(
            err(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n"),
            "line 4: vertex index 0 (OBJ indices start at 1)"
        );
    }
}
