//! The occupancy job: learn inside/outside of a triangle mesh, report IoU, export a mesh.
//!
//! Data flow per step: `batch` points (uniform in the box, and optionally near the surface) →
//! labels from generalized winding numbers → encoding → MLP → sigmoid cross-entropy → backward
//! → Adam. Batches are a pure function of (seed, step), so a resumed run continues exactly as
//! an uninterrupted one would.
//!
//! On the CUDA backend the whole step stays on the GPU: the same batch is drawn and labelled
//! there ([`crate::backend::DeviceJobs::occupancy_step`]), and the host only launches
//! and reads the losses every [`DEVICE_READ_EVERY`] steps. Elsewhere the host draws and labels
//! ([`training_batch`]) and the backend trains on the uploaded batch.

use crate::backend::Backend;
use crate::backend::BatchParams;
use crate::config::OccupancyConfig;
use crate::geometry::prepared::PreparedMesh;
use crate::geometry::{TriMesh, UnitFromMesh};
use crate::io::MeshFormat;
use crate::model::checkpoint::Checkpoint;
use crate::sample::rng::streams;
use crate::sample::{near_surface, uniform_in_box, Aabb, CounterRng};
use crate::train::fit::{Batch, DeviceStep, Objective, QueuedReport, Run, TrainSettings};
use crate::train::metrics::{accuracy_from_logits, iou_from_logits};
use crate::train::Loss;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::export::surface::{export, ExportFrame, ExportSpec};
use crate::train::run::{log, FitOptions};
pub use crate::train::run::{CHECKPOINT, LOSS_CSV, METRICS, RUN_TOML};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Metrics {
    pub iou_uniform: f64,
    pub iou_surface: f64,
    pub accuracy_uniform: f64,
    pub accuracy_surface: f64,
    /// Fraction of the uniform test points that are inside the shape.
    pub inside_fraction_uniform: f64,
    /// Fraction of the points of the first training batch (uniform + near-surface, drawn as
    /// every batch is) that are inside the shape.
    #[serde(default)]
    pub inside_fraction_train: f64,
    /// Mean training loss over the last 1 % of steps.
    pub final_loss: f64,
    pub steps: u64,
    pub n_params: usize,
    pub device: String,
    pub train_seconds: f64,
    pub label_seconds: f64,
    pub samples_per_second: f64,
    pub eval_seconds: f64,
    pub export_seconds: f64,
    pub total_seconds: f64,
    pub mesh_vertices: usize,
    pub mesh_triangles: usize,
    /// Where the training batches were drawn and labelled: "host" or "gpu".
    #[serde(default)]
    pub batches_on: String,
    /// Seconds of the σ search (`--sigma auto`), not included in `train_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_search_seconds: Option<f64>,
}

pub enum FitOutcome {
    Finished(Box<Metrics>),
    /// Stopped early with a checkpoint at this step.
    Interrupted {
        step: u64,
    },
}

/// Metadata stored with the checkpoint so a run can be exported without its source mesh.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct OccupancyMeta {
    unit_from_mesh: UnitFromMesh,
    bbox: Aabb,
}

fn meta_to_extra(meta: &OccupancyMeta) -> Result<std::collections::HashMap<String, String>> {
    let json = serde_json::to_string(meta).map_err(|e| Error::Config(format!("occupancy metadata: {e}")))?;
    Ok([("occupancy".to_string(), json)].into())
}

fn meta_from_extra(path: &Path, ck: &Checkpoint) -> Result<OccupancyMeta> {
    let text = ck.extra.get("occupancy").ok_or_else(|| Error::format(path, "not an occupancy checkpoint"))?;
    serde_json::from_str(text).map_err(|e| Error::format(path, format!("occupancy metadata: {e}")))
}

/// Points of each training batch drawn near the surface (the last ones of the batch).
pub fn surface_points(cfg: &OccupancyConfig) -> usize {
    let batch = cfg.train.batch;
    ((batch as f64 * cfg.train.surface_fraction as f64).round() as usize).min(batch)
}

