# The two commands of the README:
#   make run    start the server (embedded SQLite in /var/lib/wasmnet, socket /run/wasmnet/wasmnet.sock,
#               API also on http://127.0.0.1:7878 with the token it prints)
#   make test   install what the tests need, then run the whole suite
# Everything else here is a helper for those two.

CARGO ?= cargo

.PHONY: run test deps build-deps bench install uninstall

run: build-deps
	$(CARGO) run -- serve --listen 127.0.0.1:7878

test: deps
	$(CARGO) test --workspace --locked
	cd policies && $(CARGO) test --workspace --locked

# Debian packages the build needs (protoc, for etcd's gRPC API), and the suite (CI and a fresh
# machine run as root).
BUILD_DEBS := protobuf-compiler
DEBS := $(BUILD_DEBS) nftables iptables iproute2 iputils-ping util-linux chromium chromium-driver etcd-server openssl \
	curl docker.io podman busybox-static containernetworking-plugins bind9-dnsutils dnsmasq-base
build-deps:
	@$(MAKE) --no-print-directory deps DEBS="$(BUILD_DEBS)"
# Installed without what they recommend (Prometheus recommends node-exporter and its
# collectors, 30 packages the suite does not use).
LEAN_DEBS := prometheus
deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@if [ "$(DEBS)" != "$(BUILD_DEBS)" ]; then missing=""; \
	for p in $(LEAN_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi; fi

# Benchmarks are not part of the suite (see README, "Benchmarks").
bench:
	$(CARGO) bench -p wasmnet-engine --bench ipam
	$(CARGO) bench -p wasmnet-policy --bench calls
	web/benches/list_networks.sh

# Installs the two binaries (wasmnet-cni also as CNI's `wasmnet` in CNI_BIN_DIR), the systemd
# unit and, unless one exists, the default config. Then: systemctl daemon-reload &&
# systemctl enable --now wasmnet (before Docker: see README, "Install").
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
CNI_BIN_DIR ?= /opt/cni/bin
UNIT_DIR ?= /etc/systemd/system
install: build-deps
	$(CARGO) build --release --locked --bins
	install -D -m 755 target/release/wasmnet $(DESTDIR)$(BINDIR)/wasmnet
	install -D -m 755 target/release/wasmnet-cni $(DESTDIR)$(BINDIR)/wasmnet-cni
	install -D -m 755 target/release/wasmnet-cni $(DESTDIR)$(CNI_BIN_DIR)/wasmnet
	mkdir -p $(DESTDIR)$(UNIT_DIR)
	sed 's|@BINDIR@|$(BINDIR)|' packaging/wasmnet.service > $(DESTDIR)$(UNIT_DIR)/wasmnet.service
	test -e $(DESTDIR)/etc/wasmnet/config.toml || install -D -m 644 packaging/config.toml $(DESTDIR)/etc/wasmnet/config.toml

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/wasmnet $(DESTDIR)$(BINDIR)/wasmnet-cni $(DESTDIR)$(CNI_BIN_DIR)/wasmnet $(DESTDIR)$(UNIT_DIR)/wasmnet.service
