//! Simulated CT scans: a phantom (or a volume) projected through a scan geometry, with
//! optional photon noise, written as the files `fit ct` and `recon` read.

use crate::export::volume::{preview_path, write_preview};
use crate::io::npy::write_npy_f32;
use crate::io::png::write_png_gray;
use crate::io::volume::read_volume;
use crate::operator::ct_geometry::Scan;
use crate::operator::ray::RayProjector;
use crate::sample::CounterRng;
use crate::sim::phantom::Phantom;
use crate::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Stream for simulated noise.
const STREAM_NOISE: u64 = 0xc7_02;

/// What to project.
#[derive(Clone, Debug)]
pub enum PhantomSource {
    /// The modified Shepp–Logan phantom, perturbed from this seed (or not, with `None`).
    Shepp2d(Option<u64>),
    /// The modified 3D Shepp–Logan phantom, perturbed from this seed (or not, with `None`).
    Shepp3d(Option<u64>),
    /// A volume on the geometry's grid, projected with the discrete projector: any file
    /// [`read_volume`] reads (NIfTI, .npy, MATLAB .mat such as TIGRE's head phantom, DICOM).
    File(PathBuf),
}

#[derive(Clone, Debug)]
pub struct SimulateOptions {
    pub phantom: PhantomSource,
    /// Poisson noise with this many incident photons per ray, on exp(−measurement).
    pub poisson_i0: Option<f64>,
    pub seed: u64,
    /// Samples per voxel edge when rasterising an analytic phantom.
    pub supersample: usize,
}

/// Simulated measurements and the true volume on the grid.
pub struct Simulated {
    pub projections: Vec<f32>,
    pub truth: Vec<f32>,
}

/// Projects the phantom (closed form for Shepp–Logan, the discrete projector for a file).
pub fn simulate(scan: &Scan, opts: &SimulateOptions) -> Result<Simulated> {
    let projector = RayProjector::new(scan, 0.5);
    let (mut projections, truth) = match &opts.phantom {
        PhantomSource::File(path) => {
            let truth = load_grid_volume(scan, path)?;
            let mut p = vec![0.0; scan.n_rays()];
            projector.forward(&truth, &mut p);
            (p, truth)
        }
        source => {
            let ph = match source {
                PhantomSource::Shepp2d(seed) => Phantom::shepp_2d(*seed),
                PhantomSource::Shepp3d(seed) => Phantom::shepp_3d(*seed),
                PhantomSource::File(_) => unreachable!("handled above"),
            };
            if ph.dims != scan.dims {
                return Err(Error::Config(format!(
                    "a {}D phantom does not fit a {}D geometry",
                    ph.dims, scan.dims
                )));
            }
            let sub = opts.supersample.max(1);
            ph.project_and_rasterize(scan, &projector, sub)
        }
    };
    if let Some(i0) = opts.poisson_i0 {
        add_noise(&mut projections, &Noise::Poisson { i0 }, opts.seed)?;
    }
    Ok(Simulated { projections, truth })
}

/// Stream for the Gaussian (electronic) part of [`Noise::PoissonGaussian`].
const STREAM_NOISE_GAUSSIAN: u64 = 0xc7_03;

/// Noise on simulated line integrals p, through the photon counts of a detector with I0
/// incident photons per ray (Beer–Lambert: I0·e^(−p) expected counts).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Noise {
    /// `poisson:I0`: counts ~ Poisson(I0·e^(−p)), at least 1; p = −ln(counts / I0).
    Poisson { i0: f64 },
    /// `poisson:I0,gaussian:[MEAN:]SIGMA` (`tigre`: I0 = 1e5, mean 0, σ = 10): TIGRE's
    /// `addCTnoise` (MATLAB, the R²-Gaussian recipe): counts = Poisson(I0·e^(−p)) + N(mean, σ²),
    /// photon noise plus electronic noise on the counts; counts ≤ 0 become 1e-6 (as TIGRE does);
    /// p = ln(I0 / counts).
    PoissonGaussian { i0: f64, mean: f64, sigma: f64 },
}

impl Noise {
    /// Parses `--noise`: `poisson:I0`, `poisson:I0,gaussian:SIGMA`, `poisson:I0,gaussian:MEAN:SIGMA`
    /// or `tigre` (TIGRE's addCTnoise defaults, poisson:1e5,gaussian:0:10).
    pub fn parse(spec: &str) -> Result<Noise> {
        let bad = |why: String| {
            Error::Config(format!(
                "--noise {spec:?}: {why} (expected poisson:I0, poisson:I0,gaussian:[MEAN:]SIGMA or tigre)"
            ))
        };
        let num = |what: &str, v: &str| -> Result<f64> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(format!("{what} {v:?} is not a number")))
        };
        let (mut i0, mut gaussian) = (None, None);
        for term in spec.split(',') {
            let term = term.trim();
            if term == "tigre" {
                i0 = Some(1e5);
                gaussian = Some((0.0, 10.0));
            } else if let Some(v) = term.strip_prefix("poisson:") {
                if i0.is_some() {
                    return Err(bad("poisson given twice".into()));
                }
                i0 = Some(num("I0", v)?);
            } else if let Some(v) = term.strip_prefix("gaussian:") {
                if gaussian.is_some() {
                    return Err(bad("gaussian given twice".into()));
                }
                gaussian = Some(match v.split_once(':') {
                    Some((m, sd)) => (num("the mean", m)?, num("σ", sd)?),
                    None => (0.0, num("σ", v)?),
                });
            } else {
                return Err(bad(format!("unknown term {term:?}")));
            }
        }
        let i0 =
            i0.ok_or_else(|| bad("the Gaussian noise is on photon counts: give poisson:I0 too".into()))?;
        if !(i0 > 0.0 && i0 <= 1e15) {
            return Err(bad(format!("I0 must be in (0, 1e15], got {i0}")));
        }
        Ok(match gaussian {
            None => Noise::Poisson { i0 },
            Some((mean, sigma)) => {
                if !(sigma >= 0.0) {
                    return Err(bad(format!("σ must be ≥ 0, got {sigma}")));
                }
                Noise::PoissonGaussian { i0, mean, sigma }
            }
        })
    }
}

