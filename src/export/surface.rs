//! Surfaces out: the occupancy iso-surface of a field in its mesh's own coordinates, the
//! iso-surface of a voxel grid in world millimetres, and the mesh files.

use crate::backend::Backend;
use crate::export::grid::sample_grid;
use crate::export::normals::{outward_normals, FieldGradient, Normals};
use crate::export::simplify::{simplify, SimplifyReport, SimplifyTarget};
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
    /// Mesh files are `{stem}.{ext}` (`{stem}{target suffix}.{ext}` when simplified).
    pub stem: &'a str,
    pub coarse_to_fine: bool,
    /// See [`crate::config::ExportConfig::min_component`].
    pub min_component: f64,
    /// Where the vertex normals come from.
    pub normals: Normals,
    /// Simplify the surface before writing it (and write `{stem}{suffix}.json` with the
    /// Hausdorff distance to the full-resolution surface).
    pub simplify: Option<SimplifyTarget>,
}

/// What an export wrote.
pub struct Exported {
    /// The mesh written (simplified when asked), in the mesh's own coordinates.
    pub mesh: TriMesh,
    /// The mesh files written.
    pub files: Vec<PathBuf>,
    pub simplified: Option<SimplifyReport>,
    /// Field normals: how many vertices fell back to their facet normal (zero gradient), and the
    /// fraction whose field normal points to the same side as the facets' normal.
    pub field_normals: Option<FieldNormalsReport>,
}

/// How the field normals of an export compare with the facets'.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct FieldNormalsReport {
    pub fell_back: usize,
    pub agree_with_facets: f64,
}

/// Replaces `mesh`'s normals by the field's outward normals −∇f, `unit_from_frame` mapping the
/// mesh's vertices into the field's unit box and `to_frame` mapping a unit-box gradient into the
/// mesh's frame (the inverse-transpose of the Jacobian). The facets' normals fill in where the
/// gradient vanishes.
pub fn set_field_normals(
    mesh: &mut TriMesh,
    field: &FieldGradient,
    unit_from_frame: impl Fn(Vec3) -> Vec3 + Sync,
    to_frame: impl Fn(Vec3) -> Vec3 + Sync,
) -> FieldNormalsReport {
    mesh.compute_vertex_normals();
    let facets = mesh.normals.take().unwrap_or_default();
    let points: Vec<[f32; 3]> = mesh.positions.par_iter().map(|p| unit_from_frame(*p).to_array()).collect();
    let (_, grads) = field.eval(&points);
    let grads: Vec<Vec3> = grads.par_iter().map(|g| to_frame(*g)).collect();
    let (normals, fell_back) = outward_normals(&grads, &facets);
    let agree = normals.iter().zip(&facets).filter(|(n, f)| n.dot(**f) > 0.0).count();
    mesh.normals = Some(normals);
    FieldNormalsReport { fell_back, agree_with_facets: agree as f64 / mesh.positions.len().max(1) as f64 }
}

/// Simplifies `mesh` when asked, writing the report as `{stem}.json` in `dir`. Returns the mesh
/// to write, its stem and the report.
pub fn simplify_for_export(
    dir: &Path,
    mesh: TriMesh,
    stem: &str,
    target: Option<&SimplifyTarget>,
) -> Result<(TriMesh, String, Option<SimplifyReport>)> {
    let Some(target) = target else {
        return Ok((mesh, stem.to_string(), None));
    };
    let (small, report) = simplify(&mesh, target)?;
    let stem = format!("{stem}{}", target.suffix());
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| crate::Error::Config(format!("simplification report: {e}")))?;
    crate::io::write_bytes_atomic(&dir.join(format!("{stem}.json")), json.as_bytes())?;
    Ok((small, stem, Some(report)))
}

