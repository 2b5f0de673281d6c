//! `ffvol export` honours or rejects every flag for each kind of run, never ignores one.

use std::process::Command;

mod common;

fn ffvol(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ffvol")).args(args).output().expect("run ffvol");
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn export_rejects_the_flags_of_other_run_kinds() {
    let dir = common::scratch("flags");
    let occ = dir.join("occ").to_string_lossy().into_owned();
    let vol = dir.join("vol").to_string_lossy().into_owned();
    let bunny = common::bunny_path().to_string_lossy().into_owned();
    let net = [
        "--depth",
        "2",
        "--width",
        "16",
        "--features",
        "8",
        "--steps",
        "3",
        "--device",
        "cpu",
        "--threads",
        "2",
    ];
    let fit = |head: &[&str]| {
        let args: Vec<&str> = head.iter().chain(net.iter()).copied().collect();
        let (ok, text) = ffvol(&args);
        assert!(ok, "{args:?}: {text}");
    };
    fit(&[
        "fit",
        "occupancy",
        "--mesh",
        &bunny,
        "--output",
        &occ,
        "--batch",
        "256",
        "--test-points",
        "256",
        "--resolution",
        "8",
    ]);
    fit(&["fit", "volume", "--output", &vol]);

    let (ok, text) = ffvol(&["export", &occ, "--mesh", "--upsample", "2"]);
    assert!(!ok);
    assert!(
        text.contains(&format!("{occ} is an occupancy run: --mesh, --upsample do not apply to it")),
        "{text}"
    );
    let (ok, text) =
        ffvol(&["export", &vol, "--resolution", "64", "--nifti", "--exact", "--min-component", "0"]);
    assert!(!ok);
    assert!(
        text.contains(&format!(
            "{vol} is a volume run: --resolution, --nifti, --exact, --min-component do not apply"
        )),
        "{text}"
    );
    for lone in ["--level", "--format"] {
        let value = if lone == "--level" { "0.3" } else { "obj" };
        let (ok, text) = ffvol(&["export", &vol, lone, value]);
        assert!(!ok);
        assert!(text.contains(&format!("{vol} is a volume run: {lone} does not apply to it")), "{text}");
    }
    // what applies is honoured: the files it names are written
    let (ok, text) =
        ffvol(&["export", &vol, "--mesh", "--level", "0.3", "--format", "obj", "--upsample", "2"]);
    assert!(ok, "{text}");
    assert!(dir.join("vol/iso_0.3_x2.obj").is_file() && dir.join("vol/fit_x2.nii.gz").is_file());
    let (ok, text) = ffvol(&["export", &occ, "--resolution", "12", "--format", "stl", "--nifti", "--exact"]);
    assert!(ok, "{text}");
    assert!(dir.join("occ/mesh_12.stl").is_file() && dir.join("occ/occupancy_12.nii.gz").is_file());
    std::fs::remove_dir_all(&dir).ok();
}