/// Adds `noise` to the line integrals `projections` in place, from `seed` (ray i's draws are a
/// function of (seed, i) only: results do not depend on the thread count).
pub fn add_noise(projections: &mut [f32], noise: &Noise, seed: u64) -> Result<()> {
    let rng = CounterRng::new(seed, STREAM_NOISE);
    match *noise {
        Noise::Poisson { i0 } => {
            if !(i0.is_finite() && i0 > 0.0) {
                return Err(Error::Config(format!("--noise poisson:I0 needs I0 > 0, got {i0}")));
            }
            projections.par_iter_mut().enumerate().for_each(|(i, y)| {
                let lambda = i0 * (-(*y as f64)).exp();
                let counts = poisson(&rng, i as u64, lambda).max(1.0);
                *y = -(counts / i0).ln() as f32;
            });
        }
        Noise::PoissonGaussian { i0, mean, sigma } => {
            if !(i0.is_finite() && i0 > 0.0 && sigma.is_finite() && sigma >= 0.0 && mean.is_finite()) {
                return Err(Error::Config(format!(
                    "--noise: needs I0 > 0, a finite mean and σ ≥ 0, got I0 {i0}, mean {mean}, σ {sigma}"
                )));
            }
            let electronic = CounterRng::new(seed, STREAM_NOISE_GAUSSIAN);
            projections.par_iter_mut().enumerate().for_each(|(i, y)| {
                let lambda = i0 * (-(*y as f64)).exp();
                let counts =
                    poisson(&rng, i as u64, lambda) + mean + sigma * electronic.normal(i as u64) as f64;
                let counts = if counts > 0.0 { counts } else { 1e-6 };
                *y = (i0 / counts).ln() as f32;
            });
        }
    }
    Ok(())
}

/// A phantom volume from `path` (through [`read_volume`]: NIfTI, .npy, .mat, DICOM), which must
/// have the geometry's grid (`[nx, ny, 1]` for a 2-D geometry). Non-finite voxels are an error.
pub fn load_grid_volume(scan: &Scan, path: &Path) -> Result<Vec<f32>> {
    let v = read_volume(path)?;
    let want = if scan.dims == 2 { [scan.voxels[0], scan.voxels[1], 1] } else { scan.voxels };
    if v.dims != want {
        return Err(Error::format(
            path,
            format!(
                "the phantom is {:?} voxels but the geometry's grid is {:?}",
                v.dims,
                &scan.voxels[..scan.dims]
            ),
        ));
    }
    Ok(v.data)
}

/// A Poisson draw: Knuth's product of uniforms below 30, a rounded normal above.
fn poisson(rng: &CounterRng, i: u64, lambda: f64) -> f64 {
    let base = i * 256;
    if lambda < 30.0 {
        let limit = (-lambda).exp();
        let mut p = 1.0;
        for k in 0..255u64 {
            p *= rng.uniform_f64(base + k);
            if p <= limit {
                return k as f64;
            }
        }
        lambda
    } else {
        (lambda + lambda.sqrt() * rng.normal(base) as f64).round().max(0.0)
    }
}

/// Writes projections.npy, geometry.toml, truth.nii.gz (+ PNGs) into `dir`: all of them or, on
/// an error, none (each is written under a temporary name first; see [`crate::io::Staged`]).
pub fn write_simulation(scan: &Scan, sim: &Simulated, dir: &Path) -> Result<()> {
    let made = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // what a killed simulation left there
    crate::train::run::remove_stale_temps(dir);
    let result = stage_simulation(scan, sim, dir).and_then(|staged| staged.commit());
    if result.is_err() && made {
        let _ = std::fs::remove_dir(dir); // only when still empty: nothing of ours is in it
    }
    result
}

/// Writes every file of a simulation under its temporary name; renamed by the commit only when
/// all are written (a late failure, e.g. a full disk at the truth, leaves none of them).
fn stage_simulation(scan: &Scan, sim: &Simulated, dir: &Path) -> Result<crate::io::Staged> {
    let mut staged = crate::io::Staged::new(dir);
    staged.write(&dir.join("projections.npy"), |p| {
        write_npy_f32(p, &sim.projections, &scan.projection_shape())
    })?;
    let geometry = scan.to_toml()?;
    staged.write(&dir.join("geometry.toml"), |p| crate::io::write_bytes_atomic(p, geometry.as_bytes()))?;
    let truth = dir.join("truth.nii.gz");
    staged
        .write(&truth, |p| crate::io::write_nifti_f32(p, &sim.truth, scan.voxels, scan.world_from_voxel()))?;
    staged.write(&preview_path(&truth), |p| write_preview(scan, &sim.truth, p))?;
    if scan.dims == 2 {
        let hi = sim.projections.iter().cloned().fold(0.0f32, f32::max);
        staged.write(&dir.join("sinogram.png"), |p| {
            write_png_gray(p, &sim.projections, scan.det_pixels[0], scan.n_views(), 0.0, hi)
        })?;
    }
    Ok(staged)
}
