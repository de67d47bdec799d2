"""The development stack (`portico up`, the tests, the benchmark): private PostgreSQL, Redis and
SecantusDB servers, migrated schemas, service instances and the gateway as child processes."""
