# Capture with the embedded agent of `nettrail run`: what lands in the store.

nrun() { # nettrail run into $DB; stderr (the report) in $T/report, exit status in RC
	"$NETTRAIL" run --db "$DB" "$@" 2>"$T/report"
	RC=$?
}

# The connections of the last run, as "proto family addr port kind" lines.
conns() {
	q "$DB" "select proto, family, addr, port, kind from connections order by id" | tr '|' ' '
}

# A burst of n UDP destinations from base on, run with the given options, must lose events
# for the given reason, and stored + counted lost must equal what was sent.
check_forced_loss() { # reason n base run-options...
	local reason=$1 n=$2 base=$3 rows lost run
	shift 3
	nrun "$@" -- "$PY" "$NETUTIL" udp-flood 127.0.0.1 "$base" "$n"
	run=$(q "$DB" "select max(id) from runs")
	rows=$(q "$DB" "select count(*) from connections where proto = 'udp' and port >= $base")
	lost=$(q "$DB" "select events from events_lost where source = 'run:$run' and reason = '$reason'")
	expect_ge "$lost" 1 "$reason was forced"
	expect_eq "$((rows + lost))" "$n" "stored ($rows) + lost ($lost) = attempts"
	expect_match "$(cat "$T/report")" "events lost: $lost" "report shows the loss"
}

test_tcp_ipv4_ipv6() {
	serve_tcp 18001
	nrun --scope web -- sh -c "$PY $NETUTIL connect 127.0.0.1 18001 && $PY $NETUTIL connect ::1 18001"
	expect_eq "$RC" 0 "exit status"
	expect_eq "$(conns)" "tcp ipv4 127.0.0.1 18001 connect
tcp ipv6 ::1 18001 connect" "connections"
	expect_eq "$(q "$DB" "select count(distinct scope) || scope from connections")" "1web" "scope"
	expect_match "$(q "$DB" "select p.cmdline from connections c join processes p on p.id = c.process_id where c.family = 'ipv6'")" \
		"netutil.py connect ::1 18001$" "cmdline of the ipv6 connect"
	expect_match "$(cat "$T/report")" "tcp +::1 +18001" "report lists ::1"
}

test_proc_adds_exe_and_full_cmdline() {
	# A process still alive when the agent looks gets its exe and its whole command line
	# from /proc, also past the 256 bytes captured in the kernel.
	local long
	long=$(printf 'x%.0s' $(seq 400))
	nrun -- "$PY" "$NETUTIL" connect-linger 127.0.0.1 18012 0.5 "$long"
	expect_eq "$(q "$DB" "select cmdline_source, exe like '%python%', length(cmdline) > 400, cmdline like '%$long' from processes")" \
		"proc|1|1|1" "exe and full cmdline"
}

test_exec_is_a_new_image() {
	# One pid, two programs: each connect is attributed to the program that made it.
	nrun -- "$PY" "$NETUTIL" exec-connect 127.0.0.1 18014 18015
	expect_eq "$(q "$DB" "select c.port, p.cmdline like '%exec-connect 127.0.0.1 18014 18015', p.cmdline like '%netutil.py connect 127.0.0.1 18015' from connections c join processes p on p.id = c.process_id order by c.id")" \
		"18014|1|0
18015|0|1" "cmdline per image"
	expect_eq "$(q "$DB" "select count(distinct pid), count(*) from processes")" "1|2" "one pid, two images"
}

test_thread_is_recorded() {
	# A connect from a thread: the process is the thread group, the row names the thread.
	nrun -- "$PY" "$NETUTIL" thread-connect 127.0.0.1 18013 "$T/ids"
	local pid tid
	read -r pid tid <"$T/ids"
	[ "$pid" != "$tid" ] || fail "the workload did not use a second thread"
	expect_eq "$(q "$DB" "select p.pid, c.tid = p.pid from connections c join processes p on p.id = c.process_id order by c.id")" \
		"$pid|1
$pid|0" "main thread, then the second"
	expect_eq "$(q "$DB" "select c.tid from connections c order by c.id desc limit 1")" "$tid" "the thread's tid"
	# Both threads are one process: one row, whose start time /proc confirms.
	expect_eq "$(q "$DB" "select count(*), count(distinct c.process_id) from connections c")" "2|1" "one process"
}

