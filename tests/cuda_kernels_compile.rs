//! Every kernel in `cuda/` compiles through NVRTC for sm_80 and sm_90. NVRTC needs no GPU, so
//! this runs on every CI machine (`.ci/run` fetches NVRTC from NVIDIA's PyPI wheels with
//! `scripts/fetch-nvrtc.sh`): a typo in a kernel fails here, not on the GPU.
//!
//! Without NVRTC the test skips, unless `CI` is set, where it fails with the fix. With
//! `$FFVOL_PTXAS` pointing at ptxas (`FFVOL_WITH_PTXAS=1 scripts/fetch-nvrtc.sh`), it also
//! prints registers and spills per kernel, and fails on any spill.

use ffvol::backend::cuda::kernels;
use std::path::Path;

const ARCHES: [&str; 2] = ["sm_80", "sm_90"];

fn nvrtc_or_skip() -> bool {
    if kernels::nvrtc_present() {
        return true;
    }
    let fix = "NVRTC (libnvrtc.so.13) cannot be loaded. Run `eval \"$(scripts/fetch-nvrtc.sh)\"` \
               (downloads NVIDIA's nvidia-cuda-nvrtc wheels into target/nvrtc-toolkit and prints \
               LD_LIBRARY_PATH and FFVOL_CUDA_INCLUDE), then run the tests again";
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("CI is set but {fix}");
    }
    println!("skipped: {fix}");
    false
}

/// The files in cuda/ and the sources embedded in the crate are the same set, with the same text.
#[test]
fn embedded_sources_match_the_folder() {
    // FFVOL_CUDA_SOURCES: where cuda/ is when this binary runs away from its checkout (GPU check)
    let dir = std::env::var_os("FFVOL_CUDA_SOURCES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda"));
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cu"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = kernels::SOURCES.iter().map(|(n, _)| n.to_string()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded, "cuda/*.cu and kernels::SOURCES disagree");
    for (name, text) in kernels::SOURCES {
        assert_eq!(&std::fs::read_to_string(dir.join(name)).unwrap(), text, "{name}");
    }
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90() {
    if !nvrtc_or_skip() {
        return;
    }
    let includes = kernels::include_dirs();
    let (major, minor) = kernels::nvrtc_version().unwrap();
    println!("NVRTC {major}.{minor}; include path {includes:?}");
    assert!(
        includes.iter().any(|d| d.join("cuda_fp16.h").is_file()),
        "no folder with cuda_fp16.h on the include path {includes:?}: set FFVOL_CUDA_INCLUDE (scripts/fetch-nvrtc.sh prints it)"
    );
    let mut failures = vec![];
    for arch in ARCHES {
        // each file alone (so an error names one file) and the whole program as the backend builds it
        let whole = [("all", kernels::program_source(kernels::SOURCES))];
        let singles = kernels::SOURCES.iter().map(|&(n, t)| (n, kernels::program_source(&[(n, t)])));
        for (name, src) in singles.chain(whole) {
            let t = std::time::Instant::now();
            match kernels::compile_ptx(&src, arch, &includes) {
                Ok(ptx) => {
                    println!(
                        "{arch} {name:<14} {:>7} bytes of PTX in {:>4} ms",
                        ptx.len(),
                        t.elapsed().as_millis()
                    );
                    if name == "all" {
                        for k in kernels::KERNEL_NAMES {
                            assert!(
                                ptx.contains(&format!(".entry {k}(")),
                                "{arch}: kernel {k} is missing from the PTX"
                            );
                        }
                        ptxas_report(arch, &ptx);
                    }
                }
                Err(e) => failures.push(format!("{arch} {name}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Registers and spills per kernel from ptxas, when `$FFVOL_PTXAS` names it.
fn ptxas_report(arch: &str, ptx: &str) {
    let Some(ptxas) = std::env::var_os("FFVOL_PTXAS") else {
        println!("(set FFVOL_PTXAS for a register/spill report)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("ffvol-ptxas-{}-{arch}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("all.ptx");
    std::fs::write(&input, ptx).unwrap();
    let out = std::process::Command::new(&ptxas)
        .arg(format!("--gpu-name={arch}"))
        .arg("-v")
        .arg("-o")
        .arg(dir.join("all.cubin"))
        .arg(&input)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            println!("ptxas {}: {e}", Path::new(&ptxas).display());
            return;
        }
    };
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ptxas failed for {arch}:\n{log}");
    // "Compiling entry function 'X' for 'sm_90'" ... "Used N registers, ..." and "N bytes spill stores"
    let mut kernel = String::new();
    let mut spills = vec![];
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            kernel = rest.split('\'').next().unwrap_or("").to_string();
        } else if line.contains("spill stores") {
            // "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads"
            let stores: u64 = line
                .split(',')
                .find(|part| part.contains("spill stores"))
                .and_then(|part| part.split_whitespace().next())
                .and_then(|w| w.parse().ok())
                .unwrap_or(0);
            if stores > 0 {
                spills.push(format!("{kernel}: {}", line.trim()));
            }
        } else if line.contains("Used") && line.contains("registers") {
            let detail = line.split("info    : ").nth(1).unwrap_or(line).trim();
            println!("ptxas {arch} {kernel:<22} {detail}");
        }
    }
    assert!(spills.is_empty(), "register spills on {arch}:\n{}", spills.join("\n"));
}
