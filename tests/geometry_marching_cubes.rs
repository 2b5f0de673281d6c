//! Marching cubes: closed, manifold, outward meshes with the right area and volume.

use std::f64::consts::PI;

use ffvol::geometry::marching_cubes::{
    count_edges, edge_manifold_report, marching_cubes, marching_cubes_padded, Grid3,
};
use ffvol::geometry::TriMesh;
use glam::Vec3;

/// Samples `f` on an n³ grid over the unit box (sample i at i/(n−1)).
fn sample(n: usize, f: impl Fn(Vec3) -> f32) -> (Vec<f32>, Vec3) {
    let h = 1.0 / (n - 1) as f32;
    let mut v = Vec::with_capacity(n * n * n);
    for k in 0..n {
        for j in 0..n {
            for i in 0..n {
                v.push(f(Vec3::new(i as f32, j as f32, k as f32) * h));
            }
        }
    }
    (v, Vec3::splat(h))
}

fn degenerate_triangles(mesh: &TriMesh) -> usize {
    mesh.triangles
        .iter()
        .filter(|t| {
            let [a, b, c] = t.map(|i| mesh.positions[i as usize].as_dvec3());
            t[0] == t[1] || t[1] == t[2] || t[0] == t[2] || (b - a).cross(c - a).length() == 0.0
        })
        .count()
}

fn assert_closed_manifold(mesh: &TriMesh, what: &str) {
    assert!(mesh.validate().is_ok(), "{what}: {:?}", mesh.validate());
    assert_eq!(edge_manifold_report(mesh), (0, 0, 0), "{what}: (boundary, non-manifold, inconsistent) edges");
    assert_eq!(degenerate_triangles(mesh), 0, "{what}: degenerate triangles");
    let normals = mesh.normals.as_ref().expect("normals");
    assert_eq!(normals.len(), mesh.positions.len());
    assert!(normals.iter().all(|n| (n.length() - 1.0).abs() < 1e-3), "{what}: unit normals");
}

/// Every vertex's triangles form one disc: the edges opposite the vertex chain into a single cycle.
fn assert_vertex_manifold(mesh: &TriMesh, what: &str) {
    let mut link: Vec<Vec<(u32, u32)>> = vec![Vec::new(); mesh.positions.len()];
    for t in &mesh.triangles {
        for m in 0..3 {
            link[t[m] as usize].push((t[(m + 1) % 3], t[(m + 2) % 3]));
        }
    }
    for (v, edges) in link.iter().enumerate() {
        assert!(edges.len() >= 3, "{what}: vertex {v} has {} triangles", edges.len());
        // Follow b → c from the first edge; a disc returns after visiting every edge once.
        let (start, mut at) = edges[0];
        let mut steps = 1;
        while at != start {
            let next = edges.iter().find(|e| e.0 == at).map(|e| e.1);
            match next {
                Some(n) if steps <= edges.len() => {
                    at = n;
                    steps += 1;
                }
                _ => panic!("{what}: vertex {v}'s link is not a cycle"),
            }
        }
        assert_eq!(steps, edges.len(), "{what}: vertex {v}'s triangles form more than one fan");
    }
}

fn euler(mesh: &TriMesh) -> i64 {
    mesh.positions.len() as i64 - count_edges(mesh) as i64 + mesh.triangles.len() as i64
}

#[test]
fn sphere_area_volume_orientation() {
    let (c, r) = (Vec3::splat(0.5), 0.35f32);
    // Signed distance: inside is less than the level.
    let (values, h) = sample(128, |p| p.distance(c) - r);
    let grid = Grid3 { dims: [128; 3], values: &values };
    let mesh = marching_cubes(&grid, 0.0, Vec3::ZERO, h, false);
    println!("128³ sphere: {} vertices, {} triangles", mesh.positions.len(), mesh.triangles.len());
    assert_closed_manifold(&mesh, "sphere");
    let (area, volume) = (mesh.area(), mesh.signed_volume());
    let (a_true, v_true) = (4.0 * PI * (r as f64).powi(2), 4.0 / 3.0 * PI * (r as f64).powi(3));
    println!("area {area:.5} vs {a_true:.5}, volume {volume:.5} vs {v_true:.5}");
    assert!((area / a_true - 1.0).abs() < 0.01);
    assert!((volume / v_true - 1.0).abs() < 0.01);
    assert_eq!(euler(&mesh), 2);
    let normals = mesh.normals.as_ref().expect("normals");
    for (p, n) in mesh.positions.iter().zip(normals) {
        assert!(n.dot(*p - c) > 0.0, "normal {n} at {p} points in");
    }
    for t in &mesh.triangles {
        let [a, b, cc] = t.map(|i| mesh.positions[i as usize]);
        assert!((b - a).cross(cc - a).dot((a + b + cc) / 3.0 - c) > 0.0, "face normal points in");
    }

    // Same sphere as an occupancy-like field (inside is greater) gives the same surface.
    let logits: Vec<f32> = values.iter().map(|d| -10.0 * d).collect();
    let grid = Grid3 { dims: [128; 3], values: &logits };
    let m2 = marching_cubes(&grid, 0.0, Vec3::ZERO, h, true);
    assert_closed_manifold(&m2, "sphere logits");
    assert!((m2.signed_volume() / v_true - 1.0).abs() < 0.01);
}

