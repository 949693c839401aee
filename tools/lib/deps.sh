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

# What tools/test's browser step needs on top: Debian's chromium, driven headless by the
# dashboard's test (never a browser that a tool downloads).
SKALD_DEPS_BROWSER=(chromium)

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

# ---------------------------------------------------------------------------------------
# npm: the OpenAPI linter of tools/test's static step, pinned, installed under the
# repository in .cache/npm (git-ignored) rather than globally, so that the version is the
# one the document was checked with and nothing outside the checkout changes. Debian 12's
# own nodejs (18) is too old for it: it needs Node.js >= 20.19 (or >= 22.12) and its npm.

SKALD_NPM_DIR="$SKALD_ROOT/.cache/npm"
SKALD_NPM_TOOLS=("@redocly/cli@2.77.0")
# The browser step's driver: the -core package, which never downloads a browser (it is
# pointed at /usr/bin/chromium). 24.x: the newest line that runs on Node.js 20.
SKALD_NPM_BROWSER=("puppeteer-core@24.43.1")
# The tracing test's independent OTLP decoder (tests/integration/otlp_decode.cjs): the
# OTLP protobuf definitions as OpenTelemetry's own JavaScript exporter ships them
# (compiled by protobufjs into generated/root.js), and protobufjs to run them.
SKALD_NPM_OTLP=("protobufjs@7.5.4" "@opentelemetry/otlp-proto-exporter-base@0.51.1")
# The Kafka suite's second, independent consumer (tests/integration/test_kafka_js.mjs):
# KafkaJS (pure JavaScript, no librdkafka) and avsc decode the topic with the exported
# schemas, so that a mismatch in Skald's wire format cannot hide behind one client.
SKALD_NPM_KAFKA=("kafkajs@2.2.4" "avsc@5.7.9")

# Prints the version of npm package NAME installed under SKALD_NPM_DIR, or nothing.
skald_npm_installed_version() {
    local pkg="$SKALD_NPM_DIR/node_modules/$1/package.json"
    [[ -f $pkg ]] && sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pkg" | head -n 1
}

# Fails unless node and npm are there and node is new enough for the tools.
skald_node_check() {
    local v major minor
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "deps: node and npm are needed for the OpenAPI linter (Node.js >= 20.19 or" \
            ">= 22.12; Debian 12's nodejs 18 is too old: install Node.js from the Node.js" \
            "project's packages)" >&2
        return 1
    fi
    v=$(node -p 'process.versions.node')
    IFS=. read -r major minor _ <<<"$v"
    if ! { ((major == 20 && minor >= 19)) || ((major == 22 && minor >= 12)) || ((major > 22)); }; then
        echo "deps: Node.js $v is too old for the npm tools (needs >= 20.19 or >= 22.12)" >&2
        return 1
    fi
}

# Installs each of "$@" (NAME@VERSION; default SKALD_NPM_TOOLS) that is not installed at
# that version; with all of them there it touches neither npm nor the network, so it works
# offline.
skald_npm_install() {
    local spec name want missing=() specs=("$@")
    ((${#specs[@]} > 0)) || specs=("${SKALD_NPM_TOOLS[@]}")
    for spec in "${specs[@]}"; do
        name=${spec%@*}
        want=${spec##*@}
        if [[ $(skald_npm_installed_version "$name") != "$want" ]]; then
            missing+=("$spec")
        fi
    done
    if ((${#missing[@]} == 0)); then
        echo "deps: npm tools already installed (${specs[*]}, in ${SKALD_NPM_DIR#"$SKALD_ROOT"/})"
        return 0
    fi
    skald_node_check
    echo "deps: installing ${missing[*]} into ${SKALD_NPM_DIR#"$SKALD_ROOT"/}"
    mkdir -p "$SKALD_NPM_DIR"
    [[ -f $SKALD_NPM_DIR/package.json ]] || printf '{"private": true}\n' >"$SKALD_NPM_DIR/package.json"
    # PUPPETEER_SKIP_DOWNLOAD: belt and braces; the -core package downloads nothing anyway
    if ! PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix "$SKALD_NPM_DIR" --save-exact \
        --prefer-offline --no-audit \
        --no-fund --no-update-notifier --loglevel=error "${missing[@]}"; then
        echo "deps: could not install ${missing[*]} with npm (offline, with no copy in npm's" \
            "cache?). Run tools/test once with network access; after that the copy in" \
            "${SKALD_NPM_DIR#"$SKALD_ROOT"/} is used offline." >&2
        return 1
    fi
}

# Runs an installed npm tool's command (from SKALD_NPM_DIR, never a global one), with
# Redocly's telemetry and update check off: a lint must not reach the network.
skald_npm_run() {
    local bin="$SKALD_NPM_DIR/node_modules/.bin/$1"
    shift
    if [[ ! -x $bin ]]; then
        echo "deps: $bin is missing; run tools/test (its deps section installs it)" >&2
        return 1
    fi
    REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true "$bin" "$@"
}
