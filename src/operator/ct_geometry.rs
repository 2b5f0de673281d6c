//! CT scan geometry, read from a TOML file in TIGRE's vocabulary.
//!
//! ```toml
//! beam = "fan"            # parallel (2D or 3D), fan (2D), cone (3D)
//! dims = 2
//! dso = 1000.0            # source to rotation axis, mm (fan and cone)
//! dsd = 1500.0            # source to detector, mm (fan and cone)
//! quantity = "integral"   # or "mean": the line integral divided by the volume's x extent
//! [detector]
//! pixels = [512]          # [u] in 2D, [u, v] in 3D
//! pixel_size = [1.0]      # mm
//! offset = [0.0]          # mm, optional
//! [volume]
//! voxels = [256, 256]     # [x, y] in 2D, [x, y, z] in 3D
//! voxel_size = [1.0, 1.0] # mm
//! offset = [0.0, 0.0]     # centre of the volume, mm, optional
//! [angles]
//! count = 360
//! first = 0.0             # optional
//! span = 6.283185307179586 # optional: default π (parallel) or 2π (fan, cone); endpoint excluded
//! # or: file = "angles.txt" (one angle a line), or values = [...]; unit = "radians" | "degrees"
//! ```
//!
//! ## Frame
//!
//! World millimetres, the rotation axis is z through the origin. At angle θ the source sits in
//! the direction `e_s = (cos θ, sin θ, 0)` (at distance DSO for fan and cone), the detector's u
//! axis is `e_u = (−sin θ, cos θ, 0)` and its v axis is z. Parallel rays run along `−e_s`
//! through `u·e_u + v·e_z`; divergent rays run from the source to the detector pixel at
//! `−(DSD − DSO)·e_s + u·e_u + v·e_z`. Detector pixel `i` sits at `u = (i − (n−1)/2)·du + offset`.
//! Voxel `i` has its centre at `offset − n·size/2 + (i + ½)·size`; volumes are stored x fastest.
//! Projections are stored view-major, then v, then u: `proj[(view·nv + iv)·nu + iu]`.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Beam {
    Parallel,
    Fan,
    Cone,
}

/// What one measurement is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Quantity {
    /// ∫ f dl in world units (mm × attenuation per mm).
    #[default]
    Integral,
    /// The line integral divided by the volume's x extent: the paper's "mean of the image along
    /// the line" (a 512-pixel image, rotated, averaged over 512 samples).
    Mean,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AngleUnit {
    #[default]
    Radians,
    Degrees,
}

/// The file as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeometryFile {
    pub beam: Beam,
    pub dims: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dso: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsd: Option<f64>,
    #[serde(default)]
    pub quantity: Quantity,
    pub detector: DetectorFile,
    pub volume: VolumeFile,
    pub angles: AnglesFile,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorFile {
    pub pixels: Vec<usize>,
    pub pixel_size: Vec<f64>,
    #[serde(default)]
    pub offset: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeFile {
    pub voxels: Vec<usize>,
    pub voxel_size: Vec<f64>,
    #[serde(default)]
    pub offset: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnglesFile {
    pub count: usize,
    #[serde(default)]
    pub first: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f64>>,
    #[serde(default)]
    pub unit: AngleUnit,
}

/// The most views a geometry may list.
pub const MAX_VIEWS: usize = 1 << 20;
/// The most detector pixels along one axis.
pub const MAX_DETECTOR_PIXELS: usize = 1 << 16;
/// The most measurements (views × detector pixels) a scan may have: 16 GiB of f32.
pub const MAX_RAYS: usize = 1 << 32;
/// Lengths beyond this many mm (a kilometre) are refused as garbage (their products overflow).
pub const MAX_MM: f64 = 1e6;
/// Rays [`Scan::check_coverage`] traces at most, after its per-view bounds.
const COVERAGE_RAYS: usize = 1 << 20;

/// A resolved, checked scan: every size fixed to 3 axes (2D: nv = 1, nz = 1), angles listed.
#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    pub beam: Beam,
    pub dims: usize,
    pub dso: f64,
    pub dsd: f64,
    pub quantity: Quantity,
    /// [nu, nv].
    pub det_pixels: [usize; 2],
    /// [du, dv] in mm.
    pub det_pixel_size: [f64; 2],
    pub det_offset: [f64; 2],
    /// [nx, ny, nz].
    pub voxels: [usize; 3],
    pub voxel_size: [f64; 3],
    /// Centre of the volume, mm.
    pub vol_offset: [f64; 3],
    /// Radians, one per projection.
    pub angles: Vec<f64>,
}

/// One ray: a point and a unit direction, in world mm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ray {
    pub origin: [f64; 3],
    pub dir: [f64; 3],
}

