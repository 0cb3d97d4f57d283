# nettrail — build, test, benchmark, install.
#
#   make deps      install the Debian 12 packages needed to build and test (root)
#   make           build build/nettrail
#   make example   run the built-in example under `nettrail run`
#   make check     unit tests, then privileged integration tests (root, BPF)
#   make bench     benchmarks, printed as ratios against a baseline
#   make install   PREFIX=/usr/local DESTDIR=
#
# V=1 shows full commands; SANITIZE=1 builds with ASan+UBSan.

.DELETE_ON_ERROR:
.SUFFIXES:
MAKEFLAGS += --no-builtin-rules

ifeq ($(SANITIZE),1)
BUILD    ?= build/sanitize
else
BUILD    ?= build
endif
PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
CLANG    ?= clang
BPFTOOL  ?= $(firstword $(wildcard /usr/sbin/bpftool /sbin/bpftool) bpftool)
VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-7s %s\n' $(1) $(2);
endif

# Debian 12 packages: what building needs, then what the tests and benchmarks drive.
BUILD_PKGS := make gcc clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev \
	libsqlite3-dev libmicrohttpd-dev libprotobuf-c-dev protobuf-c-compiler libcmocka-dev
TEST_PKGS  := sqlite3 python3 curl netcat-openbsd iproute2 util-linux procps dnsmasq-base \
	bind9-dnsutils prometheus protobuf-compiler python3-protobuf dnsperf musl-tools

PKGS      := libbpf libelf zlib sqlite3 libmicrohttpd libprotobuf-c
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter
BASE_CFLAGS := -std=gnu11 -O2 -g $(WARN) -D_GNU_SOURCE -DNT_VERSION='"$(VERSION)"' \
	-I$(BUILD) -Iagent -Ibpf -I$(BUILD)/exporters -Iexporters -MMD -MP
ifeq ($(SANITIZE),1)
BASE_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
BASE_LDFLAGS += -fsanitize=address,undefined
endif
ALL_CFLAGS  = $(BASE_CFLAGS) $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(BASE_LDFLAGS) $(LDFLAGS)
LIBS        = $(PKG_LIBS) -lpthread

BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -I$(BUILD) -Ibpf \
	$(if $(MULTIARCH),-I/usr/include/$(MULTIARCH))

# The modules of the agent; main.c and the commands are only in the binary.
CORE_SRCS := agent/log.c agent/util.c agent/parse.c agent/addr.c agent/cgroup.c agent/procfs.c \
	agent/event.c agent/store.c agent/queue.c agent/keymap.c agent/report.c agent/dns.c \
	agent/dnsproxy.c agent/domains.c agent/policy.c agent/rules.c agent/blocks.c \
	agent/suggest.c
BIN_SRCS  := $(CORE_SRCS) exporters/metrics.c exporters/http.c \
	agent/loader.c agent/tracker.c agent/runtime.c agent/cmd_agent.c agent/cmd_run.c \
	agent/cmd_query.c agent/cmd_policy.c agent/main.c agent/schema_blob.c
BIN_SRCS  += exporters/feed.c
BIN_OBJS  := $(BIN_SRCS:%.c=$(BUILD)/%.o)
# The feed's messages, generated from schema/nettrail.proto into the build tree.
BIN_OBJS  += $(BUILD)/exporters/nettrail.pb-c.o

UNIT_TESTS := addr cgroup procfs event store parse keymap queue dns domains dnsproxy feed policy rules suggest blocks
UNIT_BINS  := $(UNIT_TESTS:%=$(BUILD)/tests/test_%)

.PHONY: all deps example check unit fuzz integration bench install clean
all: $(BUILD)/nettrail

$(BUILD) $(BUILD)/agent $(BUILD)/bpf $(BUILD)/tests:
	$(Q)mkdir -p $@

