//! Shepp–Logan phantoms: ellipses (2D) and ellipsoids (3D) with closed-form line integrals.
//!
//! Phantom coordinates are normalised: ξ = (p − volume centre) / r, with r half the smallest
//! in-plane edge of the volume, so the phantom spans [−1, 1] across the volume.

use crate::operator::ct_geometry::{Ray, Scan};
use crate::operator::ray::RayProjector;
use crate::sample::CounterRng;
use rayon::prelude::*;

/// One ellipsoid (an ellipse in 2D: c = 1, z0 = 0, unused), normalised coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ellipsoid {
    /// Added inside.
    pub value: f64,
    /// Semi-axes.
    pub axes: [f64; 3],
    pub centre: [f64; 3],
    /// Rotation about z, radians.
    pub phi: f64,
}

/// The modified Shepp–Logan ellipses (Toft): value, a, b, x0, y0, φ in degrees.
const MODIFIED_2D: [[f64; 6]; 10] = [
    [1.0, 0.69, 0.92, 0.0, 0.0, 0.0],
    [-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0],
    [-0.2, 0.11, 0.31, 0.22, 0.0, -18.0],
    [-0.2, 0.16, 0.41, -0.22, 0.0, 18.0],
    [0.1, 0.21, 0.25, 0.0, 0.35, 0.0],
    [0.1, 0.046, 0.046, 0.0, 0.1, 0.0],
    [0.1, 0.046, 0.046, 0.0, -0.1, 0.0],
    [0.1, 0.046, 0.023, -0.08, -0.605, 0.0],
    [0.1, 0.023, 0.023, 0.0, -0.606, 0.0],
    [0.1, 0.023, 0.046, 0.06, -0.605, 0.0],
];

/// 3D Shepp–Logan (Kak & Slaney, modified intensities): value, a, b, c, x0, y0, z0, φ degrees.
/// The small tilts some tables add about other axes are left out: rotations are about z only.
const MODIFIED_3D: [[f64; 8]; 10] = [
    [1.0, 0.69, 0.92, 0.81, 0.0, 0.0, 0.0, 0.0],
    [-0.8, 0.6624, 0.874, 0.78, 0.0, -0.0184, 0.0, 0.0],
    [-0.2, 0.11, 0.31, 0.22, 0.22, 0.0, 0.0, -18.0],
    [-0.2, 0.16, 0.41, 0.28, -0.22, 0.0, 0.0, 18.0],
    [0.1, 0.21, 0.25, 0.41, 0.0, 0.35, -0.15, 0.0],
    [0.1, 0.046, 0.046, 0.05, 0.0, 0.1, 0.25, 0.0],
    [0.1, 0.046, 0.046, 0.05, 0.0, -0.1, 0.25, 0.0],
    [0.1, 0.046, 0.023, 0.05, -0.08, -0.605, 0.0, 0.0],
    [0.1, 0.023, 0.023, 0.02, 0.0, -0.606, 0.0, 0.0],
    [0.1, 0.023, 0.046, 0.02, 0.06, -0.605, 0.0, 0.0],
];

/// The perturbation of parameter `k` of ellipse `i`: N(0, 1)/20 from `rng` (0 without one).
fn jitter(rng: Option<CounterRng>, i: usize, k: u64) -> f64 {
    rng.map(|g| g.normal(i as u64 * 16 + k) as f64 / 20.0).unwrap_or(0.0)
}

/// A sum of ellipsoids, clipped to [0, 1] when rasterised.
#[derive(Clone, Debug, PartialEq)]
pub struct Phantom {
    pub dims: usize,
    pub ellipses: Vec<Ellipsoid>,
}

