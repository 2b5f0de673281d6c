//! `ffvol._ffvol`: the native half of the Python package. The Python half (`ffvol/__init__.py`)
//! turns keyword arguments into settings and wraps the results; everything that decides a
//! result runs here, through the same library calls as the command line, so a fit from Python
//! and `ffvol fit` with the same settings give the same numbers, and their run folders are
//! interchangeable.
//!
//! Long calls (fits, grids, meshes) release the GIL. A fit runs on its own thread while the
//! calling thread waits with the GIL released, waking every 100 ms to pass progress to Python
//! and to look for Ctrl-C (`KeyboardInterrupt`): the fit then writes its checkpoint, stops, and
//! the interrupt is raised.

use ffvol::backend::Backend;
use ffvol::config::RunConfig;
use ffvol::geometry::{TriMesh, UnitFromMesh};
use ffvol::io::WorldFromVoxel;
use ffvol::model::checkpoint::Checkpoint;
use ffvol::operator::ct_geometry::Scan;
use ffvol::train::run::{FitOptions, CHECKPOINT};
use glam::Vec3;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

pyo3::create_exception!(
    _ffvol,
    FfvolError,
    pyo3::exceptions::PyException,
    "An error from ffvol, with its message."
);

/// Lets a value that is not `Send` (a backend: a CUDA context is tied to its thread) into
/// `Python::detach`, which runs its closure on the calling thread with the GIL released.
/// Sound here because the closure never leaves this thread, and the `Field` holding the value
/// is `unsendable` (pinned to the thread that made it).
struct SameThread<T>(T);
unsafe impl<T> Send for SameThread<T> {}

fn detached<T, R: Send>(py: Python<'_>, value: &mut T, f: impl FnOnce(&mut T) -> R + Send) -> R {
    let v = SameThread(value);
    py.detach(move || {
        let v = v;
        f(v.0)
    })
}

fn err(e: impl std::fmt::Display) -> PyErr {
    FfvolError::new_err(e.to_string())
}

// ---------------------------------------------------------------------------------------------
// settings

/// The preset of `job` (`None`: the job's default), with the overlays applied in order: a TOML
/// file (`config_path`), nested settings (`overlay_json`, a JSON object shaped like `run.toml`),
/// and flat settings (`flat_json`: each key names one setting anywhere in the config, e.g.
/// `steps` or `sigma`; `encoding` and `device` take names as the CLI's flags do). Validated;
/// returned as `run.toml` text.
#[pyfunction]
#[pyo3(signature = (job, preset=None, config_path=None, overlay_json="{}", flat_json="{}", unset=vec![]))]
fn resolve(
    job: &str,
    preset: Option<&str>,
    config_path: Option<PathBuf>,
    overlay_json: &str,
    flat_json: &str,
    unset: Vec<String>,
) -> PyResult<String> {
    let flat: serde_json::Map<String, serde_json::Value> = serde_json::from_str(flat_json).map_err(err)?;
    // `fit_mri` with no preset picks it as `ffvol fit mri` does from its flags
    let preset = match (job, preset) {
        ("mri", None) => {
            let encoding = flat.get("encoding").and_then(|e| e.as_str());
            let tunes = ["features", "sigma", "frequencies"].iter().any(|k| flat.contains_key(*k));
            Some(ffvol::config::presets::MriPreset::default_for(encoding, tunes).name())
        }
        (_, p) => p,
    };
    let base = RunConfig::preset(job, preset).map_err(err)?;
    let mut value = base.to_value().map_err(err)?;
    if let Some(path) = &config_path {
        let file = ffvol::config::read_toml(path).map_err(err)?;
        if let Some(j) = file.get("job").and_then(|j| j.as_str()) {
            if j != job {
                return Err(err(format!(
                    "{}: these are the settings of a {j} run, not of a {job} fit",
                    path.display()
                )));
            }
        }
        ffvol::config::merge(&mut value, file);
    }
    let overlay: serde_json::Value = serde_json::from_str(overlay_json).map_err(err)?;
    let overlay = json_to_toml(&overlay, &value, "config").map_err(err)?;
    ffvol::config::merge(&mut value, overlay);
    for (key, v) in flat {
        apply_flat(job, &mut value, &key, &v).map_err(err)?;
    }
    // optional top-level settings the inputs replace (MRI k-space given: no volume)
    if let Some(t) = value.as_table_mut() {
        for key in &unset {
            t.remove(key);
        }
    }
    let origin = Path::new("<python settings>");
    let cfg = RunConfig::from_value(value, origin).map_err(err)?;
    cfg.validate().map_err(err)?;
    ffvol::config::to_toml(&cfg.to_value().map_err(err)?).map_err(err)
}

