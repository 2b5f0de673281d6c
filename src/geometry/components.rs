//! Connected components of a mesh, and removing the small ones (floaters and specks an iso-surface
//! of a learned field often has away from the shape).

use super::TriMesh;

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let up = parent[parent[x as usize] as usize];
        parent[x as usize] = up; // path halving
        x = up;
    }
    x
}

/// Component index of every triangle (triangles sharing a vertex are connected), numbered 0.. in
/// order of first appearance, and the number of components.
pub fn triangle_components(mesh: &TriMesh) -> (Vec<u32>, usize) {
    let mut parent: Vec<u32> = (0..mesh.positions.len() as u32).collect();
    for t in &mesh.triangles {
        let a = find(&mut parent, t[0]);
        for &v in &t[1..] {
            let b = find(&mut parent, v);
            if a != b {
                parent[b as usize] = a;
            }
        }
    }
    let mut id = vec![u32::MAX; mesh.positions.len()];
    let mut count = 0u32;
    let labels = mesh
        .triangles
        .iter()
        .map(|t| {
            let root = find(&mut parent, t[0]) as usize;
            if id[root] == u32::MAX {
                id[root] = count;
                count += 1;
            }
            id[root]
        })
        .collect();
    (labels, count as usize)
}

/// Drops every component whose enclosed |volume| is below `min_fraction` of the largest one's
/// (cavities count by their |volume| too), and the vertices only they used. Returns the new mesh and
/// the number of components removed. `min_fraction <= 0` keeps everything.
pub fn remove_small_components(mesh: &TriMesh, min_fraction: f64) -> (TriMesh, usize) {
    let (labels, count) = triangle_components(mesh);
    if min_fraction <= 0.0 || count <= 1 {
        return (mesh.clone(), 0);
    }
    let mut volume = vec![0.0f64; count];
    for (t, &c) in mesh.triangles.iter().zip(&labels) {
        let [a, b, d] = t.map(|i| mesh.positions[i as usize].as_dvec3());
        volume[c as usize] += a.dot(b.cross(d)) / 6.0;
    }
    let largest = volume.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let keep: Vec<bool> = volume.iter().map(|v| v.abs() >= min_fraction * largest).collect();
    let removed = keep.iter().filter(|k| !**k).count();
    let mut remap = vec![u32::MAX; mesh.positions.len()];
    let mut out = TriMesh::default();
    let mut normals = Vec::new();
    for (t, &c) in mesh.triangles.iter().zip(&labels) {
        if !keep[c as usize] {
            continue;
        }
        out.triangles.push(t.map(|v| {
            if remap[v as usize] == u32::MAX {
                remap[v as usize] = out.positions.len() as u32;
                out.positions.push(mesh.positions[v as usize]);
                if let Some(n) = &mesh.normals {
                    normals.push(n[v as usize]);
                }
            }
            remap[v as usize]
        }));
    }
    if mesh.normals.is_some() {
        out.normals = Some(normals);
    }
    (out, removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::shapes::icosphere;
    use glam::Vec3;

    #[test]
    fn keeps_big_parts_and_drops_specks() {
        let mut mesh = icosphere(Vec3::ZERO, 1.0, 2);
        for (c, r) in [(Vec3::X * 3.0, 0.8), (Vec3::Y * 3.0, 0.05), (Vec3::Z * 3.0, 0.02)] {
            let s = icosphere(c, r, 1);
            let base = mesh.positions.len() as u32;
            mesh.positions.extend(s.positions);
            mesh.triangles.extend(s.triangles.iter().map(|t| t.map(|v| v + base)));
        }
        assert_eq!(triangle_components(&mesh).1, 4);
        let (kept, removed) = remove_small_components(&mesh, 1e-3);
        assert_eq!(removed, 2, "the two specks (volume ratios 1.25e-4 and 8e-6) go");
        assert_eq!(triangle_components(&kept).1, 2);
        assert!(kept.validate().is_ok());
        let (all, none_removed) = remove_small_components(&mesh, 0.0);
        assert_eq!((all.triangles.len(), none_removed), (mesh.triangles.len(), 0));
    }
}
