//! Simplification for viewing: quadric edge collapse through meshoptimizer (the `meshopt`
//! crate), which moves no vertex (the result's vertices are a subset of the input's, so normals
//! from the field evaluated afterwards are exact at every vertex) and collapses only edges that
//! keep the topology. The input is welded first (equal positions become one vertex); the result
//! is checked closed and manifold when the input was, and its Hausdorff distance to the input is
//! measured ([`super::hausdorff`]).

use super::hausdorff::{distances, Distances};
use crate::geometry::marching_cubes::edge_manifold_report;
use crate::geometry::TriMesh;
use crate::{Error, Result};
use glam::Vec3;
use serde::Serialize;
use std::collections::HashMap;

/// How far to simplify: at most `triangles` triangles, and/or collapse only while meshoptimizer's
/// error estimate stays under `max_error` (in the mesh's units).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SimplifyTarget {
    pub triangles: Option<usize>,
    pub max_error: Option<f32>,
}

impl SimplifyTarget {
    /// The target a command line gives (`--triangles`, `--max-error`); `None` when neither is set.
    pub fn from_flags(triangles: Option<usize>, max_error: Option<f32>) -> Result<Option<Self>> {
        if let Some(t) = triangles {
            if t < 4 {
                return Err(Error::Config(format!(
                    "--triangles {t}: a closed surface needs at least 4 triangles"
                )));
            }
        }
        if let Some(e) = max_error {
            if !(e.is_finite() && e > 0.0) {
                return Err(Error::Config(format!("--max-error must be a positive distance, got {e}")));
            }
        }
        Ok((triangles.is_some() || max_error.is_some()).then_some(SimplifyTarget { triangles, max_error }))
    }

    /// A suffix for file names: `_t20000`, `_e0.5`, `_t20000_e0.5`.
    pub fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = self.triangles {
            s += &format!("_t{t}");
        }
        if let Some(e) = self.max_error {
            s += &format!("_e{e}");
        }
        s
    }
}

/// What a simplification did, written as JSON beside the mesh.
#[derive(Clone, Debug, Serialize)]
pub struct SimplifyReport {
    pub target_triangles: Option<usize>,
    pub max_error: Option<f32>,
    pub vertices_before: usize,
    pub triangles_before: usize,
    pub vertices_after: usize,
    pub triangles_after: usize,
    /// meshoptimizer's own error estimate of the result, in the mesh's units.
    pub meshopt_error: f32,
    /// Whether the input and the result are closed, manifold and consistently oriented.
    pub closed_manifold_before: bool,
    pub closed_manifold_after: bool,
    /// Measured distances between the input (a) and the result (b).
    pub distance: Distances,
}

/// Points sampled on each surface for the Hausdorff distance.
pub const HAUSDORFF_SAMPLES: usize = 200_000;

/// `mesh` simplified to `target` (normals dropped: compute them for the result), and what was
/// done. An error when the mesh is empty, or when simplifying broke a closed manifold surface.
pub fn simplify(mesh: &TriMesh, target: &SimplifyTarget) -> Result<(TriMesh, SimplifyReport)> {
    let (welded, simplified, meshopt_error, closed_before, closed_after) = simplify_mesh(mesh, target)?;
    let distance = distances(&welded, &simplified, HAUSDORFF_SAMPLES, 0x5eed)
        .ok_or_else(|| Error::Input("the simplified surface has no area: ask for more triangles".into()))?;
    let report = SimplifyReport {
        target_triangles: target.triangles,
        max_error: target.max_error,
        vertices_before: welded.positions.len(),
        triangles_before: welded.triangles.len(),
        vertices_after: simplified.positions.len(),
        triangles_after: simplified.triangles.len(),
        meshopt_error,
        closed_manifold_before: closed_before,
        closed_manifold_after: closed_after,
        distance,
    };
    Ok((simplified, report))
}

