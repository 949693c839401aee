# shellcheck shell=bash
#
# common.sh -- small helpers shared by tools/run and tools/test: where the repository is,
# how many jobs to build with, section headers and step timing.

# The repository root: the parent of the tools/ folder that holds this file.
SKALD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# The machine is shared: never build with more than two jobs unless told to.
SKALD_JOBS=${SKALD_JOBS:-2}

skald_section() {
    printf '\n==== %s ====\n' "$*"
}

# Configures a build directory with the given cache arguments, then builds it.
# Usage: skald_cmake_build DIR [--target T...] -- CMAKE_ARGS...
skald_cmake_build() {
    local dir=$1 targets=()
    shift
    while (($# > 0)) && [[ $1 != -- ]]; do
        targets+=("$1")
        shift
    done
    [[ ${1:-} == -- ]] && shift
    cmake -S "$SKALD_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" -j "$SKALD_JOBS" "${targets[@]}"
}
