#!/usr/bin/env bash
# CTest wrapper: the tree stays clang-formatted and cppcheck-clean (make lint).
set -euo pipefail
exec bash "${CMESH_SRC:?}/scripts/lint.sh"
