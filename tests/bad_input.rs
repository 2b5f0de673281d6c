//! Bad input at the boundary (issue 12): every case a clear error naming the file or flag, at
//! once, before anything large is allocated and before any output is written; checkpoints
//! checked against their run; run folders created only after the checks that can fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;
use common::scratch;

const BIN: &str = env!("CARGO_BIN_EXE_ffvol");

/// Runs the CLI; returns (success, stdout + stderr), and fails the test if it took over 10 s.
fn ffvol(args: &[&str]) -> (bool, String) {
    let t = Instant::now();
    let Output { status, stdout, stderr } = Command::new(BIN).args(args).output().expect("run ffvol");
    assert!(t.elapsed() < Duration::from_secs(10), "ffvol {args:?} took {:?}", t.elapsed());
    let text = format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    assert!(!text.contains("panicked"), "ffvol {args:?} panicked:\n{text}");
    (status.success(), text)
}

/// The CLI fails; its message contains every one of `needles`.
fn fails(args: &[&str], needles: &[&str]) -> String {
    let (ok, text) = ffvol(args);
    assert!(!ok, "ffvol {args:?} succeeded:\n{text}");
    for n in needles {
        assert!(text.contains(n), "ffvol {args:?}: no {n:?} in\n{text}");
    }
    text
}

/// The checkpoint in `path` is `reference`, byte for byte (a checkpoint is a pure function of
/// its content: its metadata is written in sorted order).
fn same_checkpoint(reference: &[u8], path: &Path) {
    let b = std::fs::read(path).expect("checkpoint");
    assert!(b == reference, "{} differs", path.display());
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write input");
    p
}

const GEOMETRY: &str =
    "beam = \"parallel\"\ndims = 2\n[detector]\npixels = [PIX]\npixel_size = [1.0]\noffset = [DOFF]\n\
[volume]\nvoxels = [16, 16]\nvoxel_size = [1.0, 1.0]\noffset = [0.0, VOFF]\n[angles]\ncount = COUNT\n";

fn geometry(count: &str, pixels: &str, det_offset: &str, vol_offset: &str) -> String {
    GEOMETRY
        .replace("COUNT", count)
        .replace("PIX", pixels)
        .replace("DOFF", det_offset)
        .replace("VOFF", vol_offset)
}

