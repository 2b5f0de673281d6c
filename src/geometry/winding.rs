//! The inside test: generalized winding numbers (Jacobson et al. 2013), evaluated with the
//! hierarchical approximation of Barill et al. 2018, "Fast Winding Numbers for Soups and Clouds".
//!
//! The winding number w(q) = (1/4π) Σ Ω_i(q) sums the signed solid angles of the triangles seen from
//! q: 1 inside a closed outward-oriented mesh, 0 outside, and a smooth, still useful value for open
//! meshes and soups (a hole just blurs w near the hole). We label q inside when w(q) > 1/2, on
//! the mesh as [`super::orient`] has oriented it (w is −1 inside an inverted mesh otherwise); the
//! CUDA labeller is given the same oriented mesh, so both follow one rule.
//!
//! ## Design
//! Every node of the [`Bvh`] stores a far-field expansion of its triangles about their
//! area-weighted centroid c: the dipole N = Σ aᵢnᵢ and the first moment M = Σ aᵢ nᵢ (x̄ᵢ − c)ᵀ, plus
//! the radius r of a ball around c holding every corner. When |q − c| > β·r the node contributes
//! the expansion (third order, as in Barill et al.); otherwise we descend, and at a near leaf sum the
//! exact solid angles (Van Oosterom–Strackee, in f64). A query far from the mesh costs one node.

use glam::{DMat3, DVec3, Vec3};
use rayon::prelude::*;

use super::bvh::Bvh;
use super::TriMesh;

/// Default accuracy parameter β: a node is expanded when the query is farther than β radii.
pub const DEFAULT_BETA: f64 = 2.0;

/// β of the first, coarse labelling pass of [`WindingNumber::label_points`].
pub const LABEL_BETA: f64 = 1.5;
/// Points whose coarse winding number is within this of 1/2 are evaluated again with the full β.
/// The coarse pass errs by far less than this (it agreed with β = 3 on 10⁶ bunny points).
pub const LABEL_RECHECK: f64 = 0.3;

/// The fixed, non-axis-aligned direction of [`inside_by_ray_parity`].
pub const PARITY_RAY_DIR: Vec3 = Vec3::new(0.5377, 0.8264, 0.1671);

const FOUR_PI: f64 = 4.0 * std::f64::consts::PI;

/// Doubles per node in [`FlatWinding::far`].
pub const FAR_STRIDE: usize = 50;

/// [`WindingNumber`]'s tree as plain arrays (see [`WindingNumber::export_flat`]).
#[derive(Clone, Debug)]
pub struct FlatWinding {
    /// Per node, depth-first as in [`Bvh::nodes`]: `[right_or_first, count]` (count 0: inner
    /// node, whose left child is the next node and right child `right_or_first`; else a leaf of
    /// `count` triangles from `right_or_first` in `tris`).
    pub nodes: Vec<[u32; 2]>,
    /// Triangle corners in leaf order: a, b, c as x, y, z (f32, as stored).
    pub tris: Vec<[f32; 9]>,
    /// Per node ([`FAR_STRIDE`] doubles): centre (0..3), radius² (3), dipole (4..7), first moment
    /// M column-major (7..16), trace M (16), u = Σⱼ row j of Cⱼ (17..20), trace of C₀, C₁, C₂
    /// (20..23), C₀, C₁, C₂ column-major (23..50).
    pub far: Vec<[f64; FAR_STRIDE]>,
    /// β² of the tree.
    pub beta2: f64,
    /// Depth of the deepest node (the root is at 0); a traversal stack needs `max_depth + 1` slots.
    pub max_depth: usize,
}

/// Far-field data of one BVH node (same index as in `Bvh::nodes`).
#[derive(Clone, Copy, Debug)]
struct FarField {
    center: DVec3,
    /// Σ aᵢ nᵢ: the area-weighted normal sum.
    dipole: DVec3,
    /// Σ aᵢ nᵢ (x̄ᵢ − c)ᵀ: the first moment, for the second-order term.
    moment: DMat3,
    /// For each normal component j, Σᵢ nᵢⱼ ∫ (x − c)(x − c)ᵀ dA: the second moment, for the
    /// third-order term.
    second: [DMat3; 3],
    /// radius²: queries farther than β·radius use the expansion.
    radius2: f64,
}

