#!/usr/bin/env bash
# make lint: clang-format check over every tracked C file, then cppcheck.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h')
clang-format --dry-run --Werror $files
cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
    --inline-suppr --std=c11 -I src -D__linux__ -D_GNU_SOURCE \
    --suppress=missingIncludeSystem src tests/unit tests/integration
echo "lint: ok"