impl Phantom {
    /// The modified Shepp–Logan phantom; with `perturb`, every parameter (value, axes, centre,
    /// angle in radians) gets N(0, 1)/20 added from `seed`, as in the paper. Axes stay positive.
    pub fn shepp_2d(perturb: Option<u64>) -> Phantom {
        let rng = perturb.map(|s| CounterRng::new(s, 0x5e99));
        let ellipses = MODIFIED_2D
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let n = |k: u64| jitter(rng, i, k);
                Ellipsoid {
                    value: r[0] + n(0),
                    axes: [(r[1] + n(1)).abs().max(1e-3), (r[2] + n(2)).abs().max(1e-3), 1.0],
                    centre: [r[3] + n(3), r[4] + n(4), 0.0],
                    phi: r[5].to_radians() + n(5),
                }
            })
            .collect();
        Phantom { dims: 2, ellipses }
    }

    /// The modified 3D Shepp–Logan phantom; with `perturb`, every parameter (value, the three
    /// axes, the three centre coordinates, the angle in radians) gets N(0, 1)/20 added from
    /// `seed`, as [`Phantom::shepp_2d`] perturbs the 2D one: a family of volumes with the
    /// phantom's low-contrast structure, to tune 3D settings on without the test volume.
    pub fn shepp_3d(perturb: Option<u64>) -> Phantom {
        let rng = perturb.map(|s| CounterRng::new(s, 0x5e93));
        let ellipses = MODIFIED_3D
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let n = |k: u64| jitter(rng, i, k);
                Ellipsoid {
                    value: r[0] + n(0),
                    axes: [
                        (r[1] + n(1)).abs().max(1e-3),
                        (r[2] + n(2)).abs().max(1e-3),
                        (r[3] + n(3)).abs().max(1e-3),
                    ],
                    centre: [r[4] + n(4), r[5] + n(5), r[6] + n(6)],
                    phi: r[7].to_radians() + n(7),
                }
            })
            .collect();
        Phantom { dims: 3, ellipses }
    }

    /// Sum of the ellipsoid values at a normalised point (unclipped).
    pub fn value_at(&self, xi: [f64; 3]) -> f64 {
        let mut v = 0.0;
        for e in &self.ellipses {
            let (s, c) = e.phi.sin_cos();
            let (dx, dy) = (xi[0] - e.centre[0], xi[1] - e.centre[1]);
            let x = (c * dx + s * dy) / e.axes[0];
            let y = (-s * dx + c * dy) / e.axes[1];
            let z = if self.dims == 3 { (xi[2] - e.centre[2]) / e.axes[2] } else { 0.0 };
            if x * x + y * y + z * z <= 1.0 {
                v += e.value;
            }
        }
        v
    }

    /// Normalising radius r (mm) and centre for `scan`.
    fn frame(scan: &Scan) -> (f64, [f64; 3]) {
        let ext = scan.vol_extent();
        (ext[0].min(ext[1]) / 2.0, scan.vol_offset)
    }

    /// Rasterises onto the scan's grid, averaging `sub`^dims samples per voxel; with `clip`,
    /// every sample is clipped to [0, 1] first (the paper clips the image).
    pub fn rasterize(&self, scan: &Scan, sub: usize, clip: bool) -> Vec<f32> {
        let (r, centre) = Self::frame(scan);
        let lo = scan.vol_min();
        let vs = scan.voxel_size;
        let [nx, ny, nz] = scan.voxels;
        let subz = if self.dims == 3 { sub } else { 1 };
        let mut out = vec![0.0f32; nx * ny * nz];
        out.par_chunks_mut(nx).enumerate().for_each(|(row, o)| {
            let (y, z) = (row % ny, row / ny);
            for (x, val) in o.iter_mut().enumerate() {
                let mut acc = 0.0;
                for kz in 0..subz {
                    for ky in 0..sub {
                        for kx in 0..sub {
                            let off = |i: usize, k: usize, n: usize| i as f64 + (k as f64 + 0.5) / n as f64;
                            let p = [
                                lo[0] + off(x, kx, sub) * vs[0],
                                lo[1] + off(y, ky, sub) * vs[1],
                                if self.dims == 3 { lo[2] + off(z, kz, subz) * vs[2] } else { 0.0 },
                            ];
                            let xi = [(p[0] - centre[0]) / r, (p[1] - centre[1]) / r, (p[2] - centre[2]) / r];
                            let v = self.value_at(xi);
                            acc += if clip { v.clamp(0.0, 1.0) } else { v };
                        }
                    }
                }
                *val = (acc / (sub * sub * subz) as f64) as f32;
            }
        });
        out
    }

    /// Closed-form line integral of the (unclipped) phantom along `ray` (world mm), in
    /// attenuation × mm.
    pub fn line_integral(&self, scan: &Scan, ray: &Ray) -> f64 {
        let (r, centre) = Self::frame(scan);
        // normalised ray: o' = (o − c)/r, d unchanged (unit); chord in ξ units × r = mm
        let o = [
            (ray.origin[0] - centre[0]) / r,
            (ray.origin[1] - centre[1]) / r,
            (ray.origin[2] - centre[2]) / r,
        ];
        let d = ray.dir;
        let mut total = 0.0;
        for e in &self.ellipses {
            let (s, c) = e.phi.sin_cos();
            let local = |p: [f64; 3], shift: bool| -> [f64; 3] {
                let (px, py, pz) = if shift {
                    (p[0] - e.centre[0], p[1] - e.centre[1], p[2] - e.centre[2])
                } else {
                    (p[0], p[1], p[2])
                };
                let z = if self.dims == 3 { pz / e.axes[2] } else { 0.0 };
                [(c * px + s * py) / e.axes[0], (-s * px + c * py) / e.axes[1], z]
            };
            let (ol, dl) = (local(o, true), local(d, false));
            let a = dl[0] * dl[0] + dl[1] * dl[1] + dl[2] * dl[2];
            let b = ol[0] * dl[0] + ol[1] * dl[1] + ol[2] * dl[2];
            let cc = ol[0] * ol[0] + ol[1] * ol[1] + ol[2] * ol[2] - 1.0;
            let disc = b * b - a * cc;
            if disc > 0.0 && a > 0.0 {
                total += e.value * 2.0 * disc.sqrt() / a;
            }
        }
        total * r
    }

    /// Measurements of the phantom for `scan`: closed-form line integrals of the ellipsoid sum,
    /// plus, where clipping to [0, 1] changes the rasterised phantom, the discrete projection of
    /// that change (so the measurements are of the clipped phantom the fit is scored against).
    pub fn project(&self, scan: &Scan, projector: &RayProjector, sub: usize) -> Vec<f32> {
        self.project_and_rasterize(scan, projector, sub).0
    }

    /// [`Self::project`] and the clipped raster ([`Self::rasterize`] with `clip`) it makes on the
    /// way: the projections and the truth of a simulation, rasterising once.
    pub fn project_and_rasterize(
        &self,
        scan: &Scan,
        projector: &RayProjector,
        sub: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let scale = scan.measurement_scale();
        let mut out: Vec<f32> = (0..scan.n_rays())
            .into_par_iter()
            .map(|i| {
                let ray = scan.ray(i);
                if scan.clip(&ray).is_none() {
                    return 0.0;
                }
                (self.line_integral(scan, &ray) * scale) as f32
            })
            .collect();
        let clipped = self.rasterize(scan, sub, true);
        let raw = self.rasterize(scan, sub, false);
        let diff: Vec<f32> = clipped.iter().zip(&raw).map(|(a, b)| a - b).collect();
        if diff.iter().any(|d| d.abs() > 1e-7) {
            let mut corr = vec![0.0; out.len()];
            projector.forward(&diff, &mut corr);
            out.iter_mut().zip(&corr).for_each(|(o, c)| *o += c);
        }
        (out, clipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::ct_geometry::Scan;

    /// The perturbed 3D phantom: reproducible from its seed, different across seeds, every
    /// parameter moved by a few hundredths (N(0, 1)/20), axes positive; without a seed, the
    /// published phantom.
    #[test]
    fn perturbed_3d_phantom() {
        let plain = Phantom::shepp_3d(None);
        assert_eq!(plain.ellipses[0].axes, [MODIFIED_3D[0][1], MODIFIED_3D[0][2], MODIFIED_3D[0][3]]);
        let (a, b) = (Phantom::shepp_3d(Some(1001)), Phantom::shepp_3d(Some(1002)));
        assert_eq!(a, Phantom::shepp_3d(Some(1001)));
        assert_ne!(a, b);
        let mut moved = 0;
        for (p, q) in a.ellipses.iter().zip(&plain.ellipses) {
            let d =
                [p.value - q.value, p.axes[0] - q.axes[0], p.axes[2] - q.axes[2], p.centre[2] - q.centre[2]];
            assert!(d.iter().all(|x| x.abs() < 0.3), "{d:?}");
            moved += d.iter().filter(|x| x.abs() > 1e-6).count();
            assert!(p.axes.iter().all(|&x| x > 0.0));
        }
        assert_eq!(moved, 4 * plain.ellipses.len());
        let scan = Scan { voxels: [16, 16, 16], ..Scan::paper_2d(16, 4) };
        let v = a.rasterize(&scan, 1, true);
        assert!(v.iter().any(|&x| x > 0.0) && v.iter().all(|&x| (0.0..=1.0).contains(&x)));
    }

    #[test]
    fn chord_of_an_ellipse_matches_brute_force() {
        let scan = Scan::paper_2d(64, 7);
        let ph = Phantom {
            dims: 2,
            ellipses: vec![Ellipsoid {
                value: 1.0,
                axes: [0.6, 0.3, 1.0],
                centre: [0.1, -0.2, 0.0],
                phi: 0.4,
            }],
        };
        for i in (0..scan.n_rays()).step_by(13) {
            let ray = scan.ray(i);
            let exact = ph.line_integral(&scan, &ray);
            let (n, h) = (40_000, 0.01);
            let brute: f64 = (0..n)
                .map(|k| {
                    let t = -200.0 + (k as f64 + 0.5) * h;
                    let p = [ray.origin[0] + t * ray.dir[0], ray.origin[1] + t * ray.dir[1], 0.0];
                    ph.value_at([p[0] / 32.0, p[1] / 32.0, 0.0]) * h
                })
                .sum();
            assert!((exact - brute).abs() < 0.05, "ray {i}: {exact} vs {brute}");
        }
    }

    #[test]
    fn perturbation_is_seeded() {
        assert_eq!(Phantom::shepp_2d(Some(3)), Phantom::shepp_2d(Some(3)));
        assert_ne!(Phantom::shepp_2d(Some(3)), Phantom::shepp_2d(Some(4)));
        assert_eq!(Phantom::shepp_2d(None).ellipses[0].axes[0], 0.69);
    }
}