/// A mesh prepared for fast winding-number queries, in the mesh's own coordinates.
#[derive(Clone, Debug)]
pub struct WindingNumber {
    bvh: Bvh,
    far: Vec<FarField>,
    /// β²: a node is expanded when the query is farther than β radii.
    beta2: f64,
}

impl WindingNumber {
    /// Builds the tree with β = [`DEFAULT_BETA`]. Indices must be valid (`TriMesh::validate`).
    pub fn new(mesh: &TriMesh) -> Self {
        Self::with_beta(mesh, DEFAULT_BETA)
    }

    /// Larger β is more accurate and slower.
    pub fn with_beta(mesh: &TriMesh, beta: f64) -> Self {
        let bvh = Bvh::new(mesh);
        let far = far_fields(&bvh);
        WindingNumber { bvh, far, beta2: beta * beta }
    }

    pub fn bvh(&self) -> &Bvh {
        &self.bvh
    }

    /// β² of the tree (the accuracy of [`Self::winding`] and of the second labelling pass).
    pub fn beta2(&self) -> f64 {
        self.beta2
    }

    /// The tree and its far-field data as flat arrays, for evaluating the same winding numbers
    /// elsewhere (the CUDA labeller, `cuda/winding.cu`). Read-only: nothing here changes.
    pub fn export_flat(&self) -> FlatWinding {
        let nodes = self.bvh.nodes.iter().map(|n| [n.right_or_first, n.count]).collect();
        let tris =
            self.bvh.tris.iter().map(|[a, b, c]| [a.x, a.y, a.z, b.x, b.y, b.z, c.x, c.y, c.z]).collect();
        let far = self
            .far
            .iter()
            .map(|f| {
                let mut o = [0.0f64; FAR_STRIDE];
                o[0..3].copy_from_slice(&f.center.to_array());
                o[3] = f.radius2;
                o[4..7].copy_from_slice(&f.dipole.to_array());
                o[7..16].copy_from_slice(&f.moment.to_cols_array());
                let m = &f.moment;
                // exactly the sums `expansion` forms, so the device adds the same numbers
                o[16] = m.x_axis.x + m.y_axis.y + m.z_axis.z;
                let [c0, c1, c2] = &f.second;
                o[17..20].copy_from_slice(&(c0.row(0) + c1.row(1) + c2.row(2)).to_array());
                o[20] = c0.x_axis.x + c0.y_axis.y + c0.z_axis.z;
                o[21] = c1.x_axis.x + c1.y_axis.y + c1.z_axis.z;
                o[22] = c2.x_axis.x + c2.y_axis.y + c2.z_axis.z;
                for (j, c) in f.second.iter().enumerate() {
                    o[23 + 9 * j..32 + 9 * j].copy_from_slice(&c.to_cols_array());
                }
                o
            })
            .collect();
        // deepest node (root at depth 0); children always follow their parent
        let mut depth = vec![0usize; self.bvh.nodes.len()];
        let mut max_depth = 0;
        for (i, n) in self.bvh.nodes.iter().enumerate() {
            if !n.is_leaf() {
                depth[i + 1] = depth[i] + 1;
                depth[n.right_or_first as usize] = depth[i] + 1;
            }
            max_depth = max_depth.max(depth[i]);
        }
        FlatWinding { nodes, tris, far, beta2: self.beta2, max_depth }
    }

    /// The fast (hierarchical) winding number at `q`.
    pub fn winding(&self, q: Vec3) -> f64 {
        let mut stack = Vec::with_capacity(64);
        self.winding_with(q, &mut stack, self.beta2)
    }

    fn winding_with(&self, q: Vec3, stack: &mut Vec<u32>, beta2: f64) -> f64 {
        if self.far.is_empty() {
            return 0.0;
        }
        let qd = q.as_dvec3();
        let mut sum = 0.0;
        stack.clear();
        stack.push(0);
        while let Some(index) = stack.pop() {
            let far = &self.far[index as usize];
            let r = far.center - qd;
            let d2 = r.length_squared();
            if d2 > beta2 * far.radius2 {
                sum += expansion(far, r, d2);
                continue;
            }
            let node = &self.bvh.nodes[index as usize];
            if node.is_leaf() {
                for k in self.bvh.leaf_range(node) {
                    sum += solid_angle(&self.bvh.tris[k], qd);
                }
            } else {
                stack.push(node.right_or_first);
                stack.push(index + 1);
            }
        }
        sum / FOUR_PI
    }