/// Draws and labels the training batch of `step`.
pub fn training_batch(
    cfg: &OccupancyConfig,
    mesh: &PreparedMesh,
    step: u64,
    points: &mut Vec<[f32; 3]>,
    labels: &mut Vec<f32>,
) {
    let batch = cfg.train.batch;
    let n_surface = surface_points(cfg);
    let rng = CounterRng::new(cfg.common.seed, streams::TRAIN_BATCH);
    let base = step * batch as u64 * 16;
    points.resize(batch, [0.0; 3]);
    labels.resize(batch, 0.0);
    let (uniform, surface) = points.split_at_mut(batch - n_surface);
    uniform_in_box(&mesh.bbox, &rng, base, uniform);
    near_surface(&mesh.mesh_in_unit, cfg.train.surface_sigma, &rng, base + 4 * batch as u64, surface);
    mesh.label(points, labels);
}

/// The two test sets of the paper's protocol, with labels.
pub fn test_sets(cfg: &OccupancyConfig, mesh: &PreparedMesh) -> [(Vec<[f32; 3]>, Vec<f32>); 2] {
    labelled_sets(cfg, mesh, cfg.eval.test_points, [streams::TEST_UNIFORM, streams::TEST_SURFACE])
}

/// Streams of the σ search's validation points (`--sigma auto`), distinct from the test sets'
/// and the training batches'.
const STREAM_VALIDATION: [u64; 2] = [0x51_01, 0x51_02];

/// `n` uniform and `n` near-surface points drawn as the test sets are, from the seed's
/// `streams` (uniform, near-surface), with labels.
fn labelled_sets(
    cfg: &OccupancyConfig,
    mesh: &PreparedMesh,
    n: usize,
    streams: [u64; 2],
) -> [(Vec<[f32; 3]>, Vec<f32>); 2] {
    let mut uniform = vec![[0.0; 3]; n];
    uniform_in_box(&mesh.bbox, &CounterRng::new(cfg.common.seed, streams[0]), 0, &mut uniform);
    let mut surface = vec![[0.0; 3]; n];
    near_surface(
        &mesh.mesh_in_unit,
        cfg.eval.surface_sigma,
        &CounterRng::new(cfg.common.seed, streams[1]),
        0,
        &mut surface,
    );
    let mut lu = vec![0.0; n];
    mesh.label(&uniform, &mut lu);
    let mut ls = vec![0.0; n];
    mesh.label(&surface, &mut ls);
    [(uniform, lu), (surface, ls)]
}

/// `--sigma auto`: short fits on fresh training batches (smaller, more steps: the search's
/// plan), each scored by 1 − IoU on validation points drawn as the two test sets are (as many,
/// uniform and near-surface) but from streams of their own, averaged over the two sets.
fn search_sigma(cfg: &mut OccupancyConfig, mesh: &PreparedMesh, opts: &FitOptions) -> Result<Option<f64>> {
    if cfg.common.sigma_search.is_none() {
        return Ok(None);
    }
    let validation = labelled_sets(cfg, mesh, cfg.eval.test_points, STREAM_VALIDATION);
    let (steps, batch, dir, base) =
        (cfg.train.steps, cfg.train.batch, cfg.common.output.clone(), cfg.clone());
    crate::train::sigma::run_auto(
        &mut cfg.common,
        &dir,
        "occupancy",
        "1-iou",
        steps,
        batch,
        None,
        opts,
        |common, short, short_batch, scratch| {
            let mut c = base.clone();
            c.common = common.clone();
            (c.train.steps, c.train.batch) = (short, short_batch);
            let mut run = Run::scratch(scratch, &c.common, 3, 1)?;
            let mut objective = OccupancyBatches {
                cfg: &c,
                mesh,
                on_device: false,
                queued: 0,
                points: vec![],
                labels: vec![],
            };
            let spec = crate::train::fit::LoopSpec::new(short, c.train.lr, c.train.schedule, 0, short_batch);
            run.train(&spec, &mut objective, &FitOptions::default())?;
            let m = evaluate_sets(&validation, run.backend.as_mut())?;
            Ok(1.0 - 0.5 * (m.iou_uniform + m.iou_surface))
        },
    )
}

