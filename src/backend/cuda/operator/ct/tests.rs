//! A line-by-line Rust mirror of cuda/ct.cu's forward and gather adjoint, run on the tables
//! the GPU would get: checks the gather's ray finding here, without a GPU, against a plain
//! scatter of the same samples, and the GPU's sample points against RayProjector.
use super::*;
use crate::operator::ct_geometry::GeometryFile;
use crate::sample::CounterRng;

fn scan(text: &str) -> Scan {
    let f: GeometryFile = toml::from_str(text).unwrap();
    f.resolve(std::path::Path::new("test.toml")).unwrap()
}

/// The four beams of tests/ct_operators.rs (offsets, odd sizes, non-square voxels) and the
/// paper's geometry at 64².
fn geometries() -> Vec<(&'static str, Scan)> {
    vec![
        ("parallel 2D", scan("beam = \"parallel\"\ndims = 2\nquantity = \"mean\"\n[detector]\npixels = [37]\npixel_size = [0.9]\noffset = [1.3]\n[volume]\nvoxels = [24, 20]\nvoxel_size = [1.0, 1.2]\noffset = [0.5, -1.0]\n[angles]\ncount = 7\nfirst = 0.1\n")),
        ("fan 2D", scan("beam = \"fan\"\ndims = 2\ndso = 60.0\ndsd = 100.0\n[detector]\npixels = [41]\npixel_size = [1.5]\noffset = [-0.7]\n[volume]\nvoxels = [22, 26]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = 9\n")),
        ("parallel 3D", scan("beam = \"parallel\"\ndims = 3\n[detector]\npixels = [23, 17]\npixel_size = [1.0, 1.1]\n[volume]\nvoxels = [16, 14, 12]\nvoxel_size = [1.0, 1.0, 1.2]\n[angles]\ncount = 5\n")),
        ("cone 3D", scan("beam = \"cone\"\ndims = 3\ndso = 50.0\ndsd = 90.0\n[detector]\npixels = [29, 23]\npixel_size = [1.2, 1.2]\noffset = [0.4, -0.8]\n[volume]\nvoxels = [14, 16, 12]\nvoxel_size = [1.0, 1.0, 1.0]\noffset = [0.0, 0.5, 0.3]\n[angles]\ncount = 6\nunit = \"degrees\"\nspan = 360.0\n")),
        ("paper 64²", Scan::paper_2d(64, 20)),
        // a source just outside the volume (its support boxes reach behind the source)
        ("fan, close source", scan("beam = \"fan\"\ndims = 2\ndso = 17.5\ndsd = 40.0\n[detector]\npixels = [90]\npixel_size = [1.0]\n[volume]\nvoxels = [22, 26]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = 5\n")),
        // detector pixels far finer and far coarser than the voxels
        ("parallel, fine pixels", scan("beam = \"parallel\"\ndims = 2\n[detector]\npixels = [230]\npixel_size = [0.1]\n[volume]\nvoxels = [16, 16]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = 4\nfirst = 0.3\n")),
        ("cone, coarse pixels", scan("beam = \"cone\"\ndims = 3\ndso = 60.0\ndsd = 90.0\n[detector]\npixels = [9, 7]\npixel_size = [4.0, 3.5]\n[volume]\nvoxels = [12, 10, 8]\nvoxel_size = [1.5, 1.5, 2.0]\n[angles]\ncount = 7\n")),
    ]
}

struct Mirror {
    t: Tables,
    dims: usize,
    vox: [usize; 3],
    det: [usize; 2],
    n_views: usize,
}

