#!/usr/bin/env bash
# Builds the Python package (python/: PyO3 bindings + the ffvol/ package) as one abi3 wheel for
# CPython ≥ 3.9 into target/wheels, and installs it. The build shares target/ with the root
# crate (same release profile), so after `cargo build --release` only the bindings compile.
# `pip install ./python` does the same from a fresh checkout (maturin from PyPI, own target/).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "maturin>=1.5,<2" numpy
rm -f target/wheels/ffvol-*.whl
CARGO_TARGET_DIR="$PWD/target" python3 -m maturin build --release --strip -m python/Cargo.toml --out target/wheels
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --force-reinstall --no-deps target/wheels/ffvol-*.whl
