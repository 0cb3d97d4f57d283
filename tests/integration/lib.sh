# Helpers shared by the integration tests (sourced by run-all).
: "${NETTRAIL:?set NETTRAIL to the nettrail binary}"
NETUTIL="$here/netutil.py"
# The interpreter itself, not a wrapper script that would replace argv[0].
PY=$("${PYTHON:-python3}" -c "import sys; print(sys.executable)")
WORK=$(mktemp -d /tmp/nettrail-it.XXXXXX)
export NETTRAIL_RUNTIME_DIR="$WORK/run"
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
BG_PIDS=()

passed=0 failed=0 skipped=0
cur_failed=0

cleanup() {
	local p
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
	echo "    FAIL: $*"
	cur_failed=1
}

expect_eq() { # actual expected message
	[ "$1" == "$2" ] || fail "$3: expected '$2', got '$1'"
}

expect_match() { # text regex message
	[[ "$1" =~ $2 ]] || fail "$3: '$1' does not match /$2/"
}

expect_ge() { # actual min message
	[ "$1" -ge "$2" ] 2>/dev/null || fail "$3: expected >= $2, got '$1'"
}

q() { # db sql; waits for a writer's lock like any careful sqlite3 user
	sqlite3 -batch -cmd ".timeout 5000" "$1" "$2"
}

bg() { # start a background process, remembered for cleanup; its pid in BG_PID
	"$@" &
	BG_PID=$!
	BG_PIDS+=("$BG_PID")
}

# A TCP server on 127.0.0.1:$1 and [::1]:$1.
serve_tcp() {
	local port=$1 out="$WORK/serve.$1"
	bg "$PY" "$NETUTIL" serve-tcp "$port" >"$out"
	for _ in $(seq 100); do grep -q ready "$out" 2>/dev/null && return 0; sleep 0.05; done
	fail "tcp server on $port did not start"
}

# Waits until file $1 contains regex $2 (default 5 s).
wait_for() {
	for _ in $(seq "${3:-100}"); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	return 1
}

wait_for_file() { # path: waits up to 5 s for it to exist
	for _ in $(seq 100); do [ -e "$1" ] && return 0; sleep 0.05; done
	fail "$1 did not appear"
}

bpf_available() {
	"$NETTRAIL" run --no-report --db "$WORK/probe.db" -- true 2>"$WORK/probe.err"
}

run_tests() {
	local t names
	if [ $# -gt 0 ]; then names="$*"; else names=$(declare -F | awk '$3 ~ /^test_/ { print $3 }'); fi
	if ! bpf_available; then
		echo "BPF is not available here: $(cat "$WORK/probe.err")"
		if [ -n "${NETTRAIL_REQUIRE_BPF:-}" ]; then
			echo "NETTRAIL_REQUIRE_BPF is set: failing"
			echo "0 passed, 1 failed"
			exit 1
		fi
		echo "0 passed, 0 failed, $(echo "$names" | wc -w) skipped"
		exit 0
	fi
	for t in $names; do
		cur_failed=0
		echo "--- $t"
		T="$WORK/$t"
		mkdir -p "$T"
		DB="$T/nettrail.db"
		if declare -F "$t" >/dev/null; then "$t"; else fail "no such test"; fi
		if [ "$cur_failed" = 0 ]; then
			passed=$((passed + 1)); echo "ok   $t"
		else
			failed=$((failed + 1)); echo "FAIL $t"
		fi
	done
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
}
