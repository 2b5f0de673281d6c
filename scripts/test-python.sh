#!/usr/bin/env bash
# The Python package's tests (python/tests): builds and installs the wheel, builds the CLI the
# tests compare against, and runs pytest. .ci/run calls it after the Rust tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-python.sh
cargo build --release --quiet
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pytest trimesh nibabel
FFVOL_BIN="$PWD/target/release/ffvol" python3 -m pytest -q --import-mode=importlib -p no:cacheprovider python/tests "$@"