/// JSON to TOML, with numbers given the type the setting already has in `like` (a Python `1`
/// for a learning rate is `1.0`), and `None` refused (TOML has no null).
fn json_to_toml(v: &serde_json::Value, like: &toml::Value, at: &str) -> Result<toml::Value, String> {
    use serde_json::Value as J;
    use toml::Value as T;
    Ok(match v {
        J::Null => {
            return Err(format!("{at}: None is not a setting (leave the key out to keep the default)"))
        }
        J::Bool(b) => T::Boolean(*b),
        J::Number(n) => match (like, n.as_i64(), n.as_f64()) {
            (T::Float(_), _, Some(f)) => T::Float(f),
            (_, Some(i), _) => T::Integer(i),
            (_, None, Some(f)) => T::Float(f),
            _ => return Err(format!("{at}: {n} is out of range")),
        },
        J::String(s) => T::String(s.clone()),
        J::Array(items) => {
            let inner = match like {
                T::Array(a) if !a.is_empty() => a[0].clone(),
                _ => T::Boolean(false),
            };
            T::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| json_to_toml(x, &inner, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        J::Object(map) => {
            let mut t = toml::map::Map::new();
            for (k, x) in map {
                let inner = like.get(k).cloned().unwrap_or(T::Boolean(false));
                t.insert(k.clone(), json_to_toml(x, &inner, &format!("{at}.{k}"))?);
            }
            T::Table(t)
        }
    })
}

/// Every path (`a.b.c`) to a key named `key` in `v`.
fn find_key(v: &toml::Value, key: &str, at: &str, out: &mut Vec<String>) {
    if let toml::Value::Table(t) = v {
        for (k, x) in t {
            let here = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
            if k == key && !x.is_table() {
                out.push(here.clone());
            }
            find_key(x, key, &here, out);
        }
    }
}

fn apply_flat(job: &str, value: &mut toml::Value, key: &str, v: &serde_json::Value) -> Result<(), String> {
    match (key, v) {
        ("encoding", serde_json::Value::String(name)) => {
            // what `--encoding NAME` does: the mapping with this job's defaults
            let current: ffvol::encoding::EncodingConfig = value
                .get("encoding")
                .cloned()
                .ok_or("the config has no encoding")?
                .try_into()
                .map_err(|e: toml::de::Error| e.to_string())?;
            let m = match current {
                ffvol::encoding::EncodingConfig::Gaussian { features, .. } => features,
                _ => 256,
            };
            let enc =
                ffvol::config::presets::encoding_for(job, name, current, m).map_err(|e| e.to_string())?;
            let t = toml::Value::try_from(enc).map_err(|e| e.to_string())?;
            value.as_table_mut().ok_or("the config is not a table")?.insert("encoding".into(), t);
            return Ok(());
        }
        ("device", serde_json::Value::String(kind)) => {
            let dev =
                value.get_mut("device").and_then(|d| d.as_table_mut()).ok_or("the config has no [device]")?;
            dev.insert("type".into(), toml::Value::String(kind.clone()));
            return Ok(());
        }
        _ => {}
    }
    let mut paths = vec![];
    find_key(value, key, "", &mut paths);
    let path = match paths.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(format!(
                "unknown setting {key:?} for a {job} fit (pass config={{...}} for nested settings; the keys are those of run.toml)"
            ))
        }
        many => {
            return Err(format!(
                "setting {key:?} is ambiguous in a {job} fit: it could be {}; pass it nested in config={{...}}",
                many.join(" or ")
            ))
        }
    };
    let mut slot = &mut *value;
    for part in path.split('.') {
        slot = slot.get_mut(part).ok_or_else(|| format!("no setting {path}"))?;
    }
    *slot = json_to_toml(v, slot, key)?;
    Ok(())
}