#[test]
fn geometry_counts_sizes_and_offsets_are_checked_at_once() {
    let dir = scratch("geometry");
    let cases = [
        ("count-i64max", geometry("9223372036854775806", "24", "0.0", "0.0"), "angles.count"),
        ("count-1e9", geometry("1000000000", "24", "0.0", "0.0"), "angles.count"),
        ("pixels-1e8", geometry("10", "100000000", "0.0", "0.0"), "detector.pixels"),
        ("pixels-2e32", geometry("10", "4294967296", "0.0", "0.0"), "detector.pixels"),
        ("det-offset-nan", geometry("10", "24", "nan", "0.0"), "finite"),
        ("vol-offset-nan", geometry("10", "24", "0.0", "nan"), "finite"),
        ("vol-offset-inf", geometry("10", "24", "0.0", "inf"), "finite"),
        ("far-off", geometry("1", "24", "0.0", "5.0e5"), "no ray meets the volume"),
        // 2^20 views of a 2^16-pixel detector row is 2^36 rays (3D: 2^52)
        ("rays", geometry("1048576", "65536", "0.0", "0.0"), "measurements"),
    ];
    for (name, text, needle) in cases {
        let path = write(&dir, &format!("{name}.toml"), text.as_bytes());
        let t = Instant::now();
        let err = ffvol::operator::ct_geometry::Scan::load(&path).expect_err(name).to_string();
        assert!(t.elapsed() < Duration::from_secs(2), "{name} took {:?}", t.elapsed());
        assert!(err.contains(needle) && err.contains(&format!("{name}.toml")), "{name}: {err}");
    }
    // 3D: the ray product overflows past usize in 32 bits and past the bound in 64
    let cone =
        "beam = \"parallel\"\ndims = 3\n[detector]\npixels = [65536, 65536]\npixel_size = [1.0, 1.0]\n\
[volume]\nvoxels = [8, 8, 8]\nvoxel_size = [1.0, 1.0, 1.0]\n[angles]\ncount = 1048576\n";
    let err = ffvol::operator::ct_geometry::Scan::load(&write(&dir, "rays3d.toml", cone.as_bytes()))
        .expect_err("rays")
        .to_string();
    assert!(err.contains("measurements"), "{err}");
    // a scan whose volume is far off a large detector is refused in bounded time (it traced
    // every ray: here 2^32)
    let big = "beam = \"parallel\"\ndims = 3\n[detector]\npixels = [65536, 65536]\npixel_size = [1.0, 1.0]\n\
[volume]\nvoxels = [8, 8, 8]\nvoxel_size = [1.0, 1.0, 1.0]\noffset = [0.0, 9.0e5, 0.0]\n[angles]\ncount = 1\n";
    let t = Instant::now();
    let err = ffvol::operator::ct_geometry::Scan::load(&write(&dir, "far-big.toml", big.as_bytes()))
        .expect_err("far")
        .to_string();
    assert!(err.contains("no ray meets"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2), "coverage took {:?}", t.elapsed());
    // and through the CLI, nothing written
    let out = dir.join("sim");
    let far = dir.join("far-off.toml");
    fails(
        &["simulate", "ct", "--phantom", "shepp2d", "--geometry", s(&far), "--output", s(&out)],
        &["far-off.toml", "no ray"],
    );
    assert!(!out.exists());
}

#[test]
fn flags_out_of_range_are_errors_naming_them() {
    let dir = scratch("flags");
    let run = dir.join("run");
    // k-space sampling parameters that ran for hours
    for spec in ["poisson:1e12", "cartesian:1e18", "radial:inf", "gaussian:1e12:13.9"] {
        fails(&["fit", "mri", "--sampling", spec, "--steps", "1", "--output", s(&run)], &["--sampling"]);
        assert!(!run.exists(), "{spec}");
    }
    // 10^6 threads
    fails(&["fit", "occupancy", "--threads", "1000000", "--output", s(&run)], &["threads", "1000000"]);
    assert!(!run.exists());
    fails(&["bench", "--threads", "1000000"], &["threads"]);
    // batch and test points of 1e10
    fails(&["fit", "occupancy", "--batch", "10000000000", "--output", s(&run)], &["batch"]);
    fails(&["fit", "occupancy", "--test-points", "10000000000", "--output", s(&run)], &["test"]);
    assert!(!run.exists());
    fails(&["bench", "--batch", "10000000000"], &["--batch"]);
    // simulate --supersample huge, recon sart --iterations huge / --relaxation out of range
    let sim = dir.join("sim");
    fails(
        &[
            "simulate",
            "ct",
            "--phantom",
            "shepp2d",
            "--geometry",
            "paper-ct:32:8",
            "--supersample",
            "100000",
            "--output",
            s(&sim),
        ],
        &["--supersample", "100000"],
    );
    assert!(!sim.exists());
    let (ok, text) = ffvol(&[
        "simulate",
        "ct",
        "--phantom",
        "shepp2d",
        "--geometry",
        "paper-ct:32:8",
        "--output",
        s(&sim),
    ]);
    assert!(ok, "{text}");
    let proj = sim.join("projections.npy");
    let geom = sim.join("geometry.toml");
    let out = dir.join("sart.nii.gz");
    let base = ["recon", "sart", "--projections", s(&proj), "--geometry", s(&geom), "--output", s(&out)];
    fails(&[&base[..], &["--iterations", "1000000000000"]].concat(), &["--iterations", "1000000000000"]);
    for r in ["5", "0", "2", "nan"] {
        fails(&[&base[..], &["--relaxation", r]].concat(), &["--relaxation"]);
    }
    assert!(!out.exists());
    // recon --output that is not NIfTI (its PNG preview overwrote the volume)
    let png = dir.join("vol.png");
    let mut args = base.to_vec();
    args[7] = s(&png);
    fails(&args, &["--output", "vol.png", "NIfTI"]);
    assert!(!png.exists());
}

