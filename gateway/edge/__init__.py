"""The edge: what every HTTP request goes through before and after its route, as one pipeline
(request id, guards, sign-in, rate limit, cache, the call), the server protocol's own limits,
and the access log."""