    /// The exact winding number by brute force over every triangle (for tests).
    pub fn winding_exact(&self, q: Vec3) -> f64 {
        let qd = q.as_dvec3();
        self.bvh.tris.iter().map(|t| solid_angle(t, qd)).sum::<f64>() / FOUR_PI
    }

    /// Whether `q` is inside (winding number > 1/2).
    pub fn is_inside(&self, q: Vec3) -> bool {
        self.winding(q) > 0.5
    }

    /// `out[i] = 1.0` when `points[i]` is inside (winding number > 1/2), else `0.0`. Runs on the
    /// rayon pool; every point is computed independently, so the result does not depend on the
    /// thread count. Points are visited in Morton (Z-curve) order, so neighbouring queries walk
    /// the same nodes while they are in cache; the labels come back in the input order.
    ///
    /// Panics if `out` and `points` have different lengths (a caller bug, not bad input).
    pub fn label_points(&self, points: &[[f32; 3]], out: &mut [f32]) {
        assert_eq!(points.len(), out.len(), "label_points: one output per point");
        const CHUNK: usize = 2048;
        let order = morton_order(points);
        let mut sorted = vec![0.0f32; points.len()];
        order.par_chunks(CHUNK).zip(sorted.par_chunks_mut(CHUNK)).for_each(|(ids, os)| {
            let mut stack = Vec::with_capacity(64);
            for (&i, o) in ids.iter().zip(os.iter_mut()) {
                let q = Vec3::from_array(points[i as usize]);
                // A coarse pass decides almost every point (w is near 0 or 1 away from holes);
                // the rest are evaluated again at the accuracy the tree was built for.
                let mut w = self.winding_with(q, &mut stack, LABEL_BETA * LABEL_BETA);
                if (w - 0.5).abs() < LABEL_RECHECK {
                    w = self.winding_with(q, &mut stack, self.beta2);
                }
                *o = if w > 0.5 { 1.0 } else { 0.0 };
            }
        });
        for (&i, &l) in order.iter().zip(&sorted) {
            out[i as usize] = l;
        }
    }

    /// Ray-parity inside test on the same tree (see [`inside_by_ray_parity`]).
    pub fn inside_by_ray_parity(&self, q: Vec3) -> bool {
        inside_by_ray_parity(&self.bvh, q)
    }
}

