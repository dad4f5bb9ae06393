#!/usr/bin/env bash
# make lint: clang-format check over every tracked C file, then cppcheck.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h')
clang-format --dry-run --Werror $files
common=(--quiet --error-exitcode=1 --enable=warning,performance,portability --inline-suppr
    --std=c11 -I src -D__linux__ -D_GNU_SOURCE --suppress=missingIncludeSystem)
cppcheck "${common[@]}" src
# Tests: Criterion's Test()/TestSuite() are macros cppcheck cannot expand, and the
# harness takes NULL-terminated argument lists (NULL is a pointer on Linux).
cppcheck "${common[@]}" -I tests/integration --suppress=unknownMacro --suppress=varFuncNullUB \
    tests/unit tests/integration
echo "lint: ok"
