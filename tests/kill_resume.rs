//! A fit killed with SIGKILL at random moments and resumed (`fit --resume`, or a fresh fit when
//! it died before writing run.toml) ends with the checkpoint, loss.csv, mesh and metrics of an
//! uninterrupted run, bit for bit (issue 12: "a killed fit loses nothing").

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::scratch;

const BIN: &str = env!("CARGO_BIN_EXE_ffvol");

const FIT: &[&str] = &[
    "--steps",
    "160",
    "--batch",
    "512",
    "--test-points",
    "2000",
    "--resolution",
    "16",
    "--depth",
    "3",
    "--width",
    "16",
    "--features",
    "16",
    "--checkpoint-every",
    "7",
    "--threads",
    "1",
    "--device",
    "cpu",
];

fn fresh_args(dir: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["fit", "occupancy", "--output"].iter().map(|s| s.to_string()).collect();
    a.push(dir.display().to_string());
    a.extend(FIT.iter().map(|s| s.to_string()));
    a
}

/// The command that continues `dir`: a resume once run.toml is there, else the fresh fit.
fn continue_args(dir: &Path) -> Vec<String> {
    if dir.join("run.toml").exists() {
        vec!["fit".into(), "--resume".into(), dir.display().to_string()]
    } else {
        fresh_args(dir)
    }
}

/// Runs to the end; panics on failure.
fn finish(args: &[String]) {
    let out = Command::new(BIN).args(args).output().expect("run ffvol");
    assert!(
        out.status.success(),
        "ffvol {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `args` and SIGKILLs it after `after` (if it is still running); whether it was killed.
fn kill_after(args: &[String], after: Duration) -> bool {
    let mut child =
        Command::new(BIN).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let t = Instant::now();
    while t.elapsed() < after {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            assert!(status.success(), "ffvol {args:?} failed before the kill:\n{err}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
    child.wait().expect("reap");
    true
}

fn metrics_without_timings(dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("metrics.json")).expect("metrics.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut kept: Vec<(String, String)> = v
        .as_object()
        .expect("object")
        .iter()
        .filter(|(k, _)| !k.contains("seconds") && *k != "samples_per_second")
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    kept.sort();
    kept
}

#[test]
fn sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run() {
    let root = scratch("kill");
    let reference = root.join("reference");
    let t = Instant::now();
    finish(&fresh_args(&reference));
    let run_ms = t.elapsed().as_millis().max(50) as u64;
    // the checkpoint too, byte for byte (its metadata is written in sorted order)
    let files = ["checkpoint.safetensors", "loss.csv", "mesh.ply", "occupancy.nii.gz"];
    // a seed from the clock, printed, so a failure can be replayed (FFVOL_KILL_SEED)
    let mut seed: u64 =
        std::env::var("FFVOL_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("FFVOL_KILL_SEED={seed} (one uninterrupted run: {run_ms} ms)");
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut kills = 0;
    for trial in 0..3 {
        let dir = root.join(format!("killed-{trial}"));
        for _ in 0..4 {
            // anywhere in the first three quarters of an uninterrupted run's time (setup,
            // training, checkpoints, test): a resumed run has less left, so a kill drawn from
            // the whole run's time often came after it had finished (CI on 525ec6b: 2 of 12
            // attempts killed, under the 3 asserted)
            let after = Duration::from_millis(5 + next() % (run_ms * 3 / 4).max(1));
            if kill_after(&continue_args(&dir), after) {
                kills += 1;
            }
        }
        finish(&continue_args(&dir));
        for f in files {
            let (a, b) = (std::fs::read(reference.join(f)), std::fs::read(dir.join(f)));
            assert!(a.is_ok() && a.ok() == b.ok(), "trial {trial}: {f} differs from the uninterrupted run's");
        }
        let ck = |d: &Path| {
            let bytes = std::fs::read(d.join("checkpoint.safetensors")).expect("checkpoint");
            ffvol::model::checkpoint::Checkpoint::from_bytes(&bytes).expect("parse")
        };
        let (a, b) = (ck(&reference), ck(&dir));
        assert!(
            a.state == b.state && a.encoding == b.encoding && a.extra == b.extra,
            "trial {trial}: checkpoints differ"
        );
        assert_eq!(metrics_without_timings(&dir), metrics_without_timings(&reference), "trial {trial}");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "trial {trial}: temporary files left: {leftovers:?}");
    }
    println!("{kills} kills");
    assert!(kills >= 3, "only {kills} of the 12 attempts killed a running fit");
}
