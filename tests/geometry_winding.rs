//! The inside test: fast winding numbers against analytic shapes, brute force, and ray parity.

use ffvol::geometry::shapes;
use ffvol::geometry::winding::{inside_by_ray_parity, WindingNumber};
use ffvol::geometry::TriMesh;
use glam::Vec3;

mod common;
use common::SplitMix as Rng;

fn padded_bounds(mesh: &TriMesh, pad: f32) -> (Vec3, Vec3) {
    let (lo, hi) = mesh.bounds().expect("non-empty mesh");
    let d = (hi - lo) * pad;
    (lo - d, hi + d)
}

struct Case {
    name: &'static str,
    mesh: TriMesh,
    sdf: Box<dyn Fn(Vec3) -> f32>,
}

fn cases() -> Vec<Case> {
    let c = Vec3::new(0.5, 0.5, 0.5);
    vec![
        Case {
            name: "icosphere",
            mesh: shapes::icosphere(c, 0.35, 5),
            sdf: Box::new(move |p| shapes::sphere_sdf(p, c, 0.35)),
        },
        Case {
            name: "torus",
            mesh: shapes::torus(c, 0.3, 0.1, 256, 64),
            sdf: Box::new(move |p| shapes::torus_sdf(p, c, 0.3, 0.1)),
        },
        Case {
            name: "cube",
            mesh: shapes::cube_subdivided(c, 0.3, 4),
            sdf: Box::new(move |p| shapes::cube_sdf(p, c, 0.3)),
        },
    ]
}

/// Labels agree with the analytic shapes everywhere outside a 1e-3 band around the surface.
#[test]
fn labels_match_analytic_shapes() {
    let mut rng = Rng(1);
    for case in cases() {
        let wn = WindingNumber::new(&case.mesh);
        let (lo, hi) = padded_bounds(&case.mesh, 0.1);
        let mut points = Vec::new();
        while points.len() < 20_000 {
            let p = rng.point_in(lo, hi);
            if (case.sdf)(p).abs() > 1e-3 {
                points.push(p.to_array());
            }
        }
        let mut labels = vec![0.0f32; points.len()];
        wn.label_points(&points, &mut labels);
        let mut wrong = 0;
        let mut parity_wrong = 0;
        let mut n_inside = 0;
        for (p, &l) in points.iter().zip(&labels) {
            let p = Vec3::from_array(*p);
            let truth = (case.sdf)(p) < 0.0;
            n_inside += truth as usize;
            wrong += ((l > 0.5) != truth) as usize;
            parity_wrong += (inside_by_ray_parity(wn.bvh(), p) != truth) as usize;
        }
        println!(
            "{}: {} triangles, {n_inside}/{} inside, winding wrong {wrong}, parity wrong {parity_wrong}",
            case.name,
            case.mesh.triangles.len(),
            points.len()
        );
        assert!(n_inside > 1000, "{}: the test should see both labels", case.name);
        assert_eq!(wrong, 0, "{}: winding labels disagree with the analytic shape", case.name);
        assert_eq!(parity_wrong, 0, "{}: ray parity disagrees with the analytic shape", case.name);
    }
}

/// The hierarchical approximation stays within 1e-2 of the brute-force sum.
#[test]
fn fast_matches_exact() {
    let mut rng = Rng(2);
    for case in cases() {
        let wn = WindingNumber::new(&case.mesh);
        let (lo, hi) = padded_bounds(&case.mesh, 0.2);
        let mut worst = 0.0f64;
        for _ in 0..1000 {
            let p = rng.point_in(lo, hi);
            let (fast, exact) = (wn.winding(p), wn.winding_exact(p));
            worst = worst.max((fast - exact).abs());
        }
        println!("{}: max |fast − exact| = {worst:.2e} over 1000 points", case.name);
        assert!(worst < 1e-2, "{}: {worst}", case.name);
    }
}

/// A sphere with a 15° cap cut away: winding numbers still label points away from the hole
/// correctly, while ray parity (which needs a closed mesh) gets many of them wrong.
#[test]
fn open_mesh_still_labels_correctly() {
    let (c, r) = (Vec3::new(0.5, 0.5, 0.5), 0.35f32);
    let closed = shapes::icosphere(c, r, 5);
    let pole = c + Vec3::Z * r;
    // Chord length of a 15° half-angle cap.
    let cap_radius = 2.0 * r * (7.5f32.to_radians()).sin();
    let open = shapes::punch_hole(&closed, pole, cap_radius);
    let removed = closed.triangles.len() - open.triangles.len();
    assert!(removed > 100, "removed {removed}");
    let wn = WindingNumber::new(&open);
    let mut rng = Rng(3);
    let (lo, hi) = padded_bounds(&closed, 0.1);
    let (mut n, mut wrong, mut parity_wrong) = (0, 0, 0);
    while n < 20_000 {
        let p = rng.point_in(lo, hi);
        if shapes::sphere_sdf(p, c, r).abs() < 1e-3 || p.distance(pole) < cap_radius + 0.1 * r {
            continue;
        }
        n += 1;
        let truth = shapes::sphere_inside(p, c, r);
        wrong += (wn.is_inside(p) != truth) as usize;
        parity_wrong += (inside_by_ray_parity(wn.bvh(), p) != truth) as usize;
    }
    println!("open sphere ({removed} faces removed): winding wrong {wrong}/{n}, ray parity wrong {parity_wrong}/{n}");
    assert_eq!(wrong, 0);
    assert!(parity_wrong > 0, "the ray-parity test was expected to fail on an open mesh");

    // The two-pass batch labeller agrees with the full-accuracy test everywhere, the hole included
    // (where the winding number passes through 1/2 away from any surface).
    let near_hole: Vec<[f32; 3]> = (0..20_000)
        .map(|i| {
            let p = if i % 2 == 0 { rng.point_in(lo, hi) } else { rng.point_in(pole - 0.15, pole + 0.15) };
            p.to_array()
        })
        .collect();
    let mut labels = vec![0.0f32; near_hole.len()];
    wn.label_points(&near_hole, &mut labels);
    let fractional =
        near_hole.iter().filter(|p| (wn.winding(Vec3::from_array(**p)) - 0.5).abs() < 0.4).count();
    let disagree = near_hole
        .iter()
        .zip(&labels)
        .filter(|(p, &l)| wn.is_inside(Vec3::from_array(**p)) != (l > 0.5))
        .count();
    println!(
        "label_points vs is_inside: {disagree} of {} disagree ({fractional} with 0.1 < w < 0.9)",
        near_hole.len()
    );
    assert!(fractional > 100, "the test should probe the hole, where w is fractional");
    assert_eq!(disagree, 0);
}

/// Points far outside the mesh cost only the root node.
#[test]
fn far_points_are_outside() {
    let mesh = shapes::torus(Vec3::ZERO, 1.0, 0.3, 64, 16);
    let wn = WindingNumber::new(&mesh);
    for q in [Vec3::new(100.0, 0.0, 0.0), Vec3::new(-5.0, 7.0, 3.0), Vec3::splat(1e6)] {
        assert!(wn.winding(q).abs() < 1e-3);
    }
    let empty = WindingNumber::new(&TriMesh::default());
    assert_eq!(empty.winding(Vec3::ZERO), 0.0);
}
