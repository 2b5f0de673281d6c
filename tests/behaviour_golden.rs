//! The behaviour every job had before the redesign, kept as a test.
//!
//! Each job runs through the `ffvol` binary at test size on the CPU, and what it writes — the loss
//! curve (`loss.csv`), the metrics (timings and the device string left out) and the output files
//! (NIfTI data decompressed, meshes, projections) — is compared with `tests/golden/behaviour.json`,
//! recorded at the commit before the redesign started.
//!
//! On a CPU with the same vector units as the recording (the `cpu` field: AVX-512 or not, since
//! the GEMM crate picks its kernels at run time) the comparison is bit for bit. On another CPU the
//! loss curves and metrics are compared to 1e-3 relative and the file hashes are not compared,
//! and the test says so.
//!
//! `FFVOL_BLESS=1 cargo test --release --test behaviour_golden` rewrites the file: do that only
//! for a change of behaviour that is stated and justified in its commit.

use serde_json::{json, Map, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

fn ffvol(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_ffvol")).args(args).output().expect("run ffvol");
    assert!(
        out.status.success(),
        "ffvol {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// FNV-1a, 64 bits, as hex: enough to tell two outputs apart, with no dependency.
fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A file's bytes, gunzipped when its name ends in `.gz` (the data, not the compressor's choices).
fn content(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out).expect("gunzip");
        out
    } else {
        raw
    }
}

fn losses(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("loss.csv")).expect("loss.csv");
    let rows: Vec<Value> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            json!([f[0].parse::<u64>().unwrap(), f[1].parse::<f64>().unwrap(), f[2].parse::<f64>().unwrap()])
        })
        .collect();
    Value::Array(rows)
}

/// metrics.json without what depends on the machine's speed or its devices.
fn metrics(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("metrics.json")).expect("metrics.json");
    let Value::Object(m) = serde_json::from_str(&text).expect("json") else { panic!("metrics.json") };
    let kept: Map<String, Value> = m
        .into_iter()
        .filter(|(k, _)| !(k.contains("seconds") || k.contains("per_second") || k == "device"))
        .collect();
    Value::Object(kept)
}

fn files(dir: &Path, names: &[&str]) -> Value {
    Value::Object(names.iter().map(|n| (n.to_string(), json!(fnv(&content(&dir.join(n)))))).collect())
}

fn run_record(dir: &Path, outputs: &[&str]) -> Value {
    json!({ "loss": losses(dir), "metrics": metrics(dir), "files": files(dir, outputs) })
}

fn cpu_fingerprint() -> String {
    let avx512 = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|t| t.contains("avx512f"));
    format!("x86_64 avx512f={avx512}")
}

const FAN: &str =
    "beam = \"fan\"\ndims = 2\ndso = 60.0\ndsd = 100.0\n[detector]\npixels = [48]\npixel_size = [1.5]\n\
                   [volume]\nvoxels = [32, 32]\nvoxel_size = [1.0, 1.0]\n[angles]\ncount = 12\n";

