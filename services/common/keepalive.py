"""Keepalive of the long-lived client channels: the gateway's to each instance, and the order
service's to the user and product services.

A peer that vanished without a reset (its host cut off the network, or powered off) never
answers again, and without pings its connection looks open for as long as TCP retransmits,
minutes: calls sent on it hang until their deadlines, and grpc never resolves the name again.
With a ping after each second without news from the peer, to be answered within one, the
transport is closed within about 2 s: the calls on it fail UNAVAILABLE (retried on another
instance where that is safe) and the instance is taken out (the gateway's health watch breaks;
grpc's round robin resolves again).
Found by the multi-host tests (tests/multihost/test_5_host_cut.py). The servers accept pings
this frequent (services/common/server.py; tests/integration/runtime/test_keepalive.py).
"""

CLIENT_KEEPALIVE: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 1_000),
    ("grpc.keepalive_timeout_ms", 1_000),
    # Idle channels too, and with no limit on pings between data frames: a dead peer is found
    # before a call is sent to it.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
