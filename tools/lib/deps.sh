# shellcheck shell=bash
#
# deps.sh -- installs the Debian packages Skald needs, idempotently.
#
# Sourced by tools/run and tools/test so both agree on what "installed" means. A package
# is installed only when dpkg-query says it is missing, so a second run costs a few
# dpkg-query calls and never touches apt. Needs root (or sudo) only when something is
# missing.

# What building Skald and running it needs.
SKALD_DEPS_BUILD=(build-essential cmake pkg-config librdkafka-dev libavro-dev libsqlite3-dev
    uuid-dev libcmocka-dev libmicrohttpd-dev libjansson-dev curl)

# What tools/test needs on top: a second compiler with sanitizer and libFuzzer runtimes,
# the static checkers, and the tools later integration tests drive. The Kafka tests run a
# real broker (tools/kafka: Java 17 and Maven fetch and run it, kcat asks it for metadata)
# and read the topic with Python's confluent-kafka and avro.
SKALD_DEPS_TEST=(clang clang-format clang-tidy cppcheck libclang-rt-14-dev wrk python3 openssl
    openjdk-17-jre-headless maven kcat python3-confluent-kafka python3-avro)

# Prints the names among "$@" that dpkg does not report as installed.
skald_deps_missing() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        if [[ "$status" != "install ok installed" ]]; then
            printf '%s\n' "$pkg"
        fi
    done
}

# Installs whatever of "$@" is missing; does nothing (and needs no privileges) otherwise.
skald_deps_install() {
    local missing sudo=()
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "deps: dpkg-query not found; Skald's scripts expect Debian 12 (bookworm)" >&2
        return 1
    fi
    mapfile -t missing < <(skald_deps_missing "$@")
    if ((${#missing[@]} == 0)); then
        echo "deps: all ${#} packages already installed"
        return 0
    fi
    if ((EUID != 0)); then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "deps: missing ${missing[*]}; run as root or install sudo" >&2
            return 1
        fi
        sudo=(sudo)
    fi
    echo "deps: installing ${missing[*]}"
    # A fresh container has no package lists yet; refresh them once before installing.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
