"""The free ports the stack and the tests take: below the kernel's ephemeral range, where no
outgoing connection can take one between the probe and the server's bind, and never the same
twice in a process."""

import socket
from pathlib import Path

from scripts.devstack.servers import LOCALHOST, find_free_port


def test_free_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [find_free_port() for _ in range(300)]

    assert all(port < low for port in ports)
    assert len(set(ports)) == len(ports)
    with socket.socket() as sock:
        sock.bind((LOCALHOST, ports[-1]))  # nothing holds it


def test_a_port_for_several_hosts_is_free_on_each() -> None:
    hosts = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    port = find_free_port(hosts)
    bound = [socket.socket() for _ in hosts]
    try:
        for sock, host in zip(bound, hosts):
            sock.bind((host, port))
    finally:
        for sock in bound:
            sock.close()