impl Mirror {
    fn new(s: &Scan, p: &RayProjector) -> Self {
        Mirror {
            t: Tables::new(s, p).unwrap(),
            dims: s.dims,
            vox: s.voxels,
            det: s.det_pixels,
            n_views: s.n_views(),
        }
    }
    fn ray(&self, r: usize) -> ([f32; 4], [f32; 4], usize) {
        let a: [f32; 4] = self.t.seg_a[4 * r..4 * r + 4].try_into().unwrap();
        let b: [f32; 4] = self.t.seg_b[4 * r..4 * r + 4].try_into().unwrap();
        (a, b, a[3].to_bits() as usize)
    }
    /// ct_sample
    fn sample(a: &[f32; 4], b: &[f32; 4], k: usize) -> [f32; 3] {
        let kf = k as f32;
        [a[0] + kf * b[0], a[1] + kf * b[1], a[2] + kf * b[2]]
    }
    /// ct_interp's taps: (voxel, weight).
    fn taps(&self, p: [f32; 3], mut f: impl FnMut(usize, f32)) {
        let [nx, ny, nz] = self.vox.map(|v| v as i64);
        let (fx, fy, fz) = (p[0].floor(), p[1].floor(), p[2].floor());
        let (tx, ty, tz) = (p[0] - fx, p[1] - fy, p[2] - fz);
        let (x0, y0, z0) = (fx as i64, fy as i64, fz as i64);
        let zs: &[i64] = if self.dims == 2 { &[0] } else { &[0, 1] };
        for &dz in zs {
            let z = if self.dims == 2 { 0 } else { z0 + dz };
            if z < 0 || z >= nz {
                continue;
            }
            let wz = if dz == 1 { tz } else { 1.0 - tz };
            for dy in 0..2 {
                let y = y0 + dy;
                if y < 0 || y >= ny {
                    continue;
                }
                let wy = if dy == 1 { ty } else { 1.0 - ty };
                for dx in 0..2 {
                    let x = x0 + dx;
                    if x < 0 || x >= nx {
                        continue;
                    }
                    let wx = if dx == 1 { tx } else { 1.0 - tx };
                    let w = if self.dims == 2 { wx * wy } else { wx * wy * wz };
                    f((x + nx * (y + ny * z)) as usize, w);
                }
            }
        }
    }
    fn forward(&self, vol: &[f32]) -> Vec<f32> {
        (0..self.n_views * self.det[0] * self.det[1])
            .map(|r| {
                let (a, b, n) = self.ray(r);
                let mut acc = 0.0f32;
                for k in 0..n {
                    self.taps(Self::sample(&a, &b, k), |i, w| acc += w * vol[i]);
                }
                acc * b[3]
            })
            .collect()
    }
    fn scatter(&self, values: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; self.vox.iter().product()];
        for (r, &v) in values.iter().enumerate() {
            let (a, b, n) = self.ray(r);
            let c = v * b[3];
            for k in 0..n {
                self.taps(Self::sample(&a, &b, k), |i, w| out[i] += c * w);
            }
        }
        out
    }
    /// ct_adjoint, one voxel at a time; also counts the samples it visited.
    fn gather(&self, values: &[f32]) -> (Vec<f32>, usize) {
        fn tap(c: f32, i: i64) -> f32 {
            let f = c.floor();
            let (i0, t) = (f as i64, c - f);
            if i0 == i {
                1.0 - t
            } else if i0 == i - 1 {
                t
            } else {
                -1.0
            }
        }
        fn slab(start: f32, d: f32, lo: f32, hi: f32, k0: &mut f32, k1: &mut f32) -> bool {
            if d == 0.0 {
                return start >= lo && start <= hi;
            }
            let (ta, tb) = ((lo - start) / d, (hi - start) / d);
            *k0 = k0.max(ta.min(tb));
            *k1 = k1.min(ta.max(tb));
            true
        }
        let g = &self.t.geo;
        let (divergent, dso, dsd, du, dv, off_u, off_v, margin) =
            (g[0] != 0.0, g[1], g[2], g[3], g[4], g[5], g[6], g[13]);
        let [nx, ny, nz] = self.vox;
        let [nu, nv] = self.det.map(|d| d as i64);
        let (cu, cv) = (0.5 * (nu - 1) as f32, 0.5 * (nv - 1) as f32);
        let mut visited = 0;
        let mut out = vec![0.0f32; nx * ny * nz];
        for (idx, o) in out.iter_mut().enumerate() {
            let (ix, iy, iz) = ((idx % nx) as i64, ((idx / nx) % ny) as i64, (idx / (nx * ny)) as i64);
            let box_lo = [(ix - 1) as f32, (iy - 1) as f32, (iz - 1) as f32];
            let box_hi = [(ix + 1) as f32, (iy + 1) as f32, (iz + 1) as f32];
            let mut wlo = [0.0f32; 3];
            let mut whi = [0.0f32; 3];
            for a in 0..3 {
                wlo[a] = g[7 + a] + (box_lo[a] - margin + 0.5) * g[10 + a];
                whi[a] = g[7 + a] + (box_hi[a] + margin + 0.5) * g[10 + a];
            }
            if self.dims == 2 {
                wlo[2] = 0.0;
                whi[2] = 0.0;
            }
            let corners = if self.dims == 2 { 4 } else { 8 };
            let mut acc = 0.0f32;
            for view in 0..self.n_views {
                let (c, s) = (self.t.views[2 * view], self.t.views[2 * view + 1]);
                let (mut u_min, mut u_max, mut v_min, mut v_max) =
                    (3.0e38f32, -3.0e38f32, 3.0e38f32, -3.0e38f32);
                let mut everywhere = false;
                for k in 0..corners {
                    let px = if k & 1 != 0 { whi[0] } else { wlo[0] };
                    let py = if k & 2 != 0 { whi[1] } else { wlo[1] };
                    let pz = if k & 4 != 0 { whi[2] } else { wlo[2] };
                    let pu = -s * px + c * py;
                    let (mut u, mut v) = (pu, pz);
                    if divergent {
                        let along = dso - (c * px + s * py);
                        if !(along > 1e-6 * dsd) {
                            everywhere = true;
                            break;
                        }
                        let scale = dsd / along;
                        u = pu * scale;
                        v = pz * scale;
                    }
                    let (fu, fv) = ((u - off_u) / du + cu, (v - off_v) / dv + cv);
                    u_min = u_min.min(fu);
                    u_max = u_max.max(fu);
                    v_min = v_min.min(fv);
                    v_max = v_max.max(fv);
                }
                let (mut iu0, mut iu1, mut iv0, mut iv1) = (0, nu - 1, 0, nv - 1);
                if !everywhere {
                    if u_max < 0.0 || u_min > (nu - 1) as f32 {
                        continue;
                    }
                    iu0 = 0.max(u_min.max(-1.0).ceil() as i64);
                    iu1 = (nu - 1).min(u_max.min(nu as f32).floor() as i64);
                    if self.dims == 3 {
                        if v_max < 0.0 || v_min > (nv - 1) as f32 {
                            continue;
                        }
                        iv0 = 0.max(v_min.max(-1.0).ceil() as i64);
                        iv1 = (nv - 1).min(v_max.min(nv as f32).floor() as i64);
                    }
                }
                for iv in iv0..=iv1 {
                    for iu in iu0..=iu1 {
                        let r = ((view as i64 * nv + iv) * nu + iu) as usize;
                        let (a, b, n) = self.ray(r);
                        if n == 0 {
                            continue;
                        }
                        let cr = values[r] * b[3];
                        if cr == 0.0 {
                            continue;
                        }
                        let (mut k0, mut k1) = (0.0f32, (n - 1) as f32);
                        if !slab(a[0], b[0], box_lo[0], box_hi[0], &mut k0, &mut k1)
                            || !slab(a[1], b[1], box_lo[1], box_hi[1], &mut k0, &mut k1)
                            || (self.dims == 3 && !slab(a[2], b[2], box_lo[2], box_hi[2], &mut k0, &mut k1))
                        {
                            continue;
                        }
                        let ka = 0.max(k0.min(n as f32).floor() as i64 - 1);
                        let kb = (n as i64 - 1).min(k1.max(-1.0).ceil() as i64 + 1);
                        for k in ka..=kb {
                            visited += 1;
                            let p = Self::sample(&a, &b, k as usize);
                            let wx = tap(p[0], ix);
                            if wx < 0.0 {
                                continue;
                            }
                            let wy = tap(p[1], iy);
                            if wy < 0.0 {
                                continue;
                            }
                            let mut w = wx * wy;
                            if self.dims == 3 {
                                let wz = tap(p[2], iz);
                                if wz < 0.0 {
                                    continue;
                                }
                                w *= wz;
                            }
                            acc += cr * w;
                        }
                    }
                }
            }
            *o = acc;
        }
        (out, visited)
    }
}