#[test]
fn meshes_with_bad_structure_get_clear_errors() {
    let dir = scratch("meshes");
    let vertex3 = "element vertex 3\nproperty float x\nproperty float y\nproperty float z\n";
    let face1 = "element face 1\nproperty list uchar int vertex_indices\n";
    let body = "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n";
    let ply = |header: &str, body: &str| format!("ply\nformat ascii 1.0\n{header}end_header\n{body}");
    let cases: Vec<(&str, String, &str)> = vec![
        ("count-2e64", ply(&format!("element vertex 18446744073709551616\nproperty float x\nproperty float y\nproperty float z\n{face1}"), body), "not a count"),
        ("empty-element", ply(&format!("{vertex3}{face1}element junk 1000000\n"), body), "no properties"),
        ("empty-element-bin", format!("ply\nformat binary_little_endian 1.0\nelement junk 4294967295\n{vertex3}{face1}end_header\n"), "no properties"),
        ("duplicate-element", ply(&format!("{vertex3}{face1}{vertex3}"), body), "defined twice"),
        ("duplicate-property", ply(&format!("element vertex 3\nproperty float x\nproperty float x\nproperty float y\nproperty float z\n{face1}"), body), "twice"),
        ("trailing", ply(&format!("{vertex3}{face1}"), &format!("{body}1 2 3\n")), "follow the last element"),
        ("short-face", ply(&format!("{vertex3}{face1}"), "0 0 0\n1 0 0\n0 1 0\n2 0 1\n"), "at least 3"),
        ("too-short", format!("ply\nformat binary_little_endian 1.0\n{vertex3}{face1}end_header\n\0\0"), "bytes of data"),
    ];
    for (name, text, needle) in &cases {
        let path = write(&dir, &format!("{name}.ply"), text.as_bytes());
        let t = Instant::now();
        let err = ffvol::io::read_mesh(&path).expect_err(name).to_string();
        assert!(t.elapsed() < Duration::from_secs(1), "{name} took {:?}", t.elapsed());
        assert!(err.contains(needle) && err.contains(&format!("{name}.ply")), "{name}: {err}");
    }
    // the parser's internals never reach the message
    let typo = write(&dir, "typo.ply", ply(&format!("elemnt vertex 3\n{face1}"), body).as_bytes());
    let err = ffvol::io::read_mesh(&typo).expect_err("typo").to_string();
    assert!(!err.contains("ParseError") && !err.contains("LineCol"), "{err}");
    let badnum = write(
        &dir,
        "badnum.ply",
        ply(&format!("{vertex3}{face1}"), "0 0 0\n1 x 0\n0 1 0\n3 0 1 2\n").as_bytes(),
    );
    let err = ffvol::io::read_mesh(&badnum).expect_err("badnum").to_string();
    assert!(!err.contains("ParseError") && !err.contains("LineCol"), "{err}");
    // an ASCII STL with one NUL byte is damaged text, not a binary STL of a billion triangles
    let mut stl = b"solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\nendloop\nendfacet\nendsolid t\n".to_vec();
    stl[40] = 0;
    let err = ffvol::io::read_mesh(&write(&dir, "nul.stl", &stl)).expect_err("nul").to_string();
    assert!(err.contains("NUL") && err.contains("nul.stl"), "{err}");
}

