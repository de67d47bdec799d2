# The two commands of the README: `make up` runs the stack, `make test` runs every test tier.
PY := .venv/bin/python

.PHONY: bootstrap test up protos bench

bootstrap:
	@scripts/bootstrap.sh

protos: bootstrap
	@scripts/gen_protos.sh

test: bootstrap
	$(PY) -m pytest

up: bootstrap
	.venv/bin/portico up