fn fixed<T: Copy>(v: &[T], n: usize, fill: T, what: &str, src: &Path) -> Result<[T; 3]> {
    if v.len() != n {
        return Err(Error::format(src, format!("{what} needs {n} values, got {}", v.len())));
    }
    let mut out = [fill; 3];
    out[..n].copy_from_slice(v);
    Ok(out)
}

impl GeometryFile {
    /// Resolves and checks the geometry; `src` names the file for errors, relative angle files
    /// are read from beside it.
    pub fn resolve(&self, src: &Path) -> Result<Scan> {
        let bad = |m: String| Err(Error::format(src, m));
        let d = self.dims;
        match (self.beam, d) {
            (Beam::Parallel, 2 | 3) | (Beam::Fan, 2) | (Beam::Cone, 3) => {}
            (b, _) => {
                return bad(format!(
                    "a {b:?} beam with dims = {d} is not supported (parallel: 2 or 3, fan: 2, cone: 3)"
                )
                .to_lowercase())
            }
        }
        let nd = d - 1; // detector axes
        let det = &self.detector;
        let dp = fixed(&det.pixels, nd, 1, "detector.pixels", src)?;
        let ds = fixed(&det.pixel_size, nd, 1.0, "detector.pixel_size", src)?;
        let doff = if det.offset.is_empty() {
            [0.0; 3]
        } else {
            fixed(&det.offset, nd, 0.0, "detector.offset", src)?
        };
        if let Some(n) = dp[..nd].iter().find(|&&n| n > MAX_DETECTOR_PIXELS) {
            return bad(format!(
                "detector.pixels {:?}: {n} pixels on one axis is more than the {MAX_DETECTOR_PIXELS} a detector may have",
                det.pixels
            ));
        }
        if let Some(x) = det.offset.iter().chain(&det.pixel_size).find(|x| !x.is_finite() || x.abs() > MAX_MM)
        {
            return bad(format!(
                "detector offset/pixel_size {x}: every length must be a finite number of mm below {MAX_MM:e}"
            ));
        }
        if dp[..nd].contains(&0) || ds[..nd].iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad(format!(
                "the detector has zero size (pixels {:?}, pixel_size {:?}): every count and size must be positive",
                det.pixels, det.pixel_size
            ));
        }
        let vol = &self.volume;
        let nv = fixed(&vol.voxels, d, 1, "volume.voxels", src)?;
        let vs = fixed(&vol.voxel_size, d, 1.0, "volume.voxel_size", src)?;
        let voff =
            if vol.offset.is_empty() { [0.0; 3] } else { fixed(&vol.offset, d, 0.0, "volume.offset", src)? };
        if let Some(x) = vol.offset.iter().chain(&vol.voxel_size).find(|x| !x.is_finite() || x.abs() > MAX_MM)
        {
            return bad(format!(
                "volume offset/voxel_size {x}: every length must be a finite number of mm below {MAX_MM:e}"
            ));
        }
        if nv[..d].contains(&0) || vs[..d].iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad(format!(
                "the volume has zero size (voxels {:?}, voxel_size {:?})",
                vol.voxels, vol.voxel_size
            ));
        }
        if nv.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).is_none_or(|n| n > 1 << 30) {
            return bad(format!("volume.voxels {:?} is more than 2^30 voxels", vol.voxels));
        }
        let (dso, dsd) = match self.beam {
            Beam::Parallel => (self.dso.unwrap_or(0.0), self.dsd.unwrap_or(0.0)),
            _ => {
                let (Some(dso), Some(dsd)) = (self.dso, self.dsd) else {
                    return bad(
                        "fan and cone beams need dso and dsd (source to origin, source to detector, mm)"
                            .into(),
                    );
                };
                if !(dso.is_finite() && dso > 0.0 && dsd.is_finite() && dsd > dso && dsd <= MAX_MM) {
                    return bad(format!("need 0 < dso < dsd, got dso = {dso}, dsd = {dsd}"));
                }
                (dso, dsd)
            }
        };
        let a = &self.angles;
        if a.count == 0 {
            return bad("angles.count must be at least 1".into());
        }
        if a.count > MAX_VIEWS {
            return bad(format!(
                "angles.count = {} is more than the {MAX_VIEWS} views a scan may have",
                a.count
            ));
        }
        let rays = [a.count, dp[0], if d == 3 { dp[1] } else { 1 }]
            .iter()
            .try_fold(1usize, |acc, &n| acc.checked_mul(n))
            .filter(|&n| n <= MAX_RAYS);
        if rays.is_none() {
            return bad(format!(
                "{} views of {:?} detector pixels is more than {MAX_RAYS} measurements",
                a.count,
                &dp[..nd]
            ));
        }
        let factor = match a.unit {
            AngleUnit::Radians => 1.0,
            AngleUnit::Degrees => PI / 180.0,
        };
        let listed: Option<(Vec<f64>, String)> = match (&a.file, &a.values) {
            (Some(_), Some(_)) => return bad("give angles.file or angles.values, not both".into()),
            (Some(f), None) => {
                let path =
                    if f.is_absolute() { f.clone() } else { src.parent().unwrap_or(Path::new(".")).join(f) };
                let text = crate::io::read_text(&path)?;
                let mut v = Vec::new();
                for (i, line) in text.lines().enumerate() {
                    let t = line.trim();
                    if t.is_empty() || t.starts_with('#') {
                        continue;
                    }
                    let x: f64 = t.parse().map_err(|_| {
                        Error::format(&path, format!("line {}: {t:?} is not a number", i + 1))
                    })?;
                    v.push(x);
                }
                Some((v, path.display().to_string()))
            }
            (None, Some(v)) => Some((v.clone(), "angles.values".into())),
            (None, None) => None,
        };
        let angles: Vec<f64> = match listed {
            Some((v, from)) => {
                if v.len() != a.count {
                    return bad(format!(
                        "{from} lists {} angles but angles.count says there are {} projections",
                        v.len(),
                        a.count
                    ));
                }
                v.iter().map(|x| x * factor).collect()
            }
            None => {
                let span = a.span.map(|s| s * factor).unwrap_or(if self.beam == Beam::Parallel {
                    PI
                } else {
                    2.0 * PI
                });
                (0..a.count).map(|i| a.first * factor + span * i as f64 / a.count as f64).collect()
            }
        };
        if angles.iter().any(|x| !x.is_finite()) {
            return bad("an angle is not finite".into());
        }
        let scan = Scan {
            beam: self.beam,
            dims: d,
            dso,
            dsd,
            quantity: self.quantity,
            det_pixels: [dp[0], if d == 3 { dp[1] } else { 1 }],
            det_pixel_size: [ds[0], if d == 3 { ds[1] } else { 1.0 }],
            det_offset: [doff[0], if d == 3 { doff[1] } else { 0.0 }],
            voxels: nv,
            voxel_size: vs,
            vol_offset: voff,
            angles,
        };
        scan.check_coverage().map_err(|m| Error::format(src, m))?;
        Ok(scan)
    }
}

