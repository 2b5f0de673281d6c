//! k-space sampling masks for the MRI job, built in the *centred* layout (DC at index n/2 per
//! axis, as `numpy.fft.fftshift` leaves it), x fastest. [`crate::operator::fft::ifftshift`] turns
//! them into the FFT's own layout.
//!
//! - `gaussian`: the paper's mask. 200,000 draws at 96³ (scaled by the number of voxels for other
//!   grids) from an isotropic Gaussian of std 13.9 voxels at 96 (scaled by each axis' length)
//!   around the centre, rounded to voxels: ≈ 12.6 % of the coefficients at 96³.
//! - `cartesian:R`: full read-out lines along x; in the (ky, kz) plane a fully sampled centre
//!   (±4 % of each axis, at least ±1) plus uniformly random lines, 1/R of the lines in all.
//! - `radial:N`: N spokes through the centre along directions spread evenly over a half sphere
//!   (a Fibonacci lattice), each spanning the full width of k-space.
//! - `poisson:R`: full read-out lines along x at points of a variable-density Poisson-disc pattern
//!   in the (ky, kz) plane (disc radius growing 4× from the centre to the edge), 1/R of the lines.

use crate::sample::CounterRng;
use serde::{Deserialize, Serialize};

/// Stream of the mask's random numbers.
const STREAM_MASK: u64 = 18;

/// The most Gaussian draws (at 96³; 50× the paper's 200,000).
pub const MAX_DRAWS_AT_96: usize = 10_000_000;
/// The widest Gaussian (voxels at 96³): wider puts every draw outside k-space.
pub const MAX_STD_AT_96: f64 = 1e4;
/// The highest Cartesian acceleration (1/R of the lines; the centre is always sampled).
pub const MAX_CARTESIAN_ACCELERATION: f64 = 1e3;
/// The highest Poisson-disc acceleration (the discs' reach, and the time, grow with √R).
pub const MAX_POISSON_ACCELERATION: f64 = 64.0;
/// The most radial spokes.
pub const MAX_SPOKES: usize = 100_000;

/// How k-space is sampled, as written in `run.toml` (`[sampling] type = "gaussian"`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Sampling {
    /// Draws and std (in voxels) quoted for a 96³ grid; scaled to the actual grid.
    Gaussian {
        draws_at_96: usize,
        std_at_96: f64,
    },
    /// Acceleration R: 1/R of the phase-encoding lines; `center`: half-width of the fully sampled
    /// centre as a fraction of each axis.
    Cartesian {
        acceleration: f64,
        center: f64,
    },
    Radial {
        spokes: usize,
    },
    Poisson {
        acceleration: f64,
    },
}

impl Sampling {
    /// The paper's mask.
    pub fn paper() -> Self {
        Sampling::Gaussian { draws_at_96: 200_000, std_at_96: 13.9 }
    }

