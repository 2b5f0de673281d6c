//! CT inputs: scan geometries (files or the built-in `paper-ct[:N[:VIEWS]]`), projections and
//! truth volumes, each checked against the geometry.
//!
//! [`load_ct_input`] is the one way in for a job: line integrals (.npy) with a geometry TOML as
//! before, or raw projections with dark and flat fields ([`crate::io::raw_projections`]: an HDF5
//! Data Exchange file, whose `/exchange/theta` gives a parallel-beam geometry when the geometry
//! is the file itself, or a `.npy` stack with `.npy` darks and flats and a geometry TOML); then
//! the `[input]` settings: detector rows, a subset of evenly spaced views, the grid, and the
//! centre of rotation (set, or estimated: [`crate::recon::center`]).

use crate::io::npy::read_npy_f32;
use crate::io::raw_projections::{
    is_hdf5, line_integrals, read_data_exchange, read_npy_frames, Center, Frames, ProjectionInput,
    DEFAULT_FLOOR,
};
use crate::operator::ct_geometry::{
    AngleUnit, AnglesFile, Beam, DetectorFile, GeometryFile, Quantity, Scan, VolumeFile,
};
use crate::{Error, Result};
use std::path::Path;

/// A scan and its measurements, ready for a reconstruction or a fit.
#[derive(Clone, Debug)]
pub struct CtInput {
    pub scan: Scan,
    /// Line integrals (in the scan's quantity), laid out as [`Scan`] says.
    pub projections: Vec<f32>,
    /// What was done on the way in (normalisation counts, views kept, the centre), for the log.
    pub notes: Vec<String>,
}

/// Loads projections and their geometry and applies the `[input]` settings (see the module
/// docs). `geom` may be the HDF5 projections file itself: a parallel beam from its theta.
pub fn load_ct_input(proj: &Path, geom: &Path, input: &ProjectionInput) -> Result<CtInput> {
    input.validate()?;
    let h5 = is_hdf5(proj);
    let raw = h5 || input.flat.is_some();
    if !h5 && is_hdf5(geom) {
        return Err(Error::format(
            geom,
            format!(
                "an HDF5 file gives the geometry only for its own projections ({} is not HDF5): give a \
                 geometry TOML",
                proj.display()
            ),
        ));
    }
    if !h5 && input.is_empty() {
        // line integrals and a geometry, as they always were
        let scan = load_geometry(geom)?;
        let projections = load_projections(&scan, proj, geom)?;
        return Ok(CtInput { scan, projections, notes: vec![] });
    }
    let mut notes = vec![];
    let floor = input.floor.unwrap_or(DEFAULT_FLOOR);
    let name = |what: &str| format!("{} ({what})", proj.display());
    // the line integrals, [views, rows, cols], and the file's angles in degrees
    let (mut values, [views, rows, cols], theta) = if h5 {
        if input.dark.is_some() || input.flat.is_some() {
            return Err(Error::Config(format!(
                "--dark and --flat are for .npy stacks; {} carries its own /exchange/data_dark and \
                 /exchange/data_white",
                proj.display()
            )));
        }
        let st = read_data_exchange(proj, input.rows)?;
        let names = [name("/exchange/data"), name("/exchange/data_dark"), name("/exchange/data_white")];
        let (p, rep) =
            line_integrals(&st.data, st.dark.as_ref(), &st.flat, floor, [&names[0], &names[1], &names[2]])?;
        notes.push(rep.describe());
        (p, st.data.shape, st.theta_degrees)
    } else {
        let data = read_npy_frames(proj, "projections", None)?;
        let file_frame = [data.shape[1], data.shape[2]];
        let data = select_rows(data, input.rows, proj)?;
        if let Some(flat_path) = &input.flat {
            let frames = |p: &Path, what: &str| -> Result<Frames> {
                select_rows(read_npy_frames(p, what, Some(file_frame))?, input.rows, p)
            };
            let flat = frames(flat_path, "flat fields")?;
            let dark = input.dark.as_deref().map(|d| frames(d, "dark fields")).transpose()?;
            let dn = input.dark.as_ref().map_or("no dark field".to_string(), |d| d.display().to_string());
            let fname = flat_path.display().to_string();
            let (p, rep) =
                line_integrals(&data, dark.as_ref(), &flat, floor, [&name("projections"), &dn, &fname])?;
            notes.push(rep.describe());
            (p, data.shape, None)
        } else {
            (data.data, data.shape, None)
        }
    };
    // the geometry
    let mut scan = if is_hdf5(geom) {
        if geom != proj {
            return Err(Error::format(
                geom,
                format!(
                    "an HDF5 file gives the geometry only for its own projections, not for {}",
                    proj.display()
                ),
            ));
        }
        let theta = theta.as_ref().ok_or_else(|| Error::format(proj, "no /exchange/theta"))?;
        derived_parallel(theta, rows, cols).resolve(proj)?
    } else {
        let scan = load_geometry(geom)?;
        if let Some(theta) = &theta {
            check_angles(&scan, theta, proj, geom)?;
        }
        let shape = if scan.dims == 2 { vec![views, cols] } else { vec![views, rows, cols] };
        if scan.dims == 2 && rows != 1 {
            return Err(Error::format(
                proj,
                format!(
                    "{} is a 2D geometry but the projections have {rows} detector rows: pick one with --rows K",
                    geom.display()
                ),
            ));
        }
        scan.check_projections(&shape, proj, geom)?;
        scan
    };
    if let Some(k) = input.views {
        if k > views {
            return Err(Error::Config(format!("--views {k}: the scan has only {views} views")));
        }
        let keep: Vec<usize> = (0..k).map(|j| ((j * views) as f64 / k as f64).round() as usize).collect();
        let per = rows * cols;
        values = keep.iter().flat_map(|&v| values[v * per..(v + 1) * per].iter().copied()).collect();
        scan.angles = keep.iter().map(|&v| scan.angles[v]).collect();
        notes.push(format!(
            "kept {k} of {views} views, evenly spaced (every {:.2}th)",
            views as f64 / k as f64
        ));
    }
    if let Some(g) = input.grid {
        let ext = scan.vol_extent();
        for a in 0..2 {
            scan.voxels[a] = g;
            scan.voxel_size[a] = ext[a] / g as f64;
        }
    }
    match input.center.or(h5.then_some(Center::AUTO)) {
        Some(Center::Column(c)) => {
            scan.det_offset[0] = crate::recon::center::offset_for_center(&scan, c);
            notes.push(format!("centre of rotation: column {c} (set)"));
        }
        Some(Center::Named(_)) => {
            let est = crate::recon::center::estimate_center(&scan, &values)
                .map_err(|m| Error::format(proj, format!("cannot estimate the centre of rotation: {m}")))?;
            scan.det_offset[0] = crate::recon::center::offset_for_center(&scan, est.center);
            notes.push(est.describe(scan.det_pixels[0]));
        }
        None => {}
    }
    scan.check_coverage().map_err(|m| Error::format(geom, m))?;
    // raw stacks give line integrals; a `mean` geometry measures them scaled
    let scale = scan.measurement_scale() as f32;
    if raw && scale != 1.0 {
        values.iter_mut().for_each(|v| *v *= scale);
    }
    check_finite(&scan, &values, proj)?;
    Ok(CtInput { scan, projections: values, notes })
}

