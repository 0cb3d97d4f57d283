# Bad input and faults: a clear message, a meaningful exit status, nothing left behind.

expect_fail() { # expected-status regex command...
	local want=$1 re=$2
	shift 2
	"$@" >"$T/out" 2>&1
	local rc=$?
	expect_eq "$rc" "$want" "exit status of: $*"
	expect_match "$(cat "$T/out")" "$re" "message of: $*"
}

test_usage_errors() {
	expect_fail 2 "bad scope" "$NETTRAIL" run --scope "a/b" -- true
	expect_fail 2 "bad scope" "$NETTRAIL" run --scope "" -- true
	expect_fail 2 "no command to run" "$NETTRAIL" run --db "$DB"
	expect_fail 2 "power of two" "$NETTRAIL" run --ringbuf-size 1000 -- true
	expect_fail 2 "unknown command" "$NETTRAIL" frobnicate
	expect_fail 2 "bad run id" "$NETTRAIL" deps --run x
	expect_fail 2 "bad format" "$NETTRAIL" deps --format xml
	[ -e "$DB" ] && fail "a usage error created the database"
	local c
	for c in run agent deps events prune version; do
		"$NETTRAIL" "$c" --help >"$T/help" 2>&1
		expect_eq "$?" 0 "$c --help"
		expect_match "$(head -1 "$T/help")" "^usage: nettrail $c" "$c --help text"
	done
}

test_watch_not_a_cgroup() {
	expect_fail 1 "--watch /tmp is not a cgroup2 directory" "$NETTRAIL" agent --db "$DB" --watch /tmp
	expect_fail 1 "is not a cgroup2 directory: No such file" "$NETTRAIL" agent --db "$DB" --watch /nonexistent
}

test_bad_database() {
	# A path under a regular file cannot be created; a file that is not SQLite cannot be read.
	touch "$T/file"
	expect_fail 1 "failed to .*$T/file/x.db" "$NETTRAIL" run --db "$T/file/x.db" -- true
	head -c 4096 /dev/urandom >"$T/garbage.db"
	expect_fail 1 "failed to open database $T/garbage.db" "$NETTRAIL" run --db "$T/garbage.db" -- true
	sqlite3 "$T/newer.db" "pragma user_version = 999"
	expect_fail 1 "written by a newer nettrail" "$NETTRAIL" run --db "$T/newer.db" -- true
	expect_eq "$(q "$T/newer.db" "pragma user_version")" 999 "newer database untouched"
	expect_fail 1 "no database at" "$NETTRAIL" deps --db "$T/missing.db"
	# No run cgroup may be left behind by any of these.
	[ -n "$(ls -d "$CG2"/nettrail/default/run-* 2>/dev/null)" ] && fail "run cgroups left behind"
	true
}

