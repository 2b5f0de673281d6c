//! A bounding-volume hierarchy over a mesh's triangles, stored flat.
//!
//! Built top-down with a binned surface-area heuristic over triangle centroids (12 bins per axis),
//! leaves of at most [`MAX_LEAF`] triangles. Nodes sit in one `Vec` in depth-first order: a node's
//! left child is the next node, its right child is at `right_or_first`. Triangles are copied into
//! leaf order, so a leaf's corners are contiguous in memory. Used by ray casting here and by the
//! winding-number tree in [`super::winding`].

use glam::{DVec3, Vec3};

use super::TriMesh;

/// Largest number of triangles in a leaf.
pub const MAX_LEAF: usize = 6;

const BINS: usize = 12;

/// One node of the flat tree.
#[derive(Clone, Copy, Debug)]
pub struct BvhNode {
    pub min: Vec3,
    pub max: Vec3,
    /// Leaf: index of the first triangle in [`Bvh::tris`]. Inner node: index of the right child
    /// (the left child is always the next node).
    pub right_or_first: u32,
    /// Number of triangles for a leaf, 0 for an inner node.
    pub count: u32,
}

impl BvhNode {
    pub fn is_leaf(&self) -> bool {
        self.count > 0
    }
}

#[derive(Clone, Debug, Default)]
pub struct Bvh {
    /// Depth-first nodes; `nodes[0]` is the root (absent for an empty mesh).
    pub nodes: Vec<BvhNode>,
    /// Triangle corners in leaf order.
    pub tris: Vec<[Vec3; 3]>,
    /// `tri_ids[k]` is the index in the source mesh of `tris[k]`.
    pub tri_ids: Vec<u32>,
}

/// The first hit of a ray.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RayHit {
    /// Distance along the ray in units of the direction's length.
    pub t: f32,
    /// Triangle index in the source mesh.
    pub triangle: u32,
}

struct Build {
    centroids: Vec<Vec3>,
    bounds: Vec<(Vec3, Vec3)>,
}

/// Subtrees of at least this many triangles build their two halves in parallel (the tree is the
/// same as a serial build's, node for node).
const PARALLEL_MIN: usize = 1 << 14;

fn area(min: Vec3, max: Vec3) -> f32 {
    let d = (max - min).max(Vec3::ZERO);
    d.x * d.y + d.y * d.z + d.z * d.x
}

impl Bvh {
    /// Builds the tree over `mesh`'s triangles. Indices must be valid (`TriMesh::validate`).
    pub fn new(mesh: &TriMesh) -> Self {
        let corners: Vec<[Vec3; 3]> =
            mesh.triangles.iter().map(|t| t.map(|i| mesh.positions[i as usize])).collect();
        Self::from_triangles(&corners)
    }

    /// Builds the tree over a triangle soup given by its corners.
    pub fn from_triangles(corners: &[[Vec3; 3]]) -> Self {
        if corners.is_empty() {
            return Bvh::default();
        }
        let bounds: Vec<(Vec3, Vec3)> =
            corners.iter().map(|[a, b, c]| (a.min(*b).min(*c), a.max(*b).max(*c))).collect();
        let build =
            Build { centroids: corners.iter().map(|[a, b, c]| (*a + *b + *c) / 3.0).collect(), bounds };
        let mut order: Vec<u32> = (0..corners.len() as u32).collect();
        let mut nodes = Vec::with_capacity(2 * corners.len() / MAX_LEAF + 1);
        build.split(&mut order, 0, &mut nodes, PARALLEL_MIN);
        let tris = order.iter().map(|&i| corners[i as usize]).collect();
        Bvh { nodes, tris, tri_ids: order }
    }

    /// Bounds of the whole mesh, `None` when empty.
    pub fn bounds(&self) -> Option<(Vec3, Vec3)> {
        self.nodes.first().map(|n| (n.min, n.max))
    }