impl Scan {
    /// Reads and checks a geometry file.
    pub fn load(path: &Path) -> Result<Scan> {
        let text = crate::io::read_text(path)?;
        let file: GeometryFile = toml::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        file.resolve(path)
    }

    /// The paper's 2D CT geometry at `n`² pixels: parallel beam, `views` angles over [0, π),
    /// `n` detector bins, measurements are means along the line.
    pub fn paper_2d(n: usize, views: usize) -> Scan {
        Scan {
            beam: Beam::Parallel,
            dims: 2,
            dso: 0.0,
            dsd: 0.0,
            quantity: Quantity::Mean,
            det_pixels: [n, 1],
            det_pixel_size: [1.0, 1.0],
            det_offset: [0.0; 2],
            voxels: [n, n, 1],
            voxel_size: [1.0; 3],
            vol_offset: [0.0; 3],
            angles: (0..views).map(|i| PI * i as f64 / views as f64).collect(),
        }
    }

    /// The file form, with the angles listed, so it can be written beside projections.
    pub fn to_file(&self) -> GeometryFile {
        let d = self.dims;
        let divergent = self.beam != Beam::Parallel;
        GeometryFile {
            beam: self.beam,
            dims: d,
            dso: divergent.then_some(self.dso),
            dsd: divergent.then_some(self.dsd),
            quantity: self.quantity,
            detector: DetectorFile {
                pixels: self.det_pixels[..d - 1].to_vec(),
                pixel_size: self.det_pixel_size[..d - 1].to_vec(),
                offset: self.det_offset[..d - 1].to_vec(),
            },
            volume: VolumeFile {
                voxels: self.voxels[..d].to_vec(),
                voxel_size: self.voxel_size[..d].to_vec(),
                offset: self.vol_offset[..d].to_vec(),
            },
            angles: AnglesFile {
                count: self.angles.len(),
                first: 0.0,
                span: None,
                file: None,
                values: Some(self.angles.clone()),
                unit: AngleUnit::Radians,
            },
        }
    }

