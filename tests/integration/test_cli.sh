#!/bin/sh
# test_cli.sh SKALD -- the `skald` command line keeps the rules every Skald binary follows:
# --help on stdout with exit 0, a usage error naming the problem and "Try 'skald --help'"
# on stderr with exit 2, a runtime failure with exit 1; and `skald seed` seeds once.
set -u
skald=$1
dir=$(mktemp -d /tmp/skald-cli-test-XXXXXX)
trap 'rm -rf "$dir"' EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# expect STATUS STREAM PATTERN -- ARGS...: runs skald ARGS, checks the exit status and that
# PATTERN (grep -E) appears in STREAM (out or err).
expect() {
    want=$1 stream=$2 pattern=$3
    shift 4
    "$skald" "$@" >"$dir/out" 2>"$dir/err"
    got=$?
    [ "$got" -eq "$want" ] || fail "skald $*: exit $got, wanted $want ($(cat "$dir/err"))"
    grep -Eq -- "$pattern" "$dir/$stream" ||
        fail "skald $*: '$pattern' not in std$stream: $(cat "$dir/$stream")"
}

expect 0 out '^Usage: skald COMMAND' -- --help
expect 0 out 'skald seed --data DIR' -- seed --help
expect 0 out '^skald [0-9]+\.[0-9]+\.[0-9]+$' -- version
expect 2 err "^Try 'skald --help'$" --
expect 2 err "unknown command 'bogus'" -- bogus
expect 2 err "unknown option '--bogus'" -- --bogus
expect 2 err '--data DIR is required' -- seed
expect 2 err "option '--data' needs a value" -- seed --data
expect 2 err "--orders wants a whole number from 1 to" -- seed --data "$dir/d" --orders 0
expect 2 err "--orders wants a whole number" -- seed --data "$dir/d" --orders 12x
expect 2 err "--seed wants a whole number" -- seed --data "$dir/d" --seed -1
expect 2 err "unknown option '--bogus'" -- seed --data "$dir/d" --bogus
expect 0 out '^Usage: skald serve --data DIR' -- serve --help
for var in DATA LISTEN SCHEMAS COMMAND_SCHEMAS TOKENS TLS_CERT TLS_KEY FSYNC THREADS QUEUE_MAX \
    BODY_MAX TIMEOUT IDEMPOTENCY_WINDOW SNAPSHOT_EVERY CACHE_MAX PORT_FILE LOG_LEVEL; do
    expect 0 out "SKALD_$var" -- serve --help
done
expect 2 err 'is required' -- serve
expect 2 err "unknown option" -- serve --data "$dir/d" --bogus
expect 2 err "'x' is not a whole number in 1..64" -- serve --data "$dir/d" --threads x
expect 2 err "is not always, interval or never" -- serve --data "$dir/d" --fsync sometimes
expect 2 err "refusing to listen on 0.0.0.0 without --tokens" -- serve --data "$dir/d" \
    --listen 0.0.0.0:8080
expect 2 err "has no valid port" -- serve --data "$dir/d" --listen 127.0.0.1:99999
expect 2 err "go together" -- serve --data "$dir/d" --tls-cert x.pem
SKALD_FSYNC=bogus expect 2 err 'SKALD_FSYNC' -- serve --data "$dir/d"
unset SKALD_FSYNC # dash may keep an assignment made before a function call
[ -e "$dir/d" ] && fail "a usage error created the data directory"

expect 0 out '^skald seed: [0-9]+ events at positions 0\.\.[0-9]+ .* 20 orders' -- \
    seed --data "$dir/d" --orders 20 --seed 3
[ -d "$dir/d/log" ] || fail "no log directory after seeding"
[ -d "$dir/d/schemas" ] || fail "no schema ids after seeding"
expect 0 out 'already holds [0-9]+ events; left as it is' -- seed --data="$dir/d" --if-empty
expect 1 err 'already holds the sample' -- seed --data "$dir/d" --orders 20
expect 1 err 'cannot create the data directory' -- seed --data "$dir/missing/d"

if [ "$failures" -gt 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all skald command-line checks passed"