/// Runs every job at test size and returns what they wrote.
fn record(root: &Path) -> Value {
    let p = |name: &str| root.join(name).to_string_lossy().into_owned();
    let net = ["--depth", "3", "--width", "32", "--features", "32", "--threads", "2", "--device", "cpu"];
    let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter().chain(net.iter()).chain(tail.iter()).map(|s| s.to_string()).collect()
    };
    let run = |args: Vec<String>| ffvol(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut runs = Map::new();

    let bunny = common::bunny_path().to_string_lossy().into_owned();
    let occ = p("occupancy");
    run(with(
        &["fit", "occupancy", "--mesh", &bunny, "--output", &occ],
        &[
            "--steps",
            "30",
            "--batch",
            "1024",
            "--test-points",
            "4096",
            "--resolution",
            "32",
            "--checkpoint-every",
            "0",
        ],
    ));
    ffvol(&["export", &occ, "--resolution", "24", "--format", "ply,obj", "--nifti", "--threads", "2"]);
    runs.insert(
        "fit occupancy".into(),
        run_record(
            Path::new(&occ),
            &["mesh.ply", "occupancy.nii.gz", "mesh_24.ply", "mesh_24.obj", "occupancy_24.nii.gz"],
        ),
    );

    let vol = p("volume");
    run(with(&["fit", "volume", "--output", &vol], &["--steps", "20", "--upsample", "2"]));
    ffvol(&["export", &vol, "--mesh", "--level", "0.4", "--upsample", "2", "--threads", "2"]);
    runs.insert(
        "fit volume".into(),
        run_record(Path::new(&vol), &["fit.nii.gz", "fit_x2.nii.gz", "iso_0.4_x2.ply", "montage.png"]),
    );

    let mri = p("mri");
    // the Gaussian preset the record was made with (the default became `hashgrid`)
    run(with(&["fit", "mri", "--preset", "fast", "--output", &mri], &["--steps", "15"]));
    runs.insert("fit mri".into(), run_record(Path::new(&mri), &["fit.nii.gz"]));
    // the default preset (hash grid with TV), recorded with it
    let mri_default = p("mri-default");
    ffvol(&["fit", "mri", "--output", &mri_default, "--steps", "15", "--threads", "2", "--device", "cpu"]);
    runs.insert("fit mri default".into(), run_record(Path::new(&mri_default), &["fit.nii.gz"]));

    let sim = p("sim");
    ffvol(&[
        "simulate",
        "ct",
        "--phantom",
        "shepp2d",
        "--geometry",
        "paper-ct:32:8",
        "--output",
        &sim,
        "--supersample",
        "2",
    ]);
    let sim_dir = Path::new(&sim);
    runs.insert(
        "simulate ct".into(),
        json!({ "files": files(sim_dir, &["projections.npy", "truth.nii.gz", "geometry.toml"]) }),
    );
    let (proj, geom, truth) = (p("sim/projections.npy"), p("sim/geometry.toml"), p("sim/truth.nii.gz"));
    let ct_in = ["--projections", proj.as_str(), "--geometry", geom.as_str(), "--truth", truth.as_str()];
    for (name, render) in [
        ("grid", vec!["--render", "grid"]),
        ("rays", vec!["--render", "rays", "--rays-per-batch", "64", "--samples-per-ray", "16"]),
    ] {
        let out = p(&format!("ct-{name}"));
        // the Gaussian preset the record was made with (the default became `hashgrid`)
        let mut head = vec!["fit", "ct", "--preset", "fast"];
        head.extend_from_slice(&ct_in);
        head.extend_from_slice(&["--output", &out]);
        let mut tail = vec!["--steps", "15"];
        tail.extend_from_slice(&render);
        run(with(&head, &tail));
        runs.insert(format!("fit ct {name}"), run_record(Path::new(&out), &["recon.nii.gz"]));
    }
    // the default preset (hash grid, SART warm start, ramp-weighted loss, TV), recorded with it
    let out = p("ct-default");
    let mut args = vec!["fit", "ct"];
    args.extend_from_slice(&ct_in);
    args.extend_from_slice(&["--output", &out, "--steps", "20", "--threads", "2", "--device", "cpu"]);
    ffvol(&args);
    runs.insert("fit ct default".into(), run_record(Path::new(&out), &["recon.nii.gz"]));
    for (method, extra) in [("fbp", vec![]), ("sart", vec!["--iterations", "3"])] {
        let out = p(&format!("{method}.nii.gz"));
        let mut args = vec!["recon", method];
        args.extend_from_slice(&ct_in);
        args.extend_from_slice(&["--output", &out, "--threads", "2"]);
        args.extend_from_slice(&extra);
        ffvol(&args);
        runs.insert(
            format!("recon {method}"),
            json!({ "files": { "volume": fnv(&content(Path::new(&out))) } }),
        );
    }
    let fan_geom = p("fan.toml");
    std::fs::write(&fan_geom, FAN).unwrap();
    let fan = p("fan");
    ffvol(&[
        "simulate",
        "ct",
        "--phantom",
        "shepp2d",
        "--geometry",
        &fan_geom,
        "--output",
        &fan,
        "--supersample",
        "2",
    ]);
    let fdk = p("fdk.nii.gz");
    let (fp, ft) = (p("fan/projections.npy"), p("fan/truth.nii.gz"));
    ffvol(&["recon", "fdk", "--projections", &fp, "--geometry", &fan_geom, "--truth", &ft, "--output", &fdk]);
    runs.insert(
        "recon fdk".into(),
        json!({ "files": { "projections": fnv(&content(Path::new(&fp))), "volume": fnv(&content(Path::new(&fdk))) } }),
    );
    json!({ "cpu": cpu_fingerprint(), "runs": runs })
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/behaviour.json")
}

/// Every difference between `want` and `got` under `at`; numbers to `rel` when given.
fn diff(at: &str, want: &Value, got: &Value, rel: Option<f64>, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff(&format!("{at}.{k}"), x, y, rel, out),
                    (x, y) => out.push(format!("{at}.{k}: recorded {x:?}, now {y:?}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{at}[{i}]"), x, y, rel, out);
            }
        }
        (Value::Number(a), Value::Number(b)) if rel.is_some() => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            if (a - b).abs() > rel.unwrap() * a.abs().max(b.abs()).max(1e-6) {
                out.push(format!("{at}: recorded {a}, now {b}"));
            }
        }
        (a, b) if a != b => out.push(format!("{at}: recorded {a}, now {b}")),
        _ => {}
    }
}

#[test]
fn every_job_gives_the_recorded_numbers() {
    let root = common::scratch("golden");
    let got = record(&root);
    let path = golden_path();
    if std::env::var("FFVOL_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
        println!("wrote {}", path.display());
        return;
    }
    let want: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("tests/golden/behaviour.json"))
            .expect("behaviour.json");
    let mut diffs = Vec::new();
    if want["cpu"] == got["cpu"] {
        diff("runs", &want["runs"], &got["runs"], None, &mut diffs);
    } else {
        println!(
            "recorded on {}, running on {}: loss curves and metrics to 1e-3, file hashes not compared",
            want["cpu"], got["cpu"]
        );
        let strip = |v: &Value| -> Value {
            let mut v = v.clone();
            if let Value::Object(runs) = &mut v {
                for r in runs.values_mut() {
                    if let Value::Object(m) = r {
                        m.remove("files");
                    }
                }
            }
            v
        };
        diff("runs", &strip(&want["runs"]), &strip(&got["runs"]), Some(1e-3), &mut diffs);
    }
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        diffs.is_empty(),
        "{} differences from the recorded behaviour:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