    pub fn to_toml(&self) -> crate::Result<String> {
        crate::config::to_toml(&self.to_file())
    }

    pub fn n_views(&self) -> usize {
        self.angles.len()
    }
    /// Rays per view (nu · nv).
    pub fn rays_per_view(&self) -> usize {
        self.det_pixels[0] * self.det_pixels[1]
    }
    pub fn n_rays(&self) -> usize {
        self.n_views() * self.rays_per_view()
    }
    pub fn n_voxels(&self) -> usize {
        self.voxels.iter().product()
    }
    /// Shape of the projections array: [views, nu] in 2D, [views, nv, nu] in 3D.
    pub fn projection_shape(&self) -> Vec<usize> {
        if self.dims == 2 {
            vec![self.n_views(), self.det_pixels[0]]
        } else {
            vec![self.n_views(), self.det_pixels[1], self.det_pixels[0]]
        }
    }

    /// Lower corner of the volume (mm).
    pub fn vol_min(&self) -> [f64; 3] {
        std::array::from_fn(|a| self.vol_offset[a] - self.voxels[a] as f64 * self.voxel_size[a] / 2.0)
    }
    /// Edge lengths of the volume (mm).
    pub fn vol_extent(&self) -> [f64; 3] {
        std::array::from_fn(|a| self.voxels[a] as f64 * self.voxel_size[a])
    }
    /// Multiplies line integrals into measurements: 1, or 1/(x extent) for `mean`.
    pub fn measurement_scale(&self) -> f64 {
        match self.quantity {
            Quantity::Integral => 1.0,
            Quantity::Mean => 1.0 / self.vol_extent()[0],
        }
    }

    /// Detector coordinates (u, v) of pixel (iu, iv), mm.
    pub fn detector_uv(&self, iu: usize, iv: usize) -> (f64, f64) {
        let [nu, nv] = self.det_pixels;
        let u = (iu as f64 - (nu as f64 - 1.0) / 2.0) * self.det_pixel_size[0] + self.det_offset[0];
        let v = if self.dims == 2 {
            0.0
        } else {
            (iv as f64 - (nv as f64 - 1.0) / 2.0) * self.det_pixel_size[1] + self.det_offset[1]
        };
        (u, v)
    }

