"""The zero-trust tests run on the order tests' stack: a User server, two Product servers and
an Order server in this process, over mTLS with the session's PKI, with Redis for revocations,
against the module's own databases."""

from tests.integration.order.conftest import base_settings, stack  # noqa: F401 (fixtures)