    /// `gaussian[:DRAWS:STD]`, `cartesian:R`, `radial:N`, `poisson:R`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize| -> std::result::Result<f64, String> {
            let p =
                parts.get(i).ok_or_else(|| format!("sampling {s:?} needs a number after '{}:'", parts[0]))?;
            p.parse::<f64>().map_err(|_| format!("sampling {s:?}: {p:?} is not a number"))
        };
        let count = |i: usize| -> std::result::Result<usize, String> {
            let x = num(i)?;
            if !(x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= 1e15) {
                return Err(format!("sampling {s:?}: {x} is not a count"));
            }
            Ok(x as usize)
        };
        if parts.len() > 3 || (parts[0] != "gaussian" && parts.len() > 2) {
            return Err(format!("sampling {s:?}: too many ':' fields (gaussian[:DRAWS:STD], cartesian:R, radial:N, poisson:R)"));
        }
        let sampling = match parts[0] {
            "gaussian" if parts.len() == 1 => Sampling::paper(),
            "gaussian" => Sampling::Gaussian { draws_at_96: count(1)?, std_at_96: num(2)? },
            "cartesian" => Sampling::Cartesian { acceleration: num(1)?, center: 0.04 },
            "radial" => Sampling::Radial { spokes: count(1)? },
            "poisson" => Sampling::Poisson { acceleration: num(1)? },
            other => {
                return Err(format!(
                    "unknown sampling {other:?} (gaussian, cartesian:R, radial:N, poisson:R)"
                ))
            }
        };
        sampling.validate().map_err(|e| e.to_string())?;
        Ok(sampling)
    }

    /// Every parameter finite and in a range whose mask can be built in bounded time (a huge
    /// draw count, acceleration or spoke count would run for hours).
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        match *self {
            Sampling::Gaussian { draws_at_96, std_at_96 } => {
                if !(1..=MAX_DRAWS_AT_96).contains(&draws_at_96)
                    || !(std_at_96.is_finite() && std_at_96 > 0.0 && std_at_96 <= MAX_STD_AT_96)
                {
                    return bad(format!(
                        "gaussian sampling needs draws in 1..={MAX_DRAWS_AT_96} and std in (0, {MAX_STD_AT_96}], got {draws_at_96}, {std_at_96}"
                    ));
                }
            }
            Sampling::Cartesian { acceleration, center } => {
                if !(1.0..=MAX_CARTESIAN_ACCELERATION).contains(&acceleration)
                    || !(0.0..0.5).contains(&center)
                {
                    return bad(format!("cartesian sampling needs acceleration in [1, {MAX_CARTESIAN_ACCELERATION}] and centre in [0, 0.5), got {acceleration}, {center}"));
                }
            }
            Sampling::Radial { spokes } => {
                if !(1..=MAX_SPOKES).contains(&spokes) {
                    return bad(format!("radial sampling needs 1..={MAX_SPOKES} spokes, got {spokes}"));
                }
            }
            Sampling::Poisson { acceleration } => {
                if !(1.0..=MAX_POISSON_ACCELERATION).contains(&acceleration) {
                    return bad(format!(
                        "poisson sampling needs acceleration in [1, {MAX_POISSON_ACCELERATION}], got {acceleration}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The mask in centred layout, x fastest.
    pub fn build(&self, dims: [usize; 3], seed: u64) -> Vec<bool> {
        let rng = CounterRng::new(seed, STREAM_MASK);
        match *self {
            Sampling::Gaussian { draws_at_96, std_at_96 } => gaussian(dims, draws_at_96, std_at_96, &rng),
            Sampling::Cartesian { acceleration, center } => {
                lines(dims, &cartesian_plane([dims[1], dims[2]], acceleration, center, &rng))
            }
            Sampling::Radial { spokes } => radial(dims, spokes),
            Sampling::Poisson { acceleration } => {
                lines(dims, &poisson_plane([dims[1], dims[2]], acceleration, &rng))
            }
        }
    }
}

fn gaussian(dims: [usize; 3], draws_at_96: usize, std_at_96: f64, rng: &CounterRng) -> Vec<bool> {
    let n: usize = dims.iter().product();
    let draws = (draws_at_96 as f64 * n as f64 / 96f64.powi(3)).round() as u64;
    let std = dims.map(|d| std_at_96 * d as f64 / 96.0);
    let centre = dims.map(|d| (d / 2) as f64);
    let mut mask = vec![false; n];
    for i in 0..draws {
        let idx: [f64; 3] =
            std::array::from_fn(|a| (centre[a] + std[a] * rng.normal(3 * i + a as u64) as f64).round());
        if idx.iter().zip(&dims).all(|(&v, &d)| v >= 0.0 && v < d as f64) {
            let [x, y, z] = idx.map(|v| v as usize);
            mask[x + dims[0] * (y + dims[1] * z)] = true;
        }
    }
    mask
}

/// Full read-out lines along x wherever the (ky, kz) plane mask is set.
fn lines(dims: [usize; 3], plane: &[bool]) -> Vec<bool> {
    let [nx, ny, nz] = dims;
    let mut mask = vec![false; nx * ny * nz];
    for z in 0..nz {
        for y in 0..ny {
            if plane[y + ny * z] {
                mask[nx * (y + ny * z)..nx * (y + ny * z + 1)].fill(true);
            }
        }
    }
    mask
}

fn cartesian_plane(dims: [usize; 2], acceleration: f64, center: f64, rng: &CounterRng) -> Vec<bool> {
    let [ny, nz] = dims;
    let half = dims.map(|d| ((center * d as f64).round() as usize).max(1));
    let in_centre = |y: usize, z: usize| y.abs_diff(ny / 2) <= half[0] && z.abs_diff(nz / 2) <= half[1];
    let total = ny * nz;
    let n_centre =
        (0..nz).flat_map(|z| (0..ny).map(move |y| (y, z))).filter(|&(y, z)| in_centre(y, z)).count();
    let target = total as f64 / acceleration;
    let p = ((target - n_centre as f64) / (total - n_centre).max(1) as f64).clamp(0.0, 1.0);
    (0..total).map(|i| in_centre(i % ny, i / ny) || (rng.uniform(i as u64) as f64) < p).collect()
}

fn poisson_plane(dims: [usize; 2], acceleration: f64, rng: &CounterRng) -> Vec<bool> {
    let [ny, nz] = dims;
    let total = ny * nz;
    // Visit the plane in a fixed random order.
    let mut order: Vec<usize> = (0..total).collect();
    order.sort_by_key(|&i| rng.u64(1_000_000 + i as u64));
    let target = total as f64 / acceleration;
    let dart = |r0: f64| -> Vec<bool> {
        let radius = |y: usize, z: usize| {
            let dy = (y as f64 - (ny / 2) as f64) / (ny as f64 / 2.0);
            let dz = (z as f64 - (nz / 2) as f64) / (nz as f64 / 2.0);
            r0 * (1.0 + 3.0 * (dy * dy + dz * dz).sqrt().min(1.0))
        };
        let mut taken = vec![false; total];
        let reach = (4.0 * r0).ceil() as isize;
        for &i in &order {
            let (y, z) = (i % ny, i / ny);
            let r = radius(y, z);
            let mut free = true;
            // the disc's neighbourhood, clipped to the plane
            let (y0, y1) = ((-reach).max(-(y as isize)), reach.min(ny as isize - 1 - y as isize));
            let (z0, z1) = ((-reach).max(-(z as isize)), reach.min(nz as isize - 1 - z as isize));
            'scan: for dz in z0..=z1 {
                for dy in y0..=y1 {
                    let (qy, qz) = (y as isize + dy, z as isize + dz);
                    if taken[qy as usize + ny * qz as usize] && ((dy * dy + dz * dz) as f64) < r * r {
                        free = false;
                        break 'scan;
                    }
                }
            }
            if free {
                taken[i] = true;
            }
        }
        taken
    };
    // More acceleration ⇒ larger discs; bisect the base radius for the target count.
    let (mut lo, mut hi) = (0.0f64, 2.0 * acceleration.sqrt() + 1.0);
    let mut best = dart(lo);
    for _ in 0..24 {
        let mid = 0.5 * (lo + hi);
        let m = dart(mid);
        let count = m.iter().filter(|&&t| t).count() as f64;
        if count > target {
            lo = mid;
        } else {
            hi = mid;
            best = m;
        }
        if hi - lo < 1e-3 {
            break;
        }
    }
    best
}

fn radial(dims: [usize; 3], spokes: usize) -> Vec<bool> {
    let [nx, ny, nz] = dims;
    let mut mask = vec![false; nx * ny * nz];
    let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
    let steps = 4 * nx.max(ny).max(nz);
    for s in 0..spokes {
        let dz = 1.0 - (s as f64 + 0.5) / spokes as f64; // half sphere: spokes are full diameters
        let r = (1.0 - dz * dz).sqrt();
        let phi = s as f64 * golden;
        let dir = [r * phi.cos(), r * phi.sin(), dz];
        for t in 0..=steps {
            let u = 2.0 * t as f64 / steps as f64 - 1.0;
            let idx: [f64; 3] =
                std::array::from_fn(|a| ((dims[a] / 2) as f64 + u * dir[a] * dims[a] as f64 / 2.0).round());
            if idx.iter().zip(&dims).all(|(&v, &d)| v >= 0.0 && v < d as f64) {
                let [x, y, z] = idx.map(|v| v as usize);
                mask[x + nx * (y + ny * z)] = true;
            }
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fraction(m: &[bool]) -> f64 {
        m.iter().filter(|&&v| v).count() as f64 / m.len() as f64
    }

    /// Parameters that ran for hours (or wrapped to nonsense) are refused at once, with the value.
    #[test]
    fn huge_and_non_finite_parameters_are_errors() {
        for s in [
            "gaussian:1e12:13.9",
            "gaussian:1e18:13.9",
            "gaussian:inf:13.9",
            "gaussian:200000:inf",
            "gaussian:200000:nan",
            "gaussian:-5:13.9",
            "gaussian:2.5:13.9",
            "cartesian:1e12",
            "cartesian:inf",
            "cartesian:nan",
            "poisson:1e12",
            "poisson:1e18",
            "poisson:inf",
            "radial:1e12",
            "radial:inf",
            "radial:0",
            "radial:4:5",
        ] {
            let t = std::time::Instant::now();
            let e = Sampling::parse(s).expect_err(s);
            assert!(t.elapsed().as_secs_f64() < 0.5, "{s}");
            assert!(e.contains("sampling"), "{s}: {e}");
        }
        // the largest accepted Poisson acceleration still builds in bounded time
        let m = Sampling::Poisson { acceleration: MAX_POISSON_ACCELERATION }.build([8, 48, 48], 1);
        assert!(m.iter().any(|&v| v));
    }

    #[test]
    fn paper_mask_covers_about_an_eighth_at_96() {
        let m = Sampling::paper().build([96; 3], 0);
        let f = fraction(&m);
        assert!((f - 0.126).abs() < 0.004, "{f}");
        assert!(m[48 + 96 * (48 + 96 * 48)], "DC must be sampled");
    }

    #[test]
    fn accelerated_masks_hit_their_fraction() {
        for s in
            [Sampling::Cartesian { acceleration: 4.0, center: 0.04 }, Sampling::Poisson { acceleration: 4.0 }]
        {
            let f = fraction(&s.build([16, 32, 32], 3));
            assert!((f - 0.25).abs() < 0.03, "{s:?}: {f}");
        }
        let f = fraction(&Sampling::Radial { spokes: 50 }.build([32; 3], 0));
        assert!(f > 0.02 && f < 0.2, "{f}");
    }
}