    /// Leaf-order triangle range `[first, first + count)` of a leaf node.
    pub fn leaf_range(&self, node: &BvhNode) -> std::ops::Range<usize> {
        node.right_or_first as usize..(node.right_or_first + node.count) as usize
    }

    /// Calls `visit(k)` for every leaf-order triangle index `k` whose leaf box the ray
    /// `origin + t·dir, t ∈ [0, t_max]` passes through.
    fn for_each_candidate(
        &self,
        origin: Vec3,
        dir: Vec3,
        t_max: f32,
        mut visit: impl FnMut(usize, &mut f32),
    ) {
        if self.nodes.is_empty() {
            return;
        }
        let inv = dir.recip();
        let mut t_max = t_max;
        let mut stack: Vec<u32> = Vec::with_capacity(64);
        stack.push(0);
        while let Some(index) = stack.pop() {
            let node = &self.nodes[index as usize];
            if !slab_hit(node.min, node.max, origin, inv, t_max) {
                continue;
            }
            if node.is_leaf() {
                for k in self.leaf_range(node) {
                    visit(k, &mut t_max);
                }
            } else {
                stack.push(node.right_or_first);
                stack.push(index + 1);
            }
        }
    }

    /// The nearest triangle hit by the ray `origin + t·dir` with `t > 0` (Möller–Trumbore in f64).
    pub fn first_hit(&self, origin: Vec3, dir: Vec3) -> Option<RayHit> {
        let mut best: Option<RayHit> = None;
        let (o, d) = (origin.as_dvec3(), dir.as_dvec3());
        self.for_each_candidate(origin, dir, f32::INFINITY, |k, t_max| {
            if let Some(t) = ray_triangle(o, d, &self.tris[k]) {
                if (t as f32) < *t_max {
                    *t_max = t as f32;
                    best = Some(RayHit { t: t as f32, triangle: self.tri_ids[k] });
                }
            }
        });
        best
    }

    /// Number of triangles the ray `origin + t·dir, t > 0` crosses.
    pub fn count_crossings(&self, origin: Vec3, dir: Vec3) -> usize {
        let mut n = 0;
        let (o, d) = (origin.as_dvec3(), dir.as_dvec3());
        self.for_each_candidate(origin, dir, f32::INFINITY, |k, _| {
            if ray_triangle(o, d, &self.tris[k]).is_some() {
                n += 1;
            }
        });
        n
    }
}

#[inline]
fn slab_hit(min: Vec3, max: Vec3, origin: Vec3, inv: Vec3, t_max: f32) -> bool {
    let t0 = (min - origin) * inv;
    let t1 = (max - origin) * inv;
    // NaN (0·∞ for a ray lying in a slab plane) is dropped by min/max, which keeps the box.
    let near = t0.min(t1).max_element().max(0.0);
    let far = t0.max(t1).min_element().min(t_max);
    near <= far
}

/// Möller–Trumbore ray/triangle intersection in f64; `Some(t)` for a hit with `t > 0`.
pub fn ray_triangle(o: DVec3, d: DVec3, tri: &[Vec3; 3]) -> Option<f64> {
    let [a, b, c] = tri.map(|p| p.as_dvec3());
    let e1 = b - a;
    let e2 = c - a;
    let p = d.cross(e2);
    let det = e1.dot(p);
    if det == 0.0 {
        return None;
    }
    let inv = 1.0 / det;
    let s = o - a;
    let u = s.dot(p) * inv;
    if !(0.0..=1.0).contains(&u) {
        return None;
    }
    let q = s.cross(e1);
    let v = d.dot(q) * inv;
    if v < 0.0 || u + v > 1.0 {
        return None;
    }
    let t = e2.dot(q) * inv;
    (t > 0.0).then_some(t)
}

