#!/usr/bin/env bash
# Installs llama-cpp-python built for one llama.cpp backend into a Python environment.
#   packaging/install-llama.sh cpu|cuda|metal|vulkan [PYTHON]
# PYTHON defaults to the `python3` on PATH (pass .venv/bin/python, or a pipx/uv tool's
# interpreter). GPU builds always rebuild from source: pip would otherwise reuse a cached
# CPU wheel, because the cache key ignores CMAKE_ARGS.
set -euo pipefail
backend=${1:?usage: install-llama.sh cpu|cuda|metal|vulkan [PYTHON]}
python=${2:-python3}
spec=${LLAMA_CPP_PYTHON_SPEC:-"llama-cpp-python==0.3.36"}  # the version measured; pyproject pins the same
case "$backend" in
    cpu) cmake_args="-DLLAVA_BUILD=OFF" ;;
    cuda) cmake_args="-DLLAVA_BUILD=OFF -DGGML_CUDA=on" ;;
    metal) cmake_args="-DLLAVA_BUILD=OFF -DGGML_METAL=on" ;;
    vulkan) cmake_args="-DLLAVA_BUILD=OFF -DGGML_VULKAN=on" ;;
    *) echo "install-llama: unknown backend '$backend' (cpu, cuda, metal, vulkan)" >&2; exit 2 ;;
esac
# A portable CPU build (for a wheel you copy to other machines): GRA_LOCAL_PORTABLE=1.
[ "${GRA_LOCAL_PORTABLE:-0}" = 1 ] && cmake_args="$cmake_args -DGGML_NATIVE=OFF"
extra=()
[ "$backend" != cpu ] || [ "${GRA_LOCAL_FORCE_REBUILD:-0}" = 1 ] && extra=(--no-cache-dir --force-reinstall --no-deps)
echo "install-llama: building $spec for $backend (CMAKE_ARGS=$cmake_args)"
CMAKE_ARGS="$cmake_args" "$python" -m pip --disable-pip-version-check -q install "${extra[@]}" "$spec"
"$python" - <<'PY'
import llama_cpp
print("install-llama: llama-cpp-python", llama_cpp.__version__,
      "GPU offload" if llama_cpp.llama_supports_gpu_offload() else "CPU only")
PY
