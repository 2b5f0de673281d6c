//! Durability beyond a kill (issue 12): a full disk while writing an export or a simulation
//! leaves no partial file under a final name and gives an error naming the file; a resumed CT
//! run keeps the PSNR curve of the steps before its resume.
//!
//! The full disk is made two ways: a child process with `RLIMIT_FSIZE` (and SIGXFSZ ignored), so
//! a write past the limit fails with EFBIG, which works anywhere; and, where this process may
//! mount one (root, outside most containers), a tmpfs filled to the last byte, so the write
//! fails with ENOSPC as on a real full disk. Without mount permission that variant says so and
//! returns.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::scratch;

const BIN: &str = env!("CARGO_BIN_EXE_ffvol");

/// Runs `ffvol args` with files limited to `limit` bytes (a write past it fails with EFBIG).
fn ffvol_with_file_limit(args: &[&str], limit: u64) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    // SAFETY: between fork and exec only async-signal-safe calls (signal, setrlimit)
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let r = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: limit as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("run ffvol")
}

fn ffvol(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run ffvol")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(out: Output, what: &str) {
    assert!(out.status.success(), "{what} failed:\n{}", text(&out));
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
    v.sort();
    v
}

/// A failed write: exit status 1 (not a signal, not a panic), an `error:` line naming `file`
/// and the system's reason.
fn assert_clean_failure(out: &Output, file: &str, reason: &str) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(1), "expected a clean error:\n{t}");
    assert!(!t.contains("panicked"), "{t}");
    let line = t.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line:\n{t}"));
    assert!(
        line.contains(file) && line.contains(reason),
        "the error should name {file} and {reason:?}: {line}"
    );
    assert!(!line.contains(".tmp-"), "the error names the temporary file, not {file}: {line}");
}

/// A small occupancy run of the bundled bunny in `dir`.
fn small_run(dir: &Path) {
    let d = dir.display().to_string();
    ok(
        ffvol(&[
            "fit",
            "occupancy",
            "--output",
            &d,
            "--steps",
            "30",
            "--batch",
            "512",
            "--test-points",
            "1000",
            "--resolution",
            "16",
            "--depth",
            "2",
            "--width",
            "16",
            "--features",
            "16",
            "--threads",
            "1",
            "--device",
            "cpu",
        ]),
        "fit",
    );
}

const EXPORT: &[&str] = &["--resolution", "64", "--threads", "1", "--normals", "facets"];

/// `export` on a full disk (EFBIG): no mesh under its final name, no temporary file, the error
/// names the mesh; with an older mesh there, that one is left byte for byte.
#[test]
fn export_on_a_full_disk_leaves_no_partial_file() {
    let root = scratch("export-full");
    let run = root.join("run");
    small_run(&run);
    let before = names(&run);
    let mesh = "mesh_64.ply";
    let d = run.display().to_string();
    let args: Vec<&str> = ["export", d.as_str()].into_iter().chain(EXPORT.iter().copied()).collect();
    // a 64³ mesh is tens of kB: 8 kB files fail part-way through it
    let out = ffvol_with_file_limit(&args, 8 << 10);
    assert_clean_failure(&out, mesh, "too large");
    assert_eq!(names(&run), before, "the failed export left files behind");
    // an export that succeeds, then a failing one over it: the old mesh stays
    ok(ffvol(&args), "export");
    let good = std::fs::read(run.join(mesh)).unwrap();
    assert!(good.len() > 8 << 10, "the mesh is {} bytes: too small to test a full disk", good.len());
    let out = ffvol_with_file_limit(&args, 8 << 10);
    assert_clean_failure(&out, mesh, "too large");
    assert_eq!(std::fs::read(run.join(mesh)).unwrap(), good, "the older mesh was changed");
    assert!(names(&run).iter().all(|n| !n.contains(".tmp-")), "{:?}", names(&run));
    std::fs::remove_dir_all(&root).ok();
}

/// A tmpfs mounted at a folder, unmounted (and the folder removed) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let size = format!("size={bytes}");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fills the filesystem of `dir` to its last byte with `dir/filler`.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&block[..1]).is_ok() {}
    let _ = f.sync_all();
}

/// The same on a really full filesystem (ENOSPC), where a tmpfs can be mounted.
#[test]
fn export_on_a_full_tmpfs_leaves_no_partial_file() {
    let root = scratch("export-tmpfs");
    let run = root.join("run");
    small_run(&run);
    let Some(fs) = Tmpfs::mount(&root.join("full"), 4 << 20) else {
        println!("skipped: cannot mount a tmpfs here (not root, or in a container); the RLIMIT_FSIZE test covers it");
        std::fs::remove_dir_all(&root).ok();
        return;
    };
    let copy = fs.0.join("run");
    std::fs::create_dir(&copy).unwrap();
    for name in names(&run) {
        std::fs::copy(run.join(&name), copy.join(&name)).unwrap();
    }
    fill(&fs.0);
    let before = names(&copy);
    let d = copy.display().to_string();
    let args: Vec<&str> = ["export", d.as_str()].into_iter().chain(EXPORT.iter().copied()).collect();
    let out = ffvol(&args);
    assert_clean_failure(&out, "mesh_64.ply", "No space left on device");
    assert_eq!(names(&copy), before, "the failed export left files behind");
    drop(fs);
    std::fs::remove_dir_all(&root).ok();
}