impl Build {
    /// Builds the subtree over `order` (the triangles `start..start + order.len()` in leaf
    /// order), appending its nodes in depth-first order to `nodes`, whose indices are relative to
    /// `nodes[0]`. Subtrees of `parallel_min` triangles or more build their halves on the rayon
    /// pool into their own vectors, appended in the same order, so the tree does not depend on it.
    fn split(&self, order: &mut [u32], start: usize, nodes: &mut Vec<BvhNode>, parallel_min: usize) {
        let here = nodes.len();
        let (mut min, mut max) = (Vec3::INFINITY, Vec3::NEG_INFINITY);
        let (mut cmin, mut cmax) = (Vec3::INFINITY, Vec3::NEG_INFINITY);
        for &i in order.iter() {
            let (lo, hi) = self.bounds[i as usize];
            min = min.min(lo);
            max = max.max(hi);
            let c = self.centroids[i as usize];
            cmin = cmin.min(c);
            cmax = cmax.max(c);
        }
        let n = order.len();
        nodes.push(BvhNode { min, max, right_or_first: start as u32, count: n as u32 });
        if n <= MAX_LEAF {
            return;
        }
        let mid = self.choose_split(order, cmin, cmax).unwrap_or_else(|| {
            // All centroids coincide or SAH found nothing better: split by count along the longest
            // axis so leaves still stay small.
            let axis = (cmax - cmin).max_position();
            let cent = &self.centroids;
            order.sort_unstable_by(|&a, &b| cent[a as usize][axis].total_cmp(&cent[b as usize][axis]));
            n / 2
        });
        nodes[here].count = 0;
        let (left, right) = order.split_at_mut(mid);
        if n < parallel_min {
            self.split(left, start, nodes, parallel_min);
            nodes[here].right_or_first = nodes.len() as u32;
            self.split(right, start + mid, nodes, parallel_min);
            return;
        }
        let (l, r) = rayon::join(
            || {
                let mut l = Vec::with_capacity(2 * mid / MAX_LEAF + 1);
                self.split(left, start, &mut l, parallel_min);
                l
            },
            || {
                let mut r = Vec::with_capacity(2 * (n - mid) / MAX_LEAF + 1);
                self.split(right, start + mid, &mut r, parallel_min);
                r
            },
        );
        // inner nodes name their right child by index: shift each subtree to where it lands
        let append = |nodes: &mut Vec<BvhNode>, sub: Vec<BvhNode>| {
            let offset = nodes.len() as u32;
            nodes.extend(sub.into_iter().map(|mut node| {
                if !node.is_leaf() {
                    node.right_or_first += offset;
                }
                node
            }));
        };
        append(nodes, l);
        nodes[here].right_or_first = nodes.len() as u32;
        append(nodes, r);
    }