/// The welded input, the simplified mesh, meshoptimizer's error estimate (mesh units), and
/// whether the input and the result are closed and manifold: [`simplify`] without the distances.
pub fn simplify_mesh(mesh: &TriMesh, target: &SimplifyTarget) -> Result<(TriMesh, TriMesh, f32, bool, bool)> {
    let welded = weld(mesh);
    if welded.triangles.is_empty() {
        return Err(Error::Input("there is no surface to simplify (the mesh has no triangles)".into()));
    }
    let closed_before = edge_manifold_report(&welded) == (0, 0, 0);
    let indices: Vec<u32> = welded.triangles.as_flattened().to_vec();
    let positions: Vec<[f32; 3]> = welded.positions.iter().map(|p| p.to_array()).collect();
    let adapter = meshopt::VertexDataAdapter::new(bytes_of(&positions), 12, 0)
        .map_err(|e| Error::Input(format!("simplify: {e}")))?;
    let target_index_count = target.triangles.map_or(0, |t| t.saturating_mul(3)).min(indices.len());
    let (error_limit, options) = match target.max_error {
        Some(e) => (e, meshopt::SimplifyOptions::ErrorAbsolute),
        // no error bound: collapse until the triangle count is reached
        None => (f32::MAX, meshopt::SimplifyOptions::None),
    };
    // meshoptimizer does not check the link condition, so a collapse can occasionally join two
    // sheets along an edge (an edge of three or more triangles). When it does, the vertices
    // around such edges are locked and the simplification is run again from the input.
    let mut locks = vec![false; welded.positions.len()];
    let mut rounds = 0;
    let (out, relative_or_abs_error) = loop {
        let mut error = 0.0f32;
        let out = meshopt::simplify_with_locks(
            &indices,
            &adapter,
            &locks,
            target_index_count,
            error_limit,
            options,
            Some(&mut error),
        );
        let bad = non_manifold_vertices(&out);
        rounds += 1;
        if !closed_before || bad.is_empty() || rounds == LOCK_ROUNDS {
            break (out, error);
        }
        // lock the two rings of triangles around the offending vertices
        let mut ring = vec![false; welded.positions.len()];
        bad.iter().for_each(|&v| ring[v as usize] = true);
        for _ in 0..2 {
            let mut grown = ring.clone();
            for t in &welded.triangles {
                if t.iter().any(|&v| ring[v as usize]) {
                    t.iter().for_each(|&v| grown[v as usize] = true);
                }
            }
            ring = grown;
        }
        locks.iter_mut().zip(&ring).for_each(|(l, r)| *l |= *r);
    };
    let meshopt_error = if target.max_error.is_some() {
        relative_or_abs_error
    } else {
        // relative to the mesh's extent: scale back to its units
        relative_or_abs_error * meshopt::simplify_scale(&adapter)
    };
    let simplified = compact(&welded.positions, &out);
    let closed_after = edge_manifold_report(&simplified) == (0, 0, 0);
    if closed_before && !closed_after {
        let (b, nm, inc) = edge_manifold_report(&simplified);
        return Err(Error::Input(format!(
            "simplifying to {} triangles left a surface that is not closed and manifold ({b} boundary, \
             {nm} non-manifold, {inc} inconsistently oriented edges); ask for more triangles",
            simplified.triangles.len()
        )));
    }
    Ok((welded, simplified, meshopt_error, closed_before, closed_after))
}

/// Simplification runs at most this many times, locking the vertices around the edges that a
/// run left non-manifold.
const LOCK_ROUNDS: usize = 16;