test_v4_mapped_is_ipv4() {
	serve_tcp 18002
	nrun -- "$PY" "$NETUTIL" connect ::ffff:127.0.0.1 18002
	expect_eq "$(conns)" "tcp ipv4 127.0.0.1 18002 connect" "v4-mapped destination"
	expect_eq "$(q "$DB" "select addr_key from connections")" "00000000000000000000ffff7f000001" "addr_key"
}

test_udp_connected() {
	nrun -- "$PY" "$NETUTIL" udp-connect 127.0.0.1 18003
	expect_eq "$(conns)" "udp ipv4 127.0.0.1 18003 connect" "connected udp"
}

test_udp_unconnected_once_per_socket_and_destination() {
	# 1000 datagrams from one socket to one destination: one event.
	nrun -- "$PY" "$NETUTIL" udp-send 127.0.0.1 18004 1000
	expect_eq "$(conns)" "udp ipv4 127.0.0.1 18004 sendto" "1000 datagrams"
	# 2 sockets x 2 destinations x 50 datagrams: four events, over IPv6 too.
	rm -f "$DB"*
	nrun -- "$PY" "$NETUTIL" udp-send ::1 18005 50 2 2
	expect_eq "$(q "$DB" "select count(*), count(distinct port) from connections where proto = 'udp' and family = 'ipv6'")" "4|2" "2 sockets x 2 destinations"
}

test_refused_connection_recorded() {
	nrun -- "$PY" "$NETUTIL" connect 127.0.0.1 18006
	expect_match "$(cat "$T/report")" "tcp +127.0.0.1 +18006" "report"
	expect_eq "$(conns)" "tcp ipv4 127.0.0.1 18006 connect" "refused connect is recorded"
}

test_outside_process_not_recorded() {
	serve_tcp 18007
	# While the run is live (hooks attached), a process outside its cgroup connects elsewhere.
	nrun -- sh -c "touch $T/started; while [ ! -e $T/outside-done ]; do sleep 0.05; done; $PY $NETUTIL connect 127.0.0.1 18007" &
	local run=$!
	wait_for_file "$T/started"
	"$PY" "$NETUTIL" connect 127.0.0.1 18008 >/dev/null
	touch "$T/outside-done"
	wait $run
	expect_eq "$(q "$DB" "select group_concat(port) from connections")" "18007" "only the watched process"
}

test_children_have_own_cmdline_and_parent() {
	serve_tcp 18009
	nrun -- sh -c "echo \$\$ > $T/shpid; $PY $NETUTIL connect 127.0.0.1 18009"
	local shpid row
	shpid=$(cat "$T/shpid")
	row=$(q "$DB" "select p.ppid, p.comm, p.cmdline from connections c join processes p on p.id = c.process_id")
	expect_match "$row" "^$shpid\\|python3[^|]*\\|.*netutil.py connect 127.0.0.1 18009$" "child of sh"
}

test_double_fork_setsid() {
	serve_tcp 18010
	nrun -- "$PY" "$NETUTIL" double-fork 127.0.0.1 18010 "$T/gc" marker-gc-1
	local pid ppid row
	read -r pid ppid <"$T/gc"
	row=$(q "$DB" "select p.pid, p.ppid, p.cmdline from connections c join processes p on p.id = c.process_id where c.port = 18010")
	expect_eq "${row%%|*}" "$pid" "grandchild pid"
	expect_match "$row" "^$pid\\|$ppid\\|.*connect-report 127.0.0.1 18010 .* marker-gc-1$" "grandchild parent and cmdline"
}