    /// Returns the split point as an index into `order`.
    fn choose_split(&self, order: &mut [u32], cmin: Vec3, cmax: Vec3) -> Option<usize> {
        let extent = cmax - cmin;
        let mut best: Option<(f32, usize, usize)> = None; // (cost, axis, bin boundary)
        for axis in 0..3 {
            if extent[axis] <= 0.0 {
                continue;
            }
            let scale = BINS as f32 / extent[axis];
            let mut counts = [0usize; BINS];
            let mut boxes = [(Vec3::INFINITY, Vec3::NEG_INFINITY); BINS];
            for &i in order.iter() {
                let b = (((self.centroids[i as usize][axis] - cmin[axis]) * scale) as usize).min(BINS - 1);
                counts[b] += 1;
                let (lo, hi) = self.bounds[i as usize];
                boxes[b].0 = boxes[b].0.min(lo);
                boxes[b].1 = boxes[b].1.max(hi);
            }
            // Sweep from the right to get suffix areas, then from the left.
            let mut right_area = [0.0f32; BINS];
            let mut right_count = [0usize; BINS];
            let (mut lo, mut hi, mut cnt) = (Vec3::INFINITY, Vec3::NEG_INFINITY, 0);
            for b in (1..BINS).rev() {
                lo = lo.min(boxes[b].0);
                hi = hi.max(boxes[b].1);
                cnt += counts[b];
                right_area[b] = area(lo, hi);
                right_count[b] = cnt;
            }
            let (mut lo, mut hi, mut cnt) = (Vec3::INFINITY, Vec3::NEG_INFINITY, 0);
            for b in 1..BINS {
                lo = lo.min(boxes[b - 1].0);
                hi = hi.max(boxes[b - 1].1);
                cnt += counts[b - 1];
                if cnt == 0 || right_count[b] == 0 {
                    continue;
                }
                let cost = area(lo, hi) * cnt as f32 + right_area[b] * right_count[b] as f32;
                if best.is_none_or(|(c, _, _)| cost < c) {
                    best = Some((cost, axis, b));
                }
            }
        }
        let (_, axis, boundary) = best?;
        let scale = BINS as f32 / extent[axis];
        let cent = &self.centroids;
        let slice = order;
        let mut left = 0;
        for k in 0..slice.len() {
            let b = (((cent[slice[k] as usize][axis] - cmin[axis]) * scale) as usize).min(BINS - 1);
            if b < boundary {
                slice.swap(left, k);
                left += 1;
            }
        }
        (left > 0 && left < slice.len()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::shapes;

    #[test]
    fn parallel_build_is_the_serial_tree() {
        let mesh = shapes::icosphere(Vec3::new(0.1, 0.2, 0.3), 1.0, 5); // 20,480 triangles
        let corners: Vec<[Vec3; 3]> =
            mesh.triangles.iter().map(|t| t.map(|i| mesh.positions[i as usize])).collect();
        let build = Build {
            centroids: corners.iter().map(|[a, b, c]| (*a + *b + *c) / 3.0).collect(),
            bounds: corners.iter().map(|[a, b, c]| (a.min(*b).min(*c), a.max(*b).max(*c))).collect(),
        };
        let tree = |parallel_min: usize| {
            let mut order: Vec<u32> = (0..corners.len() as u32).collect();
            let mut nodes = Vec::new();
            build.split(&mut order, 0, &mut nodes, parallel_min);
            (order, nodes.iter().map(|n| (n.min, n.max, n.right_or_first, n.count)).collect::<Vec<_>>())
        };
        let serial = tree(usize::MAX);
        for parallel_min in [7, 100, 5000] {
            assert!(tree(parallel_min) == serial, "parallel_min {parallel_min}");
        }
    }

    #[test]
    fn tree_covers_every_triangle_once() {
        let mesh = shapes::torus(Vec3::ZERO, 1.0, 0.3, 40, 20);
        let bvh = Bvh::new(&mesh);
        let mut seen = vec![0u32; mesh.triangles.len()];
        for node in bvh.nodes.iter().filter(|n| n.is_leaf()) {
            assert!(node.count as usize <= MAX_LEAF);
            for k in bvh.leaf_range(node) {
                seen[bvh.tri_ids[k] as usize] += 1;
                for p in bvh.tris[k] {
                    assert!(p.cmpge(node.min).all() && p.cmple(node.max).all());
                }
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
    }

    #[test]
    fn rays_hit_the_sphere_where_expected() {
        let mesh = shapes::icosphere(Vec3::ZERO, 1.0, 4);
        let bvh = Bvh::new(&mesh);
        let hit = bvh.first_hit(Vec3::new(-3.0, 0.01, 0.02), Vec3::X).expect("hit");
        assert!((hit.t - 2.0).abs() < 2e-3, "{}", hit.t);
        assert_eq!(bvh.count_crossings(Vec3::new(-3.0, 0.01, 0.02), Vec3::X), 2);
        assert_eq!(bvh.count_crossings(Vec3::new(0.1, 0.2, 0.0), Vec3::new(0.5377, 0.8264, 0.1671)), 1);
        assert!(bvh.first_hit(Vec3::new(-3.0, 2.0, 0.0), Vec3::X).is_none());
    }
}
