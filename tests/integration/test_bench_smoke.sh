#!/bin/sh
# test_bench_smoke.sh -- checks that skald-bench's command line and every benchmark work, on tiny
# logs: each run exits 0 and its last line is its BENCH line with the expected keys.
# No timing is asserted; the one figure checked is a ratio (store over its baseline in the
# same run) in the regression guard at the end. Usage: test_bench_smoke.sh path/to/skald-bench WORK_PARENT_DIR
set -u
bench=$1
parent=$(mktemp -d "$2/bench-smoke.XXXXXX") || exit 1
out=$(mktemp "$2/bench-smoke-out.XXXXXX") || exit 1
err=$(mktemp "$2/bench-smoke-err.XXXXXX") || exit 1
trap 'rm -f "$out" "$err"; rm -rf "$parent"' EXIT
fail() { echo "FAIL: $*"; echo "--- stdout"; cat "$out"; echo "--- stderr"; cat "$err"; exit 1; }

"$bench" --help >"$out" 2>"$err" || fail "--help exited $?"
grep -q '^Usage: skald-bench' "$out" || fail "--help printed no usage on stdout"

"$bench" list >"$out" 2>"$err" || fail "list exited $?"
for name in log-append log-read stream-read http-commands traced-commands command-path aggregate-load subscribe queries sse \
    projection-catchup rebuild idempotency saga; do
    grep -q "^$name " "$out" || fail "list does not name $name"
done

"$bench" log-append --events 0 >"$out" 2>"$err"
rc=$?
[ $rc -eq 2 ] || fail "--events 0 exited $rc, not 2"
grep -q -- "--events" "$err" && grep -q "Try 'skald-bench --help'" "$err" ||
    fail "usage error does not name --events or give the hint"

"$bench" no-such-bench >"$out" 2>"$err"
rc=$?
[ $rc -eq 2 ] || fail "an unknown benchmark exited $rc, not 2"

# name, expected keys, arguments
check() {
    name=$1
    keys=$2
    shift 2
    "$bench" "$name" --dir "$parent" "$@" >"$out" 2>"$err" || fail "$name exited $?"
    last=$(tail -n 1 "$out")
    case "$last" in
    "BENCH $name "*) ;;
    *) fail "$name: last line is not its BENCH line: $last" ;;
    esac
    for key in $keys; do
        echo "$last" | grep -q " $key=[0-9]" || fail "$name: BENCH line lacks $key"
    done
    [ "$(grep -c '^BENCH ' "$out")" -eq 1 ] || fail "$name printed more than one BENCH line"
    echo "ok: $last"
}

check log-append "events_per_s raw_events_per_s ratio mean_batch" \
    --events 20000 --threads 4 --window 256 --streams 100
check log-read "events_per_s raw_events_per_s ratio" --events 20000 --runs 1
check stream-read "us_200 us_2k us_20k growth" --events 20000 --runs 5
check subscribe "subscribers events_per_s append_events_per_s ratio wake_p99_us" \
    --events 20000 --threads 4 --window 256 --streams 100 --subscribers 2
check aggregate-load "snap_us_100 snap_us_1000 growth replay_us_1000" --history-max 1000 --runs 5
check command-path "us_per_command baseline_us ratio errors" --events 4000 --streams 200
echo "$last" | grep -q " errors=0$" || fail "command-path: commands failed: $last"
check sse "clients events_per_s lag_p50_ms lag_p99_ms lag_max_ms errors" \
    --duration 1 --clients 3 --rate 200 --streams 50
echo "$last" | grep -q " errors=0$" || fail "sse: events or commands were lost: $last"
check uuid-text "ev_format_ns ev_parse_ns libuuid_format_ns libuuid_parse_ns ratio" --events 20000
check projection-catchup "events events_per_s raw_rows_per_s ratio" --events 5000
check rebuild "events seconds events_per_s" --events 5000
check idempotency "keys journal_per_s sqlite_per_s ratio" --keys 2000 --threads 2
check saga "orders_per_s p50_ms p99_ms" --events 200 --duration 1 --streams 20
if command -v wrk >/dev/null; then
    check http-commands "commands_per_s p99_ms noop_per_s ratio cpu_us http_cpu_us errors" \
        --duration 1 --connections 4 --streams 200
    echo "$last" | grep -q " errors=0$" || fail "http-commands: requests failed: $last"
    check traced-commands "commands_per_s untraced_per_s ratio spans_dropped errors" \
        --duration 1 --connections 4 --streams 200 --runs 1
    echo "$last" | grep -q " errors=0$" || fail "traced-commands: requests failed: $last"
    check queries "queries_per_s p99_ms noop_per_s ratio command_rate errors" \
        --duration 1 --connections 4 --orders 500 --customers 10 --command-rate 500
    echo "$last" | grep -q " errors=0$" || fail "queries: requests failed: $last"
else
    echo "skip: http-commands, traced-commands, queries (wrk is not installed)"
fi

# The regression guard (issue 15 item 5): the two ratio benchmarks once more in a short
# form that keeps what decides their ratio (http-commands: 64 connections, so group
# commits fill as in the full run; log-append: 8 threads x 4096 in flight, batches of
# ~12,000), failing when the ratio falls to half of what this 2-core VM measured on
# 2026-12-01 under the CI's load (docs/benchmarks.md, "Regression guard"). Half the goal
# (0.25) would fail today's tree on this machine, so the floor guards against a 2x
# regression from today, not against the goal. A run below the floor is repeated, up to
# 3 runs: another job's burst on the shared cores can halve one run, a 2x regression
# fails all three. SKALD_BENCH_GUARD=0 skips it (a sanitizer or debug build);
# SKALD_GUARD_HTTP_FLOOR / SKALD_GUARD_APPEND_FLOOR override the floors.
guard_http_floor=${SKALD_GUARD_HTTP_FLOOR:-0.10}
guard_append_floor=${SKALD_GUARD_APPEND_FLOOR:-0.08}
guard() {
    name=$1
    floor=$2
    shift 2
    for try in 1 2 3; do
        "$bench" "$name" --dir "$parent" "$@" >"$out" 2>"$err" || fail "guard: $name exited $?"
        last=$(tail -n 1 "$out")
        ratio=$(echo "$last" | sed -n 's/.* ratio=\([0-9.]*\).*/\1/p')
        [ -n "$ratio" ] || fail "guard: $name printed no ratio: $last"
        if awk -v r="$ratio" -v f="$floor" 'BEGIN { exit !(r >= f) }'; then
            half_goal=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.25 ? "met" : "NOT met") }')
            echo "guard ok: $name ratio=$ratio >= $floor (run $try; half the goal, 0.25: $half_goal)"
            return 0
        fi
        echo "guard: $name ratio=$ratio < $floor in run $try: $last"
    done
    fail "guard: $name ratio below $floor in 3 runs (a 2x regression from 2026-12-01's figure)"
}
if [ "${SKALD_BENCH_GUARD:-1}" != 0 ]; then
    guard log-append "$guard_append_floor" --events 200000
    if command -v wrk >/dev/null; then
        guard http-commands "$guard_http_floor" --duration 2 --connections 64 --streams 2000
        echo "$last" | grep -q " errors=0$" || fail "guard: http-commands: requests failed: $last"
    fi
fi

leftover=$(ls -A "$parent")
[ -z "$leftover" ] || fail "work directory left behind: $leftover"
exit 0
