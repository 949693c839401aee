#!/usr/bin/env bash
# test_skaldctl_snapshot.sh SKALDCTL SKALD -- `skaldctl snapshot` against a served data directory:
# the service writes snapshots, list shows them, verify agrees with a replay, a tampered
# snapshot is found (exit 3), an outdated one is reported but not damage, take and purge.
set -euo pipefail
ctl=$1
skald=$2
dir=$(mktemp -d /tmp/skaldctl-snap-XXXXXX)
pid=
cleanup() { [[ -z $pid ]] || kill "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_status() { # expect_status WANT CMD...
    local want=$1; shift
    set +e; "$@" >"$dir/out" 2>"$dir/err"; local got=$?; set -e
    [[ $got == "$want" ]] || { cat "$dir/out" "$dir/err" >&2; fail "'$*' exited $got, want $want"; }
}

for sub in list verify purge take; do
    expect_status 0 "$ctl" snapshot $sub --help
    grep -q '^Usage: skaldctl snapshot' "$dir/out" || fail "snapshot $sub --help prints no usage"
done
expect_status 2 "$ctl" snapshot
expect_status 2 "$ctl" snapshot frobnicate --data "$dir/d"
expect_status 1 "$ctl" snapshot list --data "$dir/d"
grep -q 'no snapshot file' "$dir/err" || fail "a missing snapshot file is not explained"

"$skald" seed --data "$dir/d" --orders 40 >/dev/null
"$skald" serve --data "$dir/d" --listen 127.0.0.1:0 --port-file "$dir/port" \
    --snapshot-every 4 2>"$dir/serve.log" &
pid=$!
for _ in $(seq 1 100); do [[ -s $dir/port ]] && break; sleep 0.1; done
[[ -s $dir/port ]] || fail "skald serve did not start"
url="http://127.0.0.1:$(cat "$dir/port")"
for i in $(seq 1 9); do
    curl -sf -XPOST "$url/v1/commands/RestockProduct" -H 'Content-Type: application/json' \
        -d '{"sku":"SKU-0002","quantity":1}' >/dev/null || fail "restock $i"
done
kill -TERM "$pid"; wait "$pid" || fail "skald serve did not stop cleanly"; pid=

expect_status 0 "$ctl" snapshot list --data "$dir/d"
grep -q '^product-SKU-0002 ' "$dir/out" || fail "the service's snapshot is not listed"
expect_status 0 "$ctl" snapshot list --data "$dir/d" --json
grep -q '"stream_id":"product-SKU-0002"' "$dir/out" || fail "list --json"
expect_status 0 "$ctl" snapshot take --data "$dir/d" --stream product-SKU-0003
expect_status 0 "$ctl" snapshot verify --data "$dir/d"
grep -q '2 snapshots: 2 match' "$dir/out" || fail "verify of good snapshots: $(cat "$dir/out")"

# tamper with one, make another outdated (a state version from the future)
/usr/bin/python3 - "$dir/d/snapshots.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE snapshots SET state = replace(state, '\"on_hand\":', '\"on_hand\":1') "
          "WHERE stream_id = 'product-SKU-0002'")
c.execute("UPDATE snapshots SET state_version = 99 WHERE stream_id = 'product-SKU-0003'")
c.commit()
PY
expect_status 3 "$ctl" snapshot verify --data "$dir/d"
grep -q '^product-SKU-0002 .*differs' "$dir/out" || fail "tampered snapshot not named"
grep -q '^product-SKU-0003 .*outdated' "$dir/out" || fail "outdated snapshot not reported"

expect_status 1 "$ctl" snapshot take --data "$dir/d" --stream product-NOPE
expect_status 2 "$ctl" snapshot purge --data "$dir/d"
expect_status 0 "$ctl" snapshot purge --data "$dir/d" --stream product-SKU-0002
grep -q '^1 snapshots removed' "$dir/out" || fail "purge --stream"
expect_status 0 "$ctl" snapshot purge --data "$dir/d" --all
expect_status 0 "$ctl" snapshot list --data "$dir/d"
[[ ! -s $dir/out ]] || fail "snapshots left after purge --all"
echo "test_snapshot: all checks passed"