/// Trains (or resumes) the run in `cfg.common.output`, then evaluates and exports.
/// Prints what the fit allocates beyond the mesh (the two test sets, a batch and its network
/// working set, the export grid) and checks it against the limit, before any of it is made.
fn memory_plan(cfg: &OccupancyConfig, opts: &FitOptions) -> Result<()> {
    use crate::train::memory::{bytes, network_bytes_per_point, network_sizes, MemoryPlan};
    let per_point = network_bytes_per_point(&network_sizes(&cfg.common, 3));
    let (batch, r) = (cfg.train.batch, cfg.export.resolution as u64);
    let mut plan = MemoryPlan::new("fit occupancy");
    plan.host("test points and labels", bytes(cfg.eval.test_points, 2 * 16))
        .host("batch points and labels", bytes(batch, 16))
        .host(format!("network (batch of {batch})"), bytes(batch, 1).saturating_mul(per_point))
        .host(format!("export grid ({r}³)"), r.saturating_pow(3).saturating_mul(6));
    log(opts, &plan.describe());
    plan.check(&opts.memory_limits(None))
}

pub fn fit(cfg: &OccupancyConfig, opts: &FitOptions) -> Result<FitOutcome> {
    cfg.validate()?;
    let started = Instant::now();
    let dir = cfg.common.output.clone();
    // Load the mesh first, so bad input leaves no run folder behind.
    let mesh = PreparedMesh::load(&cfg.mesh)?;
    log(
        opts,
        &format!(
            "mesh {}{}: {} vertices, {} triangles; box {:?}–{:?} in the unit cube",
            cfg.mesh.display(),
            if crate::io::uses_bundled(&cfg.mesh) { " (the copy built into ffvol)" } else { "" },
            mesh.mesh_in_unit.positions.len(),
            mesh.mesh_in_unit.triangles.len(),
            mesh.bbox.min,
            mesh.bbox.max
        ),
    );
    log(opts, &format!("orientation: {}", mesh.orientation.describe()));
    memory_plan(cfg, opts)?;
    // The labels training will see, checked before anything is trained or written.
    let tests = test_sets(cfg, &mesh);
    let inside_uniform = inside_fraction(&tests[0].1);
    let (mut points, mut labels) = (Vec::new(), Vec::new());
    training_batch(cfg, &mesh, 0, &mut points, &mut labels);
    let inside_train = inside_fraction(&labels);
    if inside_uniform == 0.0 && inside_train == 0.0 {
        return Err(Error::format(
            &cfg.mesh,
            format!(
                "the mesh encloses no volume: none of {} uniform points and {} training points is inside it \
                 (winding number > 1/2 after orienting its faces: {}); an open or flat surface has no inside to learn",
                tests[0].1.len(),
                labels.len(),
                mesh.orientation.describe()
            ),
        ));
    }
    log(
        opts,
        &format!(
            "inside fraction: {:.4} of the {} uniform test points, {:.4} of the first training batch ({} points)",
            inside_uniform,
            tests[0].1.len(),
            inside_train,
            labels.len()
        ),
    );
    if inside_uniform < 1e-3 {
        log(
            opts,
            &format!(
                "warning: only {:.5} of the uniform test points are inside {}: a very thin shape",
                inside_uniform,
                cfg.mesh.display()
            ),
        );
    }
    log(opts, &format!("run folder: {}", dir.display()));
    let meta = OccupancyMeta { unit_from_mesh: mesh.unit_from_mesh, bbox: mesh.bbox };
    let mut searched = cfg.clone();
    let search_seconds = search_sigma(&mut searched, &mesh, opts)?;
    let cfg = &searched;

    let mut run = Run::start(&dir, &cfg.to_toml()?, &cfg.common, 3, meta_to_extra(&meta)?, opts)?;
    let start_step = run.step();
    let steps = cfg.train.steps;
    // On CUDA, batches are drawn and labelled on the device: upload the mesh once.
    let on_device = match run.backend.device_jobs() {
        None => false,
        Some(jobs) => match jobs.upload_mesh(&mesh.winding, &mesh.mesh_in_unit, mesh.bbox) {
            Ok(()) => {
                log(opts, "training batches: sampled and labelled on the GPU");
                true
            }
            Err(e) => {
                log(opts, &format!("training batches: on the host ({e})"));
                false
            }
        },
    };
    let batches_on = if on_device { "gpu" } else { "host" };
    let mut objective =
        OccupancyBatches { cfg, mesh: &mesh, on_device, queued: 0, points: vec![], labels: vec![] };
    let spec = cfg.train.loop_spec(cfg.train.batch);
    let trained = run.train(&spec, &mut objective, opts)?;
    if let Some(step) = trained.interrupted {
        return Ok(FitOutcome::Interrupted { step });
    }
    let (train_s, label_s) = (trained.train_seconds, trained.sample_seconds);
    let backend = &mut run.backend;

    let t_eval = Instant::now();
    let mut metrics = evaluate_sets(&tests, backend.as_mut())?;
    metrics.inside_fraction_train = inside_train;
    metrics.eval_seconds = t_eval.elapsed().as_secs_f64();
    let t_export = Instant::now();
    let spec = ExportSpec {
        resolution: cfg.export.resolution,
        formats: &cfg.export.formats,
        nifti: cfg.export.nifti.then_some("occupancy.nii.gz"),
        stem: "mesh",
        coarse_to_fine: cfg.export.coarse_to_fine,
        min_component: cfg.export.min_component,
        normals: Default::default(),
        simplify: None,
    };
    let exported = export(backend.as_mut(), &meta, &dir, &spec)?.mesh;
    metrics.export_seconds = t_export.elapsed().as_secs_f64();
    metrics.mesh_vertices = exported.positions.len();
    metrics.mesh_triangles = exported.triangles.len();
    metrics.final_loss = run.final_loss();
    metrics.steps = steps;
    metrics.n_params = run.n_params;
    metrics.device = run.backend.describe();
    metrics.train_seconds = train_s;
    metrics.label_seconds = label_s;
    metrics.batches_on = batches_on.into();
    metrics.samples_per_second = (steps - start_step) as f64 * cfg.train.batch as f64 / train_s.max(1e-9);
    metrics.total_seconds = started.elapsed().as_secs_f64();
    metrics.sigma_search_seconds = search_seconds;
    crate::train::run::write_metrics(&dir, &metrics)?;
    Ok(FitOutcome::Finished(Box::new(metrics)))
}

