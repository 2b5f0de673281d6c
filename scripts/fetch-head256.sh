#!/usr/bin/env bash
# Puts TIGRE's head phantom (MATLAB v5, variable `img`, 256³ float32 in [0, 1], BSD-3) at
# datasets/head256.mat (gitignored), checking its sha256. It comes from ../shared/data/head256.mat
# when that is there (the project's shared data folder), else from the pytigre 0.1.8 source
# package on PyPI (member tigre/demos/Test_data/MRheadbrain/head.mat; see datasets/README.md).
#
#   scripts/fetch-head256.sh
#   ffvol simulate ct --phantom datasets/head256.mat --geometry datasets/head256-cone.toml --output sim/head
set -euo pipefail
cd "$(dirname "$0")/.."

SHA256=cb53501c9a6d15bad30a12bbfd63791f6623435d17d62a575330e7e804abae24
OUT=datasets/head256.mat
SHARED=../shared/data/head256.mat
PYTIGRE_VERSION=0.1.8
MEMBER=tigre/demos/Test_data/MRheadbrain/head.mat

if [ -f "$OUT" ] && echo "$SHA256  $OUT" | sha256sum -c --status -; then
  echo "phantom: $OUT (already there)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -f "$SHARED" ]; then
  cp "$SHARED" "$tmp/head.mat"
else
  # The sdist's build fails (it needs CUDA), but --no-clean leaves the unpacked sources.
  python3 -m pip download --no-deps --no-binary :all: --no-clean --no-build-isolation \
    "pytigre==$PYTIGRE_VERSION" -d "$tmp/dl" >&2 || true
  found=$(find "$tmp/dl" /tmp -path "*pytigre*" -name head.mat -path "*MRheadbrain*" 2>/dev/null | head -1)
  if [ -z "$found" ]; then
    sdist=$(ls "$tmp"/dl/pytigre-"$PYTIGRE_VERSION".tar.gz 2>/dev/null || true)
    [ -n "$sdist" ] || { echo "error: could not fetch pytigre==$PYTIGRE_VERSION's source package" >&2; exit 1; }
    tar -xzf "$sdist" -C "$tmp" --wildcards "*/$MEMBER"
    found=$(find "$tmp" -path "*$MEMBER" | head -1)
  fi
  cp "$found" "$tmp/head.mat"
fi
echo "$SHA256  $tmp/head.mat" | sha256sum -c - >&2
mv "$tmp/head.mat" "$OUT"
echo "phantom: $OUT"
