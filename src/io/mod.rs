//! Reading meshes and volumes, writing meshes, volumes and images (one file per format).
//!
//! Meshes: [`read_mesh`] loads PLY, OBJ and STL (chosen by extension) and checks the result, so a
//! caller gets either a usable [`TriMesh`] or an error that names the file and what is wrong.
//! [`write_mesh`] writes PLY, OBJ, STL or GLB. Volumes: [`nifti`] writes and reads NIfTI-1.
//! Every writer goes through [`atomic::write_atomic`], so an interrupted export never leaves a
//! half-written file under the final name.

pub mod atomic;
pub mod ct;
pub mod dicom;
pub mod dicom_check;
pub mod firewall;
pub mod fuzz;
pub mod glb;
pub mod mat;
pub mod mri;
pub mod nifti;
pub mod npy;
pub mod obj;
pub mod ply;
pub mod png;
pub mod raw_projections;
pub mod stl;
pub mod volume;

use std::path::Path;

pub use self::png::{read_png, write_png_gray8, write_png_image, write_png_rgb8, Image};
pub use atomic::{atomic_temp_pid, write_atomic, write_bytes_atomic, Staged};
pub use nifti::{read_nifti_f32, write_nifti_f32, write_nifti_u8, WorldFromVoxel};
pub use npy::{read_npy, write_npy, NpyArray, NpyData};

use crate::geometry::mesh::TriMesh;
use crate::{Error, Result};

/// A mesh file format, as chosen on the command line (`--format ply`) or in a run config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeshFormat {
    /// Stanford PLY (binary little-endian when written).
    Ply,
    /// Wavefront OBJ (text).
    Obj,
    /// STL (binary when written; ASCII and binary when read).
    Stl,
    /// glTF 2.0 binary (write only), opens in Blender and in browsers.
    Glb,
}

impl MeshFormat {
    /// The format named by the file's extension (case-insensitive); `None` for anything else.
    pub fn from_path(path: &Path) -> Option<MeshFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "ply" => Some(MeshFormat::Ply),
            "obj" => Some(MeshFormat::Obj),
            "stl" => Some(MeshFormat::Stl),
            "glb" => Some(MeshFormat::Glb),
            _ => None,
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            MeshFormat::Ply => "ply",
            MeshFormat::Obj => "obj",
            MeshFormat::Stl => "stl",
            MeshFormat::Glb => "glb",
        }
    }
}

/// Loads a triangle mesh from a `.ply`, `.obj` or `.stl` file (extension case-insensitive).
///
/// Polygons are fan-triangulated and degenerate triangles dropped. The result is checked with
/// [`TriMesh::validate`]: a file with no vertices, no faces, a non-finite coordinate or an index
/// out of range is an [`Error::Format`] naming the file.
pub fn read_mesh(path: &Path) -> Result<TriMesh> {
    let format = MeshFormat::from_path(path)
        .ok_or_else(|| Error::format(path, "unknown mesh extension (expected .ply, .obj or .stl)"))?;
    let bytes = read_file(path)?;
    let parsed = match format {
        MeshFormat::Ply => ply::parse(&bytes),
        MeshFormat::Obj => obj::parse(&bytes),
        MeshFormat::Stl => stl::parse(&bytes),
        MeshFormat::Glb => {
            return Err(Error::format(path, "reading .glb is not supported (use .ply, .obj or .stl)"))
        }
    };
    let mesh = parsed.map_err(|msg| Error::format(path, msg))?;
    mesh.validate().map_err(|msg| Error::format(path, msg))?;
    Ok(mesh)
}

/// The mesh `fit occupancy` and `bench` use when no `--mesh` is given (relative to the working
/// directory: the bundled copy is used when it is not there).
pub const DEFAULT_MESH: &str = "datasets/bunny.ply";

/// `datasets/bunny.ply`, built into the binary so the default run works from any directory and
/// after `cargo install` (70 kB).
pub const BUNDLED_BUNNY: &[u8] = include_bytes!("../../datasets/bunny.ply");

/// Whether [`read_mesh_or_bundled`] reads the built-in bunny for `path`.
pub fn uses_bundled(path: &Path) -> bool {
    path == Path::new(DEFAULT_MESH) && !path.exists()
}

/// [`read_mesh`], except that the default path [`DEFAULT_MESH`], when no such file exists here,
/// reads the bunny built into the binary ([`BUNDLED_BUNNY`]).
pub fn read_mesh_or_bundled(path: &Path) -> Result<TriMesh> {
    if uses_bundled(path) {
        let mesh =
            ply::parse(BUNDLED_BUNNY).map_err(|msg| Error::format(path, format!("bundled copy: {msg}")))?;
        mesh.validate().map_err(|msg| Error::format(path, format!("bundled copy: {msg}")))?;
        return Ok(mesh);
    }
    read_mesh(path)
}

/// Checks that `path` is a regular file, without opening it: a FIFO, a device or a directory
/// given as an input is refused at once (opening a FIFO would block until a writer came).
pub fn check_regular_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        return Ok(());
    }
    let kind = if meta.is_dir() { "a directory" } else { "not a regular file (a FIFO, socket or device)" };
    Err(Error::format(path, format!("{kind}: expected a file")))
}

