//! CT inputs: scan geometries (files or the built-in `paper-ct[:N[:VIEWS]]`), projections and
//! truth volumes, each checked against the geometry.

use crate::io::npy::read_npy_f32;
use crate::operator::ct_geometry::Scan;
use crate::{Error, Result};
use std::path::Path;

/// A geometry by file, or built in: `paper-ct` (512², 20 views) or `paper-ct:N[:VIEWS]`.
pub fn load_geometry(spec: &Path) -> Result<Scan> {
    let s = spec.to_string_lossy();
    if let Some(rest) = s.strip_prefix("paper-ct") {
        let parts: Vec<&str> = rest.split(':').filter(|p| !p.is_empty()).collect();
        let num = |i: usize, d: usize| -> Result<usize> {
            parts.get(i).map_or(Ok(d), |p| {
                p.parse::<usize>().ok().filter(|n| (1..=8192).contains(n)).ok_or_else(|| {
                    Error::Config(format!("--geometry {s}: {p:?} is not a size (paper-ct[:N[:VIEWS]])"))
                })
            })
        };
        if parts.len() > 2 {
            return Err(Error::Config(format!("--geometry {s}: expected paper-ct[:N[:VIEWS]]")));
        }
        return Ok(Scan::paper_2d(num(0, 512)?, num(1, 20)?));
    }
    Scan::load(spec)
}

/// Loads projections and checks them against the geometry.
pub fn load_projections(scan: &Scan, proj: &Path, geom: &Path) -> Result<Vec<f32>> {
    let (data, shape) = read_npy_f32(proj)?;
    scan.check_projections(&shape, proj, geom)?;
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        let [nu, nv] = scan.det_pixels;
        let (view, v, u) = (i / (nu * nv), (i / nu) % nv, i % nu);
        let at = if scan.dims == 2 {
            format!("view {view}, bin {u}")
        } else {
            format!("view {view}, row {v}, bin {u}")
        };
        return Err(Error::Input(format!(
            "{}: projection at {at} is {} (not finite)",
            proj.display(),
            data[i]
        )));
    }
    Ok(data)
}

/// Loads a truth volume and checks its grid.
pub fn load_truth(scan: &Scan, path: &Path) -> Result<Vec<f32>> {
    let (data, dims, _) = crate::io::read_nifti_f32(path)?;
    if dims != scan.voxels {
        return Err(Error::format(
            path,
            format!("the volume is {dims:?} voxels but the geometry's grid is {:?}", scan.voxels),
        ));
    }
    Ok(data)
}