test_read_only_database() {
	# A database on a read-only file system: a clear error, exit 1, no cgroup left behind.
	mkdir -p "$T/ro"
	unshare --mount sh -c "mount -t tmpfs tmpfs '$T/ro' &&
		'$NETTRAIL' run --no-report --db '$T/ro/x.db' -- true &&
		mount -o remount,ro '$T/ro' &&
		{ '$NETTRAIL' run --db '$T/ro/x.db' -- true; echo \"rc=\$?\";
		  '$NETTRAIL' run --db '$T/ro/new.db' -- true; echo \"rc=\$?\";
		  '$NETTRAIL' agent --db '$T/ro/x.db'; echo \"rc=\$?\"; }" >"$T/out" 2>&1
	expect_eq "$(grep -c '^rc=1$' "$T/out")" 3 "exit status 1 three times"
	expect_eq "$(grep -c 'failed to open database .*: Read-only file system' "$T/out")" 3 "messages: $(cat "$T/out")"
	[ -n "$(ls -d "$CG2"/nettrail/default/run-* 2>/dev/null)" ] && fail "run cgroups left behind"
	true
}

test_not_root() {
	command -v setpriv >/dev/null || { echo "    (setpriv missing)"; return; }
	expect_fail 1 "needs root" setpriv --reuid=65534 --regid=65534 --clear-groups "$NETTRAIL" run --db /tmp/x.db -- true
	expect_fail 1 "needs root" setpriv --reuid=65534 --regid=65534 --clear-groups "$NETTRAIL" agent --db /tmp/x.db
}

test_deps_and_events_read_the_store() {
	serve_tcp 18201
	"$NETTRAIL" run --scope s1 --db "$DB" -- "$PY" "$NETUTIL" connect 127.0.0.1 18201 3 2>/dev/null
	"$NETTRAIL" deps --db "$DB" --format csv >"$T/deps.csv"
	expect_eq "$(sed -n 2p "$T/deps.csv" | cut -d, -f1-7)" "s1,tcp,127.0.0.1,18201,3,1,allowed" "deps csv"
	expect_eq "$("$NETTRAIL" events --db "$DB" --scope s1 | wc -l)" 4 "events: header + 3"
	expect_eq "$("$NETTRAIL" events --db "$DB" --scope other | wc -l)" 1 "events of another scope"
	expect_match "$("$NETTRAIL" deps --db "$DB" --scope other 2>&1)" "no destinations recorded for scope other" "empty deps"
	# A long scope is shown whole; a long UTF-8 command line is cut between characters.
	local scope=a-scope-name-longer-than-twelve-characters
	local long=ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé
	# argv[0] of one byte then two-byte characters: the 80 bytes shown end inside one.
	"$NETTRAIL" run --scope $scope --db "$DB" -- bash -c \
		"exec -a 'x$long' $PY $NETUTIL connect-linger 127.0.0.1 18201 0" 2>/dev/null
	"$NETTRAIL" deps --db "$DB" --scope $scope >"$T/deps.txt"
	expect_match "$(sed -n 2p "$T/deps.txt")" "^$scope +- +tcp +127.0.0.1 +18201 .* xé+\.\.\.$" "long scope, cut cmdline"
	iconv -f utf-8 -t utf-8 "$T/deps.txt" >/dev/null || fail "deps output is not valid UTF-8"
	expect_eq "$(q "$DB" "select command from runs where scope = '$scope'")" \
		"bash -c 'exec -a '\\''x$long'\\'' $PY $NETUTIL connect-linger 127.0.0.1 18201 0'" \
		"runs.command quoted like a shell"
}

test_missing_capabilities() {
	# Root without CAP_BPF and friends: the missing capabilities are named, no file is made.
	expect_fail 1 "missing: CAP_BPF CAP_SYS_ADMIN CAP_PERFMON" \
		setpriv --bounding-set -bpf,-sys_admin,-perfmon --inh-caps=-all "$NETTRAIL" run --db "$DB" -- true
	expect_fail 1 "missing: CAP_BPF" \
		setpriv --bounding-set -bpf --inh-caps=-all "$NETTRAIL" agent --db "$DB"
	[ -e "$DB" ] && fail "a database was created"
	[ -n "$(ls -d "$CG2"/nettrail/default/run-* 2>/dev/null)" ] && fail "run cgroups left behind"
	true
}

test_concurrent_runs_on_a_new_database() {
	# Runs started together on a database that does not exist yet: all succeed, each run's
	# connect is its own.
	serve_tcp 18202
	local i pids=()
	for i in 1 2 3 4 5 6 7 8; do
		"$NETTRAIL" run --scope "c$i" --db "$DB" -- "$PY" "$NETUTIL" connect 127.0.0.1 18202 \
			>/dev/null 2>"$T/run$i.log" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || fail "a run failed: $(cat "$T"/run*.log)"; done
	expect_eq "$(q "$DB" "select count(*), count(distinct r.scope), sum(c.scope = r.scope) from connections c join runs r on r.id = c.run_id")" \
		"8|8|8" "8 runs, each with its own connect"
}

test_prune_keeps_the_recent_and_the_totals() {
	# Two runs; the first made to look 40 days old. prune --older-than 30d removes it
	# whole and keeps the second, and the loss totals stay readable.
	# Longer than a tick, so that its counters have a first sample and a last.
	"$NETTRAIL" run --scope old --db "$DB" -- sh -c "$PY $NETUTIL udp-connect 127.0.0.1 18203; sleep 0.3" 2>/dev/null
	"$NETTRAIL" run --scope new --db "$DB" -- "$PY" "$NETUTIL" udp-connect 127.0.0.1 18204 2>/dev/null
	local d40=$((40 * 86400 * 1000000000))
	q "$DB" "update connections set time_ns = time_ns - $d40 where scope = 'old';
		update processes set first_seen_ns = first_seen_ns - $d40 where scope = 'old';
		update runs set started_ns = started_ns - $d40, ended_ns = ended_ns - $d40 where scope = 'old';
		update cgroups set first_seen_ns = first_seen_ns - $d40 where scope = 'old';
		update stats set time_ns = time_ns - $d40 where source = 'run:1'"
	local counters
	counters=$(q "$DB" "select count(distinct name) from stats where source = 'run:1'")
	expect_ge "$counters" 16 "the old run's counters"
	expect_fail 2 "bad --older-than" "$NETTRAIL" prune --db "$DB" --older-than 30
	"$NETTRAIL" prune --db "$DB" --older-than 30d >"$T/prune.out"
	expect_eq "$?" 0 "prune"
	expect_match "$(cat "$T/prune.out")" "^deleted 1 connections, 0 DNS queries, 1 processes, 1 runs, 1 cgroups, [1-9][0-9]* counter samples$" "summary"
	expect_eq "$(q "$DB" "select group_concat(scope) from runs; select group_concat(port) from connections")" \
		"new
18204" "what is left"
	# Of the old run's counters exactly the last sample of each is left, and totals read.
	expect_eq "$(q "$DB" "select count(*), count(distinct name) from stats where source = 'run:1'")" "$counters|$counters" \
		"one sample per counter kept"
	expect_eq "$(q "$DB" "select count(*) from events_lost where source = 'run:1'")" 5 "loss totals readable"
}

test_read_only_copy_is_readable() {
	# After an incident the record is kept on a read-only file system: reading it works
	# (deps, events, policy ls, history, suggest), changing the rules fails clearly.
	mkdir -p "$T/ro"
	unshare --mount sh -c "mount -t tmpfs tmpfs '$T/ro' &&
		'$NETTRAIL' run --no-report --scope deploy --db '$T/ro/x.db' -- '$PY' '$NETUTIL' connect 127.0.0.1 18205 >/dev/null &&
		'$NETTRAIL' policy add example.test --scope deploy --db '$T/ro/x.db' >/dev/null &&
		mount -o remount,ro '$T/ro' &&
		{ '$NETTRAIL' deps --format csv --db '$T/ro/x.db' | cut -d, -f1-4 | tail -1; echo \"rc=\$?\";
		  '$NETTRAIL' policy ls --format csv --db '$T/ro/x.db' | tail -1 | cut -d, -f1-3; echo \"rc=\$?\";
		  '$NETTRAIL' policy history --db '$T/ro/x.db' >/dev/null; echo \"rc=\$?\";
		  '$NETTRAIL' policy suggest --scope deploy --db '$T/ro/x.db' >/dev/null; echo \"rc=\$?\";
		  '$NETTRAIL' policy set example.test --scope deploy --mode enforce --db '$T/ro/x.db'; echo \"rc=\$?\"; }" \
		>"$T/out" 2>&1
	expect_eq "$(grep -v '^nettrail:' "$T/out")" "deploy,tcp,127.0.0.1,18205
rc=0
deploy,example.test,monitor
rc=0
rc=0
rc=0
rc=1" "read, then refused to write"
	expect_match "$(cat "$T/out")" "failed to open database .*: Read-only file system" "the write's message"
}
