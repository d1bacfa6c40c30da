# The two commands of the README:
#   make run    start the server (embedded SQLite in /var/lib/wasmnet, socket /run/wasmnet/wasmnet.sock,
#               API also on http://127.0.0.1:7878 with the token it prints)
#   make test   install what the tests need, then run the whole suite
# Everything else here is a helper for those two.

CARGO ?= cargo

.PHONY: run test deps build-deps bench

run: build-deps
	$(CARGO) run -- serve --listen 127.0.0.1:7878

test: deps
	$(CARGO) test --workspace --locked
	cd policies && $(CARGO) test --workspace --locked

# Debian packages the build needs (protoc, for etcd's gRPC API), and the suite (CI and a fresh
# machine run as root).
BUILD_DEBS := protobuf-compiler
DEBS := $(BUILD_DEBS) nftables iptables iproute2 iputils-ping util-linux chromium chromium-driver etcd-server openssl \
	curl docker.io podman busybox-static containernetworking-plugins
build-deps:
	@$(MAKE) --no-print-directory deps DEBS="$(BUILD_DEBS)"
deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Benchmarks are not part of the suite (see README, "Benchmarks").
bench:
	$(CARGO) bench -p wasmnet-engine --bench ipam
	$(CARGO) bench -p wasmnet-policy --bench calls
	web/benches/list_networks.sh
