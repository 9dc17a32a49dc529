#!/usr/bin/env bash
# Builds `ozone-spark` with CUDA (and `ozone`, which links no model code, beside it) on a host with no GPU and no CUDA toolkit, for a
# GPU host with a CUDA 13 driver and the CUDA 13 libraries (cuBLAS, cuRAND).
#
# - nvcc, its headers and libcudart come from NVIDIA's wheels on PyPI (pip download: no
#   Python environment is touched);
# - candle links the driver, cuBLAS(Lt), cuRAND and NVRTC dynamically. A toolkit ships link
#   stubs for that; the wheels do not, so link-only stand-ins with the real libraries' sonames
#   are generated from cudarc's own declarations. They never run: at run time the GPU host's
#   libraries load under those sonames.
#
# Usage: services/spark/build-cuda.sh   (CUDA_COMPUTE_CAP=90 for H100/H200 by default)
# Output: $CARGO_TARGET_DIR/release/{ozone,ozone-spark}, plus libcudart.so.13 beside them.
set -euo pipefail
cd "$(dirname "$0")/../.."

cuda_release=${OZONE_CUDA_RELEASE:-13.0}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
work=${OZONE_CUDA_WORK:-$HOME/.cache/ozone-studio/cuda-$cuda_release}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-cuda}
export CUDA_HOME=$work/nvidia/cu13

if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  echo "fetching nvcc $cuda_release from PyPI into $work"
  mkdir -p "$work/wheels"
  for p in nvidia-cuda-nvcc nvidia-cuda-crt nvidia-nvvm nvidia-cuda-runtime nvidia-cuda-cccl; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
      -d "$work/wheels" "$p==$cuda_release.*"
  done
  for w in "$work"/wheels/*.whl; do python3 -m zipfile -e "$w" "$work"; done
  chmod +x "$CUDA_HOME"/bin/* "$CUDA_HOME"/nvvm/bin/*
  ln -sfn lib "$CUDA_HOME/lib64"
  ln -sfn libcudart.so.13 "$CUDA_HOME/lib/libcudart.so"
fi

cudarc=$(cargo metadata --format-version 1 --locked --features ozone-spark/cuda |
  python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')
# The stand-ins go into the toolkit's lib folder: cudarc's build script puts it on the link path.
sources=$work/link-stubs
mkdir -p "$sources"
for spec in driver:cuda:libcuda.so.1 nvrtc:nvrtc:libnvrtc.so.13 curand:curand:libcurand.so.10 \
  cublas:cublas:libcublas.so.13 cublaslt:cublasLt:libcublasLt.so.13; do
  IFS=: read -r module lib soname <<<"$spec"
  grep -oP '^pub unsafe fn \K\w+(?=\()' "$cudarc/src/$module/sys/mod.rs" | sort -u |
    sed 's/.*/void &(void) {}/' >"$sources/$lib.c"
  cc -shared -fPIC -Wl,-soname,"$soname" -o "$CUDA_HOME/lib/lib$lib.so" "$sources/$lib.c"
done

export PATH=$CUDA_HOME/bin:$PATH
export LD_LIBRARY_PATH=$CUDA_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cargo build --release --locked -p ozone -p ozone-spark --features ozone-spark/cuda
cp "$CUDA_HOME/lib/libcudart.so.13" "$CARGO_TARGET_DIR/release/"
echo "built: $CARGO_TARGET_DIR/release/ozone and ozone-spark (CUDA, compute capability $CUDA_COMPUTE_CAP)"