/// Steps queued on the GPU between two reads of their losses (at most
/// [`crate::backend::cuda::LOSS_SLOTS`]).
pub const DEVICE_READ_EVERY: usize = 16;

/// Fresh training batches each step, labelled by winding numbers: on the host (the backend then
/// runs the step with the sigmoid cross-entropy fused where it can), or drawn, labelled and
/// trained on the GPU, with the losses read back every [`DEVICE_READ_EVERY`] steps.
struct OccupancyBatches<'a> {
    cfg: &'a OccupancyConfig,
    mesh: &'a PreparedMesh,
    /// The mesh is on the device and the batches are drawn there.
    on_device: bool,
    /// Device steps queued since the last read.
    queued: usize,
    points: Vec<[f32; 3]>,
    labels: Vec<f32>,
}

impl Objective for OccupancyBatches<'_> {
    fn batch(&mut self, step: u64) -> Result<Batch<'_>> {
        training_batch(self.cfg, self.mesh, step, &mut self.points, &mut self.labels);
        Ok(Batch { points: self.points.as_flattened(), targets: Some((&self.labels, Loss::Bce)) })
    }

    fn loss(&mut self, _step: u64, _z: &[f32], _dz: &mut [f32]) -> Result<f32> {
        Err(Error::Config("occupancy batches are pointwise: the backend computes their loss".into()))
    }

    fn device_step(&mut self, backend: &mut dyn Backend, step: u64, lr: f32) -> Option<Result<DeviceStep>> {
        if !self.on_device {
            return None;
        }
        let jobs = backend.device_jobs()?;
        let cfg = self.cfg;
        let params = BatchParams {
            seed: cfg.common.seed,
            step,
            batch: cfg.train.batch,
            n_surface: surface_points(cfg),
            surface_sigma: cfg.train.surface_sigma,
        };
        let slot = self.queued;
        self.queued += 1;
        Some(jobs.occupancy_step(&params, lr, slot).map(|()| DeviceStep::Queued))
    }

    fn read_queued(&mut self, backend: &mut dyn Backend, n: usize) -> Result<QueuedReport> {
        let jobs =
            backend.device_jobs().ok_or_else(|| Error::Config("device batches on a host backend".into()))?;
        let report = jobs.read_steps(n)?;
        self.queued = 0;
        Ok(QueuedReport {
            losses: report.losses,
            train_seconds: report.train_seconds,
            sample_seconds: report.label_seconds,
        })
    }

    fn queue_limit(&self) -> usize {
        DEVICE_READ_EVERY
    }
}

/// Fraction of `labels` that are inside (> 1/2).
fn inside_fraction(labels: &[f32]) -> f64 {
    labels.iter().filter(|&&l| l > 0.5).count() as f64 / labels.len().max(1) as f64
}