test_short_lived_process_keeps_cmdline() {
	# 20 processes that exit within microseconds of their connect.
	nrun -- sh -c "for i in \$(seq 20); do $PY $NETUTIL quick 127.0.0.1 18011 marker-quick-\$i; done"
	expect_eq "$(q "$DB" "select count(*) from connections c join processes p on p.id = c.process_id where p.cmdline like '%netutil.py quick 127.0.0.1 18011%'")" 20 \
		"every short-lived process has its cmdline"
	expect_eq "$(q "$DB" "select count(distinct process_id) from connections")" 20 "20 distinct processes"
}

test_real_clients() {
	# curl, nc over TCP and nc over UDP, as a script would run them.
	serve_tcp 18016
	nrun -- sh -c "curl -s --noproxy '*' --max-time 2 http://127.0.0.1:18016/c; nc -z 127.0.0.1 18016; echo x | nc -u -w0 127.0.0.1 18017; true"
	expect_eq "$(q "$DB" "select p.comm, c.proto, c.port from connections c join processes p on p.id = c.process_id order by c.id")" \
		"curl|tcp|18016
nc|tcp|18016
nc|udp|18017" "rows"
	expect_match "$(q "$DB" "select cmdline from processes where comm = 'curl'")" \
		"^curl -s --noproxy '\*' --max-time 2 http://127.0.0.1:18016/c$" "curl's cmdline, quoted as typed"
}

test_queue_loss_is_counted() {
	# A writer queue of 4 events cannot take a burst: queue loss is counted, not hidden.
	check_forced_loss events_lost_queue 5000 40000 --queue-size 4
}

test_exit_status_passed_through() {
	nrun -- sh -c 'exit 7'
	expect_eq "$RC" 7 "exit 7"
	expect_eq "$(q "$DB" "select exit_status, ended_ns > started_ns from runs order by id desc limit 1")" "7|1" "runs row"
	nrun -- sh -c 'kill -9 $$'
	expect_eq "$RC" 137 "killed by SIGKILL"
	nrun -- /nonexistent/command
	expect_eq "$RC" 127 "not found"
	expect_match "$(cat "$T/report")" "failed to execute /nonexistent/command" "message"
	printf '#!/bin/sh\n' >"$T/noexec"; chmod 644 "$T/noexec"
	nrun -- "$T/noexec"
	expect_eq "$RC" 126 "not executable"
}

test_run_removes_its_cgroup() {
	nrun --scope tidy -- sh -c "cat /proc/self/cgroup > $T/cg"
	local cg
	cg=$(grep '^0::' "$T/cg" | cut -d: -f3)
	expect_match "$cg" "^/nettrail/tidy/run-" "the command ran in the run's cgroup"
	[ -e "$CG2$cg" ] && fail "cgroup $CG2$cg left behind"
	[ -e "$CG2/nettrail" ] && fail "runs root $CG2/nettrail left behind with no agent"
	expect_eq "$(q "$DB" "select cgroup from runs")" "$CG2$cg" "runs.cgroup"
}

test_ringbuf_loss_is_counted() {
	# A 4 KiB ring buffer holds 11 events: a burst of 20000 must overflow it.
	check_forced_loss events_lost_ringbuf 20000 20000 --ringbuf-size 4096
}

test_short_lived_sub_cgroup_keeps_its_run() {
	# A script that puts a job in a sub-cgroup of its run and removes it at once: the
	# connect still belongs to the run.
	nrun --scope sub -- sh -c "cg=\$(grep '^0::' /proc/self/cgroup | cut -d: -f3); d=$CG2\$cg/job;
		mkdir \$d && sh -c 'echo \$\$ > $CG2'\$cg'/job/cgroup.procs; exec $PY $NETUTIL udp-connect 127.0.0.1 18017' &&
		rmdir \$d"
	expect_eq "$RC" 0 "exit status"
	expect_eq "$(q "$DB" "select c.scope, c.run_id = r.id, c.port from connections c, runs r")" "sub|1|18017" \
		"the sub-cgroup's connect, under the run"
}
