"""The edge's policies as plain objects (rate limits, the response cache, sign-in and access
rules), and the one owner of their Redis calls and of Redis health."""
