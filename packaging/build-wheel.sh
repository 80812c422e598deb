#!/usr/bin/env bash
# Builds a wheel of gra-local into dist/ (pure Python: llama-cpp-python is a dependency,
# built for the target machine at install time by packaging/install-llama.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip --disable-pip-version-check -q wheel --no-deps -w dist .
ls -1 dist/*.whl