/// A data file's name without its extensions (`brain.nii.gz` → `brain`), as the CLI names
/// run folders.
#[pyfunction]
fn data_stem(path: PathBuf) -> String {
    ffvol::train::run::data_stem(&path)
}

/// The run folder a new fit would use: `output` (refused when it already holds a run, unless
/// `force`), else `runs/<stem>`, `runs/<stem>-2`, … (as the CLI picks).
#[pyfunction]
#[pyo3(signature = (stem, output=None, force=false))]
fn run_folder(stem: &str, output: Option<PathBuf>, force: bool) -> PyResult<PathBuf> {
    ffvol::train::run::run_folder(output.as_deref(), force, stem).map_err(err)
}

// ---------------------------------------------------------------------------------------------
// inputs from arrays

/// Writes a triangle mesh (float vertices n×3, integer faces m×3) as a binary PLY, the form
/// `fit occupancy` reads; the faces are checked against the vertex count first.
#[pyfunction]
fn write_mesh(path: PathBuf, vertices: PyReadonlyArray2<f32>, faces: PyReadonlyArray2<i64>) -> PyResult<()> {
    let v = vertices.as_array();
    let f = faces.as_array();
    if v.ncols() != 3 || f.ncols() != 3 {
        return Err(PyValueError::new_err(format!(
            "vertices must be n×3 and faces m×3 (triangles), got {:?} and {:?}",
            v.shape(),
            f.shape()
        )));
    }
    let n = v.nrows();
    let positions: Vec<Vec3> = v.rows().into_iter().map(|r| Vec3::new(r[0], r[1], r[2])).collect();
    let mut triangles = Vec::with_capacity(f.nrows());
    for (i, r) in f.rows().into_iter().enumerate() {
        let mut t = [0u32; 3];
        for c in 0..3 {
            let k = r[c];
            if k < 0 || k as usize >= n {
                return Err(PyValueError::new_err(format!(
                    "face {i} names vertex {k}, but there are {n} vertices"
                )));
            }
            t[c] = k as u32;
        }
        triangles.push(t);
    }
    let mesh = TriMesh::new(positions, triangles);
    ffvol::io::write_mesh(&path, &mesh, ffvol::io::MeshFormat::Ply).map_err(err)
}

/// Writes a volume (x, y, z) with its 4×4 world-from-voxel affine as NIfTI-1 (f32), the form
/// `fit volume` and `fit mri` read.
#[pyfunction]
fn write_volume(
    path: PathBuf,
    data: numpy::PyReadonlyArray3<f32>,
    affine: PyReadonlyArray2<f64>,
) -> PyResult<()> {
    let a = data.as_array();
    let m = affine.as_array();
    if m.shape() != [4, 4] {
        return Err(PyValueError::new_err(format!("the affine must be 4×4, got {:?}", m.shape())));
    }
    let dims = [a.shape()[0], a.shape()[1], a.shape()[2]];
    // NIfTI stores x fastest: the array is indexed [x, y, z], so write it in Fortran order
    let mut flat = Vec::with_capacity(a.len());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                flat.push(a[[i, j, k]]);
            }
        }
    }
    let w: WorldFromVoxel = std::array::from_fn(|r| std::array::from_fn(|c| m[[r, c]]));
    ffvol::io::write_nifti_f32(&path, &flat, dims, w).map_err(err)
}

// ---------------------------------------------------------------------------------------------
// fitting

enum Event {
    Step(u64, u64, f32),
    Done(ffvol::Result<Option<u64>>),
}

