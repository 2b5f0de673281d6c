//! Procedural closed, outward-oriented meshes and their analytic inside tests, for tests and demos.
//!
//! Every mesh here is closed and manifold with counter-clockwise triangles seen from outside, so
//! `signed_volume() > 0`. [`punch_hole`] opens one up, to exercise the inside test on soups.

use std::collections::HashMap;
use std::f32::consts::{PI, TAU};

use glam::Vec3;

use super::TriMesh;

/// An icosahedron subdivided `subdivisions` times (each time every triangle becomes four), with
/// every vertex projected onto the sphere. 20·4^s triangles; vertices lie on the sphere, so the
/// mesh sits just inside it (by about `radius · 0.6 · 4^-s` at the face centres).
pub fn icosphere(center: Vec3, radius: f32, subdivisions: u32) -> TriMesh {
    let t = (1.0 + 5.0f32.sqrt()) / 2.0;
    let mut positions: Vec<Vec3> = [
        [-1.0, t, 0.0],
        [1.0, t, 0.0],
        [-1.0, -t, 0.0],
        [1.0, -t, 0.0],
        [0.0, -1.0, t],
        [0.0, 1.0, t],
        [0.0, -1.0, -t],
        [0.0, 1.0, -t],
        [t, 0.0, -1.0],
        [t, 0.0, 1.0],
        [-t, 0.0, -1.0],
        [-t, 0.0, 1.0],
    ]
    .iter()
    .map(|p| Vec3::from_array(*p).normalize())
    .collect();
    let mut triangles: Vec<[u32; 3]> = vec![
        [0, 11, 5],
        [0, 5, 1],
        [0, 1, 7],
        [0, 7, 10],
        [0, 10, 11],
        [1, 5, 9],
        [5, 11, 4],
        [11, 10, 2],
        [10, 7, 6],
        [7, 1, 8],
        [3, 9, 4],
        [3, 4, 2],
        [3, 2, 6],
        [3, 6, 8],
        [3, 8, 9],
        [4, 9, 5],
        [2, 4, 11],
        [6, 2, 10],
        [8, 6, 7],
        [9, 8, 1],
    ];
    for _ in 0..subdivisions {
        let mut midpoint: HashMap<(u32, u32), u32> = HashMap::new();
        let mut mid = |a: u32, b: u32, positions: &mut Vec<Vec3>| -> u32 {
            let key = (a.min(b), a.max(b));
            *midpoint.entry(key).or_insert_with(|| {
                let p = ((positions[a as usize] + positions[b as usize]) * 0.5).normalize();
                positions.push(p);
                (positions.len() - 1) as u32
            })
        };
        let mut next = Vec::with_capacity(triangles.len() * 4);
        for &[a, b, c] in &triangles {
            let ab = mid(a, b, &mut positions);
            let bc = mid(b, c, &mut positions);
            let ca = mid(c, a, &mut positions);
            next.extend_from_slice(&[[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]);
        }
        triangles = next;
    }
    for p in &mut positions {
        *p = center + *p * radius;
    }
    TriMesh::new(positions, triangles)
}

/// A latitude/longitude sphere: `n_lat ≥ 2` bands from pole to pole, `n_lon ≥ 3` segments around.
pub fn uv_sphere(center: Vec3, radius: f32, n_lat: usize, n_lon: usize) -> TriMesh {
    let n_lat = n_lat.max(2);
    let n_lon = n_lon.max(3);
    let mut positions = vec![center + Vec3::Z * radius];
    for i in 1..n_lat {
        let theta = PI * i as f32 / n_lat as f32;
        for j in 0..n_lon {
            let phi = TAU * j as f32 / n_lon as f32;
            let dir = Vec3::new(theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos());
            positions.push(center + dir * radius);
        }
    }
    positions.push(center - Vec3::Z * radius);
    let south = (positions.len() - 1) as u32;
    let ring = |i: usize, j: usize| (1 + (i - 1) * n_lon + j % n_lon) as u32;
    let mut triangles = Vec::new();
    for j in 0..n_lon {
        triangles.push([0, ring(1, j), ring(1, j + 1)]);
        triangles.push([south, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)]);
    }
    for i in 1..n_lat - 1 {
        for j in 0..n_lon {
            let (a, b, c, d) = (ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1));
            triangles.push([a, c, d]);
            triangles.push([a, d, b]);
        }
    }
    TriMesh::new(positions, triangles)
}

