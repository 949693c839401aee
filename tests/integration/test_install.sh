#!/usr/bin/env bash
# test_install.sh BUILD_DIR -- installed binaries stand alone: `cmake --install` into a
# temporary prefix puts skald, skaldctl and the schemas under it; the prefix is then moved
# (so nothing may point back at the build or source tree), and from there `skald seed`,
# `skaldctl schemas check` and `skald serve` (a command over HTTP, then SIGTERM) work
# with no schema flag and no SKALD_* variable. Without the installed schemas the binaries
# fail naming the folder they looked for, never falling back to the source tree.
set -u
build=$1
dir=$(mktemp -d /tmp/skald-install-test-XXXXXX)
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
fail() {
    echo "FAIL: $*" >&2
    [[ -f $dir/serve.log ]] && cat "$dir/serve.log" >&2
    exit 1
}
unset SKALD_SOURCE_DIR SKALD_SCHEMAS SKALD_COMMAND_SCHEMAS SKALD_DATA
cmake --install "$build" --prefix "$dir/staged" >"$dir/install.log" 2>&1 ||
    fail "cmake --install: $(cat "$dir/install.log")"
mv "$dir/staged" "$dir/prefix" || fail "cannot move the prefix"
bin=$dir/prefix/bin
[[ -x $bin/skald && -x $bin/skaldctl ]] || fail "binaries not installed under bin/"
[[ -f $dir/prefix/share/skald/events/schemas/OrderPlaced.avsc ]] || fail "event schemas missing"
[[ -f $dir/prefix/share/skald/commands/schemas/PlaceOrder.avsc ]] || fail "command schemas missing"

cd "$dir" || fail "cd"
"$bin/skald" seed --data "$dir/data" --orders 5 >"$dir/out" 2>&1 || fail "seed: $(cat "$dir/out")"
"$bin/skaldctl" schemas check --data "$dir/data" >"$dir/out" 2>&1 ||
    fail "skaldctl schemas check: $(cat "$dir/out")"

"$bin/skald" serve --data "$dir/data" --listen 127.0.0.1:0 --port-file "$dir/port" \
    2>"$dir/serve.log" &
pid=$!
for _ in $(seq 1 100); do [[ -s $dir/port ]] && break; sleep 0.1; done
[[ -s $dir/port ]] || fail "skald serve did not start"
code=$(curl -s -o "$dir/out" -w '%{http_code}' -XPOST -H 'Content-Type: application/json' \
    -d '{"sku":"INSTALLED","name":"n","price_cents":1}' \
    "http://127.0.0.1:$(cat "$dir/port")/v1/commands/RegisterProduct")
[[ $code == 200 ]] || fail "RegisterProduct answered $code: $(cat "$dir/out")"
kill -TERM "$pid"
wait "$pid" || fail "skald serve exited $? after SIGTERM"
pid=

# without the installed schemas: a clear failure, not the source tree
rm -rf "$dir/prefix/share/skald"
if "$bin/skald" seed --data "$dir/data2" >"$dir/out" 2>&1; then
    fail "seed succeeded without installed schemas"
fi
grep -q "share/skald/events/schemas" "$dir/out" || fail "seed did not name the folder: $(cat "$dir/out")"
echo "install: ok"