/// Fits the run described by `run_toml` into `output` (or continues the run in `output` when
/// `resume`). `progress(step, steps, loss)` is called from the calling thread, at most every
/// 100 ms. Returns `("finished", steps)`, `("stopped", step)` after `stop_after`, or
/// `("interrupted", step)` after Ctrl-C, with the checkpoint written (the caller raises
/// `KeyboardInterrupt`).
#[pyfunction]
#[pyo3(signature = (run_toml, output, resume=false, progress=None, log=true, max_memory=None, chunk=None, stop_after=None))]
#[allow(clippy::too_many_arguments)]
fn fit(
    py: Python<'_>,
    run_toml: &str,
    output: PathBuf,
    resume: bool,
    progress: Option<Py<PyAny>>,
    log: bool,
    max_memory: Option<u64>,
    chunk: Option<usize>,
    stop_after: Option<u64>,
) -> PyResult<(&'static str, u64)> {
    let mut cfg = if resume {
        RunConfig::load_run(&output).map_err(err)?
    } else {
        let value: toml::Value = toml::from_str(run_toml).map_err(err)?;
        RunConfig::from_value(value, Path::new("<python settings>")).map_err(err)?
    };
    cfg.common_mut().output = output;
    let threads = cfg.common().threads;
    let steps = run_steps(&cfg);
    let interrupt = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Event>();
    // waited on with the GIL released, so it must be shareable (only this thread uses it)
    let rx = std::sync::Mutex::new(rx);
    let step_tx = tx.clone();
    let opts = FitOptions {
        interrupt: Some(interrupt.clone()),
        progress: log,
        stop_after,
        resume,
        max_memory,
        chunk,
        on_step: Some(Arc::new(move |done, steps, loss| {
            let _ = step_tx.send(Event::Step(done, steps, loss));
        })),
    };
    let worker = std::thread::spawn(move || {
        let result = run_fit(cfg, &opts, threads);
        let _ = tx.send(Event::Done(result));
    });
    let mut last: Option<(u64, u64, f32)> = None;
    let mut interrupted = false;
    // Python errors while waiting (a progress callback that raised, a signal handler's
    // exception) stop the fit at its next step and are raised once it has stopped; Ctrl-C
    // (KeyboardInterrupt) stops it the same way and is reported as "interrupted".
    let mut pending: Option<PyErr> = None;
    let check = |py: Python<'_>, r: PyResult<()>, pending: &mut Option<PyErr>, interrupted: &mut bool| {
        if let Err(e) = r {
            interrupt.store(true, Ordering::SeqCst);
            if e.is_instance_of::<PyKeyboardInterrupt>(py) {
                *interrupted = true;
            } else if pending.is_none() {
                *pending = Some(e);
            }
        }
    };
    let outcome = 'wait: loop {
        let got = py.detach(|| match rx.lock() {
            Ok(r) => r.recv_timeout(Duration::from_millis(100)),
            Err(_) => Err(mpsc::RecvTimeoutError::Disconnected),
        });
        match got {
            Ok(Event::Step(a, b, c)) => {
                last = Some((a, b, c));
                // drain what else is queued: only the newest step is shown
                while let Ok(e) = rx.lock().map_err(|_| ()).and_then(|r| r.try_recv().map_err(|_| ())) {
                    match e {
                        Event::Step(a, b, c) => last = Some((a, b, c)),
                        Event::Done(r) => break 'wait r,
                    }
                }
            }
            Ok(Event::Done(r)) => break r,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Err(ffvol::Error::Config("the fit's thread ended without a result".into()))
            }
        }
        if pending.is_none() && !interrupted {
            let r = report(py, &progress, last.take());
            check(py, r, &mut pending, &mut interrupted);
            let r = py.check_signals();
            check(py, r, &mut pending, &mut interrupted);
        }
    };
    if pending.is_none() && !interrupted {
        let r = report(py, &progress, last.take());
        check(py, r, &mut pending, &mut interrupted);
    }
    let _ = worker.join();
    if let Some(e) = pending {
        return Err(e);
    }
    match outcome.map_err(err)? {
        Some(step) if interrupted => Ok(("interrupted", step)),
        Some(step) => Ok(("stopped", step)),
        None if interrupted => Ok(("interrupted", steps)),
        None => Ok(("finished", steps)),
    }
}

fn run_steps(cfg: &RunConfig) -> u64 {
    cfg.to_value()
        .ok()
        .and_then(|v| v.get("train").and_then(|t| t.get("steps")).and_then(|s| s.as_integer()))
        .map_or(0, |s| s.max(0) as u64)
}

fn report(py: Python<'_>, progress: &Option<Py<PyAny>>, step: Option<(u64, u64, f32)>) -> PyResult<()> {
    if let (Some(cb), Some((a, b, c))) = (progress, step) {
        cb.call1(py, (a, b, c))?;
    }
    Ok(())
}

