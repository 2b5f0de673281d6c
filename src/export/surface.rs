//! Surfaces out: the occupancy iso-surface of a field in its mesh's own coordinates, the
//! iso-surface of a voxel grid in world millimetres, and the mesh files.

use crate::backend::Backend;
use crate::export::grid::sample_grid;
use crate::geometry::marching_cubes::{marching_cubes_padded, Grid3};
use crate::geometry::{TriMesh, UnitFromMesh};
use crate::io::{MeshFormat, WorldFromVoxel};
use crate::sample::Aabb;
use crate::Result;
use glam::Vec3;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The `level` iso-surface of a grid of `values` (x fastest) in world millimetres, with the
/// inside where values are greater than `level`.
pub fn iso_surface(
    values: &[f32],
    dims: [usize; 3],
    world_from_voxel: WorldFromVoxel,
    level: f32,
) -> TriMesh {
    let grid = Grid3 { dims, values };
    let in_voxels = marching_cubes_padded(&grid, level, Vec3::ZERO, Vec3::ONE, true);
    let m = world_from_voxel;
    let positions = in_voxels
        .positions
        .iter()
        .map(|p| {
            let v = [p.x as f64, p.y as f64, p.z as f64];
            let w = |r: usize| (m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2] + m[r][3]) as f32;
            Vec3::new(w(0), w(1), w(2))
        })
        .collect();
    let mut mesh = TriMesh::new(positions, in_voxels.triangles);
    // A mirroring affine (negative determinant) turns the faces inside out: wind them back.
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det < 0.0 {
        mesh.triangles.iter_mut().for_each(|t| t.swap(1, 2));
    }
    mesh.compute_vertex_normals();
    mesh
}

/// Writes the `level` iso-surface exported on the grid `k` times finer as `iso_{level}_x{k}.{ext}`
/// in each format (volume, MRI and CT runs). Returns the paths written.
pub fn write_iso_meshes(
    dir: &Path,
    mesh: &TriMesh,
    level: f32,
    k: usize,
    formats: &[MeshFormat],
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for &format in formats {
        let path = dir.join(format!("iso_{level}_x{k}.{}", format.extension()));
        crate::io::write_mesh(&path, mesh, format)?;
        written.push(path);
    }
    Ok(written)
}

/// What to write in an export, and how to sample the grid.
pub struct ExportSpec<'a> {
    /// Grid nodes per axis.
    pub resolution: usize,
    pub formats: &'a [MeshFormat],
    /// File name of the occupancy volume, if one is wanted.
    pub nifti: Option<&'a str>,
    /// Mesh files are `{stem}.{ext}`.
    pub stem: &'a str,
    pub coarse_to_fine: bool,
    /// See [`crate::config::ExportConfig::min_component`].
    pub min_component: f64,
}

/// Extracts the 0.5-probability surface (logit 0) in the mesh's own coordinates and writes
/// `{stem}.{ext}` for each format, plus the occupancy probabilities as NIfTI when named. Returns the mesh.
pub fn export(
    backend: &mut dyn Backend,
    meta_or_run: &impl ExportFrame,
    dir: &Path,
    spec: &ExportSpec,
) -> Result<TriMesh> {
    let (bbox, unit_from_mesh) = meta_or_run.frame();
    let resolution = spec.resolution;
    if resolution < 2 {
        return Err(crate::Error::Config(format!(
            "the export grid needs at least 2 nodes per axis (--resolution {resolution})"
        )));
    }
    check_memory(resolution)?;
    let values = sample_grid(backend, &bbox, resolution, spec.coarse_to_fine)?;
    let spacing = bbox.size() / (resolution - 1) as f32;
    let grid = Grid3 { dims: [resolution; 3], values: &values };
    let mesh_in_unit = marching_cubes_padded(&grid, 0.0, Vec3::from(bbox.min), spacing, true);
    let (mesh_in_unit, _removed) =
        crate::geometry::components::remove_small_components(&mesh_in_unit, spec.min_component);
    let mut mesh = TriMesh::new(
        mesh_in_unit.positions.iter().map(|p| unit_from_mesh.invert(*p)).collect(),
        mesh_in_unit.triangles,
    );
    mesh.compute_vertex_normals();
    for &format in spec.formats {
        crate::io::write_mesh(&dir.join(format!("{}.{}", spec.stem, format.extension())), &mesh, format)?;
    }
    if let Some(nifti_name) = spec.nifti {
        // occupancy probability × 255 as uint8: a quarter of the f32 size, and 1/255 is finer than
        // any use of an occupancy volume needs
        let probs: Vec<u8> =
            values.par_iter().map(|&z| (crate::train::loss::sigmoid(z) * 255.0).round() as u8).collect();
        // world (mesh units) from voxel: p_mesh = (box_min + i·spacing − 0.5) / scale + centroid
        let s = unit_from_mesh.scale;
        let c = unit_from_mesh.centroid;
        let mut affine = [[0.0f64; 4]; 4];
        for a in 0..3 {
            affine[a][a] = spacing[a] as f64 / s;
            affine[a][3] = (bbox.min[a] as f64 - 0.5) / s + c[a];
        }
        affine[3][3] = 1.0;
        crate::io::write_nifti_u8(&dir.join(nifti_name), &probs, [resolution; 3], affine)?;
    }
    Ok(mesh)
}

/// Refuses an export grid that cannot fit in memory, before allocating it: the logits (4 bytes a
/// node), the refinement mask and the uint8 volume (1 byte each), the fine nodes' indices near
/// the surface and the mesh (guesses, by the grid's area).
fn check_memory(resolution: usize) -> Result<()> {
    let nodes = (resolution as u64).saturating_pow(3);
    let area = (resolution as u64).saturating_pow(2);
    crate::train::memory::check_export(
        &format!("export at {resolution}³ (use a lower --resolution)"),
        &[
            ("logits", nodes.saturating_mul(4)),
            ("refinement mask", nodes),
            ("occupancy volume", nodes),
            ("fine nodes near the surface", area.saturating_mul(8 * 64)),
            ("mesh", area.saturating_mul(200)),
        ],
    )
}

/// The box and the unit-box transform a field is exported in.
pub trait ExportFrame {
    fn frame(&self) -> (Aabb, UnitFromMesh);
}