# ---- BPF: object, then skeleton -------------------------------------------------------------
$(BUILD)/bpf/nettrail.bpf.o: bpf/nettrail.bpf.c bpf/nettrail.h bpf/kernel.bpf.h Makefile | $(BUILD)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/nettrail.skel.h: $(BUILD)/bpf/nettrail.bpf.o | $(BUILD)
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name nettrail_bpf > $@

# ---- agent --------------------------------------------------------------------------------
$(BUILD)/agent/%.o: agent/%.c Makefile | $(BUILD)/agent
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/exporters/%.o: exporters/%.c Makefile
	$(Q)mkdir -p $(@D)
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# protoc-c writes nettrail.pb-c.c and .h in one run: a pattern rule with two targets.
$(BUILD)/exporters/%.pb-c.c $(BUILD)/exporters/%.pb-c.h: schema/%.proto Makefile
	$(Q)mkdir -p $(@D)
	$(call msg,PROTOC,$@)
	$(Q)protoc-c --c_out=$(@D) --proto_path=schema $<
$(BUILD)/exporters/nettrail.pb-c.o: $(BUILD)/exporters/nettrail.pb-c.c $(BUILD)/exporters/nettrail.pb-c.h
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/exporters/feed.o $(BUILD)/tests/test_feed.o: $(BUILD)/exporters/nettrail.pb-c.h

$(BUILD)/agent/loader.o: $(BUILD)/nettrail.skel.h
$(BUILD)/agent/schema_blob.o: schema/nettrail.sql

$(BUILD)/nettrail: $(BIN_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $^ $(LIBS) -o $@

# ---- tests --------------------------------------------------------------------------------
# One cmocka binary per module, linked with only what it tests.
$(BUILD)/tests/%.o: tests/unit/%.c Makefile | $(BUILD)/tests
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags cmocka 2>/dev/null) -c $< -o $@

TEST_LIBS = $(LIBS) $(shell pkg-config --libs cmocka 2>/dev/null)
$(BUILD)/tests/test_addr:   $(BUILD)/tests/test_addr.o $(BUILD)/agent/addr.o
$(BUILD)/tests/test_parse:  $(BUILD)/tests/test_parse.o $(BUILD)/agent/parse.o
$(BUILD)/tests/test_cgroup: $(BUILD)/tests/test_cgroup.o $(BUILD)/agent/cgroup.o $(BUILD)/agent/util.o
$(BUILD)/tests/test_procfs: $(BUILD)/tests/test_procfs.o $(BUILD)/agent/procfs.o $(BUILD)/agent/util.o
$(BUILD)/tests/test_event:  $(BUILD)/tests/test_event.o $(BUILD)/agent/event.o $(BUILD)/agent/addr.o
$(BUILD)/tests/test_store:  $(BUILD)/tests/test_store.o $(BUILD)/agent/store.o $(BUILD)/agent/addr.o \
	$(BUILD)/agent/dns.o $(BUILD)/agent/event.o $(BUILD)/agent/report.o $(BUILD)/agent/policy.o \
	$(BUILD)/agent/schema_blob.o $(BUILD)/agent/log.o
$(BUILD)/tests/test_keymap: $(BUILD)/tests/test_keymap.o $(BUILD)/agent/keymap.o
$(BUILD)/tests/test_queue:  $(BUILD)/tests/test_queue.o $(BUILD)/agent/queue.o $(BUILD)/agent/policy.o
$(BUILD)/tests/test_dns: $(BUILD)/tests/test_dns.o $(BUILD)/agent/dns.o
$(BUILD)/tests/test_domains: $(BUILD)/tests/test_domains.o $(BUILD)/agent/domains.o
$(BUILD)/tests/test_policy: $(BUILD)/tests/test_policy.o $(BUILD)/agent/policy.o
$(BUILD)/tests/test_blocks: $(BUILD)/tests/test_blocks.o $(BUILD)/agent/blocks.o $(BUILD)/agent/policy.o
$(BUILD)/tests/test_suggest: $(BUILD)/tests/test_suggest.o $(BUILD)/agent/suggest.o $(BUILD)/agent/rules.o \
	$(BUILD)/agent/policy.o $(BUILD)/agent/parse.o $(BUILD)/agent/store.o $(BUILD)/agent/addr.o \
	$(BUILD)/agent/dns.o $(BUILD)/agent/event.o $(BUILD)/agent/report.o $(BUILD)/agent/schema_blob.o \
	$(BUILD)/agent/log.o