fn set_threads(threads: usize) {
    if threads > 0 {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    }
}

/// Runs the job; `Ok(Some(step))` when it stopped early with a checkpoint.
fn run_fit(cfg: RunConfig, opts: &FitOptions, threads: usize) -> ffvol::Result<Option<u64>> {
    use ffvol::job::{ct, image, mri, occupancy, volume};
    set_threads(threads);
    Ok(match cfg {
        RunConfig::Occupancy(c) => match occupancy::fit(&c, opts)? {
            occupancy::FitOutcome::Finished(_) => None,
            occupancy::FitOutcome::Interrupted { step } => Some(step),
        },
        RunConfig::Volume(c) => match volume::fit(&c, opts)? {
            volume::VolumeOutcome::Finished(_) => None,
            volume::VolumeOutcome::Interrupted { step } => Some(step),
        },
        RunConfig::Mri(c) => match mri::fit(&c, opts)? {
            mri::MriOutcome::Finished(_) => None,
            mri::MriOutcome::Interrupted { step } => Some(step),
        },
        RunConfig::Ct(c) => match ct::fit(&c, opts)? {
            ct::CtOutcome::Finished(_) => None,
            ct::CtOutcome::Interrupted { step } => Some(step),
        },
        RunConfig::Image(c) => match image::fit(&c, opts)? {
            image::ImageOutcome::Finished(_) => None,
            image::ImageOutcome::Interrupted { step } => Some(step),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// a fitted field

/// Where a run's field lives: how points in the data's own coordinates map into the unit box
/// the network was trained on, and what the network's output means.
enum Frame {
    /// Mesh coordinates; the output is a logit (probability through σ).
    Occupancy { run: Box<ffvol::job::occupancy::SavedRun>, unit_from_mesh: UnitFromMesh },
    /// World millimetres through the volume's affine; the output is an intensity through σ and
    /// the volume's intensity range.
    Volume {
        dims: [usize; 3],
        world_from_voxel: WorldFromVoxel,
        voxel_from_world: WorldFromVoxel,
        lo: f32,
        hi: f32,
    },
    /// World millimetres of the scan; the output is an attenuation in [0, 1] through σ.
    Ct { scan: Box<Scan> },
}

/// A fitted field, opened from a run folder: the network on the CPU (or the run's device) and
/// its frame.
#[pyclass(unsendable, module = "ffvol._ffvol")]
struct Field {
    backend: Box<dyn Backend>,
    frame: Frame,
    #[pyo3(get)]
    job: String,
    #[pyo3(get)]
    dim: usize,
}

fn invert_affine(m: &WorldFromVoxel) -> Option<WorldFromVoxel> {
    let a = [[m[0][0], m[0][1], m[0][2]], [m[1][0], m[1][1], m[1][2]], [m[2][0], m[2][1], m[2][2]]];
    let det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    if !(det.abs() > 1e-300) || !det.is_finite() {
        return None;
    }
    let mut inv = [[0.0f64; 4]; 4];
    for r in 0..3 {
        for c in 0..3 {
            let (r1, r2) = ((c + 1) % 3, (c + 2) % 3);
            let (c1, c2) = ((r + 1) % 3, (r + 2) % 3);
            inv[r][c] = (a[r1][c1] * a[r2][c2] - a[r1][c2] * a[r2][c1]) / det;
        }
    }
    for r in 0..3 {
        inv[r][3] = -(inv[r][0] * m[0][3] + inv[r][1] * m[1][3] + inv[r][2] * m[2][3]);
    }
    inv[3][3] = 1.0;
    Some(inv)
}

fn apply_affine(m: &WorldFromVoxel, p: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|r| m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3])
}

#[pymethods]
impl Field {
    /// Opens the field of the run folder `run` (any job), on `device` ("cpu" by default, or
    /// "auto"/"cuda").
    #[new]
    #[pyo3(signature = (run, device="cpu", threads=0))]
    fn new(run: PathBuf, device: &str, threads: usize) -> PyResult<Self> {
        let cfg = RunConfig::load_run(&run).map_err(err)?;
        let ck_path = run.join(CHECKPOINT);
        let ck = Checkpoint::load(&ck_path).map_err(err)?;
        let mut dev = cfg.device();
        dev.kind = match device {
            "cpu" => ffvol::config::DeviceKind::Cpu,
            "cuda" => ffvol::config::DeviceKind::Cuda,
            "auto" => ffvol::config::DeviceKind::Auto,
            other => return Err(PyValueError::new_err(format!("device {other:?}: cpu, cuda or auto"))),
        };
        set_threads(threads);
        let backend = ffvol::train::run::saved_backend(&ck, &dev, threads).map_err(err)?;
        let (frame, dim) = match &cfg {
            RunConfig::Occupancy(_) => {
                let saved = ffvol::job::occupancy::SavedRun::open(&run).map_err(err)?;
                use ffvol::export::surface::ExportFrame;
                let (_, unit_from_mesh) = saved.frame();
                (Frame::Occupancy { run: Box::new(saved), unit_from_mesh }, 3)
            }
            RunConfig::Volume(_) | RunConfig::Mri(_) => {
                let meta = ffvol::job::field::FieldMeta::from_checkpoint(&ck_path, &ck).map_err(err)?;
                let voxel_from_world = invert_affine(&meta.world_from_voxel)
                    .ok_or_else(|| err(format!("{}: the volume's affine is singular", ck_path.display())))?;
                let (lo, hi) = (meta.intensity.lo as f32, meta.intensity.hi as f32);
                (Frame::Volume { dims: meta.dims, world_from_voxel: meta.world_from_voxel, voxel_from_world, lo, hi }, 3)
            }
            RunConfig::Image(_) => {
                return Err(err(format!(
                    "{} is an image run: its reconstruction is reconstruction.png (querying image fields from Python is not there yet)",
                    run.display()
                )))
            }
            RunConfig::Ct(c) => {
                let scan = ffvol::job::ct::run_scan(&run, c).map_err(err)?;
                let d = scan.dims;
                (Frame::Ct { scan: Box::new(scan) }, d)
            }
        };
        Ok(Field { backend, frame, job: cfg.job().to_string(), dim })
    }

    /// The field at `points` (n × 3, or n × 2 for a 2D CT run) in the data's coordinates: mesh
    /// units for occupancy (returns the inside probability), world millimetres for volumes, MRI
    /// and CT (returns the intensity, or the attenuation of recon.nii.gz). `space="unit"` takes
    /// points in the unit box the network was trained on and returns the raw network output.
    #[pyo3(signature = (points, space="data"))]
    fn __call__<'py>(
        &mut self,
        py: Python<'py>,
        points: PyReadonlyArray2<'py, f32>,
        space: &str,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let a = points.as_array();
        if a.ncols() != self.dim {
            return Err(PyValueError::new_err(format!(
                "points must be n×{} for this {} field, got {:?}",
                self.dim,
                self.job,
                a.shape()
            )));
        }
        if a.iter().any(|x| !x.is_finite()) {
            return Err(PyValueError::new_err("points hold NaN or infinity"));
        }
        let raw = space == "unit";
        if !raw && space != "data" {
            return Err(PyValueError::new_err(format!("space {space:?}: data or unit")));
        }
        let n = a.nrows();
        // unit-box points: the array itself when it is already contiguous and in unit space
        let owned: Vec<f32>;
        let unit: &[f32] = match (raw, points.as_slice()) {
            (true, Ok(s)) => s,
            _ => {
                owned = self.to_unit(&a, raw);
                &owned
            }
        };
        let mut out = vec![0.0f32; n];
        let backend = &mut self.backend;
        detached(py, backend, |b| b.predict(unit, &mut out)).map_err(err)?;
        if !raw {
            self.from_network(&mut out);
        }
        Ok(out.into_pyarray(py))
    }

    /// The field on the voxel grid of the data, `upsample` times finer along each axis (volume,
    /// MRI and CT runs; as `ffvol export --upsample`), indexed [x, y, z] (or [x, y] for 2D CT),
    /// in the units `__call__` returns.
    #[pyo3(signature = (upsample=1))]
    fn grid<'py>(&mut self, py: Python<'py>, upsample: usize) -> PyResult<Bound<'py, PyAny>> {
        if !(1..=8).contains(&upsample) {
            return Err(PyValueError::new_err(format!("upsample must be in 1..=8, got {upsample}")));
        }
        let (values, dims) = self.grid_values(py, upsample)?;
        let arr = ndarray_xyz(values, dims);
        match &self.frame {
            Frame::Ct { scan } if scan.dims == 2 => {
                let a2 = arr.index_axis_move(numpy::ndarray::Axis(2), 0);
                Ok(a2.into_pyarray(py).into_any())
            }
            _ => Ok(arr.into_pyarray(py).into_any()),
        }
    }

    /// A surface of the field, as (vertices n×3 float32, faces m×3 int64) in the data's
    /// coordinates: the 0.5-probability surface of an occupancy field sampled on
    /// `resolution`³ nodes, or the `level` iso-surface of a volume/MRI/CT field (on the grid
    /// `upsample` times finer; `level` in the units `__call__` returns).
    #[pyo3(signature = (resolution=256, level=None, upsample=1))]
    fn mesh<'py>(
        &mut self,
        py: Python<'py>,
        resolution: usize,
        level: Option<f32>,
        upsample: usize,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>)> {
        let mesh = match &self.frame {
            Frame::Occupancy { run, .. } => {
                if level.is_some() {
                    return Err(PyValueError::new_err(
                        "an occupancy surface is at probability 0.5; level does not apply",
                    ));
                }
                if resolution < 2 {
                    return Err(PyValueError::new_err(format!(
                        "resolution must be at least 2, got {resolution}"
                    )));
                }
                let backend = &mut self.backend;
                let spec = ffvol::export::surface::ExportSpec {
                    resolution,
                    formats: &[],
                    nifti: None,
                    stem: "mesh",
                    coarse_to_fine: true,
                    min_component: run.config.export.min_component,
                    normals: Default::default(),
                    simplify: None,
                };
                let dir = run.dir.clone();
                detached(py, backend, |b| {
                    ffvol::export::surface::export(b.as_mut(), run.as_ref(), &dir, &spec)
                })
                .map_err(err)?
                .mesh
            }
            _ => {
                let level = level.ok_or_else(|| {
                    PyValueError::new_err("give the iso-surface's level (in the field's units)")
                })?;
                if self.dim != 3 {
                    return Err(PyValueError::new_err("a 2D reconstruction has no surface"));
                }
                if !(1..=8).contains(&upsample) {
                    return Err(PyValueError::new_err(format!("upsample must be in 1..=8, got {upsample}")));
                }
                let (values, dims) = self.grid_values(py, upsample)?;
                let affine = self.grid_affine(upsample);
                py.detach(|| ffvol::export::surface::iso_surface(&values, dims, affine, level))
            }
        };
        let n = mesh.positions.len();
        let v = Array2::from_shape_vec((n, 3), mesh.positions.iter().flat_map(|p| [p.x, p.y, p.z]).collect())
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        let f = Array2::from_shape_vec(
            (mesh.triangles.len(), 3),
            mesh.triangles.iter().flat_map(|t| t.map(|k| k as i64)).collect(),
        )
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Ok((v.into_pyarray(py), f.into_pyarray(py)))
    }

    /// The 4×4 world-from-voxel affine of `grid(upsample)` (volume, MRI and CT runs).
    #[pyo3(signature = (upsample=1))]
    fn affine<'py>(&self, py: Python<'py>, upsample: usize) -> PyResult<Bound<'py, PyArray2<f64>>> {
        if matches!(self.frame, Frame::Occupancy { .. }) {
            return Err(PyValueError::new_err("an occupancy field has no voxel grid; use mesh()"));
        }
        let m = self.grid_affine(upsample);
        let a = Array2::from_shape_fn((4, 4), |(r, c)| m[r][c]);
        Ok(a.into_pyarray(py))
    }
}

