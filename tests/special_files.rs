//! A FIFO, a directory or a device given as an input file is refused at once with an error naming
//! it, by every reader (opening a FIFO for reading would block until a writer came: a hang).

use std::path::Path;
use std::time::Instant;

mod common;
use common::scratch;

fn refused<T>(what: &str, path: &Path, r: ffvol::Result<T>) {
    match r {
        Ok(_) => panic!("{what}: {} was read", path.display()),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
            assert!(msg.contains("expected a file") || msg.contains("not a regular file"), "{what}: {msg}");
        }
    }
}

#[test]
fn fifos_and_directories_are_refused_without_blocking() {
    let dir = scratch("special");
    let started = Instant::now();
    for name in
        ["in.nii.gz", "in.nii", "in.npy", "in.ply", "in.obj", "in.stl", "in.toml", "in.mat", "in.h5", "in"]
    {
        let fifo = dir.join(format!("fifo-{name}"));
        let made =
            std::process::Command::new("mkfifo").arg(&fifo).status().map(|s| s.success()).unwrap_or(false);
        if !made {
            println!("skipped: mkfifo is not available");
            return;
        }
        let is = |ext: &str| name.ends_with(ext);
        if is(".nii.gz") || is(".nii") || is(".mat") || name == "in" {
            refused("read_volume", &fifo, ffvol::io::volume::load_volume(&fifo));
        }
        if is(".npy") {
            refused("read_npy", &fifo, ffvol::io::read_npy(&fifo));
        }
        if is(".ply") || is(".obj") || is(".stl") {
            refused("read_mesh", &fifo, ffvol::io::read_mesh(&fifo));
        }
        if is(".toml") {
            refused("geometry", &fifo, ffvol::operator::ct_geometry::Scan::load(&fifo));
            refused("run.toml", &fifo, ffvol::config::read_toml(&fifo));
        }
        if is(".h5") {
            refused("HDF5", &fifo, ffvol::io::raw_projections::read_data_exchange(&fifo, None));
        }
    }
    // a directory where a file is expected
    for name in ["dir.ply", "dir.npy", "dir.nii.gz"] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        if name.ends_with(".ply") {
            refused("read_mesh", &d, ffvol::io::read_mesh(&d));
        } else if name.ends_with(".npy") {
            refused("read_npy", &d, ffvol::io::read_npy(&d));
        } else {
            refused("read_nifti_f32", &d, ffvol::io::read_nifti_f32(&d));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(seconds < 5.0, "took {seconds:.1} s");
    let _ = std::fs::remove_dir_all(&dir);
}