/// `std::fs::read` of a regular file ([`check_regular_file`]).
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut file = open_file(path)?;
    // reserved fallibly: a file larger than the memory this process may use is an error naming
    // it, not an abort
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut bytes = Vec::new();
    usize::try_from(len).ok().and_then(|n| bytes.try_reserve_exact(n).ok()).ok_or_else(|| {
        Error::Memory(format!(
            "{}: the file's {} MiB do not fit in the memory this process can allocate",
            path.display(),
            len >> 20
        ))
    })?;
    file.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// `std::fs::read_to_string` of a regular file ([`check_regular_file`]).
pub fn read_text(path: &Path) -> Result<String> {
    check_regular_file(path)?;
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// `File::open` of a regular file ([`check_regular_file`]).
pub fn open_file(path: &Path) -> Result<std::fs::File> {
    check_regular_file(path)?;
    std::fs::File::open(path).map_err(|e| Error::io(path, e))
}

/// Writes `mesh` to `path` in `format`, atomically.
///
/// The mesh must have finite coordinates, indices in range and (if present) one normal per
/// vertex; otherwise this is an [`Error::Input`] and nothing is written. An empty mesh can be
/// written as PLY, OBJ or STL but not as GLB (glTF forbids empty accessors).
pub fn write_mesh(path: &Path, mesh: &TriMesh, format: MeshFormat) -> Result<()> {
    check_writable(mesh).map_err(|msg| Error::Input(format!("cannot write {}: {msg}", path.display())))?;
    match format {
        MeshFormat::Ply => ply::write(path, mesh),
        MeshFormat::Obj => obj::write(path, mesh),
        MeshFormat::Stl => stl::write(path, mesh),
        MeshFormat::Glb => glb::write(path, mesh),
    }
}

/// What every writer needs: finite coordinates, indices in range, one normal per vertex.
fn check_writable(mesh: &TriMesh) -> std::result::Result<(), String> {
    let n = mesh.positions.len();
    if n > u32::MAX as usize {
        return Err(format!("{n} vertices is more than 32-bit indices can address"));
    }
    mesh.check_coordinates_and_indices()?;
    if let Some(normals) = &mesh.normals {
        if normals.len() != n {
            return Err(format!("{} normals for {n} vertices", normals.len()));
        }
    }
    Ok(())
}

/// The three coordinates after a `v` (OBJ) or `vertex` (ASCII STL) keyword on line `line_no`.
fn parse_xyz<'a>(
    mut tokens: impl Iterator<Item = &'a str>,
    line_no: usize,
) -> std::result::Result<glam::Vec3, String> {
    let mut xyz = [0f32; 3];
    for (axis, c) in xyz.iter_mut().enumerate() {
        let token = tokens
            .next()
            .ok_or_else(|| format!("line {line_no}: a vertex needs 3 coordinates, found {axis}"))?;
        *c = token.parse().map_err(|_| format!("line {line_no}: bad vertex coordinate '{token}'"))?;
    }
    Ok(glam::Vec3::from_array(xyz))
}

/// Appends the fan triangulation of `polygon` to `out`, dropping triangles that repeat a vertex.
fn push_fan(polygon: &[u32], out: &mut Vec<[u32; 3]>) {
    if polygon.len() < 3 {
        return;
    }
    let a = polygon[0];
    for w in polygon[1..].windows(2) {
        let (b, c) = (w[0], w[1]);
        if a != b && b != c && a != c {
            out.push([a, b, c]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_extension_is_case_insensitive() {
        assert_eq!(MeshFormat::from_path(Path::new("a/b.PLY")), Some(MeshFormat::Ply));
        assert_eq!(MeshFormat::from_path(Path::new("b.Obj")), Some(MeshFormat::Obj));
        assert_eq!(MeshFormat::from_path(Path::new("b.stl")), Some(MeshFormat::Stl));
        assert_eq!(MeshFormat::from_path(Path::new("b.glb")), Some(MeshFormat::Glb));
        assert_eq!(MeshFormat::from_path(Path::new("b.off")), None);
        assert_eq!(MeshFormat::from_path(Path::new("noext")), None);
    }

    #[test]
    fn fan_drops_degenerate_triangles() {
        let mut out = Vec::new();
        push_fan(&[0, 1, 2, 3], &mut out);
        assert_eq!(out, vec![[0, 1, 2], [0, 2, 3]]);
        out.clear();
        push_fan(&[0, 1, 1], &mut out);
        push_fan(&[4, 5], &mut out);
        assert!(out.is_empty());
        push_fan(&[0, 1, 0, 2], &mut out); // (0,1,0) dropped, (0,0,2) dropped
        assert!(out.is_empty());
    }

    #[test]
    fn format_parses_from_cli_and_toml_names() {
        use clap::ValueEnum;
        assert_eq!(MeshFormat::from_str("glb", true), Ok(MeshFormat::Glb));
        let f: MeshFormat = serde_json::from_str("\"stl\"").expect("serde name");
        assert_eq!(f, MeshFormat::Stl);
    }
}
