-- nettrail's SQLite schema.
--
-- The agent applies it with forward migrations: each "-- migration N" section below takes a
-- database from user_version N-1 to N, in one transaction. Sections are only ever appended;
-- a released section is never edited.
--
-- Times are stored as integer nanoseconds since the Unix epoch (*_ns) and shown as UTC
-- ISO-8601 text by virtual generated columns (time, started, ended), which cost nothing to
-- insert. Addresses are stored as text (addr) and as a key (addr_key: the 16 bytes of IPv6,
-- or of ::ffff:a.b.c.d for IPv4, as 32 lowercase hex digits) so that ORDER BY and BETWEEN work
-- across families and `select *` stays readable.

-- migration 1
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, also after a delete
    scope       TEXT NOT NULL,
    cgroup      TEXT NOT NULL,           -- path of the run's cgroup
    cgroup_id   INTEGER NOT NULL,
    command     TEXT NOT NULL,
    host        TEXT NOT NULL,
    mode        TEXT NOT NULL,           -- 'embedded' (run loaded BPF itself) or 'agent'
    boot_id     TEXT NOT NULL,           -- cgroup ids and pids are unique within one boot only
    started_ns  INTEGER NOT NULL,
    ended_ns    INTEGER,
    exit_status INTEGER,                 -- as a shell reports it: 128+N for signal N
    started     TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', started_ns / 1e9, 'unixepoch')) VIRTUAL,
    ended       TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', ended_ns / 1e9, 'unixepoch')) VIRTUAL
);
CREATE INDEX runs_by_cgroup ON runs (cgroup_id, boot_id);
CREATE INDEX runs_by_scope ON runs (scope, started_ns);

-- One row per cgroup that produced an event: how a cgroup id maps to a path, scope and run.
CREATE TABLE cgroups (
    id            INTEGER NOT NULL,      -- the cgroup id (inode of its cgroup2 directory)
    boot_id       TEXT NOT NULL,
    path          TEXT,                  -- NULL when the cgroup was gone before it was looked up
    scope         TEXT NOT NULL,
    run_id        INTEGER REFERENCES runs (id),
    first_seen_ns INTEGER NOT NULL,
    PRIMARY KEY (boot_id, id)
);

-- A process is (pid, start_ns), never a pid alone: pids are reused. Each program it runs
-- (exec_id counts its execs) is a row of its own, with that program's command line.
CREATE TABLE processes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused, also after a prune
    pid           INTEGER NOT NULL,
    start_ns      INTEGER NOT NULL,      -- task start, ns after boot
    exec_id       INTEGER NOT NULL,      -- the kernel's self_exec_id: changes at every exec
    ppid          INTEGER,
    uid           INTEGER,
    gid           INTEGER,
    comm          TEXT,
    exe           TEXT,                  -- NULL when the process was gone before /proc was read
    cmdline       TEXT,                  -- full from /proc, or the first bytes captured in BPF
    cmdline_source TEXT NOT NULL,        -- 'proc' or 'bpf'
    cgroup_id     INTEGER,
    scope         TEXT,
    run_id        INTEGER REFERENCES runs (id),
    first_seen_ns INTEGER NOT NULL,
    boot_id       TEXT NOT NULL,
    UNIQUE (pid, start_ns, exec_id, boot_id)
);
CREATE INDEX processes_by_run ON processes (run_id);

CREATE TABLE connections (
    id          INTEGER PRIMARY KEY,
    time_ns     INTEGER NOT NULL,
    process_id  INTEGER NOT NULL REFERENCES processes (id),
    tid         INTEGER NOT NULL,        -- the thread that made the attempt
    run_id      INTEGER REFERENCES runs (id),
    scope       TEXT NOT NULL,
    cgroup_id   INTEGER NOT NULL,
    kind        TEXT NOT NULL,           -- 'connect', or 'sendto' (first datagram per socket and destination)
    family      TEXT NOT NULL,           -- 'ipv4' or 'ipv6'
    proto       TEXT NOT NULL,           -- 'tcp' or 'udp'
    addr        TEXT NOT NULL,
    addr_key    TEXT NOT NULL,           -- 32 hex digits: sorts and ranges across families
    port        INTEGER NOT NULL,
    verdict     TEXT NOT NULL,           -- 'allowed', 'would_block' or 'blocked'
    domain      TEXT,
    rule        TEXT,
    time        TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', time_ns / 1e9, 'unixepoch')) VIRTUAL
);
CREATE INDEX connections_by_time ON connections (time_ns);
CREATE INDEX connections_by_dest ON connections (addr_key, port);
CREATE INDEX connections_by_process ON connections (process_id);
CREATE INDEX connections_by_run ON connections (run_id);

