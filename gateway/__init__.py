"""Portico's REST edge: FastAPI in front of the User, Product and Order gRPC services."""