    /// The ray of measurement `index` (view-major, then v, then u).
    pub fn ray(&self, index: usize) -> Ray {
        let rpv = self.rays_per_view();
        let (view, rest) = (index / rpv, index % rpv);
        let (iv, iu) = (rest / self.det_pixels[0], rest % self.det_pixels[0]);
        let th = self.angles[view];
        let (s, c) = th.sin_cos();
        let es = [c, s, 0.0];
        let eu = [-s, c, 0.0];
        let (u, v) = self.detector_uv(iu, iv);
        match self.beam {
            Beam::Parallel => Ray { origin: [u * eu[0], u * eu[1], v], dir: [-es[0], -es[1], 0.0] },
            Beam::Fan | Beam::Cone => {
                let src = [self.dso * es[0], self.dso * es[1], 0.0];
                let back = self.dsd - self.dso;
                let q = [-back * es[0] + u * eu[0], -back * es[1] + u * eu[1], v];
                let d = [q[0] - src[0], q[1] - src[1], q[2] - src[2]];
                let len = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                Ray { origin: src, dir: [d[0] / len, d[1] / len, d[2] / len] }
            }
        }
    }

    /// Where `ray` enters and leaves the volume box, as distances along it; `None` if it misses.
    /// In 2D only x and y bound the box.
    pub fn clip(&self, ray: &Ray) -> Option<(f64, f64)> {
        let lo = self.vol_min();
        let ext = self.vol_extent();
        let (mut t0, mut t1) = (f64::NEG_INFINITY, f64::INFINITY);
        for a in 0..self.dims {
            let (o, d) = (ray.origin[a], ray.dir[a]);
            let (a0, a1) = (lo[a], lo[a] + ext[a]);
            if d.abs() < 1e-12 {
                if o < a0 || o > a1 {
                    return None;
                }
                continue;
            }
            let (mut ta, mut tb) = ((a0 - o) / d, (a1 - o) / d);
            if ta > tb {
                std::mem::swap(&mut ta, &mut tb);
            }
            t0 = t0.max(ta);
            t1 = t1.min(tb);
        }
        (t1 > t0 && t1 - t0 > 1e-9).then_some((t0, t1))
    }

    /// Errors if no ray meets the volume, or a source sits inside it.
    pub fn check_coverage(&self) -> std::result::Result<(), String> {
        if self.beam != Beam::Parallel {
            let ext = self.vol_extent();
            let r = (0..2).map(|a| (self.vol_offset[a].abs() + ext[a] / 2.0).powi(2)).sum::<f64>().sqrt();
            if self.dso <= r {
                return Err(format!(
                    "the source (dso = {} mm) passes inside the volume, which reaches {r:.1} mm from the axis",
                    self.dso
                ));
            }
        }
        if self.some_ray_meets_volume() {
            Ok(())
        } else {
            Err(format!(
                "no ray meets the volume (volume centre {:?} mm, extent {:?} mm; detector {:?} pixels of {:?} mm, offset {:?} mm)",
                &self.vol_offset[..self.dims],
                &self.vol_extent()[..self.dims],
                &self.det_pixels[..self.dims - 1],
                &self.det_pixel_size[..self.dims - 1],
                &self.det_offset[..self.dims - 1]
            ))
        }
    }