-- Counters over time, cumulative since their source started (an agent, or an embedded run):
-- events_lost_ringbuf (ring buffer full), events_lost_queue (agent queue full),
-- events_lost_store (a write failed), events_lost_undecodable (a sample that did not decode), events_stored.
CREATE TABLE stats (
    time_ns    INTEGER NOT NULL,
    source     TEXT NOT NULL,            -- 'agent:<pid>@<start, Unix s>' or 'run:<run id>'
    name       TEXT NOT NULL,
    value      INTEGER NOT NULL,
    time       TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', time_ns / 1e9, 'unixepoch')) VIRTUAL
);
CREATE INDEX stats_by_name ON stats (name, source, time_ns);

-- Small key/value state of the running agent (pid, synced_ns: everything that happened
-- before that time is committed).
CREATE TABLE agent_state (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- Every event lost, per source and reason: the last value of each counter.
CREATE VIEW events_lost AS
SELECT source, name AS reason, max(value) AS events
FROM stats
WHERE name LIKE 'events_lost_%'
GROUP BY source, name;

-- What each scope depends on: one row per destination.
CREATE VIEW dependencies AS
WITH g AS (
    SELECT scope, proto, addr_key, port,
           count(*) AS attempts,
           min(id) AS first_id,
           min(time_ns) AS first_ns,
           max(time_ns) AS last_ns,
           count(DISTINCT process_id) AS processes,
           group_concat(DISTINCT verdict) AS verdicts,
           max(domain) AS domain
    FROM connections
    GROUP BY scope, proto, addr_key, port
)
SELECT g.scope, g.domain, g.proto, c.addr, g.port, g.attempts,
       strftime('%Y-%m-%dT%H:%M:%fZ', g.first_ns / 1e9, 'unixepoch') AS first_seen,
       strftime('%Y-%m-%dT%H:%M:%fZ', g.last_ns / 1e9, 'unixepoch') AS last_seen,
       g.processes, g.verdicts, p.cmdline AS first_cmdline
FROM g
JOIN connections c ON c.id = g.first_id
LEFT JOIN processes p ON p.id = c.process_id;

-- migration 2
-- DNS: every query a watched process sent, as the agent's proxy saw and answered it, and
-- the A, AAAA and CNAME records of each answer. connections.domain (from migration 1) now
-- gets the name the scope resolved to that address.
CREATE TABLE dns_queries (
    id          INTEGER PRIMARY KEY,
    time_ns     INTEGER NOT NULL,        -- when the query reached the proxy
    process_id  INTEGER REFERENCES processes (id), -- NULL: the sender was not known
    tid         INTEGER,
    run_id      INTEGER REFERENCES runs (id),
    scope       TEXT NOT NULL,
    cgroup_id   INTEGER,
    qname       TEXT NOT NULL,           -- lowercase, no trailing dot; odd bytes as \DDD
    qtype       TEXT NOT NULL,           -- 'A', 'AAAA', 'MX', ..., or 'TYPE65534'
    rcode       TEXT,                    -- as answered: 'NOERROR', 'NXDOMAIN', 'SERVFAIL', ...
    transport   TEXT NOT NULL,           -- 'udp' or 'tcp'
    resolver    TEXT,                    -- the resolver the process asked, 'addr:port'
    upstream    TEXT,                    -- where the proxy sent it; NULL when not forwarded
    latency_ns  INTEGER,                 -- upstream round trip; NULL without an answer
    verdict     TEXT NOT NULL,           -- 'allowed', 'would_block' or 'blocked'
    rule        TEXT,
    answers     INTEGER NOT NULL,        -- records in the answer section, of any type
    error       TEXT,                    -- why the proxy answered itself: 'upstream timeout', ...
    time        TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', time_ns / 1e9, 'unixepoch')) VIRTUAL
);
CREATE INDEX dns_queries_by_time ON dns_queries (time_ns);
CREATE INDEX dns_queries_by_name ON dns_queries (qname);
CREATE INDEX dns_queries_by_process ON dns_queries (process_id);
CREATE INDEX dns_queries_by_run ON dns_queries (run_id);

-- The whole chain: CNAMEs in the order the answer gave them, then the addresses.
CREATE TABLE dns_answers (
    query_id    INTEGER NOT NULL REFERENCES dns_queries (id),
    name        TEXT NOT NULL,           -- the record's owner: the qname or a CNAME target
    type        TEXT NOT NULL,           -- 'A', 'AAAA' or 'CNAME'
    value       TEXT NOT NULL,           -- the address, or the CNAME's target
    addr_key    TEXT,                    -- for A and AAAA, as connections.addr_key
    ttl         INTEGER NOT NULL         -- seconds
);
CREATE INDEX dns_answers_by_query ON dns_answers (query_id);
CREATE INDEX dns_answers_by_addr ON dns_answers (addr_key);
CREATE INDEX connections_by_domain ON connections (domain);

-- Unchanged but for the domain: every name seen for the destination, not one of them.
DROP VIEW dependencies;
CREATE VIEW dependencies AS
WITH g AS (
    SELECT scope, proto, addr_key, port,
           count(*) AS attempts,
           min(id) AS first_id,
           min(time_ns) AS first_ns,
           max(time_ns) AS last_ns,
           count(DISTINCT process_id) AS processes,
           group_concat(DISTINCT verdict) AS verdicts,
           group_concat(DISTINCT domain) AS domain
    FROM connections
    GROUP BY scope, proto, addr_key, port
)
SELECT g.scope, g.domain, g.proto, c.addr, g.port, g.attempts,
       strftime('%Y-%m-%dT%H:%M:%fZ', g.first_ns / 1e9, 'unixepoch') AS first_seen,
       strftime('%Y-%m-%dT%H:%M:%fZ', g.last_ns / 1e9, 'unixepoch') AS last_seen,
       g.processes, g.verdicts, p.cmdline AS first_cmdline
FROM g
JOIN connections c ON c.id = g.first_id
LEFT JOIN processes p ON p.id = c.process_id;

-- migration 3
-- One sequence of event ids for connections and DNS queries (and later kinds): the event
-- feed (/v1/events) serves them in id order and resumes after an id, so an id is never
-- reused and ids grow in commit order. Writers take them from agent_state.event_seq under
-- their write lock. DNS queries recorded before this migration get ids after the
-- connections' (their answers follow).
-- Through negative ids: moved up in place, a row would land on one not yet moved.
UPDATE dns_answers SET query_id = query_id + coalesce((SELECT max(id) FROM connections), 0);
UPDATE dns_queries SET id = -id;
UPDATE dns_queries SET id = -id + coalesce((SELECT max(id) FROM connections), 0);
INSERT INTO agent_state (key, value)
SELECT 'event_seq', max(coalesce((SELECT max(id) FROM connections), 0),
                        coalesce((SELECT max(id) FROM dns_queries), 0))
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- migration 4
-- Policy: rules per domain pattern, per-scope defaults, and the history of every change.
-- `nettrail policy` writes them and bumps agent_state.rules_version in the same transaction;
-- a running agent polls that and applies the new rules to the DNS proxy and the record
-- within a second.
CREATE TABLE rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: rule_changes name it
    pattern     TEXT NOT NULL,           -- as written: 'github.com' or '=github.com'
    name        TEXT NOT NULL,           -- the domain: lowercase, no trailing dot
    match       TEXT NOT NULL CHECK (match IN ('suffix', 'exact')),
    mode        TEXT NOT NULL CHECK (mode IN ('allow', 'monitor', 'enforce')),
    scope       TEXT NOT NULL DEFAULT '', -- '' for every scope
    note        TEXT,
    created_ns  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    updated_ns  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL,
    created     TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', created_ns / 1e9, 'unixepoch')) VIRTUAL,
    updated     TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', updated_ns / 1e9, 'unixepoch')) VIRTUAL,
    UNIQUE (scope, name, match)
);

