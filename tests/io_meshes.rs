//! Mesh I/O: every PLY variant we promise to read, round trips through every writer, malformed
//! files (an error naming the file, never a panic), and the bundled bunny.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use ffvol::geometry::mesh::TriMesh;
use ffvol::io::{read_mesh, write_mesh, MeshFormat};
use glam::Vec3;

mod common;
use common::scratch;

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).expect("write test input");
    path
}

/// Reading must fail with a message that names the file.
fn expect_error(path: &Path) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 name").to_owned();
    match read_mesh(path) {
        Ok(m) => panic!(
            "{name}: expected an error, got {} vertices {} faces",
            m.positions.len(),
            m.triangles.len()
        ),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&name), "error for {name} does not name the file: {msg}");
            msg
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A small PLY writer for test inputs: any encoding, any scalar types.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Enc {
    Ascii,
    Le,
    Be,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    Char,
    UChar,
    Short,
    UShort,
    Int,
    UInt,
    Float,
    Double,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Char => "char",
            Ty::UChar => "uchar",
            Ty::Short => "short",
            Ty::UShort => "ushort",
            Ty::Int => "int",
            Ty::UInt => "uint",
            Ty::Float => "float",
            Ty::Double => "double",
        }
    }

    fn push(self, enc: Enc, v: f64, out: &mut Vec<u8>) {
        macro_rules! bin {
            ($t:ty) => {{
                let x = v as $t;
                out.extend_from_slice(&if enc == Enc::Le { x.to_le_bytes() } else { x.to_be_bytes() });
            }};
        }
        match enc {
            Enc::Ascii => {
                let s = if matches!(self, Ty::Float | Ty::Double) {
                    format!("{v} ")
                } else {
                    format!("{} ", v as i64)
                };
                out.extend_from_slice(s.as_bytes());
            }
            _ => match self {
                Ty::Char => bin!(i8),
                Ty::UChar => bin!(u8),
                Ty::Short => bin!(i16),
                Ty::UShort => bin!(u16),
                Ty::Int => bin!(i32),
                Ty::UInt => bin!(u32),
                Ty::Float => bin!(f32),
                Ty::Double => bin!(f64),
            },
        }
    }
}

