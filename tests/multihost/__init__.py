"""The multi-host tier: Portico spread over three simulated machines (network namespaces), a
load balancer, a Redis Cluster, a PostgreSQL primary and standby, and faults injected under
load. See conftest.py for when it runs, and README.md ("Running on more than one machine")."""