$(BUILD)/tests/test_rules: $(BUILD)/tests/test_rules.o $(BUILD)/agent/rules.o $(BUILD)/agent/policy.o \
	$(BUILD)/agent/parse.o \
	$(BUILD)/agent/store.o $(BUILD)/agent/addr.o $(BUILD)/agent/dns.o $(BUILD)/agent/event.o \
	$(BUILD)/agent/report.o $(BUILD)/agent/schema_blob.o $(BUILD)/agent/log.o
$(BUILD)/tests/test_dnsproxy: $(BUILD)/tests/test_dnsproxy.o $(BUILD)/agent/dnsproxy.o $(BUILD)/agent/dns.o \
	$(BUILD)/agent/addr.o $(BUILD)/agent/log.o
$(BUILD)/tests/test_feed: $(BUILD)/tests/test_feed.o $(BUILD)/exporters/feed.o \
	$(BUILD)/exporters/nettrail.pb-c.o $(BUILD)/agent/store.o $(BUILD)/agent/dns.o $(BUILD)/agent/addr.o \
	$(BUILD)/agent/event.o $(BUILD)/agent/report.o $(BUILD)/agent/policy.o $(BUILD)/agent/schema_blob.o \
	$(BUILD)/agent/log.o
$(UNIT_BINS):
	$(call msg,LINK,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $^ $(TEST_LIBS) -o $@

unit: $(UNIT_BINS)
	$(Q)set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

integration: $(BUILD)/nettrail
	$(Q)NETTRAIL=$(abspath $(BUILD)/nettrail) tests/integration/run-all

# libFuzzer targets for the parsers of untrusted bytes, each run for FUZZ_SECONDS; the DNS
# parser, which takes packets from anyone who can reach the proxy, for DNS_FUZZ_SECONDS.
FUZZ_SECONDS ?= 10
DNS_FUZZ_SECONDS ?= 30
FUZZ_TARGETS := event procfs mounts dns
FUZZ_BINS := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)
FUZZ_CFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -Iagent -Ibpf $(WARN) \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
$(BUILD)/fuzz/fuzz_event: tests/fuzz/fuzz_event.c agent/event.c agent/addr.c
$(BUILD)/fuzz/fuzz_procfs: tests/fuzz/fuzz_procfs.c agent/procfs.c agent/util.c
$(BUILD)/fuzz/fuzz_mounts: tests/fuzz/fuzz_mounts.c agent/cgroup.c agent/util.c
$(BUILD)/fuzz/fuzz_dns: tests/fuzz/fuzz_dns.c agent/dns.c
$(FUZZ_BINS): Makefile
	$(Q)mkdir -p $(@D)
	$(call msg,FUZZ,$@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $(filter %.c,$^) -o $@

# The committed corpus seeds each run; what a run discovers goes to a scratch directory.
fuzz: $(FUZZ_BINS)
	$(Q)set -e; for t in $(FUZZ_TARGETS); do \
		scratch=$(BUILD)/fuzz/corpus-$$t; mkdir -p $$scratch; \
		secs=$(FUZZ_SECONDS); [ $$t = dns ] && secs=$(DNS_FUZZ_SECONDS); \
		echo "== fuzz_$$t for $$secs s"; \
		$(BUILD)/fuzz/fuzz_$$t -max_total_time=$$secs -max_len=4096 \
			-artifact_prefix=$(BUILD)/fuzz/crash-$$t- $$scratch tests/fuzz/corpus/$$t 2>&1 \
			| grep -E '^#[0-9]+[[:space:]]+DONE|ERROR|SUMMARY|runtime error' || true; \
		test -z "$$(ls $(BUILD)/fuzz/crash-$$t-* 2>/dev/null)" || { echo "fuzz_$$t: crash"; exit 1; }; \
	done

check: unit fuzz integration

$(BUILD)/bench/loadgen: bench/loadgen.c Makefile
	$(Q)mkdir -p $(@D)
	$(call msg,CC,$@)
	$(Q)$(CC) -std=gnu11 -O2 $(WARN) -pthread $< -o $@

# The feed encoder alone: `make $(BUILD)/bench/feedbench` then feedbench /tmp/feed.db.
$(BUILD)/bench/feedbench: bench/feedbench.c $(BUILD)/exporters/feed.o $(BUILD)/exporters/nettrail.pb-c.o \
	$(BUILD)/agent/store.o $(BUILD)/agent/dns.o $(BUILD)/agent/addr.o $(BUILD)/agent/event.o \
	$(BUILD)/agent/schema_blob.o $(BUILD)/agent/log.o Makefile
	$(Q)mkdir -p $(@D)
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(filter-out Makefile,$^) $(LIBS) -o $@

# /metrics scrape latency against /healthz, on the agent's HTTP server with synthetic metrics.
$(BUILD)/bench/httpbench: bench/httpbench.c $(BUILD)/exporters/http.o $(BUILD)/exporters/metrics.o \
	$(BUILD)/exporters/feed.o $(BUILD)/exporters/nettrail.pb-c.o $(BUILD)/agent/parse.o \
	$(BUILD)/agent/log.o Makefile
	$(Q)mkdir -p $(@D)
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(filter-out Makefile,$^) $(LIBS) -o $@

# Rule matching: the rule set against a linear scan of the same rules, in one run.
$(BUILD)/bench/policybench: bench/policybench.c $(BUILD)/agent/policy.o $(BUILD)/agent/blocks.o \
	Makefile
	$(Q)mkdir -p $(@D)
	$(call msg,CC,$@)
	$(Q)$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(filter-out Makefile,$^) $(LIBS) -o $@

BENCH_BINS := $(BUILD)/bench/loadgen $(BUILD)/bench/feedbench $(BUILD)/bench/httpbench \
	$(BUILD)/bench/policybench
bench: $(BUILD)/nettrail $(BENCH_BINS)
	$(Q)NETTRAIL=$(abspath $(BUILD)/nettrail) LOADGEN=$(abspath $(BUILD)/bench/loadgen) \
		FEEDBENCH=$(abspath $(BUILD)/bench/feedbench) HTTPBENCH=$(abspath $(BUILD)/bench/httpbench) \
		POLICYBENCH=$(abspath $(BUILD)/bench/policybench) \
		bench/run

example: $(BUILD)/nettrail
	$(Q)rm -f $(BUILD)/example.db*
	@# The example's DNS server runs outside the watched cgroup, as a site's resolver would.
	$(Q)python3 docs/example/resolver.py 18453 & dns=$$!; \
	$(BUILD)/nettrail run --scope example --db $(BUILD)/example.db --upstream 127.0.0.1:18453 \
		-- ./docs/example/deploy.sh; rc=$$?; kill $$dns; exit $$rc
	@echo
	@echo "Query it:  sqlite3 $(BUILD)/example.db 'select * from dependencies'"

# ---- packages -----------------------------------------------------------------------------
# Installs only what is missing, so it is cheap to run before every build.
deps:
	$(Q)missing=$$(for p in $(BUILD_PKGS) $(TEST_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		[ "$$(id -u)" = 0 ] || { echo "make deps: must run as root to install packages" >&2; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "all packages present"; fi

install: $(BUILD)/nettrail
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/nettrail
	install -m 0755 $(BUILD)/nettrail $(DESTDIR)$(PREFIX)/bin/nettrail
	install -m 0644 schema/nettrail.sql $(DESTDIR)$(PREFIX)/share/nettrail/

clean:
	rm -rf $(BUILD)

-include $(wildcard $(BUILD)/agent/*.d $(BUILD)/tests/*.d)
-include $(wildcard $(BUILD)/exporters/*.d)