/// A torus around the z axis: `major` radius of the tube's centre circle, `minor` radius of the
/// tube, `n_major ≥ 3` segments around the axis and `n_minor ≥ 3` around the tube.
pub fn torus(center: Vec3, major: f32, minor: f32, n_major: usize, n_minor: usize) -> TriMesh {
    let n_major = n_major.max(3);
    let n_minor = n_minor.max(3);
    let mut positions = Vec::with_capacity(n_major * n_minor);
    for i in 0..n_major {
        let u = TAU * i as f32 / n_major as f32;
        for j in 0..n_minor {
            let v = TAU * j as f32 / n_minor as f32;
            let r = major + minor * v.cos();
            positions.push(center + Vec3::new(r * u.cos(), r * u.sin(), minor * v.sin()));
        }
    }
    let id = |i: usize, j: usize| ((i % n_major) * n_minor + j % n_minor) as u32;
    let mut triangles = Vec::with_capacity(2 * n_major * n_minor);
    for i in 0..n_major {
        for j in 0..n_minor {
            let (a, b, c, d) = (id(i, j), id(i + 1, j), id(i, j + 1), id(i + 1, j + 1));
            triangles.push([a, b, d]);
            triangles.push([a, d, c]);
        }
    }
    TriMesh::new(positions, triangles)
}

/// An axis-aligned cube of half-width `half`, 12 triangles.
pub fn cube(center: Vec3, half: f32) -> TriMesh {
    cube_subdivided(center, half, 1)
}

/// An axis-aligned cube whose faces are `n × n` grids of quads (2 triangles each), welded along the
/// cube's edges so the mesh is closed.
pub fn cube_subdivided(center: Vec3, half: f32, n: usize) -> TriMesh {
    let n = n.max(1);
    let mut index: HashMap<[i64; 3], u32> = HashMap::new();
    let mut positions = Vec::new();
    let mut triangles = Vec::new();
    // Each face: outward axis and two in-face axes (u, v) with u × v = outward normal.
    let faces: [(Vec3, Vec3, Vec3); 6] = [
        (Vec3::X, Vec3::Y, Vec3::Z),
        (-Vec3::X, Vec3::Z, Vec3::Y),
        (Vec3::Y, Vec3::Z, Vec3::X),
        (-Vec3::Y, Vec3::X, Vec3::Z),
        (Vec3::Z, Vec3::X, Vec3::Y),
        (-Vec3::Z, Vec3::Y, Vec3::X),
    ];
    for (normal, u, v) in faces {
        let mut vertex = |a: usize, b: usize| -> u32 {
            // Integer lattice coordinates in [-n, n] weld shared edge vertices exactly.
            let lattice =
                normal * n as f32 + u * (2 * a) as f32 - u * n as f32 + v * (2 * b) as f32 - v * n as f32;
            let key = lattice.round().as_i64vec3().to_array();
            *index.entry(key).or_insert_with(|| {
                positions.push(center + lattice * (half / n as f32));
                (positions.len() - 1) as u32
            })
        };
        for a in 0..n {
            for b in 0..n {
                let (p00, p10, p01, p11) =
                    (vertex(a, b), vertex(a + 1, b), vertex(a, b + 1), vertex(a + 1, b + 1));
                triangles.push([p00, p10, p11]);
                triangles.push([p00, p11, p01]);
            }
        }
    }
    TriMesh::new(positions, triangles)
}

/// Removes every triangle whose centroid lies within `radius` of `point` (making an open mesh), and
/// drops the vertices no longer used. Normals, if present, are kept for the surviving vertices.
pub fn punch_hole(mesh: &TriMesh, point: Vec3, radius: f32) -> TriMesh {
    let kept: Vec<[u32; 3]> = mesh
        .triangles
        .iter()
        .filter(|t| {
            let c = t.iter().map(|&i| mesh.positions[i as usize]).sum::<Vec3>() / 3.0;
            c.distance(point) > radius
        })
        .copied()
        .collect();
    let mut remap = vec![u32::MAX; mesh.positions.len()];
    let mut positions = Vec::new();
    let mut old_ids = Vec::new();
    let triangles = kept
        .iter()
        .map(|t| {
            t.map(|i| {
                let slot = &mut remap[i as usize];
                if *slot == u32::MAX {
                    *slot = positions.len() as u32;
                    positions.push(mesh.positions[i as usize]);
                    old_ids.push(i as usize);
                }
                *slot
            })
        })
        .collect();
    let normals = mesh.normals.as_ref().map(|n| old_ids.iter().map(|&i| n[i]).collect());
    TriMesh { positions, triangles, normals }
}