/// Keeps detector rows `rows` (`[first, end)`) of a stack.
fn select_rows(f: Frames, rows: Option<[usize; 2]>, path: &Path) -> Result<Frames> {
    let Some([a, b]) = rows else { return Ok(f) };
    let [n, r, c] = f.shape;
    if b > r {
        return Err(Error::format(
            path,
            format!("rows {a}..{b} asked for, but the stack has {r} detector rows"),
        ));
    }
    if (a, b) == (0, r) {
        return Ok(f);
    }
    let data = (0..n).flat_map(|k| f.data[(k * r + a) * c..(k * r + b) * c].iter().copied()).collect();
    Ok(Frames { data, shape: [n, b - a, c] })
}

/// The parallel-beam geometry of a Data Exchange file: detector pixels of 1 (unit) length, an
/// `cols`² grid of unit voxels (× the rows in 3D), the file's angles.
fn derived_parallel(theta_degrees: &[f64], rows: usize, cols: usize) -> GeometryFile {
    let dims = if rows == 1 { 2 } else { 3 };
    GeometryFile {
        beam: Beam::Parallel,
        dims,
        dso: None,
        dsd: None,
        quantity: Quantity::Integral,
        detector: DetectorFile {
            pixels: if dims == 2 { vec![cols] } else { vec![cols, rows] },
            pixel_size: vec![1.0; dims - 1],
            offset: vec![],
        },
        volume: VolumeFile {
            voxels: if dims == 2 { vec![cols, cols] } else { vec![cols, cols, rows] },
            voxel_size: vec![1.0; dims],
            offset: vec![],
        },
        angles: AnglesFile {
            count: theta_degrees.len(),
            first: 0.0,
            span: None,
            file: None,
            values: Some(theta_degrees.to_vec()),
            unit: AngleUnit::Degrees,
        },
    }
}

/// The geometry's angles must be the file's theta (to 1e-6 rad).
fn check_angles(scan: &Scan, theta_degrees: &[f64], proj: &Path, geom: &Path) -> Result<()> {
    if scan.n_views() != theta_degrees.len() {
        return Err(Error::format(
            geom,
            format!(
                "lists {} angles but {} has {} in /exchange/theta",
                scan.n_views(),
                proj.display(),
                theta_degrees.len()
            ),
        ));
    }
    for (i, (a, t)) in scan.angles.iter().zip(theta_degrees).enumerate() {
        if (a - t.to_radians()).abs() > 1e-6 {
            return Err(Error::format(
                geom,
                format!(
                    "angle {i} is {:.4}° but /exchange/theta of {} says {t:.4}°",
                    a.to_degrees(),
                    proj.display()
                ),
            ));
        }
    }
    Ok(())
}

fn check_finite(scan: &Scan, data: &[f32], proj: &Path) -> Result<()> {
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
    Ok(())
}

/// The number of dimensions (2 or 3) of the scan that [`load_ct_input`] would build from these
/// inputs, read from the geometry alone (an HDF5 file, which is then the projections too: its
/// shape), without reading the projections; the `fit ct` preset depends on it. An input [`load_ct_input`] would refuse may give an error here.
pub fn scan_dims(geom: &Path, input: &ProjectionInput) -> Result<usize> {
    if is_hdf5(geom) {
        let rows = match input.rows {
            Some([first, end]) => end.saturating_sub(first),
            None => crate::io::raw_projections::data_exchange_rows(geom)?,
        };
        return Ok(if rows == 1 { 2 } else { 3 });
    }
    Ok(load_geometry(geom)?.dims)
}

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
    check_finite(scan, &data, proj)?;
    Ok(data)
}

/// Loads a truth volume (NIfTI, .npy, .mat, DICOM) and checks its grid.
pub fn load_truth(scan: &Scan, path: &Path) -> Result<Vec<f32>> {
    crate::sim::ct::load_grid_volume(scan, path)
}
