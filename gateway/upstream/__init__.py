"""Calls to the gRPC services: the pool of instances of each service (channels, health watch,
a circuit breaker each, round-robin) and the call chain (deadline -> retry -> breaker -> pick)."""
