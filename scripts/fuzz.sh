#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 60), JOBS at a time
# (default 1), seeded from fuzz/seeds/<target>/ and the bundled and test files; prints each
# target's executions and any crash (artifacts in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]        needs: rustup toolchain nightly, cargo install cargo-fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ply obj stl nifti nifti_gz npy mat dicom hdf5 geometry run_toml checkpoint sampling)
seed() {  # target → the files its corpus starts from
  case $1 in
    ply) ls datasets/*.ply tests/corpus/mesh/*.ply ;;
    obj) ls tests/corpus/mesh/*.obj ;;
    stl) ls tests/corpus/mesh/*.stl ;;
    nifti) ls tests/corpus/volume/*.nii ;;
    nifti_gz) ls datasets/*.nii.gz tests/corpus/volume/*.nii.gz ;;
    npy) ls tests/corpus/volume/*.npy tests/corpus/projections/*.npy ;;
    mat) ls tests/corpus/volume/*.mat ;;
    dicom) ls tests/corpus/volume/*.dcm ;;
    hdf5) ls datasets/*.h5 tests/corpus/projections/*.h5 ;;
    geometry) ls datasets/*.toml tests/corpus/geometry/*.toml ;;
    run_toml) ls tests/corpus/run_toml/*.toml ;;
    checkpoint) ls tests/corpus/checkpoint/*.safetensors ;;
    sampling) ;;
  esac 2>/dev/null || true
  ls -d fuzz/seeds/"$1"/* 2>/dev/null || true
}
cargo +nightly fuzz build -O "${targets[@]/#/}" >/dev/null 2>&1 || cargo +nightly fuzz build -O
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  mkdir -p "$corpus" fuzz/artifacts/"$t"
  for f in $(seed "$t"); do [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 2000000 ] && cp -n "$f" "$corpus/" || true; done
  log=fuzz/artifacts/$t/fuzz.log
  # -rss_limit_mb: an allocation the input drives past 2 GB is a finding, like a crash
  cargo +nightly fuzz run -O "$t" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
      -timeout=10 -max_len=1048576 -print_final_stats=1 >"$log" 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  crashes=$(ls fuzz/artifacts/"$t" | grep -c -E '^(crash|oom|timeout|leak)-' || true)
  echo "$t: $execs executions in ${seconds} s, $crashes findings (log: $log)"
done