/// The (sorted) endpoints of the edges of three or more of the triangles `indices`.
fn non_manifold_vertices(indices: &[u32]) -> Vec<u32> {
    let mut edges: Vec<u64> = indices
        .chunks_exact(3)
        .flat_map(|t| (0..3).map(move |m| (t[m], t[(m + 1) % 3])))
        .map(|(a, b)| ((a.min(b) as u64) << 32) | a.max(b) as u64)
        .collect();
    edges.sort_unstable();
    let mut out: Vec<u32> = edges
        .chunk_by(|a, b| a == b)
        .filter(|g| g.len() > 2)
        .flat_map(|g| [(g[0] >> 32) as u32, g[0] as u32])
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// One vertex per distinct position (bit for bit), unused vertices dropped, degenerate triangles
/// (two equal corners) removed. Marching-cubes output already shares its vertices; meshes read
/// from files may not.
pub fn weld(mesh: &TriMesh) -> TriMesh {
    let mut index: HashMap<[u32; 3], u32> = HashMap::with_capacity(mesh.positions.len());
    let mut positions = Vec::with_capacity(mesh.positions.len());
    let mut remap = vec![u32::MAX; mesh.positions.len()];
    let mut used = vec![false; mesh.positions.len()];
    mesh.triangles.iter().flatten().for_each(|&i| used[i as usize] = true);
    for (i, p) in mesh.positions.iter().enumerate() {
        if !used[i] {
            continue;
        }
        // +0.0 and −0.0 are one position
        let key = (*p + Vec3::ZERO).to_array().map(f32::to_bits);
        remap[i] = *index.entry(key).or_insert_with(|| {
            positions.push(*p);
            (positions.len() - 1) as u32
        });
    }
    let triangles = mesh
        .triangles
        .iter()
        .map(|t| t.map(|i| remap[i as usize]))
        .filter(|[a, b, c]| a != b && b != c && c != a)
        .collect();
    TriMesh::new(positions, triangles)
}

/// The triangles of flat `indices` over `positions`, with only the vertices they use.
fn compact(positions: &[Vec3], indices: &[u32]) -> TriMesh {
    let mut remap = vec![u32::MAX; positions.len()];
    let mut kept = Vec::new();
    let triangles = indices
        .chunks_exact(3)
        .map(|t| {
            [t[0], t[1], t[2]].map(|i| {
                let r = &mut remap[i as usize];
                if *r == u32::MAX {
                    *r = kept.len() as u32;
                    kept.push(positions[i as usize]);
                }
                *r
            })
        })
        .collect();
    TriMesh::new(kept, triangles)
}

fn bytes_of(v: &[[f32; 3]]) -> &[u8] {
    // SAFETY: [f32; 3] is plain old data with no padding; the byte view covers exactly the slice.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::shapes;

    #[test]
    fn a_sphere_stays_closed_and_near() {
        let mesh = shapes::icosphere(Vec3::ZERO, 1.0, 5); // 20 480 triangles
        let target = SimplifyTarget { triangles: Some(1000), max_error: None };
        let (out, report) = simplify(&mesh, &target).unwrap();
        assert!(out.triangles.len() <= 1000 && out.triangles.len() > 500, "{}", out.triangles.len());
        assert_eq!(edge_manifold_report(&out), (0, 0, 0));
        assert!(report.closed_manifold_after);
        assert!(report.distance.hausdorff < 0.05, "{report:?}");
        assert!(report.distance.hausdorff > 0.0);
        // vertices are a subset of the input's
        assert!(out.positions.iter().all(|p| mesh.positions.contains(p)));
    }

    #[test]
    fn an_error_bound_is_kept() {
        let mesh = shapes::icosphere(Vec3::ZERO, 1.0, 5);
        let target = SimplifyTarget { triangles: None, max_error: Some(0.01) };
        let (out, report) = simplify(&mesh, &target).unwrap();
        assert!(out.triangles.len() < mesh.triangles.len());
        assert!(report.meshopt_error <= 0.01 + 1e-6, "{report:?}");
        assert!(report.distance.hausdorff < 0.03, "{report:?}");
    }

    #[test]
    fn weld_joins_a_triangle_soup() {
        let mesh = shapes::cube(Vec3::ZERO, 1.0);
        let soup = TriMesh::new(
            mesh.triangles.iter().flat_map(|t| t.map(|i| mesh.positions[i as usize])).collect(),
            (0..mesh.triangles.len() as u32).map(|k| [3 * k, 3 * k + 1, 3 * k + 2]).collect(),
        );
        let w = weld(&soup);
        assert_eq!(w.positions.len(), 8);
        assert_eq!(edge_manifold_report(&w), (0, 0, 0));
    }

    #[test]
    fn bad_targets_are_refused() {
        assert!(SimplifyTarget::from_flags(Some(2), None).is_err());
        assert!(SimplifyTarget::from_flags(None, Some(-1.0)).is_err());
        assert!(SimplifyTarget::from_flags(None, Some(f32::NAN)).is_err());
        assert_eq!(SimplifyTarget::from_flags(None, None).unwrap(), None);
        assert!(
            simplify(&TriMesh::default(), &SimplifyTarget { triangles: Some(10), max_error: None }).is_err()
        );
    }
}
