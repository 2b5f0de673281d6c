//! Orienting a mesh for the inside test, whatever orientation its triangles came with.
//!
//! The inside test ([`super::winding`]) is `w(q) > 1/2` for the generalized winding number w.
//! That is right only for outward-facing triangles: an inverted closed mesh has w = −1 inside.
//! Meshes as people have them are inverted, mixed, open, split at seams, and carry degenerate and
//! non-manifold faces, so [`orient`] makes the orientation right first. The rule:
//!
//! 1. Faces of zero area (to f32 precision, [`degenerate`]) are dropped: they enclose nothing and
//!    have no normal.
//! 2. Vertices are welded by position (for orientation only; the mesh keeps its vertices), so a
//!    surface split at seams or stored as a triangle soup is still one surface.
//! 3. Faces are re-oriented consistently by a breadth-first walk across manifold edges (edges of
//!    exactly two faces). Orientation never crosses an edge of three or more faces, so every
//!    sheet meeting at a non-manifold edge is oriented on its own. Each such *component* keeps
//!    the orientation most of its area had in the file.
//! 4. Each component's sign is its signed volume about its own centroid (which is meaningful for
//!    open surfaces with holes too). Its *depth* is the number of other components around it
//!    (the winding number of the outward-oriented other components at a point of it).
//! 5. Components at depth 0 (not inside anything) are turned outward. A nested component (depth
//!    ≥ 1) keeps the orientation it has in the file *relative to the file as a whole*: if the
//!    outermost components were stored inward (an inverted file), every component is flipped
//!    first. So a nested shell facing the other way from its surroundings is a cavity (a hollow
//!    ball stays hollow, also when the whole file is inverted), and a nested shell facing the
//!    same way is a solid part inside a solid (the winding number is 2 there: still inside).
//!
//! After this, `w > 1/2` is inside for inverted meshes, mixed orientation between and within
//! components, nested shells, open surfaces (w is smooth across a hole) and triangle soups.
//! The CUDA labeller gets the oriented mesh, so host and device follow the same rule.

use std::collections::HashMap;

use glam::{DVec3, Vec3};
use rayon::prelude::*;

use super::winding::WindingNumber;
use super::TriMesh;

/// What [`orient`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrientReport {
    /// Faces dropped as degenerate (zero area, or a repeated vertex).
    pub degenerate: usize,
    /// Faces whose orientation was reversed.
    pub flipped: usize,
    /// Components: faces connected across manifold edges.
    pub components: usize,
    /// Components with a boundary edge (an edge of one face): open surfaces.
    pub open_components: usize,
    /// Edges shared by three or more faces.
    pub non_manifold_edges: usize,
    /// Manifold edges across which the walk met an orientation it had already fixed the other
    /// way (a Möbius strip or a non-orientable soup); such faces keep the first orientation.
    pub conflicts: usize,
    /// Nested components kept facing inwards (cavities).
    pub cavities: usize,
}

impl OrientReport {
    /// One line for the run log.
    pub fn describe(&self) -> String {
        format!(
            "{} component(s) ({} open), {} face(s) re-oriented, {} degenerate face(s) dropped, {} non-manifold edge(s), {} cavit{}",
            self.components,
            self.open_components,
            self.flipped,
            self.degenerate,
            self.non_manifold_edges,
            self.cavities,
            if self.cavities == 1 { "y" } else { "ies" }
        )
    }
}

/// Whether a triangle is degenerate: twice its area is at most 1e-6 of its longest edge squared,
/// i.e. its corners are collinear to the precision of f32 coordinates (a few ulps), or repeated.
/// A real sliver 10⁴ times longer than high is still far above this.
pub fn degenerate(a: DVec3, b: DVec3, c: DVec3) -> bool {
    let cross = (b - a).cross(c - a).length();
    let longest = (b - a).length_squared().max((c - a).length_squared()).max((c - b).length_squared());
    cross <= 1e-6 * longest
}