#[test]
fn volumes_empty_or_upper_case_are_read_or_refused_clearly() {
    let dir = scratch("volumes");
    for name in ["empty.nii.gz", "empty.nii", "empty.npy", "empty.mat", "EMPTY.NII.GZ"] {
        let path = write(&dir, name, b"");
        let err = ffvol::io::volume::read_volume(&path).expect_err(name).to_string();
        assert!(err.contains(name), "{name}: {err}");
        assert!(!err.contains("fill whole buffer"), "{name}: {err}");
    }
    // an upper-case .NII.GZ is a NIfTI file like any other
    let data: Vec<f32> = (0..4 * 5 * 6).map(|i| i as f32).collect();
    let lower = dir.join("v.nii.gz");
    let mut affine = [[0.0; 4]; 4];
    (0..4).for_each(|a| affine[a][a] = 1.0);
    ffvol::io::write_nifti_f32(&lower, &data, [4, 5, 6], affine).expect("write");
    let upper = dir.join("V.NII.GZ");
    std::fs::rename(&lower, &upper).expect("rename");
    let v = ffvol::io::volume::read_volume(&upper).expect("upper-case .NII.GZ");
    assert_eq!(v.dims, [4, 5, 6]);
    assert_eq!(v.data, data);
    // an empty truth through recon: the message names the truth file
    let sim = dir.join("sim");
    assert!(
        ffvol(&[
            "simulate",
            "ct",
            "--phantom",
            "shepp2d",
            "--geometry",
            "paper-ct:16:4",
            "--output",
            s(&sim)
        ])
        .0
    );
    let truth = write(&dir, "truth.nii.gz", b"");
    let out = dir.join("fbp.nii.gz");
    let (proj, geom) = (sim.join("projections.npy"), sim.join("geometry.toml"));
    let text = fails(
        &[
            "recon",
            "fbp",
            "--projections",
            s(&proj),
            "--geometry",
            s(&geom),
            "--truth",
            s(&truth),
            "--output",
            s(&out),
        ],
        &["truth.nii.gz"],
    );
    assert!(!text.contains("fill whole buffer"), "{text}");
    assert!(!out.exists());
}

const SMALL: &[&str] = &[
    "--steps",
    "12",
    "--batch",
    "256",
    "--test-points",
    "1000",
    "--resolution",
    "12",
    "--depth",
    "2",
    "--features",
    "8",
    "--checkpoint-every",
    "4",
    "--threads",
    "1",
    "--device",
    "cpu",
];

fn small_fit(out: &Path, width: &str) {
    let (ok, text) =
        ffvol(&[&["fit", "occupancy", "--output", s(out), "--width", width][..], SMALL].concat());
    assert!(ok, "{text}");
}

#[test]
fn checkpoints_are_checked_against_their_run() {
    let dir = scratch("checkpoints");
    let (narrow, wide) = (dir.join("narrow"), dir.join("wide"));
    small_fit(&narrow, "8");
    small_fit(&wide, "16");
    let ck = narrow.join("checkpoint.safetensors");
    let good = std::fs::read(&ck).expect("checkpoint");
    // a checkpoint of a wider network: export and resume refuse it, naming a tensor
    std::fs::copy(wide.join("checkpoint.safetensors"), &ck).expect("copy");
    fails(
        &["export", s(&narrow), "--resolution", "8"],
        &["checkpoint.safetensors", "mlp.0.weight", "run.toml"],
    );
    fails(&["fit", "--resume", s(&narrow)], &["checkpoint.safetensors", "mlp.0.weight"]);
    assert!(!narrow.join("mesh_8.ply").exists());
    // NaN and infinity in the weights or in Adam's state
    for (tensor, value) in [("mlp.0.weight", f32::NAN), ("mlp.1.bias", f32::INFINITY), ("adam.v", f32::NAN)] {
        let mut c = ffvol::model::checkpoint::Checkpoint::from_bytes(&good).expect("parse");
        match tensor {
            "mlp.0.weight" => c.state.mlp.params[0] = value,
            "mlp.1.bias" => *c.state.mlp.params.last_mut().unwrap() = value,
            _ => c.state.adam.v[3] = value,
        }
        c.save(&ck).expect("save");
        fails(&["export", s(&narrow), "--resolution", "8"], &["checkpoint.safetensors", tensor]);
        // a failed resume leaves run.toml as it was (a marker comment survives)
        let toml = narrow.join("run.toml");
        let marked = std::fs::read_to_string(&toml).unwrap() + "\n# marker\n";
        std::fs::write(&toml, &marked).unwrap();
        fails(&["fit", "--resume", s(&narrow)], &[tensor]);
        assert_eq!(std::fs::read_to_string(&toml).unwrap(), marked, "run.toml rewritten");
    }
    std::fs::write(&ck, &good).unwrap();
    assert!(ffvol(&["export", s(&narrow), "--resolution", "8"]).0);
}