/// IoU and accuracy on the uniform and near-surface test sets.
pub fn evaluate(cfg: &OccupancyConfig, mesh: &PreparedMesh, backend: &mut dyn Backend) -> Result<Metrics> {
    evaluate_sets(&test_sets(cfg, mesh), backend)
}

/// IoU and accuracy on labelled test sets ([`test_sets`]). An IoU whose union is empty (no point
/// inside the truth or the prediction) is an error: there is nothing to measure.
pub fn evaluate_sets(sets: &[(Vec<[f32; 3]>, Vec<f32>); 2], backend: &mut dyn Backend) -> Result<Metrics> {
    let [(pu, lu), (ps, ls)] = sets;
    let iou = |z: &[f32], l: &[f32], which: &str| {
        iou_from_logits(z, l).ok_or_else(|| {
            Error::Input(format!(
                "the IoU on the {which} test points cannot be computed: no point is inside the mesh or the fitted field"
            ))
        })
    };
    let mut zu = vec![0.0; pu.len()];
    backend.predict(pu.as_flattened(), &mut zu)?;
    let mut zs = vec![0.0; ps.len()];
    backend.predict(ps.as_flattened(), &mut zs)?;
    Ok(Metrics {
        iou_uniform: iou(&zu, lu, "uniform")?,
        iou_surface: iou(&zs, ls, "near-surface")?,
        accuracy_uniform: accuracy_from_logits(&zu, lu),
        accuracy_surface: accuracy_from_logits(&zs, ls),
        inside_fraction_uniform: inside_fraction(lu),
        ..Default::default()
    })
}

impl ExportFrame for OccupancyMeta {
    fn frame(&self) -> (Aabb, UnitFromMesh) {
        (self.bbox, self.unit_from_mesh)
    }
}

/// A finished (or interrupted) run folder opened for export.
pub struct SavedRun {
    pub dir: PathBuf,
    pub config: OccupancyConfig,
    pub checkpoint: Checkpoint,
    meta: OccupancyMeta,
}

impl ExportFrame for SavedRun {
    fn frame(&self) -> (Aabb, UnitFromMesh) {
        self.meta.frame()
    }
}

impl SavedRun {
    pub fn open(dir: &Path) -> Result<Self> {
        let config = load_run_config(dir)?;
        let ck_path = dir.join(CHECKPOINT);
        let checkpoint = crate::train::run::load_checkpoint(dir, &config.common, 3)?;
        let meta = meta_from_extra(&ck_path, &checkpoint)?;
        Ok(SavedRun { dir: dir.to_path_buf(), config, checkpoint, meta })
    }

    /// Re-extracts the mesh at another resolution; writes `mesh_{resolution}.{ext}` into the run.
    pub fn export(
        &self,
        resolution: usize,
        formats: &[MeshFormat],
        nifti: bool,
        coarse_to_fine: bool,
        min_component: f64,
        threads: usize,
    ) -> Result<TriMesh> {
        let view = crate::export::surface::MeshView::default();
        Ok(self.export_view(resolution, formats, nifti, coarse_to_fine, min_component, threads, &view)?.mesh)
    }

    /// [`Self::export`] with the mesh made for viewing as `view` says: normals from the field or
    /// the facets, simplified (`mesh_{resolution}{suffix}.{ext}` and `.json`) when asked.
    #[allow(clippy::too_many_arguments)]
    pub fn export_view(
        &self,
        resolution: usize,
        formats: &[MeshFormat],
        nifti: bool,
        coarse_to_fine: bool,
        min_component: f64,
        threads: usize,
        view: &crate::export::surface::MeshView,
    ) -> Result<crate::export::surface::Exported> {
        let mut backend =
            crate::train::run::saved_backend(&self.checkpoint, &self.config.common.device, threads)?;
        let nifti_name = format!("occupancy_{resolution}.nii.gz");
        let stem = format!("mesh_{resolution}");
        let spec = ExportSpec {
            resolution,
            formats,
            nifti: nifti.then_some(nifti_name.as_str()),
            stem: &stem,
            coarse_to_fine,
            min_component,
            normals: view.normals,
            simplify: view.simplify,
        };
        export(backend.as_mut(), self, &self.dir, &spec)
    }
}

/// Reads `RUN/run.toml` as an occupancy config.
pub fn load_run_config(dir: &Path) -> Result<OccupancyConfig> {
    crate::train::run::load_run_toml(dir)
}
