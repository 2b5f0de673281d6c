//! glTF 2.0 binary (`.glb`) writer: one mesh, one node, one scene, so Blender and browser viewers
//! open the result directly. Positions (with the min/max glTF requires), optional normals and
//! `u32` indices share one buffer; both chunks are padded to 4 bytes as the spec demands.

use std::io::Write;
use std::path::Path;

use glam::Vec3;
use serde_json::json;

use super::atomic::write_atomic;
use crate::geometry::mesh::TriMesh;
use crate::{Error, Result};

const GLB_MAGIC: u32 = 0x4654_6C67; // "glTF"
const CHUNK_JSON: u32 = 0x4E4F_534A; // "JSON"
const CHUNK_BIN: u32 = 0x004E_4942; // "BIN\0"
const FLOAT: u32 = 5126;
const UNSIGNED_INT: u32 = 5125;
const UNSIGNED_BYTE: u32 = 5121;
const ARRAY_BUFFER: u32 = 34962;
const ELEMENT_ARRAY_BUFFER: u32 = 34963;
const TRIANGLES: u32 = 4;

/// Writes `mesh` as a `.glb` file. The mesh must be non-empty (glTF has no empty accessors).
pub fn write(path: &Path, mesh: &TriMesh) -> Result<()> {
    write_with_colors(path, mesh, None)
}

/// As [`write`], with a colour per vertex (RGBA, 8 bits each) as `COLOR_0` when given.
pub fn write_with_colors(path: &Path, mesh: &TriMesh, colors: Option<&[[u8; 4]]>) -> Result<()> {
    let bytes = encode_with_colors(mesh, colors)
        .map_err(|msg| Error::Input(format!("cannot write {}: {msg}", path.display())))?;
    write_atomic(path, |w| w.write_all(&bytes))
}

/// The whole `.glb` file in memory.
pub fn encode(mesh: &TriMesh) -> std::result::Result<Vec<u8>, String> {
    encode_with_colors(mesh, None)
}

/// The whole `.glb` file in memory, with per-vertex colours (`COLOR_0`, normalised unsigned
/// bytes) when given.
pub fn encode_with_colors(
    mesh: &TriMesh,
    colors: Option<&[[u8; 4]]>,
) -> std::result::Result<Vec<u8>, String> {
    let (lo, hi) = mesh.bounds().ok_or("glTF cannot hold a mesh with no vertices")?;
    if mesh.triangles.is_empty() {
        return Err("glTF cannot hold a mesh with no triangles".into());
    }
    let n = mesh.positions.len();
    if let Some(c) = colors {
        if c.len() != n {
            return Err(format!("{} colours for {n} vertices", c.len()));
        }
    }
    if let Some(normals) = &mesh.normals {
        if normals.len() != n {
            return Err(format!("{} normals for {n} vertices", normals.len()));
        }
    }

    let mut bin = Vec::with_capacity(n * 24 + mesh.triangles.len() * 12);
    for p in &mesh.positions {
        push_vec3(&mut bin, *p);
    }
    let positions_len = bin.len();
    let normals_len = if let Some(normals) = &mesh.normals {
        // glTF requires unit normals; a vertex that touches no area gets +z rather than zero.
        for nrm in normals {
            push_vec3(&mut bin, nrm.try_normalize().unwrap_or(Vec3::Z));
        }
        bin.len() - positions_len
    } else {
        0
    };
    let colors_offset = bin.len();
    if let Some(c) = colors {
        c.iter().for_each(|rgba| bin.extend_from_slice(rgba));
    }
    let colors_len = bin.len() - colors_offset;
    let indices_offset = bin.len();
    for t in &mesh.triangles {
        for i in t {
            bin.extend_from_slice(&i.to_le_bytes());
        }
    }
    let indices_len = bin.len() - indices_offset;
    let buffer_len = bin.len();

    let mut buffer_views =
        vec![json!({"buffer": 0, "byteOffset": 0, "byteLength": positions_len, "target": ARRAY_BUFFER})];
    let mut accessors = vec![json!({
        "bufferView": 0, "componentType": FLOAT, "count": n, "type": "VEC3",
        "min": lo.to_array(), "max": hi.to_array(),
    })];
    let mut attributes = json!({"POSITION": 0});
    if mesh.normals.is_some() {
        buffer_views.push(json!({"buffer": 0, "byteOffset": positions_len, "byteLength": normals_len, "target": ARRAY_BUFFER}));
        accessors.push(json!({"bufferView": 1, "componentType": FLOAT, "count": n, "type": "VEC3"}));
        attributes["NORMAL"] = json!(1);
    }
    if colors.is_some() {
        buffer_views.push(json!({"buffer": 0, "byteOffset": colors_offset, "byteLength": colors_len, "target": ARRAY_BUFFER}));
        accessors.push(json!({
            "bufferView": buffer_views.len() - 1, "componentType": UNSIGNED_BYTE, "normalized": true,
            "count": n, "type": "VEC4",
        }));
        attributes["COLOR_0"] = json!(accessors.len() - 1);
    }
    buffer_views.push(json!({"buffer": 0, "byteOffset": indices_offset, "byteLength": indices_len, "target": ELEMENT_ARRAY_BUFFER}));
    accessors.push(json!({
        "bufferView": buffer_views.len() - 1, "componentType": UNSIGNED_INT,
        "count": mesh.triangles.len() * 3, "type": "SCALAR",
    }));
    let doc = json!({
        "asset": {"version": "2.0", "generator": concat!("ffvol ", env!("CARGO_PKG_VERSION"))},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": attributes, "indices": accessors.len() - 1, "mode": TRIANGLES}]}],
        "buffers": [{"byteLength": buffer_len}],
        "bufferViews": buffer_views,
        "accessors": accessors,
    });
    let mut json_bytes = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    pad(&mut json_bytes, b' ');
    pad(&mut bin, 0);

    let total = 12 + 8 + json_bytes.len() + 8 + bin.len();
    let total = u32::try_from(total).map_err(|_| format!("{total} bytes is over the 4 GiB limit of .glb"))?;
    let mut out = Vec::with_capacity(total as usize);
    for word in [GLB_MAGIC, 2, total, json_bytes.len() as u32, CHUNK_JSON] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&json_bytes);
    for word in [bin.len() as u32, CHUNK_BIN] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&bin);
    Ok(out)
}

fn push_vec3(out: &mut Vec<u8>, v: Vec3) {
    for c in v.to_array() {
        out.extend_from_slice(&c.to_le_bytes());
    }
}

fn pad(bytes: &mut Vec<u8>, fill: u8) {
    while !bytes.len().is_multiple_of(4) {
        bytes.push(fill);
    }
}