/// Indices of `points` sorted along a Z-order curve over their bounding box (10 bits per axis),
/// ties in input order. Non-finite coordinates sort as the box's lower corner.
fn morton_order(points: &[[f32; 3]]) -> Vec<u32> {
    let (mut lo, mut hi) = (Vec3::splat(f32::INFINITY), Vec3::splat(f32::NEG_INFINITY));
    for p in points {
        let p = Vec3::from_array(*p);
        if p.is_finite() {
            lo = lo.min(p);
            hi = hi.max(p);
        }
    }
    let scale = 1023.0 / (hi - lo).max(Vec3::splat(f32::MIN_POSITIVE));
    // spreads the low 10 bits of x to every third bit
    let spread = |x: u32| {
        let mut x = x & 0x3ff;
        x = (x | (x << 16)) & 0x030000ff;
        x = (x | (x << 8)) & 0x0300f00f;
        x = (x | (x << 4)) & 0x030c30c3;
        (x | (x << 2)) & 0x09249249
    };
    let mut keyed: Vec<(u32, u32)> = points
        .par_iter()
        .enumerate()
        .map(|(i, p)| {
            let c = ((Vec3::from_array(*p) - lo) * scale).clamp(Vec3::ZERO, Vec3::splat(1023.0));
            let c = if c.is_finite() { c } else { Vec3::ZERO };
            ((spread(c.x as u32) << 2) | (spread(c.y as u32) << 1) | spread(c.z as u32), i as u32)
        })
        .collect();
    keyed.par_sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Inside test by ray parity: casts a ray from `q` along [`PARITY_RAY_DIR`] and counts crossings;
/// odd means inside. Right for closed meshes away from the surface (a ray through an edge or vertex
/// can miscount); wrong for open meshes. Kept as a cross-check of the winding number.
pub fn inside_by_ray_parity(bvh: &Bvh, q: Vec3) -> bool {
    bvh.count_crossings(q, PARITY_RAY_DIR.normalize()) % 2 == 1
}

/// Signed solid angle of a triangle seen from `q` (Van Oosterom & Strackee 1983), in steradians;
/// positive when `q` is behind the counter-clockwise face.
pub fn solid_angle(tri: &[Vec3; 3], q: DVec3) -> f64 {
    let a = tri[0].as_dvec3() - q;
    let b = tri[1].as_dvec3() - q;
    let c = tri[2].as_dvec3() - q;
    let (la, lb, lc) = (a.length(), b.length(), c.length());
    let num = a.dot(b.cross(c));
    let den = la * lb * lc + a.dot(b) * lc + a.dot(c) * lb + b.dot(c) * la;
    2.0 * num.atan2(den)
}

/// Third-order far-field contribution (times 4π) of a node; `r = c − q`, `d2 = |r|²`.
///
/// Taylor expansion about c of g(x) = (x − q)/|x − q|³ integrated against n dA:
/// g(c)·N + ∇g : M + ½ ∇²g ⋮ C.
#[inline]
fn expansion(far: &FarField, r: DVec3, d2: f64) -> f64 {
    let d = d2.sqrt();
    let inv3 = 1.0 / (d2 * d);
    let inv5 = inv3 / d2;
    let inv7 = inv5 / d2;
    let m = &far.moment;
    let trace = m.x_axis.x + m.y_axis.y + m.z_axis.z;
    // rᵀ M r with M stored column-major.
    let rmr = r.dot(*m * r);
    let first = r.dot(far.dipole) * inv3;
    let second = trace * inv3 - 3.0 * rmr * inv5;
    // ∂²gⱼ/∂xₖ∂xₗ = −3(δⱼₖrₗ + δⱼₗrₖ + δₖₗrⱼ)/|r|⁵ + 15 rⱼrₖrₗ/|r|⁷, contracted with the
    // (k,l)-symmetric Cⱼₖₗ.
    let [c0, c1, c2] = &far.second;
    let u = c0.row(0) + c1.row(1) + c2.row(2); // uₖ = Σⱼ Cⱼⱼₖ
    let traces = DVec3::new(
        c0.x_axis.x + c0.y_axis.y + c0.z_axis.z,
        c1.x_axis.x + c1.y_axis.y + c1.z_axis.z,
        c2.x_axis.x + c2.y_axis.y + c2.z_axis.z,
    );
    let rcr = DVec3::new(r.dot(*c0 * r), r.dot(*c1 * r), r.dot(*c2 * r));
    let third = 0.5 * (-3.0 * inv5 * (2.0 * u.dot(r) + traces.dot(r)) + 15.0 * inv7 * r.dot(rcr));
    first + second + third
}

/// Bottom-up far-field data for every node (children always follow their parent in `nodes`).
fn far_fields(bvh: &Bvh) -> Vec<FarField> {
    let n = bvh.nodes.len();
    let zero = FarField {
        center: DVec3::ZERO,
        dipole: DVec3::ZERO,
        moment: DMat3::ZERO,
        second: [DMat3::ZERO; 3],
        radius2: 0.0,
    };
    let mut far = vec![zero; n];
    // Scalar area and leaf-order triangle range of each node's subtree.
    let mut area = vec![0.0f64; n];
    let mut range = vec![(0usize, 0usize); n];
    for i in (0..n).rev() {
        let node = &bvh.nodes[i];
        let bbox_center = ((node.min + node.max) * 0.5).as_dvec3();
        if node.is_leaf() {
            let r = bvh.leaf_range(node);
            range[i] = (r.start, r.end);
            let mut a_sum = 0.0;
            let mut c_sum = DVec3::ZERO;
            let mut dipole = DVec3::ZERO;
            for k in r.clone() {
                let [a, b, c] = bvh.tris[k].map(|p| p.as_dvec3());
                let vector_area = 0.5 * (b - a).cross(c - a);
                let ai = vector_area.length();
                a_sum += ai;
                c_sum += ai * (a + b + c) / 3.0;
                dipole += vector_area;
            }
            let center = if a_sum > 0.0 { c_sum / a_sum } else { bbox_center };
            let mut moment = DMat3::ZERO;
            let mut second = [DMat3::ZERO; 3];
            for k in r {
                let [a, b, c] = bvh.tris[k].map(|p| p.as_dvec3() - center);
                let vector_area = 0.5 * (b - a).cross(c - a);
                moment += outer(vector_area, (a + b + c) / 3.0);
                // ∫ y yᵀ dA over a triangle = (area/12)(Σ vᵥvᵥᵀ + s sᵀ), s = Σ vᵥ; times n̂ⱼ.
                let s = a + b + c;
                let sym = outer(a, a) + outer(b, b) + outer(c, c) + outer(s, s);
                for (j, cj) in second.iter_mut().enumerate() {
                    *cj += sym * (vector_area[j] / 12.0);
                }
            }
            area[i] = a_sum;
            far[i] = FarField { center, dipole, moment, second, radius2: 0.0 };
        } else {
            let (l, rt) = (i + 1, node.right_or_first as usize);
            let a_sum = area[l] + area[rt];
            let center = if a_sum > 0.0 {
                (far[l].center * area[l] + far[rt].center * area[rt]) / a_sum
            } else {
                bbox_center
            };
            let mut moment = DMat3::ZERO;
            let mut second = [DMat3::ZERO; 3];
            for child in [&far[l], &far[rt]] {
                // Shift the child's moments from its centre to ours: x − c = y + δ.
                let delta = child.center - center;
                moment += child.moment + outer(child.dipole, delta);
                for (j, cj) in second.iter_mut().enumerate() {
                    let mj = child.moment.row(j);
                    *cj += child.second[j]
                        + outer(mj, delta)
                        + outer(delta, mj)
                        + outer(delta, delta) * child.dipole[j];
                }
            }
            area[i] = a_sum;
            range[i] = (range[l].0, range[rt].1);
            let dipole = far[l].dipole + far[rt].dipole;
            far[i] = FarField { center, dipole, moment, second, radius2: 0.0 };
        }
        // Radius of the ball about the centre holding every corner in the subtree.
        let center = far[i].center;
        let radius2 = bvh.tris[range[i].0..range[i].1]
            .iter()
            .flatten()
            .map(|p| (p.as_dvec3() - center).length_squared())
            .fold(0.0f64, f64::max);
        far[i].radius2 = radius2;
    }
    far
}

/// u vᵀ as a column-major matrix.
fn outer(u: DVec3, v: DVec3) -> DMat3 {
    DMat3::from_cols(u * v.x, u * v.y, u * v.z)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::shapes;

    #[test]
    fn solid_angle_of_a_closed_mesh_is_4pi_inside() {
        let mesh = shapes::cube(Vec3::ZERO, 1.0);
        let w = WindingNumber::new(&mesh);
        assert!((w.winding_exact(Vec3::new(0.1, 0.2, 0.3)) - 1.0).abs() < 1e-9);
        assert!(w.winding_exact(Vec3::new(2.1, 0.2, 0.3)).abs() < 1e-9);
    }

    #[test]
    fn far_queries_match_exact() {
        let mesh = shapes::torus(Vec3::new(0.5, 0.5, 0.5), 0.3, 0.1, 96, 32);
        // The error shrinks fast with β: third order, so roughly β⁻⁴.
        for (beta, tol) in [(2.0, 1e-2), (4.0, 1e-3)] {
            let w = WindingNumber::with_beta(&mesh, beta);
            for q in [
                Vec3::new(0.5, 0.5, 0.5),
                Vec3::new(0.8, 0.5, 0.52),
                Vec3::new(3.0, -2.0, 1.0),
                Vec3::new(0.5, 0.9, 0.45),
            ] {
                let (fast, exact) = (w.winding(q), w.winding_exact(q));
                assert!((fast - exact).abs() < tol, "β {beta}, {q}: {fast} vs {exact}");
            }
        }
    }
}