/// A property of the vertex element: a scalar, or (for faces) a list.
#[derive(Clone, Copy)]
enum Prop {
    Scalar(&'static str, Ty),
    List(&'static str, Ty, Ty),
}

struct Element {
    name: &'static str,
    props: Vec<Prop>,
    /// One row per element: scalars one value each, lists a Vec.
    rows: Vec<Vec<Vec<f64>>>,
    /// Count written in the header (defaults to rows.len()).
    declared: Option<u64>,
}

fn ply_bytes(enc: Enc, elements: &[Element]) -> Vec<u8> {
    let format = match enc {
        Enc::Ascii => "ascii",
        Enc::Le => "binary_little_endian",
        Enc::Be => "binary_big_endian",
    };
    let mut header = format!("ply\nformat {format} 1.0\ncomment test input\n");
    for e in elements {
        header += &format!("element {} {}\n", e.name, e.declared.unwrap_or(e.rows.len() as u64));
        for p in &e.props {
            header += &match p {
                Prop::Scalar(n, t) => format!("property {} {n}\n", t.name()),
                Prop::List(n, c, t) => format!("property list {} {} {n}\n", c.name(), t.name()),
            };
        }
    }
    header += "end_header\n";
    let mut out = header.into_bytes();
    for e in elements {
        for row in &e.rows {
            for (p, values) in e.props.iter().zip(row) {
                match p {
                    Prop::Scalar(_, t) => t.push(enc, values[0], &mut out),
                    Prop::List(_, c, t) => {
                        c.push(enc, values.len() as f64, &mut out);
                        for &v in values {
                            t.push(enc, v, &mut out);
                        }
                    }
                }
            }
            if enc == Enc::Ascii {
                out.pop();
                out.push(b'\n');
            }
        }
    }
    out
}

/// Unit square (a quad) plus a triangle above it, with normals, colours and a confidence value
/// interleaved with x y z, as scanners write them.
const SQUARE: [[f64; 3]; 5] =
    [[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [1.5, 1.25, 0.0], [0.0, 1.25, 0.0], [0.75, 0.5, -2.5]];

fn vertex_element(coord: Ty) -> Element {
    Element {
        name: "vertex",
        props: vec![
            Prop::Scalar("x", coord),
            Prop::Scalar("confidence", Ty::Float),
            Prop::Scalar("y", coord),
            Prop::Scalar("z", coord),
            Prop::Scalar("nx", Ty::Float),
            Prop::Scalar("ny", Ty::Float),
            Prop::Scalar("nz", Ty::Float),
            Prop::Scalar("red", Ty::UChar),
            Prop::Scalar("green", Ty::UChar),
            Prop::Scalar("blue", Ty::UChar),
        ],
        rows: SQUARE
            .iter()
            .map(|p| {
                [p[0], 0.5, p[1], p[2], 0.0, 0.0, 1.0, 200.0, 10.0, 30.0].iter().map(|&v| vec![v]).collect()
            })
            .collect(),
        declared: None,
    }
}

fn face_element(name: &'static str, count: Ty, index: Ty, faces: &[&[f64]]) -> Element {
    Element {
        name: "face",
        props: vec![Prop::List(name, count, index), Prop::Scalar("flags", Ty::UChar)],
        rows: faces.iter().map(|f| vec![f.to_vec(), vec![7.0]]).collect(),
        declared: None,
    }
}

fn square_faces(index: Ty) -> Element {
    face_element("vertex_indices", Ty::UChar, index, &[&[0.0, 1.0, 2.0, 3.0], &[0.0, 4.0, 1.0]])
}

fn assert_square(mesh: &TriMesh, what: &str) {
    let expected: Vec<Vec3> =
        SQUARE.iter().map(|p| Vec3::new(p[0] as f32, p[1] as f32, p[2] as f32)).collect();
    assert_eq!(mesh.positions, expected, "{what}: positions");
    assert_eq!(mesh.triangles, vec![[0, 1, 2], [0, 2, 3], [0, 4, 1]], "{what}: triangles");
}

#[test]
fn ply_every_encoding_coordinate_and_index_type() {
    let dir = scratch("ply-variants");
    for enc in [Enc::Ascii, Enc::Le, Enc::Be] {
        for coord in [Ty::Float, Ty::Double] {
            for index in [Ty::UChar, Ty::Int, Ty::UInt] {
                let what = format!("{enc:?} {coord:?} {index:?}");
                let bytes = ply_bytes(enc, &[vertex_element(coord), square_faces(index)]);
                let path = write_file(&dir, &format!("{enc:?}-{coord:?}-{index:?}.ply"), &bytes);
                let mesh = read_mesh(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_square(&mesh, &what);
                assert!(mesh.normals.is_none(), "normals are not read");
            }
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn ply_vertex_index_name_other_int_types_and_extra_elements() {
    let dir = scratch("ply-names");
    for enc in [Enc::Ascii, Enc::Le, Enc::Be] {
        for (count, index) in [(Ty::UShort, Ty::Short), (Ty::Int, Ty::UShort), (Ty::UChar, Ty::Char)] {
            let what = format!("{enc:?} vertex_index list {count:?} {index:?}");
            let material = Element {
                name: "material",
                props: vec![Prop::Scalar("ambient_red", Ty::UChar), Prop::List("name", Ty::UChar, Ty::UChar)],
                rows: vec![vec![vec![3.0], vec![65.0, 66.0]]],
                declared: None,
            };
            let faces =
                face_element("vertex_index", count, index, &[&[0.0, 1.0, 2.0, 3.0], &[0.0, 4.0, 1.0]]);
            let edges = Element {
                name: "edge",
                props: vec![Prop::Scalar("vertex1", Ty::Int), Prop::Scalar("vertex2", Ty::Int)],
                rows: vec![vec![vec![0.0], vec![1.0]]],
                declared: None,
            };
            let coord = if enc == Enc::Be { Ty::Double } else { Ty::Float };
            let bytes = ply_bytes(enc, &[material, vertex_element(coord), faces, edges]);
            let path = write_file(&dir, &format!("{enc:?}-{count:?}-{index:?}.ply"), &bytes);
            let mesh = read_mesh(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_square(&mesh, &what);
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn ply_degenerate_faces_dropped_duplicates_kept_integer_coordinates_read() {
    let dir = scratch("ply-degenerate");
    let vertices = Element {
        name: "vertex",
        props: vec![Prop::Scalar("x", Ty::Short), Prop::Scalar("y", Ty::Int), Prop::Scalar("z", Ty::UChar)],
        rows: SQUARE
            .iter()
            .map(|p| vec![vec![(p[0] * 2.0).round()], vec![(p[1] * 4.0).round()], vec![7.0]])
            .collect(),
        declared: None,
    };
    let faces = face_element(
        "vertex_indices",
        Ty::UChar,
        Ty::Int,
        &[&[0.0, 1.0, 2.0], &[0.0, 1.0, 2.0], &[1.0, 1.0, 2.0], &[2.0, 3.0, 4.0]],
    );
    let path = write_file(&dir, "degenerate.ply", &ply_bytes(Enc::Le, &[vertices, faces]));
    let mesh = read_mesh(&path).expect("read");
    assert_eq!(mesh.triangles, vec![[0, 1, 2], [0, 1, 2], [2, 3, 4]]);
    assert_eq!(mesh.positions[2], Vec3::new(3.0, 5.0, 7.0));
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Round trips.

/// An irregular closed mesh (octahedron with awkward coordinates) so exactness is tested.
fn octahedron() -> TriMesh {
    let positions = vec![
        Vec3::new(1.1, 0.0, 0.0),
        Vec3::new(-0.9, 0.0, 0.0),
        Vec3::new(0.0, 0.3333333, 0.0),
        Vec3::new(0.0, -1.0e-3, 0.0),
        Vec3::new(0.0, 0.0, 123.456),
        Vec3::new(0.0, 0.0, -7.0e-8),
    ];
    let triangles =
        vec![[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]];
    TriMesh::new(positions, triangles)
}

fn triangle_corners(mesh: &TriMesh) -> Vec<[Vec3; 3]> {
    mesh.triangles.iter().map(|t| t.map(|i| mesh.positions[i as usize])).collect()
}

#[test]
fn ply_obj_stl_round_trip_exactly() {
    let dir = scratch("round-trip");
    let mut with_normals = octahedron();
    with_normals.compute_vertex_normals();
    for mesh in [octahedron(), with_normals] {
        for format in [MeshFormat::Ply, MeshFormat::Obj, MeshFormat::Stl] {
            let path = dir.join(format!("oct.{}", format.extension()));
            write_mesh(&path, &mesh, format).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            let back = read_mesh(&path).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            if format == MeshFormat::Stl {
                // STL stores corners; welding recovers the shared vertices.
                assert_eq!(back.positions.len(), mesh.positions.len(), "STL welding");
                assert_eq!(triangle_corners(&back), triangle_corners(&mesh), "STL corners");
            } else {
                assert_eq!(back.positions, mesh.positions, "{format:?} positions");
                assert_eq!(back.triangles, mesh.triangles, "{format:?} triangles");
            }
            assert!((back.signed_volume() - mesh.signed_volume()).abs() < 1e-9);
        }
    }
    // Only the final files remain: writes are atomic and leave no temp files.
    let mut names: Vec<String> =
        fs::read_dir(&dir).expect("ls").filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    assert_eq!(names, ["oct.obj", "oct.ply", "oct.stl"]);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn written_ply_header_is_what_other_tools_expect() {
    let dir = scratch("ply-header");
    let mut mesh = octahedron();
    mesh.compute_vertex_normals();
    let path = dir.join("oct.ply");
    write_mesh(&path, &mesh, MeshFormat::Ply).expect("write");
    let bytes = fs::read(&path).expect("read");
    let end = bytes.windows(11).position(|w| w == b"end_header\n").expect("end_header") + 11;
    let header = std::str::from_utf8(&bytes[..end]).expect("ascii header");
    for line in [
        "format binary_little_endian 1.0",
        "element vertex 6",
        "property float x",
        "property float nz",
        "element face 8",
        "property list uchar int vertex_indices",
    ] {
        assert!(header.contains(line), "missing {line:?} in\n{header}");
    }
    assert_eq!(bytes.len() - end, 6 * 24 + 8 * 13, "payload size");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn stl_binary_layout_and_facet_normals() {
    let dir = scratch("stl-layout");
    let mesh = octahedron();
    let path = dir.join("oct.stl");
    write_mesh(&path, &mesh, MeshFormat::Stl).expect("write");
    let bytes = fs::read(&path).expect("read");
    assert_eq!(bytes.len(), 84 + 50 * 8);
    assert!(!bytes.starts_with(b"solid"), "binary STL must not look ASCII");
    assert_eq!(u32::from_le_bytes([bytes[80], bytes[81], bytes[82], bytes[83]]), 8);
    let f = |at: usize| f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let normal = Vec3::new(f(84), f(88), f(92));
    let [a, b, c] = triangle_corners(&mesh)[0];
    let expected = (b - a).cross(c - a).normalize();
    assert!((normal - expected).length() < 1e-6, "{normal} vs {expected}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn ascii_stl_and_obj_with_polygons_read() {
    let dir = scratch("text-formats");
    let stl = "solid square\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 1 1 0\nendloop\nendfacet\n\
facet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 1 0\nvertex 0 1 0\nendloop\nendfacet\nendsolid square\n";
    let mesh = read_mesh(&write_file(&dir, "square.STL", stl.as_bytes())).expect("ascii stl");
    assert_eq!((mesh.positions.len(), mesh.triangles.len()), (4, 2));
    let obj =
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0.5 0.5 1\nf 1/1/1 2/2/2 3/3/3 4/4/4\nf -1//1 -5//1 -4//1\n";
    let mesh = read_mesh(&write_file(&dir, "square.Obj", obj.as_bytes())).expect("obj");
    assert_eq!(mesh.triangles, vec![[0, 1, 2], [0, 2, 3], [4, 0, 1]]);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn glb_chunks_and_json_are_consistent() {
    let dir = scratch("glb");
    let mut mesh = octahedron();
    mesh.compute_vertex_normals();
    let path = dir.join("oct.glb");
    assert_eq!(MeshFormat::from_path(&path), Some(MeshFormat::Glb));
    write_mesh(&path, &mesh, MeshFormat::Glb).expect("write glb");
    let bytes = fs::read(&path).expect("read");
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
    assert_eq!(&bytes[0..4], b"glTF");
    assert_eq!(word(4), 2, "version");
    assert_eq!(word(8), bytes.len(), "total length");
    let json_len = word(12);
    assert_eq!(&bytes[16..20], b"JSON");
    assert_eq!(json_len % 4, 0);
    let doc: serde_json::Value = serde_json::from_slice(&bytes[20..20 + json_len]).expect("json chunk");
    let bin_at = 20 + json_len;
    let bin_len = word(bin_at);
    assert_eq!(&bytes[bin_at + 4..bin_at + 8], b"BIN\0");
    assert_eq!(bin_len % 4, 0);
    assert_eq!(bin_at + 8 + bin_len, bytes.len());
    let bin = &bytes[bin_at + 8..];

    assert_eq!(doc["asset"]["version"], "2.0");
    let buffer_len = doc["buffers"][0]["byteLength"].as_u64().expect("buffer length") as usize;
    assert!(buffer_len <= bin_len && bin_len - buffer_len < 4);
    let prim = &doc["meshes"][0]["primitives"][0];
    assert_eq!(prim["mode"], 4);
    let accessor = |k: &serde_json::Value| &doc["accessors"][k.as_u64().expect("accessor index") as usize];
    let view_of =
        |a: &serde_json::Value| &doc["bufferViews"][a["bufferView"].as_u64().expect("view") as usize];
    let pos = accessor(&prim["attributes"]["POSITION"]);
    let nrm = accessor(&prim["attributes"]["NORMAL"]);
    let idx = accessor(&prim["indices"]);
    assert_eq!(pos["count"], 6);
    assert_eq!(nrm["count"], 6);
    assert_eq!(idx["count"], 24);
    assert_eq!(idx["componentType"], 5125);
    assert_eq!(view_of(pos)["byteLength"], 6 * 12);
    assert_eq!(view_of(nrm)["byteLength"], 6 * 12);
    assert_eq!(view_of(idx)["byteLength"], 24 * 4);
    let (lo, hi) = mesh.bounds().expect("bounds");
    assert_eq!(pos["min"], serde_json::json!(lo.to_array()));
    assert_eq!(pos["max"], serde_json::json!(hi.to_array()));
    let mut total = 0;
    for v in doc["bufferViews"].as_array().expect("views") {
        let (off, len) = (
            v["byteOffset"].as_u64().expect("off") as usize,
            v["byteLength"].as_u64().expect("len") as usize,
        );
        assert_eq!(off % 4, 0);
        assert!(off + len <= buffer_len);
        total += len;
    }
    assert_eq!(total, buffer_len);
    // The index data decodes to the mesh's triangles.
    let off = view_of(idx)["byteOffset"].as_u64().expect("off") as usize;
    let indices: Vec<u32> =
        bin[off..off + 96].chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(indices, mesh.triangles.iter().flatten().copied().collect::<Vec<_>>());

    // Without normals there is no NORMAL attribute, and an empty mesh is refused.
    write_mesh(&path, &octahedron(), MeshFormat::Glb).expect("write glb");
    let bytes = fs::read(&path).expect("read");
    let json_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    let doc: serde_json::Value = serde_json::from_slice(&bytes[20..20 + json_len]).expect("json");
    assert!(doc["meshes"][0]["primitives"][0]["attributes"].get("NORMAL").is_none());
    let empty = dir.join("empty.glb");
    let err = write_mesh(&empty, &TriMesh::default(), MeshFormat::Glb).unwrap_err().to_string();
    let want =
        format!("invalid input: cannot write {}: glTF cannot hold a mesh with no vertices", empty.display());
    assert_eq!(err, want);
    assert!(!dir.join("empty.glb").exists());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn writing_an_invalid_mesh_is_refused_and_writes_nothing() {
    let dir = scratch("invalid-write");
    let mut bad = octahedron();
    bad.triangles.push([0, 1, 6]);
    for format in [MeshFormat::Ply, MeshFormat::Obj, MeshFormat::Stl, MeshFormat::Glb] {
        let path = dir.join(format!("bad.{}", format.extension()));
        let err = write_mesh(&path, &bad, format).expect_err("out-of-range index");
        assert!(err.to_string().contains("bad."), "{err}");
        assert!(!path.exists());
    }
    let mut nan = octahedron();
    nan.positions[3].y = f32::NAN;
    let path = dir.join("nan.ply");
    let err = write_mesh(&path, &nan, MeshFormat::Ply).unwrap_err().to_string();
    let want = "vertex 3 has a non-finite coordinate Vec3(0.0, NaN, 0.0)";
    assert_eq!(err, format!("invalid input: cannot write {}: {want}", path.display()));
    assert_eq!(fs::read_dir(&dir).expect("ls").count(), 0);
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Malformed input: an error that names the file, never a panic.

fn valid_binary_ply() -> Vec<u8> {
    ply_bytes(Enc::Le, &[vertex_element(Ty::Float), square_faces(Ty::Int)])
}

#[test]
fn malformed_ply_files() {
    let dir = scratch("bad-ply");
    let good = valid_binary_ply();
    expect_error(&write_file(&dir, "truncated.ply", &good[..good.len() - 5]));
    expect_error(&write_file(&dir, "empty.ply", b""));
    expect_error(&write_file(&dir, "notes.ply", b"shopping list:\n- eggs\n- milk\n"));
    expect_error(&write_file(&dir, "header-only.ply", b"ply\nformat ascii 1.0\nelement vertex 3\n"));

    for enc in [Enc::Ascii, Enc::Le] {
        let msg = expect_error(&write_file(
            &dir,
            &format!("count-{enc:?}.ply"),
            &ply_bytes(
                enc,
                &[Element { declared: Some(50), ..vertex_element(Ty::Float) }, square_faces(Ty::Int)],
            ),
        ));
        assert!(msg.to_lowercase().contains("vertex"), "{msg}");
    }
    let huge = Element { declared: Some(99_999_999_999), ..vertex_element(Ty::Float) };
    expect_error(&write_file(&dir, "huge-count.ply", &ply_bytes(Enc::Le, &[huge, square_faces(Ty::Int)])));
    let max_u32 = Element { declared: Some(u64::from(u32::MAX)), ..vertex_element(Ty::Float) };
    expect_error(&write_file(&dir, "max-count.ply", &ply_bytes(Enc::Le, &[max_u32, square_faces(Ty::Int)])));

    let out_of_range = face_element("vertex_indices", Ty::UChar, Ty::Int, &[&[0.0, 1.0, 5.0]]);
    let msg = expect_error(&write_file(
        &dir,
        "range.ply",
        &ply_bytes(Enc::Le, &[vertex_element(Ty::Float), out_of_range]),
    ));
    assert!(msg.contains('5'), "{msg}");
    // faces of fewer than 3 indices are damage, not polygons (they were dropped silently)
    for (k, short) in [&[3.0, 1.0][..], &[][..]].into_iter().enumerate() {
        let faces = face_element("vertex_indices", Ty::UChar, Ty::Int, &[&[0.0, 1.0, 2.0], short]);
        let msg = expect_error(&write_file(
            &dir,
            &format!("short-face-{k}.ply"),
            &ply_bytes(Enc::Le, &[vertex_element(Ty::Float), faces]),
        ));
        assert!(msg.contains("face 1") && msg.contains("at least 3"), "{msg}");
    }
    let negative = face_element("vertex_indices", Ty::UChar, Ty::Int, &[&[0.0, -1.0, 2.0]]);
    expect_error(&write_file(
        &dir,
        "negative.ply",
        &ply_bytes(Enc::Ascii, &[vertex_element(Ty::Float), negative]),
    ));

    let mut nan = vertex_element(Ty::Float);
    nan.rows[2][2] = vec![f64::NAN];
    let msg = expect_error(&write_file(&dir, "nan.ply", &ply_bytes(Enc::Le, &[nan, square_faces(Ty::Int)])));
    assert!(msg.contains("vertex 2"), "{msg}");
    let mut inf = vertex_element(Ty::Double);
    inf.rows[0][0] = vec![f64::INFINITY];
    expect_error(&write_file(&dir, "inf.ply", &ply_bytes(Enc::Be, &[inf, square_faces(Ty::Int)])));

    let msg =
        expect_error(&write_file(&dir, "points.ply", &ply_bytes(Enc::Le, &[vertex_element(Ty::Float)])));
    assert!(msg.contains("no faces"), "{msg}");
    let no_vertices = Element { rows: vec![], ..vertex_element(Ty::Float) };
    expect_error(&write_file(&dir, "no-vertices.ply", &ply_bytes(Enc::Le, &[no_vertices])));

    // A face list that claims 255 entries and holds one; an ASCII one that claims 2^31 - 1.
    let mut huge_list = valid_binary_ply();
    let end = huge_list.windows(11).position(|w| w == b"end_header\n").expect("end") + 11;
    huge_list.truncate(end + 5 * 31);
    huge_list.push(255);
    huge_list.extend_from_slice(&[1, 0, 0, 0]);
    expect_error(&write_file(&dir, "huge-list.ply", &huge_list));
    let wide_count = String::from_utf8_lossy(&ply_bytes(Enc::Ascii, &[vertex_element(Ty::Float)]))
        .replace("end_header", "element face 1\nproperty list int int vertex_indices\nend_header")
        + "2147483647 0 1 2\n";
    expect_error(&write_file(&dir, "huge-ascii-list.ply", wide_count.as_bytes()));

    let float_indices = face_element("vertex_indices", Ty::UChar, Ty::Float, &[&[0.0, 1.0, 2.0]]);
    expect_error(&write_file(
        &dir,
        "float-index.ply",
        &ply_bytes(Enc::Le, &[vertex_element(Ty::Float), float_indices]),
    ));
    let no_list = Element {
        name: "face",
        props: vec![Prop::Scalar("flags", Ty::UChar)],
        rows: vec![vec![vec![1.0]]],
        declared: None,
    };
    expect_error(&write_file(
        &dir,
        "no-list.ply",
        &ply_bytes(Enc::Le, &[vertex_element(Ty::Float), no_list]),
    ));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn malformed_obj_stl_and_paths() {
    let dir = scratch("bad-other");
    let msg = expect_error(&write_file(&dir, "bad-index.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 three\n"));
    assert!(msg.contains("line 4"), "{msg}");
    let msg = expect_error(&write_file(&dir, "range.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n"));
    assert!(msg.contains("line 4"), "{msg}");
    expect_error(&write_file(&dir, "empty.obj", b""));
    expect_error(&write_file(&dir, "prose.obj", b"Dear reader,\nthis is not a mesh.\n"));
    let msg = expect_error(&write_file(&dir, "points.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n"));
    assert!(msg.contains("no faces"), "{msg}");
    expect_error(&write_file(&dir, "nan.obj", b"v 0 0 0\nv NaN 0 0\nv 0 1 0\nf 1 2 3\n"));
    expect_error(&write_file(&dir, "binary.obj", &[0x7f, b'E', b'L', b'F', 0, 1, 2]));

    let mut stl = Vec::new();
    stl.resize(80, b' ');
    stl.extend_from_slice(&2u32.to_le_bytes());
    stl.resize(84 + 50 + 20, 0);
    let msg = expect_error(&write_file(&dir, "truncated.stl", &stl));
    assert!(msg.contains("truncated"), "{msg}");
    expect_error(&write_file(&dir, "empty.stl", b""));
    expect_error(&write_file(&dir, "short.stl", b"solid x\n"));
    expect_error(&write_file(
        &dir,
        "words.stl",
        "not an STL file at all, just some words\n".repeat(4).as_bytes(),
    ));
    let cut_ascii = b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\n";
    expect_error(&write_file(&dir, "cut-ascii.stl", cut_ascii));
    let zero = [0u8; 84]; // a valid binary STL with no triangles
    expect_error(&write_file(&dir, "zero.stl", &zero));

    expect_error(&write_file(&dir, "mesh.off", b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"));
    expect_error(&write_file(&dir, "noext", b"ply\n"));
    let missing = dir.join("missing.ply");
    assert_eq!(
        expect_error(&missing),
        format!("{}: No such file or directory (os error 2)", missing.display())
    );
    let glb = dir.join("oct.glb");
    write_mesh(&glb, &octahedron(), MeshFormat::Glb).expect("write");
    expect_error(&glb);
    let _ = fs::remove_dir_all(&dir);
}

/// Tiny deterministic generator (no rand dependency in tests).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn truncated_and_corrupted_files_never_panic() {
    let dir = scratch("fuzz");
    let mut oct = octahedron();
    oct.compute_vertex_normals();
    let mut inputs: Vec<(&str, Vec<u8>)> = vec![
        ("ply", valid_binary_ply()),
        ("ply", ply_bytes(Enc::Ascii, &[vertex_element(Ty::Double), square_faces(Ty::UChar)])),
        ("ply", ply_bytes(Enc::Be, &[vertex_element(Ty::Float), square_faces(Ty::UInt)])),
    ];
    for format in [MeshFormat::Obj, MeshFormat::Stl] {
        let path = dir.join(format!("src.{}", format.extension()));
        write_mesh(&path, &oct, format).expect("write");
        inputs.push((format.extension(), fs::read(&path).expect("read")));
    }
    let mut rng = Lcg(17);
    let (mut outcomes, mut corrupt) = (HashMap::new(), HashMap::new());
    for (k, (ext, good)) in inputs.iter().enumerate() {
        let path = dir.join(format!("case{k}.{ext}"));
        for cut in (0..good.len()).step_by(3) {
            fs::write(&path, &good[..cut]).expect("write");
            *outcomes.entry(read_mesh(&path).is_ok()).or_insert(0) += 1;
        }
        for _ in 0..150 {
            let mut bytes = good.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % bytes.len();
                bytes[at] = rng.next() as u8;
            }
            fs::write(&path, &bytes).expect("write");
            let r = read_mesh(&path);
            if let Err(e) = &r {
                assert!(e.to_string().contains(&format!("case{k}.{ext}")), "{e}");
            }
            *corrupt.entry(r.is_ok()).or_insert(0) += 1;
        }
    }
    // the same inputs every run (a fixed generator): how many of each are refused and read
    println!("truncations {outcomes:?}, corruptions {corrupt:?}");
    assert_eq!(outcomes, [(false, 815), (true, 13)].into_iter().collect(), "truncations");
    assert_eq!(corrupt, [(false, 505), (true, 245)].into_iter().collect(), "corruptions");
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// The bundled dataset.

#[test]
fn bundled_bunny_is_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/bunny.ply");
    let mesh = read_mesh(&path).expect("bundled bunny loads");
    assert_eq!(mesh.positions.len(), 1839, "vertices (datasets/README.md)");
    assert_eq!(mesh.triangles.len(), 3674, "triangles (datasets/README.md)");
    assert!(mesh.positions.iter().all(|p| p.is_finite()));
    let (lo, hi) = mesh.bounds().expect("bounds");
    assert!((lo.y - -0.003149).abs() < 1e-5 && (hi.y - 9.654748).abs() < 1e-5, "{lo} {hi}");
    // Closed and consistently oriented, as the README says: every edge in exactly two faces,
    // once in each direction, and a positive enclosed volume.
    let mut directed = HashMap::new();
    for t in &mesh.triangles {
        for k in 0..3 {
            *directed.entry((t[k], t[(k + 1) % 3])).or_insert(0) += 1;
        }
    }
    assert!(directed.values().all(|&c| c == 1), "no directed edge repeats");
    assert!(directed.keys().all(|&(a, b)| directed.contains_key(&(b, a))), "no boundary edges");
    assert!((mesh.signed_volume() - 194.2884).abs() < 1e-2, "volume {}", mesh.signed_volume());
}

// ---------------------------------------------------------------------------------------------
// Meshes as people have them: triangle strips, wrong STL normals.

fn strips_element(name: &'static str, count: Ty, index: Ty, strips: &[&[f64]]) -> Element {
    Element {
        name: "tristrips",
        props: vec![Prop::List(name, count, index)],
        rows: strips.iter().map(|s| vec![s.to_vec()]).collect(),
        declared: None,
    }
}

fn grid_vertices(n: usize) -> Element {
    Element {
        name: "vertex",
        props: vec![Prop::Scalar("x", Ty::Float), Prop::Scalar("y", Ty::Float), Prop::Scalar("z", Ty::Float)],
        rows: (0..n).map(|i| vec![vec![(i / 2) as f64], vec![(i % 2) as f64], vec![0.0]]).collect(),
        declared: None,
    }
}

#[test]
fn ply_triangle_strips_restart_alternate_and_skip_joins() {
    let dir = scratch("ply-strips");
    // vertices 0..8 on a zig-zag: (i/2, i%2, 0); one strip of 4 vertices, a restart (−1), then a
    // strip with a repeated vertex (a join: its triangles are dropped, the parity kept)
    let strip: &[f64] = &[0.0, 1.0, 2.0, 3.0, -1.0, 4.0, 5.0, 6.0, 6.0, 7.0];
    // first run: (0,1,2), then reversed (2,1,3); second run: (4,5,6), (6,5,6) and (6,6,7) dropped
    let expected: Vec<[u32; 3]> = vec![[0, 1, 2], [2, 1, 3], [4, 5, 6]];
    for enc in [Enc::Ascii, Enc::Le, Enc::Be] {
        for (name, count, index) in [
            ("vertex_indices", Ty::UChar, Ty::Int),
            ("vertex_index", Ty::Int, Ty::Int),
            ("vertex_indices", Ty::UShort, Ty::Short),
        ] {
            let what = format!("{enc:?} {name} {count:?} {index:?}");
            let extra = Element {
                name: "camera",
                props: vec![Prop::Scalar("view_px", Ty::Float)],
                rows: vec![vec![vec![1.0]]],
                declared: None,
            };
            let bytes =
                ply_bytes(enc, &[grid_vertices(8), strips_element(name, count, index, &[strip]), extra]);
            let path = write_file(&dir, &format!("strip-{enc:?}-{name}-{count:?}.ply"), &bytes);
            let mesh = read_mesh(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(mesh.triangles, expected, "{what}");
            // every strip triangle faces the same way (+z here)
            for t in &mesh.triangles {
                let [a, b, c] = t.map(|i| mesh.positions[i as usize]);
                assert!((b - a).cross(c - a).z.abs() > 0.0, "{what}: {t:?} not degenerate");
            }
        }
    }
    // faces and strips together; a bad index in a strip names the strip
    let faces = face_element("vertex_indices", Ty::UChar, Ty::Int, &[&[0.0, 2.0, 4.0, 6.0]]);
    let bytes = ply_bytes(
        Enc::Le,
        &[grid_vertices(8), faces, strips_element("vertex_indices", Ty::UChar, Ty::Int, &[strip])],
    );
    let mesh = read_mesh(&write_file(&dir, "both.ply", &bytes)).expect("faces and strips");
    assert_eq!(mesh.triangles.len(), 2 + 3);
    for (bad, shown) in [(-2.0, "-2"), (8.0, "8")] {
        let s: &[f64] = &[0.0, 1.0, bad];
        let bytes = ply_bytes(
            Enc::Ascii,
            &[grid_vertices(8), strips_element("vertex_indices", Ty::UChar, Ty::Int, &[s])],
        );
        let msg = expect_error(&write_file(&dir, "bad-strip.ply", &bytes));
        assert!(
            msg.ends_with(&format!("strip 0 refers to vertex {shown} but the file has 8 vertices")),
            "{msg}"
        );
    }
    let bytes = ply_bytes(
        Enc::Ascii,
        &[grid_vertices(8), strips_element("vertex_indices", Ty::UChar, Ty::Float, &[&[0.0, 1.0, 2.0]])],
    );
    let msg = expect_error(&write_file(&dir, "float-strip.ply", &bytes));
    assert!(msg.ends_with("tristrips vertex indices are floating-point, not integers"), "{msg}");
    let _ = fs::remove_dir_all(&dir);
}

/// A closed cube stored as six 4-vertex strips, one per side: read, it is closed and outward
/// (signed volume +8 h³) without any re-orientation, so the strip parity is right.
#[test]
fn ply_strip_cube_is_closed_and_outward() {
    let dir = scratch("ply-strip-cube");
    let corners: Vec<[f64; 3]> = (0..8)
        .map(|i| {
            [(i & 1) as f64 * 2.0 - 1.0, ((i >> 1) & 1) as f64 * 2.0 - 1.0, ((i >> 2) & 1) as f64 * 2.0 - 1.0]
        })
        .collect();
    let vertices = Element {
        name: "vertex",
        props: vec![
            Prop::Scalar("x", Ty::Double),
            Prop::Scalar("y", Ty::Double),
            Prop::Scalar("z", Ty::Double),
        ],
        rows: corners.iter().map(|c| c.iter().map(|&v| vec![v]).collect()).collect(),
        declared: None,
    };
    // each side as a, b, d, c where a b c d go counter-clockwise seen from outside
    let sides: [[f64; 4]; 6] = [
        [0., 2., 1., 3.],
        [4., 5., 6., 7.],
        [0., 1., 4., 5.],
        [2., 6., 3., 7.],
        [0., 4., 2., 6.],
        [1., 3., 5., 7.],
    ];
    let rows: Vec<Vec<f64>> = sides.iter().map(|s| s.to_vec()).collect();
    let refs: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
    for enc in [Enc::Ascii, Enc::Le] {
        let bytes = ply_bytes(
            enc,
            &[vertices_clone(&vertices), strips_element("vertex_indices", Ty::UChar, Ty::UInt, &refs)],
        );
        let mesh = read_mesh(&write_file(&dir, &format!("cube-{enc:?}.ply"), &bytes)).expect("strip cube");
        assert_eq!(mesh.triangles.len(), 12);
        assert!((mesh.signed_volume() - 8.0).abs() < 1e-9, "{enc:?}: volume {}", mesh.signed_volume());
        let p = ffvol::geometry::prepared::PreparedMesh::from_mesh(mesh).expect("prepared");
        assert_eq!(p.orientation.flipped, 0);
        assert_eq!(p.orientation.open_components, 0);
    }
    let _ = fs::remove_dir_all(&dir);
}

fn vertices_clone(e: &Element) -> Element {
    Element { name: e.name, props: e.props.clone(), rows: e.rows.clone(), declared: e.declared }
}

/// STL normals are ignored: zero, inward, NaN or random stored normals give the same triangles
/// (the winding of the corners is what counts), binary and ASCII.
#[test]
fn stl_stored_normals_are_ignored() {
    let dir = scratch("stl-normals");
    let cube = ffvol::geometry::shapes::cube(Vec3::ZERO, 1.0);
    let facets: Vec<[Vec3; 3]> = triangle_corners(&cube);
    let normals = [Vec3::ZERO, -Vec3::Z, Vec3::splat(f32::NAN), Vec3::new(3.0, -7.0, 0.5)];
    let mut bin = vec![b' '; 80];
    bin.extend_from_slice(&(facets.len() as u32).to_le_bytes());
    let mut ascii = String::from("solid wrong\n");
    for (k, f) in facets.iter().enumerate() {
        let n = normals[k % normals.len()];
        for v in std::iter::once(n).chain(f.iter().copied()) {
            for x in v.to_array() {
                bin.extend_from_slice(&x.to_le_bytes());
            }
        }
        bin.extend_from_slice(&[0, 0]);
        ascii += &format!(" facet normal {} {} {}\n  outer loop\n", n.x, n.y, n.z);
        for v in f {
            ascii += &format!("   vertex {} {} {}\n", v.x, v.y, v.z);
        }
        ascii += "  endloop\n endfacet\n";
    }
    ascii += "endsolid wrong\n";
    for (name, bytes) in [("wrong-normals.stl", bin), ("wrong-normals-ascii.stl", ascii.into_bytes())] {
        let mesh = read_mesh(&write_file(&dir, name, &bytes)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(triangle_corners(&mesh), facets, "{name}");
        assert!((mesh.signed_volume() - 8.0).abs() < 1e-9, "{name}");
    }
    let _ = fs::remove_dir_all(&dir);
}

/// An OBJ cube as exporters write it: objects, groups, materials, smoothing, texture and normal
/// indices (`v/vt/vn`, `v//vn`, `v/vt`), relative (negative) indices and quads; read, it is the
/// closed outward cube (12 triangles, volume 8).
#[test]
fn obj_cube_with_groups_relative_indices_and_vt_vn() {
    let dir = scratch("obj-cube");
    let mut text = String::from("# exported\nmtllib cube.mtl\no Cube\n");
    for i in 0..8 {
        let c = |b: usize| if i >> b & 1 == 1 { 1 } else { -1 };
        text += &format!("v {} {} {}\n", c(0), c(1), c(2));
    }
    text += "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvn 0 0 -1\nvn 0 0 1\ng bottom top\nusemtl grey\ns 1\n";
    // counter-clockwise seen from outside (1-based): −z, +z, −y, +y, −x, +x
    let sides = [[1, 3, 4, 2], [5, 6, 8, 7], [1, 2, 6, 5], [3, 7, 8, 4], [1, 5, 7, 3], [2, 4, 8, 6]];
    for (k, s) in sides.iter().enumerate() {
        if k == 2 {
            text += "g sides\nusemtl red\ns off\n";
        }
        let corner = |j: usize, v: i64| match k % 3 {
            0 => format!("{v}/{}/{}", j + 1, 1 + k % 2),
            1 => format!("{}//{}", v - 9, 1 + k % 2), // relative: −1 is vertex 8
            _ => format!("{v}/{}", j + 1),
        };
        let corners: Vec<String> = s.iter().enumerate().map(|(j, &v)| corner(j, v)).collect();
        text += &format!("f {}\n", corners.join(" "));
    }
    let mesh = read_mesh(&write_file(&dir, "cube.obj", text.as_bytes())).expect("obj cube");
    assert_eq!((mesh.positions.len(), mesh.triangles.len()), (8, 12));
    assert!((mesh.signed_volume() - 8.0).abs() < 1e-9, "volume {}", mesh.signed_volume());
    let p = ffvol::geometry::prepared::PreparedMesh::from_mesh(mesh).expect("prepared");
    assert_eq!((p.orientation.flipped, p.orientation.open_components), (0, 0));
    let _ = fs::remove_dir_all(&dir);
}
