# The two commands of the README: `make up` runs the stack, `make test` runs every test tier.
PY := .venv/bin/python

.PHONY: bootstrap test up protos bench

bootstrap:
	@scripts/bootstrap.sh

protos: bootstrap
	@scripts/gen_protos.sh

test: bootstrap
	@# wrk: the benchmark's smoke test drives load with it; promtool checks the alert rules;
	@# checkov checks deploy/ (in an environment of its own, .venv/tools/checkov); ip and haproxy
	@# serve the multi-host tier (tests/multihost)
	@scripts/bootstrap.sh wrk promtool checkov ip haproxy
	$(PY) -m pytest

up: bootstrap
	@# Regenerate the gRPC code when a proto changed since it was made (the output is the same
	@# byte for byte otherwise: grpcio-tools is pinned).
	@[ -z "$$(find protos -name '*.proto' -newer generated/portico/__init__.py)" ] || \
		scripts/gen_protos.sh
	.venv/bin/portico up

# Portico next to a bare FastAPI floor and Envoy, in one run: `make bench DURATION=3` for a
# short one. Results in bench-results/ (see scripts/bench/run.py).
DURATION ?= 10
MEMORY_SECONDS ?= 120
bench: bootstrap
	@scripts/bootstrap.sh wrk
	$(PY) -m scripts.bench.run --duration $(DURATION) --memory-seconds $(MEMORY_SECONDS)
