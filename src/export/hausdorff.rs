//! The distance between two surfaces: points sampled uniformly by area on each (and its
//! vertices), each taken to the nearest point of the other through a BVH of its triangles. The
//! symmetric Hausdorff distance is the larger of the two one-sided maxima.

use crate::geometry::bvh::Bvh;
use crate::geometry::TriMesh;
use glam::DVec3;
use rayon::prelude::*;
use serde::Serialize;

/// Distances between two surfaces, in the meshes' units.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Distances {
    /// Symmetric Hausdorff distance: the larger of the two one-sided maxima.
    pub hausdorff: f64,
    /// Largest distance from a point of `a` to `b`.
    pub a_to_b_max: f64,
    /// Largest distance from a point of `b` to `a`.
    pub b_to_a_max: f64,
    /// Mean over both sets of points (a symmetric mean surface distance).
    pub mean: f64,
    /// The Hausdorff distance as a fraction of `a`'s bounding-box diagonal.
    pub hausdorff_relative: f64,
    /// Points sampled on each surface (besides its vertices).
    pub samples_per_surface: usize,
}

/// Distances between the surfaces `a` and `b` from `samples` area-uniform points on each plus
/// every vertex; `None` when either mesh has no triangle of positive area.
pub fn distances(a: &TriMesh, b: &TriMesh, samples: usize, seed: u64) -> Option<Distances> {
    let (bvh_a, bvh_b) = (Bvh::new(a), Bvh::new(b));
    let pa = surface_points(a, samples, seed)?;
    let pb = surface_points(b, samples, seed ^ 0x9e37_79b9_7f4a_7c15)?;
    let da: Vec<f64> = pa.par_iter().map(|p| nearest_distance(&bvh_b, *p)).collect();
    let db: Vec<f64> = pb.par_iter().map(|p| nearest_distance(&bvh_a, *p)).collect();
    let max = |d: &[f64]| d.iter().copied().fold(0.0f64, f64::max);
    let (ab, ba) = (max(&da), max(&db));
    let (lo, hi) = a.bounds()?;
    let diag = (hi - lo).as_dvec3().length().max(f64::MIN_POSITIVE);
    let mean = (da.iter().sum::<f64>() + db.iter().sum::<f64>()) / (da.len() + db.len()) as f64;
    Some(Distances {
        hausdorff: ab.max(ba),
        a_to_b_max: ab,
        b_to_a_max: ba,
        mean,
        hausdorff_relative: ab.max(ba) / diag,
        samples_per_surface: samples,
    })
}

/// `n` points uniformly distributed over the area of `mesh` (a fixed sequence for a seed), then
/// its vertices; `None` when its area is zero.
fn surface_points(mesh: &TriMesh, n: usize, seed: u64) -> Option<Vec<DVec3>> {
    let corners: Vec<[DVec3; 3]> =
        mesh.triangles.iter().map(|t| t.map(|i| mesh.positions[i as usize].as_dvec3())).collect();
    let mut cumulative = Vec::with_capacity(corners.len());
    let mut total = 0.0f64;
    for [p, q, r] in &corners {
        total += 0.5 * (*q - *p).cross(*r - *p).length();
        cumulative.push(total);
    }
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    let mut points: Vec<DVec3> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut s = SplitMix(seed.wrapping_add((i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)));
            let target = s.unit() * total;
            let k = cumulative.partition_point(|&c| c < target).min(corners.len() - 1);
            let (mut u, mut v) = (s.unit(), s.unit());
            if u + v > 1.0 {
                (u, v) = (1.0 - u, 1.0 - v);
            }
            let [p, q, r] = corners[k];
            p + (q - p) * u + (r - p) * v
        })
        .collect();
    let mut used = vec![false; mesh.positions.len()];
    mesh.triangles.iter().flatten().for_each(|&i| used[i as usize] = true);
    points.extend(mesh.positions.iter().zip(&used).filter(|(_, u)| **u).map(|(p, _)| p.as_dvec3()));
    Some(points)
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Distance from `p` to the nearest point of the triangles in `bvh` (infinite when it is empty).
pub fn nearest_distance(bvh: &Bvh, p: DVec3) -> f64 {
    if bvh.nodes.is_empty() {
        return f64::INFINITY;
    }
    let mut best = f64::INFINITY; // squared
    let mut stack: Vec<(u32, f64)> = vec![(0, 0.0)];
    while let Some((index, d_box)) = stack.pop() {
        if d_box >= best {
            continue;
        }
        let node = &bvh.nodes[index as usize];
        if node.is_leaf() {
            for k in bvh.leaf_range(node) {
                let [a, b, c] = bvh.tris[k].map(|v| v.as_dvec3());
                best = best.min((closest_on_triangle(p, a, b, c) - p).length_squared());
            }
        } else {
            let children = [index + 1, node.right_or_first];
            let d = children.map(|ch| {
                let n = &bvh.nodes[ch as usize];
                box_distance_squared(p, n.min.as_dvec3(), n.max.as_dvec3())
            });
            // the nearer child last, so it is searched first
            let order = if d[0] <= d[1] { [1, 0] } else { [0, 1] };
            for o in order {
                if d[o] < best {
                    stack.push((children[o], d[o]));
                }
            }
        }
    }
    best.sqrt()
}

