#!/usr/bin/env bash
# Fetches NVRTC (and, if asked, ptxas) from NVIDIA's PyPI wheels into target/nvrtc-toolkit/, so
# that kernels compile here without a GPU or a CUDA install (GPU.md, "Compiling kernels here").
# Idempotent: a second run does nothing. Prints the environment to use, as `export` lines:
#
#     eval "$(scripts/fetch-nvrtc.sh)"            # LD_LIBRARY_PATH and FFVOL_CUDA_INCLUDE
#     FFVOL_WITH_PTXAS=1 scripts/fetch-nvrtc.sh   # also nvidia-cuda-nvcc, for ptxas reports
#
# Everything else it says goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)/target/nvrtc-toolkit"
WHEELS="$ROOT/wheels"
TOOLKIT="$ROOT/toolkit"
CU="$TOOLKIT/nvidia/cu13"
PKGS=(nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88)
if [ "${FFVOL_WITH_PTXAS:-0}" = 1 ]; then
  PKGS+=(nvidia-cuda-nvcc==13.0.88)
fi
missing=()
for p in "${PKGS[@]}"; do
  [ -e "$ROOT/.done-$p" ] || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  mkdir -p "$WHEELS" "$TOOLKIT"
  PIP=(python3 -m pip)
  if ! "${PIP[@]}" --version >/dev/null 2>&1; then PIP=(pip); fi
  echo "fetch-nvrtc: downloading ${missing[*]}" >&2
  dl="$(mktemp -d "$ROOT/dl.XXXXXX")"
  "${PIP[@]}" download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_28_x86_64 -d "$dl" "${missing[@]}" >&2
  for w in "$dl"/*.whl; do
    python3 - "$w" "$TOOLKIT" <<'PY'
import sys, zipfile, os, stat
whl, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        path = z.extract(info, dst)
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode | stat.S_IRUSR)
PY
    mv -f "$w" "$WHEELS/"
  done
  rmdir "$dl" 2>/dev/null || true
  # cudarc (dynamic-loading) asks the loader for libnvrtc.so, libnvrtc.so.13, ...; the wheel
  # ships libnvrtc.so.13 (and a versioned builtins library NVRTC opens itself). Give every
  # library its unversioned name too, so either spelling is found.
  for lib in "$CU"/lib/lib*.so.*; do
    [ -e "$lib" ] || continue
    base="$(basename "$lib")"
    plain="${base%%.so.*}.so"
    [ -e "$CU/lib/$plain" ] || ln -s "$base" "$CU/lib/$plain"
  done
  if [ ! -e "$CU/lib/libnvrtc.so.13" ] && [ ! -e "$CU/lib/libnvrtc.so" ]; then
    echo "fetch-nvrtc: no libnvrtc in $CU/lib after unpacking" >&2
    exit 1
  fi
  for p in "${missing[@]}"; do touch "$ROOT/.done-$p"; done
fi

echo "export LD_LIBRARY_PATH=\"$CU/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
echo "export FFVOL_CUDA_INCLUDE=\"$CU/include\""
if [ -x "$CU/bin/ptxas" ]; then
  echo "export FFVOL_PTXAS=\"$CU/bin/ptxas\""
fi
