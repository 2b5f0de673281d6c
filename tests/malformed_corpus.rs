//! Every file in `tests/corpus/<kind>/` through every command that reads that kind of file, as
//! a child process of the built binary under a 4 GiB address-space limit and a 20 s timeout:
//! each must exit with a clean error (status 1, an `error:` line naming the file, no panic, no
//! signal, no timeout) and leave no output behind. `scripts/make_corpus.py` writes the corpus;
//! what git cannot hold is made here: a FIFO and a link to /dev/zero under each kind's names,
//! and a sparse 1024³ NIfTI (1 GiB of data) that cannot be read under the limit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::scratch;

const BIN: &str = env!("CARGO_BIN_EXE_ffvol");
const LIMIT_KB: u64 = 4 << 20;
const TIMEOUT: Duration = Duration::from_secs(20);

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// What git cannot hold, made in `dir` for the file names `names`: a FIFO (opening one for
/// reading blocks until a writer comes) and a link to /dev/zero (endless) under each name.
fn specials(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut made = vec![];
    for name in names {
        let fifo = dir.join(format!("fifo-{name}"));
        let ok = Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success());
        assert!(ok || !common::in_ci(), "mkfifo failed");
        if ok {
            made.push(fifo);
        }
        let zero = dir.join(format!("dev-zero-{name}"));
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        made.push(zero);
    }
    made
}

/// A 1024³ uint8 NIfTI (1 GiB of data, a legitimate CT size; 4 GiB as f32) as a sparse file:
/// under the 4 GiB limit it cannot be read, and must be refused as such, not abort.
fn sparse_1024(dir: &Path) -> PathBuf {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (i, d) in [3i16, 1024, 1024, 1024, 1, 1, 1, 1].iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&2i16.to_le_bytes()); // uint8
    h[72..74].copy_from_slice(&8i16.to_le_bytes());
    for k in 0..8 {
        h[76 + 4 * k..80 + 4 * k].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    let path = dir.join("sparse-1024.nii");
    std::fs::write(&path, &h).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(352 + (1 << 30)).unwrap();
    path
}

/// Places corpus file `src` at `dst`: copied, or made again when it is a FIFO or a link.
fn place(src: &Path, dst: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::symlink_metadata(src).unwrap();
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src).unwrap(), dst).unwrap();
    } else if meta.file_type().is_fifo() {
        assert!(Command::new("mkfifo").arg(dst).status().unwrap().success());
    } else {
        std::fs::copy(src, dst).unwrap();
    }
}