/// The mesh with degenerate faces dropped and every face oriented by the rule of this module,
/// and what was done. The vertices are unchanged, the kept faces stay in file order. Indices
/// must be valid (`TriMesh::validate`).
pub fn orient(mesh: &TriMesh) -> (TriMesh, OrientReport) {
    let mut report = OrientReport::default();
    let pos = &mesh.positions;
    let mut tris: Vec<[u32; 3]> = mesh
        .triangles
        .iter()
        .copied()
        .filter(|t| {
            let [a, b, c] = t.map(|i| pos[i as usize].as_dvec3());
            !degenerate(a, b, c)
        })
        .collect();
    report.degenerate = mesh.triangles.len() - tris.len();
    let nf = tris.len();
    if nf == 0 {
        return (TriMesh::new(pos.clone(), tris), report);
    }

    // 2. weld by position: canonical vertex of every vertex
    let mut canon = vec![u32::MAX; pos.len()];
    {
        let mut first: HashMap<[u32; 3], u32> = HashMap::with_capacity(pos.len());
        for t in &tris {
            for &v in t {
                if canon[v as usize] == u32::MAX {
                    let p = pos[v as usize] + Vec3::ZERO; // -0.0 → +0.0
                    canon[v as usize] = *first.entry(p.to_array().map(f32::to_bits)).or_insert(v);
                }
            }
        }
    }

    // 3. edges, sorted by their welded end points: (key, face * 3 + k, runs low → high)
    let mut edges: Vec<(u64, u32, bool)> = Vec::with_capacity(3 * nf);
    for (f, t) in tris.iter().enumerate() {
        for k in 0..3 {
            let (a, b) = (canon[t[k] as usize], canon[t[(k + 1) % 3] as usize]);
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            edges.push(((u64::from(lo) << 32) | u64::from(hi), (3 * f + k) as u32, a < b));
        }
    }
    edges.par_sort_unstable_by_key(|e| (e.0, e.1));
    // neighbour across each face edge (u32::MAX: none), and whether both faces run the edge the
    // same way (then one of them must flip to agree)
    let mut neighbour = vec![(u32::MAX, false); 3 * nf];
    let mut boundary_face = vec![false; nf];
    let mut i = 0;
    while i < edges.len() {
        let mut j = i + 1;
        while j < edges.len() && edges[j].0 == edges[i].0 {
            j += 1;
        }
        match j - i {
            1 => boundary_face[edges[i].1 as usize / 3] = true,
            2 => {
                let (e0, e1) = (edges[i], edges[i + 1]);
                let same = e0.2 == e1.2;
                neighbour[e0.1 as usize] = (e1.1 / 3, same);
                neighbour[e1.1 as usize] = (e0.1 / 3, same);
            }
            _ => report.non_manifold_edges += 1,
        }
        i = j;
    }
    drop(edges);

    // breadth-first walk: flip[f] relative to the file, component of every face
    let area: Vec<f64> = tris
        .iter()
        .map(|t| {
            let [a, b, c] = t.map(|i| pos[i as usize].as_dvec3());
            0.5 * (b - a).cross(c - a).length()
        })
        .collect();
    let mut flip = vec![false; nf];
    let mut component = vec![u32::MAX; nf];
    let mut members: Vec<Vec<u32>> = Vec::new();
    let mut queue = std::collections::VecDeque::new();
    for seed in 0..nf {
        if component[seed] != u32::MAX {
            continue;
        }
        let id = members.len() as u32;
        let mut faces = vec![seed as u32];
        component[seed] = id;
        queue.push_back(seed as u32);
        while let Some(f) = queue.pop_front() {
            for k in 0..3 {
                let (g, same) = neighbour[3 * f as usize + k];
                if g == u32::MAX {
                    continue;
                }
                let want = flip[f as usize] ^ same;
                if component[g as usize] == u32::MAX {
                    component[g as usize] = id;
                    flip[g as usize] = want;
                    faces.push(g);
                    queue.push_back(g);
                } else if flip[g as usize] != want {
                    report.conflicts += 1;
                }
            }
        }
        // keep the orientation most of the component's area had in the file
        let flipped_area: f64 = faces.iter().filter(|&&f| flip[f as usize]).map(|&f| area[f as usize]).sum();
        let total: f64 = faces.iter().map(|&f| area[f as usize]).sum();
        if flipped_area > 0.5 * total {
            for &f in &faces {
                flip[f as usize] = !flip[f as usize];
            }
        }
        members.push(faces);
    }
    report.conflicts /= 2; // each conflicting edge is seen from both faces
    report.components = members.len();
    report.open_components = members.iter().filter(|m| m.iter().any(|&f| boundary_face[f as usize])).count();

    let oriented = |t: [u32; 3], flipped: bool| if flipped { [t[0], t[2], t[1]] } else { t };
    // 4. sign of each component (signed volume about its centroid), then all outward
    let file_sign: Vec<bool> = members
        .par_iter()
        .map(|faces| {
            let total: f64 = faces.iter().map(|&f| area[f as usize]).sum();
            let centroid = faces
                .iter()
                .map(|&f| {
                    let [a, b, c] = tris[f as usize].map(|i| pos[i as usize].as_dvec3());
                    area[f as usize] * (a + b + c) / 3.0
                })
                .sum::<DVec3>()
                / total.max(f64::MIN_POSITIVE);
            let volume: f64 = faces
                .iter()
                .map(|&f| {
                    let t = oriented(tris[f as usize], flip[f as usize]);
                    let [a, b, c] = t.map(|i| pos[i as usize].as_dvec3() - centroid);
                    a.dot(b.cross(c))
                })
                .sum();
            volume >= 0.0
        })
        .collect();
    for (faces, &outward) in members.iter().zip(&file_sign) {
        if !outward {
            for &f in faces {
                flip[f as usize] = !flip[f as usize];
            }
        }
    }

    // 5. nesting: a component inside others keeps the file's relative orientation
    if members.len() > 1 {
        let outward: Vec<[u32; 3]> = tris.iter().zip(&flip).map(|(&t, &fl)| oriented(t, fl)).collect();
        let all = WindingNumber::new(&TriMesh::new(pos.clone(), outward.clone()));
        let depth: Vec<i64> = members
            .par_iter()
            .map(|faces| {
                // a point just inside the component's largest face
                let big =
                    faces.iter().copied().max_by(|&a, &b| area[a as usize].total_cmp(&area[b as usize]));
                let Some(big) = big else { return 0 };
                let [a, b, c] = outward[big as usize].map(|i| pos[i as usize].as_dvec3());
                let n = (b - a).cross(c - a).normalize_or_zero();
                let q = (a + b + c) / 3.0 - n * (1e-3 * area[big as usize].sqrt());
                let own: f64 = faces
                    .iter()
                    .map(|&f| {
                        let tri = outward[f as usize].map(|i| pos[i as usize]);
                        super::winding::solid_angle(&tri, q)
                    })
                    .sum::<f64>()
                    / (4.0 * std::f64::consts::PI);
                (all.winding(q.as_vec3()) - own).round() as i64
            })
            .collect();
        // was the file inverted? (most of the outermost components' area faced inwards)
        let (mut out_area, mut in_area) = (0.0, 0.0);
        for ((faces, &d), &s) in members.iter().zip(&depth).zip(&file_sign) {
            if d <= 0 {
                let a: f64 = faces.iter().map(|&f| area[f as usize]).sum();
                if s {
                    out_area += a;
                } else {
                    in_area += a;
                }
            }
        }
        let inverted_file = in_area > out_area;
        for ((faces, &d), &s) in members.iter().zip(&depth).zip(&file_sign) {
            if d >= 1 && (s == inverted_file) {
                report.cavities += 1;
                for &f in faces {
                    flip[f as usize] = !flip[f as usize];
                }
            }
        }
    }

    report.flipped = flip.iter().filter(|&&f| f).count();
    for (t, &fl) in tris.iter_mut().zip(&flip) {
        *t = oriented(*t, fl);
    }
    (TriMesh::new(pos.clone(), tris), report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::shapes;

    fn inverted(mut m: TriMesh) -> TriMesh {
        for t in &mut m.triangles {
            t.swap(1, 2);
        }
        m
    }

    #[test]
    fn outward_mesh_is_unchanged() {
        let m = shapes::icosphere(Vec3::ZERO, 1.0, 2);
        let (o, r) = orient(&m);
        assert_eq!(o.triangles, m.triangles);
        assert_eq!((r.flipped, r.components, r.open_components, r.cavities), (0, 1, 0, 0));
    }

    #[test]
    fn inverted_mesh_is_turned_outward() {
        let m = shapes::icosphere(Vec3::ZERO, 1.0, 2);
        let (o, r) = orient(&inverted(m.clone()));
        assert_eq!(o.triangles, m.triangles);
        assert_eq!(r.flipped, m.triangles.len());
    }

    #[test]
    fn degenerate_faces_are_dropped() {
        let mut m = shapes::cube(Vec3::ZERO, 1.0);
        m.triangles.push([0, 0, 1]);
        m.positions.push(m.positions[0] * 0.5 + m.positions[1] * 0.5); // on the edge 0–1
        let mid = (m.positions.len() - 1) as u32;
        m.triangles.push([0, mid, 1]);
        let (o, r) = orient(&m);
        assert_eq!(r.degenerate, 2);
        assert_eq!(o.triangles.len(), 12);
    }
}