/// `simulate` stages its files: a full disk at the truth volume (after the projections and the
/// geometry were written) leaves none of them, and the folder it made is removed.
#[test]
fn simulate_on_a_full_disk_leaves_none_of_its_files() {
    let root = scratch("simulate-full");
    let geometry = root.join("g.toml");
    std::fs::write(
        &geometry,
        "beam = \"parallel\"\ndims = 2\n[detector]\npixels = [40]\npixel_size = [6.4]\n[volume]\nvoxels = \
         [256, 256]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = 4\n",
    )
    .unwrap();
    let out_dir = root.join("sim");
    let (g, o) = (geometry.display().to_string(), out_dir.display().to_string());
    let args = ["simulate", "ct", "--phantom", "shepp2d", "--geometry", &g, "--output", &o, "--threads", "1"];
    // 4 views × 40 pixels of projections and the geometry fit in 2 kB; a 256² truth does not
    let limit = 2 << 10;
    let out = ffvol_with_file_limit(&args, limit);
    assert_clean_failure(&out, "truth.nii.gz", "too large");
    assert!(!out_dir.exists(), "left {:?} behind", out_dir.exists().then(|| names(&out_dir)));
    // into an existing folder: nothing new appears in it
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::write(out_dir.join("keep.txt"), "mine").unwrap();
    let out = ffvol_with_file_limit(&args, limit);
    assert_clean_failure(&out, "truth.nii.gz", "too large");
    assert_eq!(names(&out_dir), ["keep.txt"]);
    // without the limit, every file (and the sizes that made the test meaningful)
    ok(ffvol(&args), "simulate");
    let size = |n: &str| std::fs::metadata(out_dir.join(n)).unwrap().len();
    assert!(size("projections.npy") < limit && size("geometry.toml") < limit);
    assert!(size("truth.nii.gz") > limit);
    // what the names say (the staged files were written under their own names)
    let (truth, dims, _) = ffvol::io::read_nifti_f32(&out_dir.join("truth.nii.gz")).unwrap();
    assert_eq!((dims, truth.len()), ([256, 256, 1], 256 * 256));
    assert_eq!(ffvol::io::read_npy(&out_dir.join("projections.npy")).unwrap().shape, [4, 40]);
    assert_eq!(
        names(&out_dir),
        ["geometry.toml", "keep.txt", "projections.npy", "sinogram.png", "truth.nii.gz", "truth.png"]
    );
    std::fs::remove_dir_all(&root).ok();
}

/// A CT run stopped and resumed has the PSNR curve of an uninterrupted run, the points before
/// the stop included; a point past the checkpoint's step (a kill between the curve and the
/// checkpoint) is dropped at the resume.
#[test]
fn resumed_ct_run_keeps_the_psnr_curve() {
    use ffvol::job::ct::{self, CtConfig, CtOutcome, CtPreset, Render};
    use ffvol::operator::ct_geometry::Scan;
    use ffvol::sim::ct::{PhantomSource, SimulateOptions};
    use ffvol::train::FitOptions;
    let root = scratch("ct-curve");
    let scan = Scan::paper_2d(32, 8);
    let sim = ffvol::sim::ct::simulate(
        &scan,
        &SimulateOptions {
            phantom: PhantomSource::Shepp2d(Some(1)),
            poisson_i0: None,
            seed: 0,
            supersample: 2,
        },
    )
    .unwrap();
    ffvol::sim::ct::write_simulation(&scan, &sim, &root).unwrap();
    let mut a = CtConfig::preset(CtPreset::Fast);
    a.projections = root.join("projections.npy");
    a.geometry = root.join("geometry.toml");
    a.truth = Some(root.join("truth.nii.gz"));
    a.common.output = root.join("a");
    a.common.model.depth = 2;
    a.common.model.width = 32;
    a.common.encoding =
        ffvol::encoding::EncodingConfig::Gaussian { sigma: 4.0, features: 16, normalize: false };
    a.common.threads = 1;
    a.train.steps = 30;
    a.train.render = Render::Grid;
    a.train.eval_every = 5;
    a.train.checkpoint_every = 0;
    let finished = |o: CtOutcome| match o {
        CtOutcome::Finished(m) => m,
        CtOutcome::Interrupted { step } => panic!("stopped at {step}"),
    };
    let full = finished(ct::fit(&a, &FitOptions::default()).unwrap());
    assert_eq!(full.psnr_curve.iter().map(|p| p.0).collect::<Vec<_>>(), [5, 10, 15, 20, 25, 30]);
    let mut b = a.clone();
    b.common.output = root.join("b");
    let stop = FitOptions { stop_after: Some(17), ..Default::default() };
    assert!(matches!(ct::fit(&b, &stop).unwrap(), CtOutcome::Interrupted { step: 17 }));
    // a point the checkpoint (step 17) does not have yet
    let curve = b.common.output.join(ct::PSNR_CSV);
    let mut kept = std::fs::read_to_string(&curve).unwrap();
    assert_eq!(kept.lines().count(), 4, "{kept}");
    kept.push_str("20,99.5\n");
    std::fs::write(&curve, kept).unwrap();
    let resumed = finished(ct::fit(&b, &FitOptions { resume: true, ..Default::default() }).unwrap());
    assert_eq!(resumed.psnr_curve, full.psnr_curve, "the resumed run's PSNR curve");
    assert_eq!(resumed.psnr, full.psnr);
    assert_eq!(
        std::fs::read(&curve).unwrap(),
        std::fs::read(a.common.output.join(ct::PSNR_CSV)).unwrap(),
        "psnr.csv"
    );
    // a damaged curve is an error naming it, before anything is trained
    std::fs::write(&curve, "step,psnr\n5,x\n").unwrap();
    let err = ct::fit(&b, &FitOptions { resume: true, ..Default::default() }).err().unwrap().to_string();
    assert!(err.contains("psnr.csv") && err.contains("line 2"), "{err}");
    std::fs::remove_dir_all(&root).ok();
}