/// Runs `ffvol args` under the memory limit and timeout; returns a problem, if any.
fn run_clean(args: &[String], input: &Path, outputs: &[&Path]) -> Option<String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {LIMIT_KB} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Some(format!("ffvol {args:?}: no answer in {TIMEOUT:?} (a hang)"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = child.wait_with_output().expect("output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let name = input.file_name().unwrap().to_string_lossy().to_string();
    let problem = if status.code().is_none() {
        Some(format!("killed by a signal ({status:?}), out of memory or crashed"))
    } else if status.success() {
        Some("accepted (exit 0)".to_string())
    } else if text.contains("panicked") || status.code() == Some(101) {
        Some("panicked".to_string())
    } else if !text.contains("error:") {
        Some("no error line".to_string())
    } else if !text.contains(&name) {
        Some(format!("the error does not name {name}"))
    } else {
        outputs.iter().find(|o| o.exists()).map(|o| format!("left {} behind", o.display()))
    };
    problem.map(|p| format!("ffvol {}: {p}\n{}", args.join(" "), text.trim_end()))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const FIT: &[&str] = &["--steps", "1", "--threads", "1", "--device", "cpu"];

#[test]
fn every_malformed_file_through_every_command_is_a_clean_error() {
    let t = Instant::now();
    let dir = scratch("corpus");
    let out = dir.join("out");
    let o = out.display().to_string();
    // a valid scan, for the commands that need one beside the bad file
    let sim = dir.join("sim");
    let made = Command::new(BIN)
        .args(["simulate", "ct", "--phantom", "shepp2d", "--geometry", "paper-ct:16:4", "--output"])
        .arg(&sim)
        .output()
        .expect("simulate");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (proj, geom) =
        (sim.join("projections.npy").display().to_string(), sim.join("geometry.toml").display().to_string());
    let mut problems = Vec::new();
    let mut runs = 0;
    let mut check = |args: Vec<String>, input: &Path, outputs: &[&Path]| {
        runs += 1;
        if let Some(p) = run_clean(&args, input, outputs) {
            problems.push(p);
        }
    };
    let special = dir.join("special");
    let with = |kind: &str, names: &[&str]| [corpus(kind), specials(&special.join(kind), names)].concat();
    for f in with("mesh", &["m.ply", "m.obj", "m.stl"]) {
        let m = f.display().to_string();
        check(
            [strings(&["fit", "occupancy", "--mesh", &m, "--output", &o]), strings(FIT)].concat(),
            &f,
            &[&out],
        );
        check(strings(&["bench", "--labels-only", "--mesh", &m]), &f, &[]);
    }
    let recon_out = dir.join("recon.nii.gz");
    let mut volumes = with("volume", &["v.nii", "v.nii.gz", "v.npy", "v.mat", "v.dcm"]);
    volumes.push(sparse_1024(&dir));
    for f in volumes {
        let v = f.display().to_string();
        check(
            [strings(&["fit", "volume", "--volume", &v, "--output", &o]), strings(FIT)].concat(),
            &f,
            &[&out],
        );
        check([strings(&["fit", "mri", "--volume", &v, "--output", &o]), strings(FIT)].concat(), &f, &[&out]);
        check(
            strings(&["simulate", "ct", "--phantom", &v, "--geometry", "paper-ct:16:4", "--output", &o]),
            &f,
            &[&out],
        );
        let r = recon_out.display().to_string();
        check(
            strings(&[
                "recon",
                "fbp",
                "--projections",
                &proj,
                "--geometry",
                &geom,
                "--truth",
                &v,
                "--output",
                &r,
            ]),
            &f,
            &[&recon_out],
        );
    }
    for f in with("geometry", &["g.toml"]) {
        let g = f.display().to_string();
        check(
            strings(&["simulate", "ct", "--phantom", "shepp2d", "--geometry", &g, "--output", &o]),
            &f,
            &[&out],
        );
        let r = recon_out.display().to_string();
        check(
            strings(&["recon", "fbp", "--projections", &proj, "--geometry", &g, "--output", &r]),
            &f,
            &[&recon_out],
        );
        check(
            [strings(&["fit", "ct", "--projections", &proj, "--geometry", &g, "--output", &o]), strings(FIT)]
                .concat(),
            &f,
            &[&out],
        );
    }
    for f in with("projections", &["p.npy", "p.h5"]) {
        let p = f.display().to_string();
        let r = recon_out.display().to_string();
        check(
            strings(&["recon", "fbp", "--projections", &p, "--geometry", &geom, "--output", &r]),
            &f,
            &[&recon_out],
        );
        check(
            [strings(&["fit", "ct", "--projections", &p, "--geometry", &geom, "--output", &o]), strings(FIT)]
                .concat(),
            &f,
            &[&out],
        );
    }
    // run folders: a good small run with a bad run.toml or a bad checkpoint swapped in
    let base = dir.join("base");
    let made = Command::new(BIN)
        .args(["fit", "occupancy", "--output"])
        .arg(&base)
        .args(["--steps", "4", "--batch", "256", "--test-points", "500", "--resolution", "8", "--depth", "2"])
        .args(["--width", "8", "--features", "8", "--threads", "1", "--device", "cpu"])
        .output()
        .expect("base run");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    for (kind, target) in [("run_toml", "run.toml"), ("checkpoint", "checkpoint.safetensors")] {
        for f in with(kind, &[target]) {
            let run = dir.join(format!("{kind}-{}", f.file_name().unwrap().to_string_lossy()));
            std::fs::create_dir_all(&run).unwrap();
            for name in ["run.toml", "checkpoint.safetensors", "loss.csv"] {
                std::fs::copy(base.join(name), run.join(name)).unwrap();
            }
            std::fs::remove_file(run.join(target)).unwrap();
            place(&f, &run.join(target));
            let placed = run.join(target);
            let r = run.display().to_string();
            let mesh = run.join("mesh_8.ply");
            check(strings(&["export", &r, "--resolution", "8"]), &placed, &[&mesh]);
            check(
                strings(&["fit", "--resume", &r]),
                &placed,
                &[&run.join("mesh.ply"), &run.join("metrics.json")],
            );
            let _ = std::fs::remove_dir_all(&run);
        }
    }
    let _ = std::fs::remove_file(dir.join("sparse-1024.nii"));
    println!("{runs} runs in {:.1} s", t.elapsed().as_secs_f64());
    assert!(
        problems.is_empty(),
        "{} of {runs} runs were not clean errors:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}
