//! The command line's flags (clap derive).

use clap::{Args, Parser, Subcommand};
use ffvol::config::{DeviceKind, Precision, Preset};
use ffvol::io::MeshFormat;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "ffvol", version, about = "Fit continuous 3D fields with Fourier-feature MLPs")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a field: `ffvol fit occupancy`, or `ffvol fit --resume RUN` to continue a run.
    Fit(FitArgs),
    /// Re-extract a mesh (and volume) from a saved run without retraining.
    Export(ExportArgs),
    /// Print training, inference and labelling throughput.
    Bench(BenchArgs),
    /// Simulate measurements: `ffvol simulate ct --phantom shepp2d --geometry G.toml`.
    Simulate(SimulateArgs),
    /// Classical reconstruction from projections: `ffvol recon fbp|fdk|sart`.
    Recon(ReconArgs),
    /// The empirical neural tangent kernel at initialisation: profile, spectrum, decay against
    /// frequency, and (1D) kernel regression against gradient descent, as CSV and PNG.
    Ntk(NtkArgs),
    /// List the compute devices this build can use.
    Info,
    /// Write report.html in each run folder; with several runs, also a comparison page (--output).
    Report(ReportArgs),
}

#[derive(Args)]
pub struct ReportArgs {
    /// Run folders written by `ffvol fit`.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// With several runs: the comparison page (default: comparison.html in the current folder).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Args)]
pub struct NtkArgs {
    /// Input mapping γ.
    #[arg(long, default_value = "gaussian", value_parser = ["none", "basic", "positional", "gaussian"])]
    pub encoding: String,
    /// Scale σ (Gaussian: std of the frequencies, cycles per unit box; positional: log2 of the
    /// highest frequency).
    #[arg(long, default_value_t = 10.0)]
    pub sigma: f32,
    /// Frequencies m (Gaussian) or per axis (positional).
    #[arg(long, default_value_t = 128)]
    pub features: usize,
    #[arg(long, value_enum, default_value = "gaussian")]
    pub frequencies: ffvol::encoding::Distribution,
    /// Dense layers including the output layer.
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    #[arg(long, default_value_t = 256)]
    pub width: usize,
    /// Dimension of the point grid: 1, 2 or 3.
    #[arg(long, default_value_t = 1)]
    pub dim: usize,
    /// Grid points per axis (at most 2048 points in all).
    #[arg(long, default_value_t = 128)]
    pub points: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Gradient-descent steps of the 1D training comparison.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Learning rate η of plain gradient descent (default: n_train / λ_max).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Output folder (default runs/ntk-<encoding>).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FitArgs {
    #[command(subcommand)]
    pub job: Option<Job>,
    /// Continue an interrupted run from its last checkpoint.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

/// How much memory a fit may use, and how it bounds it (not part of the run's settings: a
/// resumed run may be given other values).
#[derive(Args, Clone, Default)]
pub struct MemoryArgs {
    /// Host memory the run may use (e.g. 2G, 512M, 1.5GiB). Default: what the machine has free,
    /// less a margin. The run prints its memory plan first and stops, before allocating, when
    /// the plan does not fit.
    #[arg(long, value_name = "SIZE", value_parser = ffvol::train::memory::parse_size)]
    pub max_memory: Option<u64>,
    /// Full-grid steps (MRI, CT on the grid): evaluate and back-propagate the field N points at
    /// a time. Default: only when the whole grid's activations would take more than 512 MiB.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk: Option<u64>,
}

#[derive(Subcommand)]
pub enum Job {
    /// Learn the inside/outside of a triangle mesh and export it as a mesh.
    Occupancy(Box<OccupancyArgs>),
    /// Fit a volume (NIfTI or .npy) voxel by voxel; PSNR/SSIM on held-out voxels.
    Volume(Box<VolumeArgs>),
    /// Recover a volume from undersampled k-space (the paper's 3-D MRI protocol).
    Mri(Box<MriArgs>),
    /// Learn an attenuation field from CT projections and write it as a volume.
    Ct(Box<CtArgs>),
    /// Fit a 2D image (PNG) as a field: the paper's image regression (train on the even pixel
    /// grid, PSNR on the odd one).
    Image(Box<ImageArgs>),
}

/// The flags every `fit` job shares: the settings file, the run folder, the network, the
/// training and the device (each job maps `--encoding`, `--sigma` and `--features` onto its own
/// defaults, see `config::presets::encoding_for`).
#[derive(Args)]
pub struct RunArgs {
    /// A run.toml whose settings override the preset (flags override both).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run folder (default: under runs/, named after the data, numbered if it exists).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write into an existing run folder.
    #[arg(long)]
    pub force: bool,
    /// Input mapping γ (`hashgrid`: the multiresolution hash grid of Müller et al. 2022, with
    /// trainable tables; CPU only; with --features/--sigma, Gaussian features are put before it).
    #[arg(long, value_parser = ["none", "basic", "positional", "gaussian", "hashgrid"])]
    pub encoding: Option<String>,
    /// Scale σ of the mapping (Gaussian: std of the frequencies in cycles per unit box;
    /// positional: log2 of the highest frequency), or `auto`: chosen by short fits scored on
    /// the job's validation data (sigma_sweep.csv/png in the run folder; ≤ 30 % of the fit).
    #[arg(long, value_parser = parse_sigma)]
    pub sigma: Option<SigmaArg>,
    /// Distribution of the Gaussian mapping's frequencies, scaled to the same σ.
    #[arg(long, value_enum)]
    pub frequencies: Option<ffvol::encoding::Distribution>,
    /// Number of frequencies m (Gaussian) or per axis (positional).
    #[arg(long)]
    pub features: Option<usize>,
    /// Hash grid: number of levels L.
    #[arg(long)]
    pub levels: Option<usize>,
    /// Hash grid: log2 of the entries of each level's table (T).
    #[arg(long)]
    pub log2_table: Option<u32>,
    /// Hash grid: features per level (F).
    #[arg(long)]
    pub features_per_level: Option<usize>,
    /// Hash grid: cells a side of the coarsest level (N_min).
    #[arg(long)]
    pub base_resolution: Option<usize>,
    /// Hash grid: cells a side of the finest level (N_max); 0: the voxel grid's longest side (mri, volume).
    #[arg(long)]
    pub finest_resolution: Option<usize>,
    /// Decoupled weight decay of Adam (AdamW) on every parameter; 0 (the default) is plain
    /// Adam. CPU only.
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Dense layers including the output layer.
    #[arg(long)]
    pub depth: Option<usize>,
    /// Width of the hidden layers.
    #[arg(long)]
    pub width: Option<usize>,
    #[arg(long)]
    pub steps: Option<u64>,
    /// Base learning rate.
    #[arg(long)]
    pub lr: Option<f32>,
    /// `constant`, `cosine[:WARMUP[:FINAL_FRACTION]]` or `exponential:FACTOR:EVERY`.
    #[arg(long)]
    pub schedule: Option<String>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads (0 = all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, value_enum)]
    pub device: Option<DeviceKind>,
    /// Number format on CUDA: fp16 (tensor cores, fp32 master weights; the default) or fp32
    /// (for checking against the CPU). Recorded in run.toml; a resumed run keeps it.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// Write a checkpoint every N steps.
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

/// `--sigma`: a number, or `auto`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SigmaArg {
    Value(f32),
    Auto,
}

fn parse_sigma(s: &str) -> Result<SigmaArg, String> {
    if s == "auto" {
        return Ok(SigmaArg::Auto);
    }
    s.parse::<f32>().map(SigmaArg::Value).map_err(|_| format!("{s:?}: a number or `auto`"))
}

#[derive(Args)]
pub struct ImageArgs {
    /// Image to fit (PNG: grey, RGB or palette, 8 or 16 bit). Default: the bundled astronaut
    /// (scikit-image, public domain).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Starting settings: `fast` (a 256² image, 4 × 128, under a minute on 2 cores) or `paper`
    /// (512², 4 × 256, m = 256, 2000 full-batch steps). `--encoding` gives the paper's image
    /// mappings (σ_g = 10, σ_p = 10 with m/2 frequencies per axis, unless --sigma).
    #[arg(long, value_enum, default_value = "fast")]
    pub preset: ffvol::job::image::ImagePreset,
    #[command(flatten)]
    pub run: RunArgs,
    /// Side N of the square the image is centre-cropped and resampled to (even; 0 = as is).
    #[arg(long)]
    pub size: Option<usize>,
    /// Also render the field K times finer (reconstruction_xK.png).
    #[arg(long, value_name = "K")]
    pub upsample: Option<usize>,
}

#[derive(Args)]
pub struct CtArgs {
    /// Projections: line integrals (.npy, [views, u] in 2D, [views, v, u] in 3D), a raw .npy
    /// stack with --flat (and --dark), or an HDF5 Data Exchange file (tomopy's layout).
    #[arg(long)]
    pub projections: PathBuf,
    /// Scan geometry (TOML), or `paper-ct[:N[:VIEWS]]`; optional for an HDF5 file (a parallel
    /// beam from its /exchange/theta, unit pixels).
    #[arg(long)]
    pub geometry: Option<PathBuf>,
    #[command(flatten)]
    pub input: ProjectionArgs,
    /// The true volume (.nii.gz) for PSNR and SSIM.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Starting settings: `hashgrid` (the default: the hash grid with a SART warm start, the
    /// ramp-weighted loss and TV; about a minute on 2 cores at 256²; for a 3D scan grid
    /// rendering, TV 3e-2, a projector step of 1 voxel and 150 steps), `fast` (Gaussian Fourier
    /// features, minutes on 2 cores at 128²) or `paper-ct` (the paper's 2D protocol). Any of them
    /// with `--encoding` gives the paper's mappings (σ_g = 4, σ_p = 3 with m/2 frequencies per
    /// axis, unless --sigma) and learning rates (1e-3 for gaussian and positional, 1e-2 for
    /// basic, none and hashgrid, unless --lr).
    #[arg(long, value_enum, default_value = "hashgrid")]
    pub preset: ffvol::job::ct::CtPreset,
    #[command(flatten)]
    pub run: RunArgs,
    /// `grid` renders the whole grid each step (full batch), `rays` samples rays.
    #[arg(long, value_enum)]
    pub render: Option<ffvol::job::ct::Render>,
    #[arg(long)]
    pub rays_per_batch: Option<usize>,
    #[arg(long)]
    pub samples_per_ray: Option<usize>,
    #[command(flatten)]
    pub tv: TvArgs,
    /// Grid rendering: weight β of the ramp-filtered residual, loss ½·rᵀ(I + β·F)r / m with F
    /// filtered back-projection's ramp filter along each detector row (0: plain least squares).
    /// Preconditions the fit; on the host
    #[arg(long, value_name = "BETA")]
    pub ramp_weight: Option<f32>,
    /// Grid rendering: the first K steps (at most a fifth of --steps) fit the field to a classical
    /// reconstruction of the same projections (--warm-start-image), then the projection loss
    /// takes over (0: none)
    #[arg(long, value_name = "K")]
    pub warm_start: Option<u64>,
    /// The image the warm start fits: `sart` (20 passes; every preset's) or `asd-pocs` (50
    /// iterations of TIGRE's ASD-POCS)
    #[arg(long, value_enum, value_name = "METHOD")]
    pub warm_start_image: Option<ffvol::job::ct::WarmImage>,
    /// Grid rendering: floor of σ′ in the warm start's chain rule through the field's sigmoid,
    /// in [0, 0.25]: a surrogate gradient that lets voxels stuck at 0 (or 1) follow the
    /// classical image; the projection steps keep the exact gradient (0: exact throughout)
    #[arg(long, value_name = "FLOOR")]
    pub warm_start_floor: Option<f32>,
    /// Grid rendering: the ramp weight at the last step as a fraction of --ramp-weight, in
    /// [0, 1]; β falls linearly to it after the warm start (1: constant)
    #[arg(long, value_name = "FRACTION")]
    pub ramp_final: Option<f32>,
}

/// Total variation of the field (`fit ct`, `fit mri`): on the rendered grid, or along each
/// ray's samples (`fit ct --render rays`).
#[derive(Args, Clone, Default)]
pub struct TvArgs {
    /// Weight λ of the total variation added to the loss (0: none).
    #[arg(long)]
    pub tv: Option<f32>,
    /// Anisotropic TV (Σ_a |∂_a f|) instead of isotropic (|∇f|).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tv_anisotropic: Option<bool>,
    /// Charbonnier ε of the smoothed |·| (default 1e-3).
    #[arg(long)]
    pub tv_epsilon: Option<f32>,
}

/// How projections are read: raw stacks, rows, views, centre, grid (`fit ct` and `recon`).
#[derive(Args, Clone, Default)]
pub struct ProjectionArgs {
    /// Dark-field frames (.npy) of a raw .npy stack: [frames, …] or one frame.
    #[arg(long)]
    pub dark: Option<PathBuf>,
    /// Flat-field frames (.npy) of a raw .npy stack: makes --projections raw intensities.
    #[arg(long)]
    pub flat: Option<PathBuf>,
    /// Detector rows to keep: `K` (one slice: a 2D scan) or `A:B` (B excluded). Default: all.
    #[arg(long, value_parser = parse_rows)]
    pub rows: Option<[usize; 2]>,
    /// Keep N evenly spaced views of the scan.
    #[arg(long, value_name = "N")]
    pub views: Option<usize>,
    /// Centre of rotation: a detector column (0-based, fractional) or `auto` (the default for
    /// HDF5 files; otherwise the geometry's detector offset).
    #[arg(long, value_parser = parse_center)]
    pub center: Option<ffvol::io::raw_projections::Center>,
    /// Floor of the transmission of raw stacks (default 1e-4).
    #[arg(long)]
    pub floor: Option<f64>,
    /// Reconstruct on N × N voxels over the same field of view.
    #[arg(long, value_name = "N")]
    pub grid: Option<usize>,
}

fn parse_rows(s: &str) -> Result<[usize; 2], String> {
    ffvol::io::raw_projections::ProjectionInput::parse_rows(s)
}

fn parse_center(s: &str) -> Result<ffvol::io::raw_projections::Center, String> {
    ffvol::io::raw_projections::Center::parse(s)
}

impl ProjectionArgs {
    /// The `[input]` table these flags give, on top of `base` (a --config file's).
    pub fn apply(&self, base: &mut ffvol::io::raw_projections::ProjectionInput) {
        base.dark = self.dark.clone().or(base.dark.take());
        base.flat = self.flat.clone().or(base.flat.take());
        base.rows = self.rows.or(base.rows);
        base.views = self.views.or(base.views);
        base.center = self.center.or(base.center);
        base.floor = self.floor.or(base.floor);
        base.grid = self.grid.or(base.grid);
    }
}

/// The geometry: as given, or the HDF5 projections file itself.
pub fn geometry_or_hdf5(
    geometry: &Option<PathBuf>,
    projections: &std::path::Path,
) -> anyhow::Result<PathBuf> {
    match geometry {
        Some(g) => Ok(g.clone()),
        None if ffvol::io::raw_projections::is_hdf5(projections) => Ok(projections.to_path_buf()),
        None => anyhow::bail!(
            "--geometry is needed for {} (only an HDF5 Data Exchange file carries its own angles)",
            projections.display()
        ),
    }
}

#[derive(Args)]
pub struct SimulateArgs {
    #[command(subcommand)]
    pub what: SimulateWhat,
}

#[derive(Subcommand)]
pub enum SimulateWhat {
    /// Project a phantom: writes projections.npy, geometry.toml and truth.nii.gz (+ PNGs).
    Ct(SimulateCtArgs),
    /// A text image (random strings at random sizes and colours, the paper's text set) as PNG.
    Text(SimulateTextArgs),
}

#[derive(Args)]
pub struct SimulateTextArgs {
    /// The PNG to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Side of the square image in pixels (16..=4096; the paper: 512).
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Seed of the strings, sizes, colours and positions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args)]
pub struct SimulateCtArgs {
    /// `shepp2d` (perturbed modified Shepp–Logan), `shepp2d-plain`, `shepp3d` (the 3D phantom as
    /// published), `shepp3d-perturbed` (perturbed from --seed as shepp2d is), or a volume on the
    /// grid: .nii(.gz), .npy, .mat (e.g. TIGRE's head phantom), a DICOM folder, file or .txt list.
    #[arg(long)]
    pub phantom: String,
    /// Scan geometry (TOML), or `paper-ct[:N[:VIEWS]]`.
    #[arg(long)]
    pub geometry: PathBuf,
    /// `poisson:I0`: photon noise with I0 incident photons per ray; `poisson:I0,gaussian:[MEAN:]SIGMA`:
    /// plus electronic noise on the counts (TIGRE's addCTnoise); `tigre`: poisson:1e5,gaussian:0:10.
    #[arg(long)]
    pub noise: Option<String>,
    /// Seeds the phantom's perturbation and the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (default: sim/<phantom>).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Samples per voxel edge when rasterising the phantom.
    #[arg(long, default_value_t = 3)]
    pub supersample: usize,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReconMethod {
    /// Ramp-filtered back-projection (parallel beam; fan and cone go through FDK).
    Fbp,
    /// Feldkamp–Davis–Kress for fan and cone beams (flat detector; a short scan gets Parker weights).
    Fdk,
    /// Simultaneous algebraic reconstruction with positivity (`--subsets N`: OS-SART; 1: SIRT).
    Sart,
    /// TV-regularised reconstruction: ASD-POCS with TIGRE's defaults (SART data step, positivity, TV steepest descent).
    AsdPocs,
    /// Conjugate gradient least squares on A x = b (the iteration count is the regularisation).
    Cgls,
}

#[derive(Args)]
pub struct ReconArgs {
    #[arg(value_enum)]
    pub method: ReconMethod,
    /// Projections: line integrals (.npy), a raw .npy stack with --flat, or an HDF5 Data Exchange file.
    #[arg(long)]
    pub projections: PathBuf,
    /// Scan geometry (TOML), or `paper-ct[:N[:VIEWS]]`; optional for an HDF5 file.
    #[arg(long)]
    pub geometry: Option<PathBuf>,
    #[command(flatten)]
    pub input: ProjectionArgs,
    /// The true volume on the grid (.nii.gz, .npy, .mat, DICOM): prints PSNR and SSIM.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Output volume (default: <method>.nii.gz beside the projections); a PNG goes beside it.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Passes over all views (SART, ASD-POCS) or CGLS iterations; default 20.
    #[arg(long)]
    pub iterations: Option<usize>,
    /// SART / ASD-POCS relaxation λ (β), in (0, 2); default 1.
    #[arg(long)]
    pub relaxation: Option<f32>,
    /// λ is multiplied by this after every pass, in (0, 1]; default 1 (SART), 0.99 (ASD-POCS, TIGRE's).
    #[arg(long)]
    pub relaxation_decay: Option<f32>,
    /// Ordered subsets of views for SART and ASD-POCS: 1 (SIRT) to the number of views (one view a
    /// subset, the default).
    #[arg(long, value_name = "N")]
    pub subsets: Option<usize>,
    /// ASD-POCS: the TV step as a fraction of the first data step's change (TIGRE's 0.002).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// ASD-POCS: reduction of the TV step when it outweighs the data step (TIGRE's 0.95).
    #[arg(long)]
    pub alpha_red: Option<f64>,
    /// ASD-POCS: TV steepest-descent steps per iteration (TIGRE's 20).
    #[arg(long)]
    pub tv_iterations: Option<usize>,
    /// ASD-POCS: largest ratio of the TV change to the data change (TIGRE's 0.95).
    #[arg(long)]
    pub ratio: Option<f64>,
    /// ASD-POCS: the projection error (L2) at which an image is accepted (default 0.2 ‖A·FBP − b‖).
    #[arg(long)]
    pub max_l2_err: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Settings shared by `fit volume` and `fit mri`.
#[derive(Args)]
pub struct FieldArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Intensity normalisation to [0, 1]: `minmax` or `percentile[:LOW:HIGH]`.
    #[arg(long)]
    pub normalize: Option<String>,
    /// Also write the fit on a grid K times finer (fit_xK.nii.gz).
    #[arg(long, value_name = "K")]
    pub upsample: Option<usize>,
}

#[derive(Args)]
pub struct VolumeArgs {
    /// Volume to fit (.nii, .nii.gz, .npy, .mat, or DICOM: a folder, a file or a .txt list of files).
    /// Default: the bundled 32³ MNI152 crop.
    #[arg(long)]
    pub volume: Option<PathBuf>,
    /// Fraction of voxels trained on; the rest are held out for PSNR/SSIM.
    #[arg(long)]
    pub train_fraction: Option<f32>,
    /// Training voxels per step (0 = all of them).
    #[arg(long)]
    pub batch: Option<usize>,
    #[command(flatten)]
    pub common: FieldArgs,
}

#[derive(Args)]
pub struct MriArgs {
    /// True volume (.nii, .nii.gz, .npy, .mat, DICOM folder/file/.txt list): k-space is simulated
    /// from it, PSNR measured against it.
    /// Default (when no --kspace): the bundled 32³ MNI152 crop.
    #[arg(long)]
    pub volume: Option<PathBuf>,
    /// Measured k-space (complex64 .npy, centred: DC at index n/2).
    #[arg(long)]
    pub kspace: Option<PathBuf>,
    /// Sampling mask (.npy, centred, nonzero = measured).
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Mask to simulate when no --mask: `gaussian` (the paper's), `cartesian:R`, `radial:N`, `poisson:R`.
    #[arg(long)]
    pub sampling: Option<String>,
    /// Default: `hashgrid`; `fast` when --encoding names a Fourier mapping (none, basic,
    /// positional, gaussian), or --features, --sigma or --frequencies are given without
    /// --encoding hashgrid: the hash-grid preset's network and learning rate do not suit those.
    #[arg(long, value_enum)]
    pub preset: Option<ffvol::config::presets::MriPreset>,
    #[command(flatten)]
    pub common: FieldArgs,
    #[command(flatten)]
    pub tv: TvArgs,
}

#[derive(Args)]
pub struct OccupancyArgs {
    /// Triangle mesh to fit (PLY, OBJ, STL). Default: the bundled bunny.
    #[arg(long)]
    pub mesh: Option<PathBuf>,
    /// Starting settings: `fast` (under two minutes on 2 cores) or `paper` (the paper's protocol).
    #[arg(long, value_enum, default_value = "fast")]
    pub preset: Preset,
    #[command(flatten)]
    pub run: RunArgs,
    /// Divide the features by √m (the paper's occupancy code does).
    #[arg(long)]
    pub normalize: Option<bool>,
    #[arg(long)]
    pub batch: Option<usize>,
    /// Fraction of each training batch drawn near the surface.
    #[arg(long)]
    pub surface_fraction: Option<f32>,
    /// Points in each test set.
    #[arg(long)]
    pub test_points: Option<usize>,
    /// Grid points per axis for the exported mesh and volume.
    #[arg(long)]
    pub resolution: Option<usize>,
    /// Mesh formats to export (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub format: Option<Vec<MeshFormat>>,
    /// Drop exported mesh components smaller than this fraction of the largest (0 keeps all).
    #[arg(long)]
    pub min_component: Option<f64>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A run folder written by `ffvol fit`. A flag that does not apply to the run's job is an
    /// error, never ignored.
    pub run: PathBuf,
    /// Occupancy runs: grid nodes per axis (default 256).
    #[arg(long)]
    pub resolution: Option<usize>,
    /// Mesh formats (default ply): occupancy runs, and the others with --mesh.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub format: Option<Vec<MeshFormat>>,
    /// Occupancy runs: also write the occupancy volume (occupancy_<resolution>.nii.gz).
    #[arg(long)]
    pub nifti: bool,
    /// Occupancy runs: evaluate every grid node instead of refining near the surface only.
    #[arg(long)]
    pub exact: bool,
    /// Occupancy runs: drop mesh components smaller than this fraction of the largest (by
    /// enclosed volume; default 1e-3).
    #[arg(long)]
    pub min_component: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Host memory the export may use (e.g. 2G); default: what the machine has free, less a
    /// margin. An export that would not fit stops before allocating its grid.
    #[arg(long, value_name = "SIZE", value_parser = ffvol::train::memory::parse_size)]
    pub max_memory: Option<u64>,
    /// Volume, MRI and 3D CT runs: write the iso-surface of the fitted field as a mesh.
    #[arg(long)]
    pub mesh: bool,
    /// Volume, MRI and CT runs with --mesh: iso-surface level, as a normalised intensity in
    /// [0, 1] (volume, MRI) or an attenuation in the units of recon.nii.gz (CT); default 0.5.
    #[arg(long)]
    pub level: Option<f32>,
    /// Volume, MRI and CT runs: evaluate on a grid K times finer than the input (fit_xK.nii.gz,
    /// recon_xK.nii.gz); default 1.
    #[arg(long, value_name = "K")]
    pub upsample: Option<usize>,
    /// Vertex normals: `field` (−∇f of the fitted network at each vertex: smooth shading; the
    /// default for occupancy, volume and MRI runs) or `facets` (the marching-cubes facets; CT runs
    /// have only these).
    #[arg(long, value_enum)]
    pub normals: Option<ffvol::export::normals::Normals>,
    /// Simplify the mesh to at most N triangles (quadric edge collapse, closed and manifold kept);
    /// writes <stem>_tN.<ext> and <stem>_tN.json with the Hausdorff distance to the full surface.
    #[arg(long, value_name = "N")]
    pub triangles: Option<usize>,
    /// Simplify while the estimated error stays below E (in the mesh's units: the input mesh's
    /// for occupancy, millimetres for volumes); with --triangles, whichever stops first.
    #[arg(long, value_name = "E")]
    pub max_error: Option<f32>,
    /// Volume and MRI runs with --mesh --format glb: colour the vertices by the fitted intensity
    /// one voxel inside the surface.
    #[arg(long)]
    pub colors: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    #[arg(long, default_value_t = 128)]
    pub width: usize,
    /// Gaussian frequencies m.
    #[arg(long, default_value_t = 128)]
    pub features: usize,
    #[arg(long, default_value_t = 8192)]
    pub batch: usize,
    /// Timed training steps (after one warm-up step).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Mesh for the labelling benchmark.
    #[arg(long, default_value = "datasets/bunny.ply")]
    pub mesh: PathBuf,
    /// Points to label in the labelling benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    pub label_points: usize,
    /// Label these points instead (.npy, N × 3, in the mesh's coordinates).
    #[arg(long)]
    pub points: Option<PathBuf>,
    /// Write the labels (1 inside, 0 outside) as .npy (N float32).
    #[arg(long)]
    pub labels_out: Option<PathBuf>,
    /// Only the labelling benchmark (no network stages).
    #[arg(long)]
    pub labels_only: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Number format on CUDA.
    #[arg(long, value_enum, default_value = "fp16")]
    pub precision: Precision,
    /// fp16 on CUDA: the products through cuBLASLt with fused epilogues (false: cuBLAS and our
    /// kernels, the fallback when the library is missing).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub cublaslt: bool,
}
