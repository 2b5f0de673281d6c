#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 60), one after another,
# seeded from fuzz/seeds/<target>/ and the bundled and test files; prints each
# target's executions and any crash (artifacts in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]        needs: rustup toolchain nightly, cargo install cargo-fuzz
#
# Each run appends a row to fuzz/artifacts/summary.tsv (executions, exec/s, seconds, corpus size,
# findings); FUZZ_NO_BUILD=1 skips the build (targets already built), FUZZ_MAX_LEN=BYTES bounds
# the inputs and seeds (default 1 MiB; the HDF5 reader takes ~1 s an input near 1 MiB),
# FUZZ_TIMEOUT=SECONDS is the time an input may take before it is a finding (default 10),
# FUZZ_RUNS=N stops a target after N executions (default: no limit; 10000000 is issue 12's). Valid
# seeds of every format are in fuzz/seeds/ (scripts/make_fuzz_seeds.py).
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
# one build of every target (cargo fuzz build takes one target or all of them)
if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
  if [ ${#targets[@]} -eq 1 ]; then cargo +nightly fuzz build -O "${targets[0]}"; else cargo +nightly fuzz build -O; fi
fi
bin=fuzz/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release
table=fuzz/artifacts/summary.tsv
mkdir -p fuzz/artifacts
[ -f "$table" ] || printf 'target\texecutions\texec_per_s\tseconds\tcorpus_files\tnew_units\tpeak_rss_mb\tfindings\n' >"$table"
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  mkdir -p "$corpus" fuzz/artifacts/"$t"
  for f in $(seed "$t"); do [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt "${FUZZ_MAX_LEN:-1048576}" ] && cp -n "$f" "$corpus/" || true; done
  log=fuzz/artifacts/$t/fuzz.log
  start=$(date +%s)
  # -rss_limit_mb: an allocation the input drives past 2 GB is a finding, like a crash;
  # -timeout: an input that takes over 10 s is a finding (a hang)
  # the built binary itself: `cargo fuzz run` would rebuild first whenever a source changed
  "$bin/$t" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout="${FUZZ_TIMEOUT:-10}" -max_len="${FUZZ_MAX_LEN:-1048576}" \
      -runs="${FUZZ_RUNS:--1}" \
      -print_final_stats=1 -artifact_prefix=fuzz/artifacts/"$t"/ >"$log" 2>&1 || true
  took=$(( $(date +%s) - start ))
  final_stat() { grep -o "stat::$1: *[0-9]*" "$log" | grep -o '[0-9]*$' | tail -1; }
  execs=$(final_stat number_of_executed_units); rate=$(final_stat average_exec_per_sec)
  units=$(final_stat new_units_added); rss=$(final_stat peak_rss_mb)
  files=$(find "$corpus" -type f | wc -l)
  findings=$(find fuzz/artifacts/"$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' -o -name 'slow-unit-*' \) | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${execs:-?}" "${rate:-?}" "$took" "$files" "${units:-?}" "${rss:-?}" "$findings" >>"$table"
  echo "$t: ${execs:-?} executions in $took s (${rate:-?}/s), corpus $files files, $findings findings (log: $log)"
done
