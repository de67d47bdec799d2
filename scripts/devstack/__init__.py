"""The development stack (`portico up`, the tests, the benchmark): private PostgreSQL, Redis and
SecantusDB servers, migrated schemas, service instances and the gateway as child processes."""

import os

# The stack forks its children (Popen) after it has used gRPC itself (the health checks of the
# services, over TLS). gRPC's fork support then runs a pre-fork handler that can wait forever
# for its own timer thread (seen: `portico up` and the tests hanging in fork()). Nothing here
# uses gRPC across a fork, so it is turned off before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