/// Extracts the 0.5-probability surface (logit 0) in the mesh's own coordinates and writes
/// `{stem}.{ext}` for each format, plus the occupancy probabilities as NIfTI when named. Returns
/// the mesh and what was written.
pub fn export(
    backend: &mut dyn Backend,
    meta_or_run: &impl ExportFrame,
    dir: &Path,
    spec: &ExportSpec,
) -> Result<Exported> {
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
    let mesh = TriMesh::new(
        mesh_in_unit.positions.iter().map(|p| unit_from_mesh.invert(*p)).collect(),
        mesh_in_unit.triangles,
    );
    let (mut mesh, stem, simplified) = simplify_for_export(dir, mesh, spec.stem, spec.simplify.as_ref())?;
    let field_normals = match spec.normals {
        Normals::Facets => {
            mesh.compute_vertex_normals();
            None
        }
        Normals::Field => {
            let field = FieldGradient::from_backend(backend)?;
            // a similarity transform: the gradient's direction is the same in both frames
            Some(set_field_normals(&mut mesh, &field, |p| unit_from_mesh.apply(p), |g| g))
        }
    };
    let mut files = Vec::new();
    for &format in spec.formats {
        let path = dir.join(format!("{stem}.{}", format.extension()));
        crate::io::write_mesh(&path, &mesh, format)?;
        files.push(path);
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
    Ok(Exported { mesh, files, simplified, field_normals })
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

/// How an iso-surface of a volume, MRI or CT run is made for viewing (`ffvol export --mesh`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MeshView {
    pub normals: Normals,
    pub simplify: Option<SimplifyTarget>,
    /// GLB: colour each vertex by the fitted intensity one voxel inside the surface (grey).
    pub colors: bool,
}

/// The unit box of a `dims` voxel grid (voxel centres at (i + ½)/n) seen from world millimetres
/// through `world_from_voxel`: the map from world points to unit points, and the map of a unit-box
/// gradient to a world gradient (M⁻ᵀ·diag(1/n)). `None` when the affine is singular.
pub fn world_unit_maps(
    world_from_voxel: WorldFromVoxel,
    dims: [usize; 3],
) -> Option<(impl Fn(Vec3) -> Vec3 + Sync + Copy, impl Fn(Vec3) -> Vec3 + Sync + Copy)> {
    let m = glam::DMat3::from_cols_array_2d(&[
        [world_from_voxel[0][0], world_from_voxel[1][0], world_from_voxel[2][0]],
        [world_from_voxel[0][1], world_from_voxel[1][1], world_from_voxel[2][1]],
        [world_from_voxel[0][2], world_from_voxel[1][2], world_from_voxel[2][2]],
    ]);
    let det = m.determinant();
    if !(det.is_finite() && det.abs() > 1e-300) {
        return None;
    }
    let inv = m.inverse();
    let inv_t = inv.transpose();
    let t = glam::DVec3::new(world_from_voxel[0][3], world_from_voxel[1][3], world_from_voxel[2][3]);
    let n = glam::DVec3::new(dims[0] as f64, dims[1] as f64, dims[2] as f64);
    let unit_from_world = move |p: Vec3| ((inv * (p.as_dvec3() - t) + 0.5) / n).as_vec3();
    let grad_to_world = move |g: Vec3| (inv_t * (g.as_dvec3() / n)).as_vec3();
    Some((unit_from_world, grad_to_world))
}

/// Writes the `level` iso-surface of a volume-like field made for viewing: simplified when asked
/// (`iso_{level}_x{k}{suffix}.json` beside it), normals from the field or the facets, and, for GLB
/// with `view.colors`, grey vertex colours of σ(field) one voxel inside. `field` is the network
/// (values σ(f)), `dims` and `world_from_voxel` the grid its unit box was fitted on. Returns the
/// paths written.
#[allow(clippy::too_many_arguments)]
pub fn write_iso_view(
    dir: &Path,
    mesh: TriMesh,
    level: f32,
    k: usize,
    formats: &[MeshFormat],
    view: &MeshView,
    field: &FieldGradient,
    dims: [usize; 3],
    world_from_voxel: WorldFromVoxel,
) -> Result<Vec<PathBuf>> {
    let stem = format!("iso_{level}_x{k}");
    let (mut mesh, stem, _report) = simplify_for_export(dir, mesh, &stem, view.simplify.as_ref())?;
    let mut written: Vec<PathBuf> =
        view.simplify.map(|_| dir.join(format!("{stem}.json"))).into_iter().collect();
    let (unit_from_world, grad_to_world) = world_unit_maps(world_from_voxel, dims).ok_or_else(|| {
        crate::Error::Input("the run's world-from-voxel affine is singular: no normals or colours".into())
    })?;
    match view.normals {
        Normals::Facets => mesh.compute_vertex_normals(),
        Normals::Field => {
            set_field_normals(&mut mesh, field, unit_from_world, grad_to_world);
        }
    }
    let colors = if view.colors && formats.contains(&MeshFormat::Glb) {
        // one voxel (the smallest spacing) inside, along the normal
        let step = (0..3)
            .map(|c| {
                let col = [world_from_voxel[0][c], world_from_voxel[1][c], world_from_voxel[2][c]];
                (col[0] * col[0] + col[1] * col[1] + col[2] * col[2]).sqrt()
            })
            .fold(f64::INFINITY, f64::min) as f32;
        let normals = mesh.normals.clone().unwrap_or_default();
        let inside: Vec<[f32; 3]> = mesh
            .positions
            .iter()
            .zip(&normals)
            .map(|(p, n)| unit_from_world(*p - *n * step).to_array())
            .collect();
        let (z, _) = field.eval(&inside);
        Some(
            z.iter()
                .map(|&z| {
                    let g = (crate::train::loss::sigmoid(z).clamp(0.0, 1.0) * 255.0).round() as u8;
                    [g, g, g, 255]
                })
                .collect::<Vec<_>>(),
        )
    } else {
        None
    };
    for &format in formats {
        let path = dir.join(format!("{stem}.{}", format.extension()));
        match (&colors, format) {
            (Some(c), MeshFormat::Glb) => crate::io::glb::write_with_colors(&path, &mesh, Some(c))?,
            _ => crate::io::write_mesh(&path, &mesh, format)?,
        }
        written.push(path);
    }
    Ok(written)
}