impl Field {
    fn to_unit(&self, a: &numpy::ndarray::ArrayView2<f32>, raw: bool) -> Vec<f32> {
        let mut out = Vec::with_capacity(a.len());
        for r in a.rows() {
            if raw {
                out.extend(r.iter());
                continue;
            }
            match &self.frame {
                Frame::Occupancy { unit_from_mesh, .. } => {
                    let u = unit_from_mesh.apply(Vec3::new(r[0], r[1], r[2]));
                    out.extend_from_slice(&[u.x, u.y, u.z]);
                }
                Frame::Volume { dims, voxel_from_world, .. } => {
                    let v = apply_affine(voxel_from_world, [r[0] as f64, r[1] as f64, r[2] as f64]);
                    for c in 0..3 {
                        out.push(((v[c] + 0.5) / dims[c] as f64) as f32);
                    }
                }
                Frame::Ct { scan } => {
                    let p = [r[0] as f64, r[1] as f64, if scan.dims == 3 { r[2] as f64 } else { 0.0 }];
                    let mut u = [0.0f32; 3];
                    scan.unit_from_world(p, &mut u[..scan.dims]);
                    out.extend_from_slice(&u[..scan.dims]);
                }
            }
        }
        out
    }

    fn from_network(&self, z: &mut [f32]) {
        use ffvol::train::loss::sigmoid;
        match &self.frame {
            Frame::Occupancy { .. } | Frame::Ct { .. } => z.iter_mut().for_each(|x| *x = sigmoid(*x)),
            Frame::Volume { lo, hi, .. } => z.iter_mut().for_each(|x| *x = lo + sigmoid(*x) * (hi - lo)),
        }
    }

