"""Portico's gRPC services (user, product, order), their shared runtime and the `portico` CLI."""