/// Signed distance to the sphere (negative inside).
pub fn sphere_sdf(p: Vec3, center: Vec3, radius: f32) -> f32 {
    p.distance(center) - radius
}

pub fn sphere_inside(p: Vec3, center: Vec3, radius: f32) -> bool {
    sphere_sdf(p, center, radius) < 0.0
}

/// Signed distance to the torus of [`torus`] (negative inside).
pub fn torus_sdf(p: Vec3, center: Vec3, major: f32, minor: f32) -> f32 {
    let d = p - center;
    let ring = (d.x * d.x + d.y * d.y).sqrt() - major;
    (ring * ring + d.z * d.z).sqrt() - minor
}

pub fn torus_inside(p: Vec3, center: Vec3, major: f32, minor: f32) -> bool {
    torus_sdf(p, center, major, minor) < 0.0
}

/// Signed distance to the axis-aligned cube (negative inside).
pub fn cube_sdf(p: Vec3, center: Vec3, half: f32) -> f32 {
    let q = (p - center).abs() - Vec3::splat(half);
    q.max(Vec3::ZERO).length() + q.max_element().min(0.0)
}

pub fn cube_inside(p: Vec3, center: Vec3, half: f32) -> bool {
    cube_sdf(p, center, half) < 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(mesh: &TriMesh) -> bool {
        crate::geometry::edge_manifold_report(mesh) == (0, 0, 0)
    }

    #[test]
    fn shapes_are_closed_and_outward() {
        let c = Vec3::new(0.1, -0.2, 0.3);
        let s = icosphere(c, 2.0, 3);
        assert_eq!(s.triangles.len(), 20 * 64);
        assert!(closed(&s));
        let v = s.signed_volume();
        assert!((v - 4.0 / 3.0 * std::f64::consts::PI * 8.0).abs() < 0.05 * v, "{v}");
        let u = uv_sphere(c, 1.0, 32, 64);
        assert!(closed(&u));
        assert!((u.signed_volume() - 4.0 / 3.0 * std::f64::consts::PI).abs() < 0.02);
        let t = torus(c, 1.0, 0.25, 128, 48);
        assert!(closed(&t));
        let tv = 2.0 * std::f64::consts::PI.powi(2) * 1.0 * 0.0625;
        assert!((t.signed_volume() - tv).abs() < 0.01 * tv, "{} vs {tv}", t.signed_volume());
        for n in [1, 3] {
            let k = cube_subdivided(c, 0.5, n);
            assert!(closed(&k));
            assert_eq!(k.triangles.len(), 12 * n * n);
            assert!((k.signed_volume() - 1.0).abs() < 1e-5);
            assert!((k.area() - 6.0).abs() < 1e-5);
        }
    }

    #[test]
    fn punch_hole_opens_the_mesh() {
        let s = icosphere(Vec3::ZERO, 1.0, 2);
        let h = punch_hole(&s, Vec3::Z, 0.3);
        assert!(h.triangles.len() < s.triangles.len());
        assert!(!closed(&h));
        assert!(h.validate().is_ok());
    }

    #[test]
    fn sdfs() {
        assert!(cube_inside(Vec3::splat(0.49), Vec3::ZERO, 0.5));
        assert!(!cube_inside(Vec3::new(0.51, 0.0, 0.0), Vec3::ZERO, 0.5));
        assert!((cube_sdf(Vec3::new(2.0, 0.0, 0.0), Vec3::ZERO, 0.5) - 1.5).abs() < 1e-6);
        assert!(torus_inside(Vec3::new(1.0, 0.0, 0.1), Vec3::ZERO, 1.0, 0.25));
        assert!(!torus_inside(Vec3::ZERO, Vec3::ZERO, 1.0, 0.25));
    }
}