    fn grid_values(&mut self, py: Python<'_>, upsample: usize) -> PyResult<(Vec<f32>, [usize; 3])> {
        let backend = &mut self.backend;
        match &self.frame {
            Frame::Occupancy { .. } => Err(PyValueError::new_err(
                "an occupancy field has no voxel grid; use mesh() or call the field at points",
            )),
            Frame::Volume { dims, lo, hi, .. } => {
                let (dims, lo, hi) = (*dims, *lo, *hi);
                let fine = dims.map(|n| n * upsample);
                check_grid(fine)?;
                let mut v =
                    detached(py, backend, |b| ffvol::export::grid::predict_grid(b.as_mut(), dims, upsample))
                        .map_err(err)?;
                v.iter_mut().for_each(|x| *x = lo + *x * (hi - lo));
                Ok((v, fine))
            }
            Frame::Ct { scan } => {
                let fine = ffvol::export::grid::upsampled_scan(scan, upsample);
                check_grid(fine.voxels)?;
                let v = detached(py, backend, |b| ffvol::export::grid::render_volume(b.as_mut(), &fine))
                    .map_err(err)?;
                Ok((v, fine.voxels))
            }
        }
    }

    fn grid_affine(&self, upsample: usize) -> WorldFromVoxel {
        match &self.frame {
            Frame::Volume { world_from_voxel, .. } => {
                ffvol::export::grid::upsampled_affine(*world_from_voxel, upsample)
            }
            Frame::Ct { scan } => ffvol::export::grid::upsampled_scan(scan, upsample).world_from_voxel(),
            Frame::Occupancy { .. } => [[0.0; 4]; 4],
        }
    }
}

fn check_grid(d: [usize; 3]) -> PyResult<()> {
    let n = d.iter().try_fold(1u64, |a, &x| a.checked_mul(x as u64)).unwrap_or(u64::MAX);
    ffvol::train::memory::check_export(
        "the field's grid (use a lower upsample)",
        &[("values", n.saturating_mul(4)), ("array", n.saturating_mul(4))],
    )
    .map_err(err)
}

/// [x, y, z] array from values stored x fastest.
fn ndarray_xyz(values: Vec<f32>, d: [usize; 3]) -> numpy::ndarray::Array3<f32> {
    use numpy::ndarray::{Array3, ShapeBuilder};
    Array3::from_shape_vec((d[0], d[1], d[2]).f(), values).expect("the grid has d[0]·d[1]·d[2] values")
}

#[pymodule]
fn _ffvol(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FfvolError", m.py().get_type::<FfvolError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(resolve, m)?)?;
    m.add_function(wrap_pyfunction!(run_folder, m)?)?;
    m.add_function(wrap_pyfunction!(data_stem, m)?)?;
    m.add_function(wrap_pyfunction!(write_mesh, m)?)?;
    m.add_function(wrap_pyfunction!(write_volume, m)?)?;
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_class::<Field>()?;
    Ok(())
}