#[test]
fn run_folders_only_after_every_check_and_killed_runs_restart() {
    let dir = scratch("folders");
    let run = dir.join("run");
    if ffvol::backend::cuda::runtime().is_err() {
        // no CUDA here: --device cuda fails, and leaves no folder
        fails(&["fit", "occupancy", "--device", "cuda", "--output", s(&run)], &["CUDA"]);
        assert!(!run.exists(), "a run folder was created for a run that could not start");
    }
    // a run stopped before its first checkpoint: run.toml alone (and a stale temp file)
    small_fit(&run, "8");
    let reference = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let loss = std::fs::read(run.join("loss.csv")).unwrap();
    for f in ["checkpoint.safetensors", "loss.csv", "metrics.json"] {
        std::fs::remove_file(run.join(f)).unwrap();
    }
    let stale = write(&run, ".checkpoint.safetensors.tmp-4000000", b"half a checkpoint");
    // resumed, it starts from step 0 and ends where an uninterrupted run does
    let (ok, text) = ffvol(&["fit", "--resume", s(&run)]);
    assert!(ok && text.contains("starting from step 0"), "{text}");
    assert!(!stale.exists(), "a temp file of a dead process was left");
    same_checkpoint(&reference, &run.join("checkpoint.safetensors"));
    assert_eq!(std::fs::read(run.join("loss.csv")).unwrap(), loss);
    // refitted over: no --force needed when there is no checkpoint to lose
    std::fs::remove_file(run.join("checkpoint.safetensors")).unwrap();
    small_fit(&run, "8");
    same_checkpoint(&reference, &run.join("checkpoint.safetensors"));
    // with a checkpoint, --force is still needed
    fails(&[&["fit", "occupancy", "--output", s(&run), "--width", "8"][..], SMALL].concat(), &["--force"]);
    // loss rows past the checkpoint's step (a kill between the log and the checkpoint) are cut
    let text = String::from_utf8(loss.clone()).unwrap();
    let extra = text.clone() + "13,0.5,0.001\n14,0.5,0.001\n";
    std::fs::write(run.join("loss.csv"), extra).unwrap();
    assert!(ffvol(&["fit", "--resume", s(&run)]).0);
    assert_eq!(std::fs::read_to_string(run.join("loss.csv")).unwrap(), text);
}

#[test]
fn a_resume_refuses_inputs_that_changed() {
    let dir = scratch("inputs");
    let mesh = dir.join("bunny.ply");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/bunny.ply"), &mesh).unwrap();
    let run = dir.join("run");
    let (ok, text) = ffvol(
        &[&["fit", "occupancy", "--mesh", s(&mesh), "--output", s(&run), "--width", "8"][..], SMALL].concat(),
    );
    assert!(ok, "{text}");
    assert!(std::fs::read_to_string(run.join("inputs.toml")).unwrap().contains("bunny.ply"));
    assert!(ffvol(&["fit", "--resume", s(&run)]).0, "unchanged input");
    // one byte of the mesh changed (the same size): refused, naming the file
    let mut bytes = std::fs::read(&mesh).unwrap();
    // the lowest mantissa byte of vertex 0's x (binary little-endian float): a valid mesh still
    let body = bytes.windows(11).position(|w| w == b"end_header\n").expect("end_header") + 11;
    bytes[body] ^= 1;
    std::fs::write(&mesh, &bytes).unwrap();
    let toml = std::fs::read(run.join("run.toml")).unwrap();
    fails(&["fit", "--resume", s(&run)], &["bunny.ply", "changed since the run started"]);
    assert_eq!(std::fs::read(run.join("run.toml")).unwrap(), toml);
}