fn box_distance_squared(p: DVec3, lo: DVec3, hi: DVec3) -> f64 {
    let d = (lo - p).max(p - hi).max(DVec3::ZERO);
    d.length_squared()
}

/// The point of triangle abc nearest to p (Ericson, Real-Time Collision Detection, 5.1.5).
pub fn closest_on_triangle(p: DVec3, a: DVec3, b: DVec3, c: DVec3) -> DVec3 {
    let (ab, ac, ap) = (b - a, c - a, p - a);
    let (d1, d2) = (ab.dot(ap), ac.dot(ap));
    if d1 <= 0.0 && d2 <= 0.0 {
        return a;
    }
    let bp = p - b;
    let (d3, d4) = (ab.dot(bp), ac.dot(bp));
    if d3 >= 0.0 && d4 <= d3 {
        return b;
    }
    let vc = d1 * d4 - d3 * d2;
    if vc <= 0.0 && d1 >= 0.0 && d3 <= 0.0 {
        return a + ab * (d1 / (d1 - d3));
    }
    let cp = p - c;
    let (d5, d6) = (ab.dot(cp), ac.dot(cp));
    if d6 >= 0.0 && d5 <= d6 {
        return c;
    }
    let vb = d5 * d2 - d1 * d6;
    if vb <= 0.0 && d2 >= 0.0 && d6 <= 0.0 {
        return a + ac * (d2 / (d2 - d6));
    }
    let va = d3 * d6 - d5 * d4;
    if va <= 0.0 && (d4 - d3) >= 0.0 && (d5 - d6) >= 0.0 {
        return b + (c - b) * ((d4 - d3) / ((d4 - d3) + (d5 - d6)));
    }
    let denom = va + vb + vc;
    if denom.abs() < f64::MIN_POSITIVE {
        // degenerate triangle: the nearest of its edges' points
        let seg = |s: DVec3, e: DVec3| {
            let d = e - s;
            let t = if d.length_squared() > 0.0 {
                ((p - s).dot(d) / d.length_squared()).clamp(0.0, 1.0)
            } else {
                0.0
            };
            s + d * t
        };
        return [seg(a, b), seg(b, c), seg(c, a)]
            .into_iter()
            .min_by(|x, y| (*x - p).length_squared().total_cmp(&(*y - p).length_squared()))
            .unwrap_or(a);
    }
    let (v, w) = (vb / denom, vc / denom);
    a + ab * v + ac * w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::shapes;
    use glam::Vec3;

    /// Nearest distances through the tree against a brute-force scan of every triangle.
    #[test]
    fn nearest_matches_brute_force() {
        let mesh = shapes::icosphere(Vec3::ZERO, 1.0, 3);
        let bvh = Bvh::new(&mesh);
        let mut s = SplitMix(5);
        for _ in 0..200 {
            let p = DVec3::new(s.unit() * 3.0 - 1.5, s.unit() * 3.0 - 1.5, s.unit() * 3.0 - 1.5);
            let brute = mesh
                .triangles
                .iter()
                .map(|t| {
                    let [a, b, c] = t.map(|i| mesh.positions[i as usize].as_dvec3());
                    (closest_on_triangle(p, a, b, c) - p).length()
                })
                .fold(f64::INFINITY, f64::min);
            assert!((nearest_distance(&bvh, p) - brute).abs() < 1e-9);
        }
    }

    #[test]
    fn a_mesh_is_at_zero_distance_from_itself_and_a_shifted_copy_at_the_shift() {
        let mesh = shapes::icosphere(Vec3::ZERO, 1.0, 2);
        let d = distances(&mesh, &mesh, 1000, 1).unwrap();
        assert!(d.hausdorff < 1e-6, "{d:?}");
        let mut moved = mesh.clone();
        moved.positions.iter_mut().for_each(|p| *p += Vec3::new(0.0, 0.0, 0.1));
        let d = distances(&mesh, &moved, 4000, 1).unwrap();
        // the caps move by 0.1 along the normal: the farthest points are 0.1 away
        assert!((d.hausdorff - 0.1).abs() < 5e-3, "{d:?}");
        assert!(distances(&mesh, &TriMesh::default(), 10, 1).is_none());
    }
}