    /// Whether a ray meets the volume, in bounded time whatever the scan's size: per view, the
    /// rectangle on the detector that holds the volume's shadow (its corners projected along
    /// the rays) against the detector's pixels; no view overlapping means no ray can meet it. In
    /// the overlapping ranges, rays are traced (the middle of each range first) until one meets
    /// it or [`COVERAGE_RAYS`] have been traced, when the overlap is taken as enough.
    fn some_ray_meets_volume(&self) -> bool {
        let lo = self.vol_min();
        let ext = self.vol_extent();
        let [nu, nv] = self.det_pixels;
        let corners: Vec<[f64; 3]> = (0..8)
            .map(|k| {
                std::array::from_fn(|a| if a < self.dims && k >> a & 1 == 1 { lo[a] + ext[a] } else { lo[a] })
            })
            .map(|mut c: [f64; 3]| {
                if self.dims == 2 {
                    c[2] = 0.0;
                }
                c
            })
            .collect();
        // detector coordinate → pixel index range [first, last], clamped to the detector
        let range = |lo: f64, hi: f64, n: usize, size: f64, offset: f64| -> Option<(usize, usize)> {
            let centre = (n as f64 - 1.0) / 2.0;
            let (a, b) = ((lo - offset) / size + centre, (hi - offset) / size + centre);
            let (a, b) = (a.floor().max(0.0), b.ceil().min(n as f64 - 1.0));
            (a <= b).then_some((a as usize, b as usize))
        };
        let mut budget = COVERAGE_RAYS;
        let mut candidates = Vec::new();
        for (view, &th) in self.angles.iter().enumerate() {
            let (s, c) = th.sin_cos();
            let (es, eu) = ([c, s, 0.0], [-s, c, 0.0]);
            let (mut umin, mut umax, mut vmin, mut vmax) =
                (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
            for p in &corners {
                let (u, v) = match self.beam {
                    Beam::Parallel => (p[0] * eu[0] + p[1] * eu[1], p[2]),
                    Beam::Fan | Beam::Cone => {
                        // depth of the corner from the source towards the detector
                        let depth = self.dso - (p[0] * es[0] + p[1] * es[1]);
                        let scale = self.dsd / depth.max(1e-9);
                        ((p[0] * eu[0] + p[1] * eu[1]) * scale, p[2] * scale)
                    }
                };
                (umin, umax, vmin, vmax) = (umin.min(u), umax.max(u), vmin.min(v), vmax.max(v));
            }
            let Some(ru) = range(umin, umax, nu, self.det_pixel_size[0], self.det_offset[0]) else {
                continue;
            };
            let rv = if self.dims == 2 {
                (0, 0)
            } else {
                match range(vmin, vmax, nv, self.det_pixel_size[1], self.det_offset[1]) {
                    Some(r) => r,
                    None => continue,
                }
            };
            candidates.push((view, ru, rv));
        }
        if candidates.is_empty() {
            return false;
        }
        let ray_at = |view: usize, iu: usize, iv: usize| (view * nv + iv) * nu + iu;
        // the middle of each view's range first, then every ray of the ranges
        for &(view, (u0, u1), (v0, v1)) in &candidates {
            if budget == 0 {
                return true;
            }
            budget -= 1;
            if self.clip(&self.ray(ray_at(view, (u0 + u1) / 2, (v0 + v1) / 2))).is_some() {
                return true;
            }
        }
        for &(view, (u0, u1), (v0, v1)) in &candidates {
            for iv in v0..=v1 {
                for iu in u0..=u1 {
                    if budget == 0 {
                        return true;
                    }
                    budget -= 1;
                    if self.clip(&self.ray(ray_at(view, iu, iv))).is_some() {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// NIfTI's world_from_voxel for the reconstruction grid.
    pub fn world_from_voxel(&self) -> [[f64; 4]; 4] {
        let lo = self.vol_min();
        let mut m = [[0.0; 4]; 4];
        for a in 0..3 {
            m[a][a] = self.voxel_size[a];
            m[a][3] = lo[a] + 0.5 * self.voxel_size[a];
        }
        m[3][3] = 1.0;
        m
    }

    /// Maps a world point into the unit box [0,1]^dims of the field (first `dims` coordinates).
    #[inline]
    pub fn unit_from_world(&self, p: [f64; 3], out: &mut [f32]) {
        let lo = self.vol_min();
        let ext = self.vol_extent();
        for a in 0..self.dims {
            out[a] = ((p[a] - lo[a]) / ext[a]) as f32;
        }
    }

    /// Voxel centres in unit coordinates, x fastest (row-major n×dims).
    pub fn voxel_centres_unit(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.n_voxels() * self.dims);
        crate::sample::voxels::push_grid_planes(&mut out, self.voxels, 0..self.voxels[2], self.dims);
        out
    }

    /// Checks a projections array's shape against this geometry; `src` names the files.
    pub fn check_projections(&self, shape: &[usize], proj_path: &Path, geom_path: &Path) -> Result<()> {
        let want = self.projection_shape();
        if shape == want.as_slice() {
            return Ok(());
        }
        let views_match = shape.first() == want.first();
        let why = if !views_match {
            format!(
                "it holds {} projections but {} lists {} angles",
                shape.first().copied().unwrap_or(0),
                geom_path.display(),
                self.n_views()
            )
        } else {
            format!("the detector in {} needs shape {want:?}", geom_path.display())
        };
        Err(Error::format(
            proj_path,
            format!("projections of shape {shape:?} do not fit the geometry: {why}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scan> {
        let f: GeometryFile = toml::from_str(text).map_err(|e| Error::format("g.toml", e.to_string()))?;
        f.resolve(Path::new("g.toml"))
    }

    const FAN: &str = "beam = \"fan\"\ndims = 2\ndso = 500.0\ndsd = 800.0\n[detector]\npixels = [64]\npixel_size = [2.0]\n[volume]\nvoxels = [32, 32]\nvoxel_size = [2.0, 2.0]\n[angles]\ncount = 10\n";

    #[test]
    fn resolves_and_round_trips() {
        let s = parse(FAN).unwrap();
        assert_eq!(s.angles.len(), 10);
        assert!((s.angles[5] - PI).abs() < 1e-12);
        let back = parse(&s.to_toml().unwrap()).unwrap();
        assert_eq!(back, s);
        // the ray through detector coordinate u passes DSO·u/√(DSD² + u²) from the axis
        for iu in 0..64 {
            let r = s.ray(3 * 64 + iu);
            let t = -(r.origin[0] * r.dir[0] + r.origin[1] * r.dir[1]);
            let p = [r.origin[0] + t * r.dir[0], r.origin[1] + t * r.dir[1]];
            let (u, _) = s.detector_uv(iu, 0);
            let want = 500.0 * u.abs() / (800.0f64 * 800.0 + u * u).sqrt();
            assert!((p[0].hypot(p[1]) - want).abs() < 1e-9, "pixel {iu}");
        }
    }

    #[test]
    fn angles_from_a_file_beside_the_geometry() {
        let dir = std::env::temp_dir().join(format!("ffvol-geom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("angles.txt"), "# degrees\n0\n90\n\n180\n").unwrap();
        let g = dir.join("g.toml");
        let text = FAN.replace("count = 10", "count = 3\nfile = \"angles.txt\"\nunit = \"degrees\"");
        std::fs::write(&g, &text).unwrap();
        let s = Scan::load(&g).unwrap();
        assert!((s.angles[1] - PI / 2.0).abs() < 1e-12 && s.angles.len() == 3);
        std::fs::write(&g, text.replace("count = 3", "count = 4")).unwrap();
        let e = Scan::load(&g).unwrap_err().to_string();
        assert!(e.contains("angles.txt") && e.contains("3 angles") && e.contains("4 projections"), "{e}");
        std::fs::write(dir.join("angles.txt"), "0\nninety\n").unwrap();
        let e = Scan::load(&g).unwrap_err().to_string();
        assert!(e.contains("angles.txt") && e.contains("line 2"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn clear_errors() {
        let e = parse(&FAN.replace("pixels = [64]", "pixels = [0]")).unwrap_err().to_string();
        assert!(e.contains("g.toml") && e.contains("zero size"), "{e}");
        let e = parse(&FAN.replace("pixel_size = [2.0]", "pixel_size = [0.0]")).unwrap_err().to_string();
        assert!(e.contains("zero size"), "{e}");
        let e = parse(&FAN.replace("count = 10", "count = 3\nvalues = [0.0, 1.0]")).unwrap_err().to_string();
        assert!(e.contains("2 angles") && e.contains("3 projections"), "{e}");
        let e = parse(&FAN.replace("voxels = [32, 32]", "voxels = [32, 32]\noffset = [3000.0, 0.0]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside the volume") || e.contains("no ray"), "{e}");
        let par = FAN
            .replace("\"fan\"", "\"parallel\"")
            .replace("voxels = [32, 32]", "voxels = [32, 32]\noffset = [0.0, 900.0]")
            .replace("count = 10", "count = 1");
        let e = parse(&par).unwrap_err().to_string();
        assert!(e.contains("no ray meets the volume"), "{e}");
        let e = parse(&FAN.replace("dims = 2", "dims = 3")).unwrap_err().to_string();
        assert!(e.contains("not supported"), "{e}");
    }
}
