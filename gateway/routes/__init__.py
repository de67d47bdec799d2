"""The REST surface: one module per resource, each a route table plus its FastAPI endpoints."""
