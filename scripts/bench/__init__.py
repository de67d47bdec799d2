"""`make bench`: Portico measured next to a bare FastAPI floor and Envoy's gRPC-JSON
transcoder, in one run (see run.py)."""