/// What a volume run's checkpoint says about its grid sizes the export: huge or zero dims and
/// non-finite numbers are refused naming the checkpoint, before any grid is allocated; the
/// export grid flags too.
#[test]
fn export_grids_from_metadata_and_flags_are_checked() {
    use ffvol::model::checkpoint::Checkpoint;
    let dir = scratch("export-grids");
    let run = dir.join("v");
    let (ok, text) = ffvol(&[
        "fit",
        "volume",
        "--output",
        s(&run),
        "--steps",
        "3",
        "--depth",
        "2",
        "--width",
        "8",
        "--features",
        "8",
        "--threads",
        "1",
    ]);
    assert!(ok, "{text}");
    let ck_path = run.join("checkpoint.safetensors");
    let good = std::fs::read(&ck_path).unwrap();
    let key = ffvol::job::field::META_KEY;
    let meta: serde_json::Value =
        serde_json::from_str(&Checkpoint::from_bytes(&good).unwrap().extra[key]).unwrap();
    let before: Vec<_> = std::fs::read_dir(&run).unwrap().flatten().map(|e| e.file_name()).collect();
    for (field, value) in [
        ("dims", serde_json::json!([4294967296u64, 4294967296u64, 1])),
        ("dims", serde_json::json!([65536, 65536, 65536])),
        ("dims", serde_json::json!([0, 4, 4])),
    ] {
        let mut m = meta.clone();
        m[field] = value.clone();
        let mut ck = Checkpoint::from_bytes(&good).unwrap();
        ck.extra.insert(key.to_string(), m.to_string());
        ck.save(&ck_path).unwrap();
        fails(&["export", s(&run), "--upsample", "2"], &["checkpoint.safetensors", "grid dims"]);
    }
    // a NaN in the affine (JSON has no NaN: written as a string by hand)
    let text = meta.to_string();
    let at = text.find("\"world_from_voxel\":[[").unwrap() + "\"world_from_voxel\":[[".len();
    let end = at + text[at..].find(',').unwrap();
    let mut ck = Checkpoint::from_bytes(&good).unwrap();
    ck.extra.insert(key.to_string(), format!("{}1e999{}", &text[..at], &text[end..]));
    ck.save(&ck_path).unwrap();
    fails(&["export", s(&run), "--upsample", "2"], &["checkpoint.safetensors", "volume metadata"]);
    let after: Vec<_> = std::fs::read_dir(&run).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(before, after, "a refused export wrote files");
    std::fs::write(&ck_path, &good).unwrap();
    assert!(ffvol(&["export", s(&run), "--upsample", "2"]).0);
    // an occupancy run's export grid: at least 2 nodes, within memory, a number
    let occ = dir.join("occ");
    small_fit(&occ, "8");
    for r in ["0", "1"] {
        fails(&["export", s(&occ), "--resolution", r], &["--resolution", "at least 2"]);
    }
    fails(
        &["export", s(&occ), "--resolution", "18446744073709551615"],
        &["not enough memory", "--resolution"],
    );
    fails(&["export", s(&occ), "--resolution", "18446744073709551616"], &["--resolution"]);
    assert!(!occ.join("mesh_0.ply").exists() && !occ.join("mesh_1.ply").exists());
}
