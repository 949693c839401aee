#!/usr/bin/env bash
# test_skaldctl.sh SKALDCTL SKALD -- skaldctl against a real seeded data directory:
# every subcommand's output and exit status, then damage, verify, repair, verify.
set -euo pipefail
ctl=$1
skald=$2
dir=$(mktemp -d /tmp/skaldctl-test-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_status() { # expect_status WANT CMD...
    local want=$1; shift
    set +e; "$@" >"$dir/out" 2>"$dir/err"; local got=$?; set -e
    [[ $got == "$want" ]] || { cat "$dir/out" "$dir/err" >&2; fail "'$*' exited $got, want $want"; }
}

"$skald" seed --data "$dir/d" --orders 300 >/dev/null
for sub in "log info" "log verify" "log dump" "log repair" "schemas list" "schemas check"; do
    # shellcheck disable=SC2086
    expect_status 0 "$ctl" $sub --help
    grep -q '^Usage: skaldctl' "$dir/out" || fail "$sub --help prints no usage"
done
expect_status 0 "$ctl" --help
expect_status 2 "$ctl"
expect_status 2 "$ctl" log
expect_status 2 "$ctl" log info
grep -q 'no data directory' "$dir/err" || fail "missing --data not explained"
expect_status 2 "$ctl" log info --data "$dir/d" --bogus
grep -q "unknown option '--bogus'" "$dir/err" || fail "unknown option not named"
expect_status 2 "$ctl" log dump --data "$dir/d" --limit -3
expect_status 1 "$ctl" log info --data "$dir/nothing-here"
grep -q "nothing-here/log" "$dir/err" || fail "a missing log is not named"

expect_status 0 "$ctl" log info --data "$dir/d" --json
events=$(sed -n 's/.*"events":\([0-9]*\).*/\1/p' "$dir/out")
[[ $events -gt 1000 ]] || fail "log info --json reports $events events"
expect_status 0 "$ctl" log dump --data "$dir/d" --limit 3
[[ $(wc -l <"$dir/out") == 3 ]] || fail "dump --limit 3 printed $(wc -l <"$dir/out") lines"
grep -q '^0 *product-SKU-0001@1 ProductRegistered .*"sku":"SKU-0001"' "$dir/out" ||
    fail "dump does not show the first event decoded: $(head -1 "$dir/out")"
expect_status 0 "$ctl" log dump --data "$dir/d" --from 10 --limit 1 --json
grep -q '"position":10,' "$dir/out" || fail "dump --from 10 --json: $(cat "$dir/out")"
grep -q '"payload":{' "$dir/out" || fail "dump --json has no decoded payload"
expect_status 0 "$ctl" log dump --data "$dir/d" --stream product-SKU-0002 --json
[[ $(grep -c '"stream_id":"product-SKU-0002"' "$dir/out") == $(wc -l <"$dir/out") ]] ||
    fail "dump --stream shows other streams"
expect_status 0 "$ctl" log verify --data "$dir/d"
grep -q 'every record and index checks out' "$dir/out" || fail "clean verify: $(cat "$dir/out")"
expect_status 0 "$ctl" schemas list --data "$dir/d"
grep -q 'OrderPlaced' "$dir/out" || fail "schemas list lacks OrderPlaced"
expect_status 0 "$ctl" schemas check --data "$dir/d"

# The seed pipelines its appends, so group commit may write most of it as one batch, and
# damage inside the last batch is a torn tail, not damage. One command through a short-lived
# server makes a later batch that certainly follows the byte damaged below.
"$skald" serve --data "$dir/d" --listen 127.0.0.1:0 --port-file "$dir/port" \
    >"$dir/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do [[ -s $dir/port ]] && break; sleep 0.1; done
[[ -s $dir/port ]] || { kill "$server"; fail "the server did not start: $(cat "$dir/serve.log")"; }
code=$(curl -s -o "$dir/out" -w '%{http_code}' -XPOST -H 'Content-Type: application/json' \
    -d '{"sku":"LATE-1","name":"Late","price_cents":1}' \
    "http://127.0.0.1:$(cat "$dir/port")/v1/commands/RegisterProduct")
kill -TERM "$server"
wait "$server" || fail "the server did not exit cleanly: $(cat "$dir/serve.log")"
[[ $code == 200 ]] || fail "RegisterProduct answered $code: $(cat "$dir/out")"

# Damage one byte a quarter into the segment: verify names it and exits 3. The byte is
# inverted, so it always changes.
seg="$dir/d/log/00000000000000000000.log"
size=$(stat -c %s "$seg")
off=$((size / 4))
old=$(od -An -tu1 -j "$off" -N1 "$seg" | tr -d ' ')
printf "\\x$(printf %02x $((old ^ 255)))" | dd of="$seg" bs=1 seek="$off" conv=notrunc status=none
[[ $(od -An -tu1 -j "$off" -N1 "$seg" | tr -d ' ') == $((old ^ 255)) ]] || fail "could not damage the segment"
expect_status 3 "$ctl" log verify --data "$dir/d"
grep -q 'FAULT 00000000000000000000.log offset' "$dir/out" || fail "verify does not name the segment"
expect_status 0 "$ctl" log info --data "$dir/d"
pos=$(sed -n 's/^damage: *at position \([0-9]*\).*/\1/p' "$dir/out")
[[ -n $pos ]] || fail "log info does not report the damage: $(cat "$dir/out")"
expect_status 2 "$ctl" log repair --data "$dir/d" --truncate-at "$pos" </dev/null
grep -q -- '--yes' "$dir/err" || fail "repair without a terminal does not ask for --yes"
expect_status 0 "$ctl" log repair --data "$dir/d" --truncate-at "$pos" --yes
expect_status 0 "$ctl" log verify --data "$dir/d"
expect_status 0 "$ctl" log info --data "$dir/d" --json
after=$(sed -n 's/.*"next_position":\([0-9]*\).*/\1/p' "$dir/out")
[[ $after -le $pos && $after -gt 0 ]] || fail "after repair the log ends at $after (damage at $pos)"
echo "skaldctl: all checks passed ($events events, damage at $pos, repaired to $after)"