#[test]
fn torus_has_genus_one() {
    let c = Vec3::splat(0.5);
    let (values, h) = sample(96, |p| {
        let d = p - c;
        let ring = (d.x * d.x + d.y * d.y).sqrt() - 0.3;
        (ring * ring + d.z * d.z).sqrt() - 0.1
    });
    let grid = Grid3 { dims: [96; 3], values: &values };
    let mesh = marching_cubes(&grid, 0.0, Vec3::ZERO, h, false);
    assert_closed_manifold(&mesh, "torus");
    assert_eq!(euler(&mesh), 0);
    assert_vertex_manifold(&mesh, "torus");
    let v_true = 2.0 * PI * PI * 0.3 * 0.01;
    assert!((mesh.signed_volume() / v_true - 1.0).abs() < 0.02, "{}", mesh.signed_volume());
}

/// SplitMix64, so the test needs no extra crate.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// Random fields hit every case and every ambiguous face; the padded surface must stay closed,
/// manifold and consistently oriented, and enclose a positive volume.
#[test]
fn random_noise_gives_closed_manifold_meshes() {
    for seed in 0..20u64 {
        let n = 16;
        let mut values = noise(n * n * n, seed);
        // Some samples exactly at the level, too.
        for v in values.iter_mut().step_by(7) {
            *v = 0.5;
        }
        let grid = Grid3 { dims: [n; 3], values: &values };
        for inside_is_greater in [true, false] {
            let mesh = marching_cubes_padded(&grid, 0.5, Vec3::ZERO, Vec3::splat(0.1), inside_is_greater);
            let what = format!("noise seed {seed} greater={inside_is_greater}");
            assert!(mesh.triangles.len() > 1000, "{what}");
            assert_closed_manifold(&mesh, &what);
            assert_vertex_manifold(&mesh, &what);
            assert!(mesh.signed_volume() > 0.0, "{what}");
            // Every vertex used: no stray vertices.
            let mut used = vec![false; mesh.positions.len()];
            mesh.triangles.iter().flatten().for_each(|&i| used[i as usize] = true);
            assert!(used.iter().all(|&u| u), "{what}: unused vertices");
        }
    }
}

/// Inside + outside volumes of the same field add up to the whole padded box interior: the two
/// orientations extract the same surface with opposite sides.
#[test]
fn open_surface_without_padding_and_mirrored_spacing() {
    let (values, h) = sample(32, |p| p.x + 0.3 * p.y - 0.6);
    let grid = Grid3 { dims: [32; 3], values: &values };
    let mesh = marching_cubes(&grid, 0.0, Vec3::ZERO, h, true);
    let (boundary, non_manifold, inconsistent) = edge_manifold_report(&mesh);
    assert!(boundary > 0 && non_manifold == 0 && inconsistent == 0);
    // A mirrored grid (negative spacing) keeps normals pointing out of the inside region.
    let (values, h) = sample(24, |p| 0.3 - p.distance(Vec3::splat(0.5)));
    let grid = Grid3 { dims: [24; 3], values: &values };
    let mirrored = marching_cubes(&grid, 0.0, Vec3::ZERO, h * Vec3::new(-1.0, 1.0, 1.0), true);
    assert!(mirrored.signed_volume() > 0.0);
    assert_eq!(edge_manifold_report(&mirrored), (0, 0, 0));
}