/// max |a − b| / max |b|
fn rel(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs() as f64)) / scale
}

#[test]
fn the_gather_finds_every_sample_the_scatter_makes() {
    let rng = CounterRng::new(11, 3);
    for (name, s) in geometries() {
        let p = RayProjector::new(&s, 0.5);
        let m = Mirror::new(&s, &p);
        let x: Vec<f32> = (0..p.n_voxels()).map(|i| 0.5 + rng.uniform(i as u64)).collect();
        let y: Vec<f32> = (0..p.n_rays()).map(|i| 0.5 + rng.uniform(1 << 30 | i as u64)).collect();
        // the GPU's forward against the CPU's (sample points differ by f32 rounding only)
        let (mut cpu_ax, gpu_ax) = (vec![0.0; p.n_rays()], m.forward(&x));
        p.forward(&x, &mut cpu_ax);
        let e_fwd = rel(&gpu_ax, &cpu_ax);
        // the gather against a scatter of the same samples, and against the CPU's adjoint
        let (gathered, visited) = m.gather(&y);
        let scattered = m.scatter(&y);
        let mut cpu_aty = vec![0.0; p.n_voxels()];
        p.adjoint(&y, &mut cpu_aty);
        let (e_gs, e_adj) = (rel(&gathered, &scattered), rel(&gathered, &cpu_aty));
        let samples: usize = (0..p.n_rays()).map(|r| m.ray(r).2).sum();
        let taps = samples * if s.dims == 2 { 4 } else { 8 };
        println!(
            "{name}: forward vs cpu {e_fwd:.1e}, gather vs scatter {e_gs:.1e}, gather vs cpu {e_adj:.1e}; \
             gather visits {:.2} samples per tap",
            visited as f64 / taps as f64
        );
        // the same sample points as the CPU (start + k·delta, same roundings): only the order
        // of the sums differs; the gather must find exactly the scatter's samples
        assert!(e_fwd < 1e-5, "{name}: forward {e_fwd:e}");
        assert!(e_gs < 1e-6, "{name}: gather vs scatter {e_gs:e}");
        assert!(e_adj < 1e-5, "{name}: gather vs cpu {e_adj:e}");
        // and the GPU pair is a transpose: ⟨A x, y⟩ = ⟨x, Aᵀ y⟩
        let lhs: f64 = gpu_ax.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
        let rhs: f64 = x.iter().zip(&gathered).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((lhs - rhs).abs() / lhs.abs() < 1e-6, "{name}: {lhs} vs {rhs}");
    }
}