-- What applies where no rule matches: 'allow' when a scope has no row (scope '' is the
-- default of every scope without its own).
CREATE TABLE scope_defaults (
    scope       TEXT PRIMARY KEY,
    mode        TEXT NOT NULL CHECK (mode IN ('allow', 'monitor', 'enforce')),
    updated_ns  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL
) WITHOUT ROWID;

-- Every change, for the timeline after an incident. Ids come from the event sequence
-- (agent_state.event_seq), so changes fall in order among the events around them.
CREATE TABLE rule_changes (
    id          INTEGER PRIMARY KEY,
    time_ns     INTEGER NOT NULL,
    by          TEXT NOT NULL,           -- 'alice (uid 0 via sudo from uid 1000)', 'root (uid 0)'
    action      TEXT NOT NULL CHECK (action IN ('add', 'set', 'rm', 'default')),
    rule_id     INTEGER,                 -- NULL for a change of a scope default
    scope       TEXT NOT NULL,           -- '' for every scope
    pattern     TEXT,                    -- NULL for a change of a scope default
    old_mode    TEXT,                    -- NULL when the rule or default is new
    new_mode    TEXT,                    -- NULL when the rule was removed
    note        TEXT,
    time        TEXT GENERATED ALWAYS AS (strftime('%Y-%m-%dT%H:%M:%fZ', time_ns / 1e9, 'unixepoch')) VIRTUAL
);
CREATE INDEX rule_changes_by_time ON rule_changes (time_ns);

-- Which rule decided a verdict (rule holds its pattern, or 'default' for a scope default).
ALTER TABLE connections ADD COLUMN rule_id INTEGER;
ALTER TABLE dns_queries ADD COLUMN rule_id INTEGER;
INSERT INTO agent_state (key, value) VALUES ('rules_version', 0) ON CONFLICT (key) DO NOTHING;
