"""The simulated network: one namespace per machine on one bridge, in a namespace of its own.

```
                 pmh-switch: bridge pmh-br (no address)
   +-----------+-----------+-----------+-----------+-----------+
 pmh-h1      pmh-h2      pmh-h3      pmh-lb      pmh-dns    pmh-client
 .11 (+.21)  .12         .13         .20         .53        .100, .101-.164
```

Each machine's `eth0` is one end of a veth pair whose other end (named after the machine) is a
port of the bridge; the pair is made straight inside the two namespaces, so no link of the tier
ever appears in the root namespace. Cutting a machine off is `ip link set down` on its bridge
port: its peers then see a silent black hole (no reset, no ICMP), as when a machine loses its
network or power. h1's second address (.21) is where a new instance comes up when another host
is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.multihost.namespaces import SUBNET, Netns, blackhole, sweep

_NET = SUBNET.rsplit(".", 1)[0]          # "10.199.73"
_PREFIX_LENGTH = SUBNET.rsplit("/", 1)[1]


def address(last: int) -> str:
    return f"{_NET}.{last}"


@dataclass
class Machine:
    """A namespace with an address (and maybe more) on the bridge."""

    name: str
    addresses: list[str]
    netns: Netns = field(init=False)

    def __post_init__(self) -> None:
        self.netns = Netns(self.name)

    @property
    def address(self) -> str:
        return self.addresses[0]


HOSTS = ("h1", "h2", "h3")
SPARE = address(21)                        # a second address of h1
CLIENT_SOURCES = [address(101 + i) for i in range(64)]


class Network:
    """Builds the namespaces and the bridge (after sweeping leftovers), cuts machines off and
    takes everything down again."""

    def __init__(self) -> None:
        self.machines = {
            "h1": Machine("h1", [address(11), SPARE]),
            "h2": Machine("h2", [address(12)]),
            "h3": Machine("h3", [address(13)]),
            "lb": Machine("lb", [address(20)]),
            "dns": Machine("dns", [address(53)]),
            "client": Machine("client", [address(100), *CLIENT_SOURCES]),
        }
        self.switch = Netns("switch")
        self.swept: list[str] = []

    def __getitem__(self, name: str) -> Machine:
        return self.machines[name]

    def build(self) -> Network:
        self.swept = sweep()
        blackhole()      # first: from here on nothing for SUBNET can leave the machine
        self.switch.create()
        self.switch.ip("link", "add", "pmh-br", "type", "bridge")
        self.switch.ip("link", "set", "pmh-br", "up")
        for machine in self.machines.values():
            ns = machine.netns.create()
            port = self._port(machine)
            ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", port,
                  "netns", self.switch.name)
            self.switch.ip("link", "set", port, "master", "pmh-br", "up")
            for each in machine.addresses:
                ns.ip("addr", "add", f"{each}/{_PREFIX_LENGTH}", "dev", "eth0")
            ns.ip("link", "set", "eth0", "up")
        return self

    def cut(self, name: str) -> None:
        """Machine `name` loses its network: its bridge port goes down."""
        self.switch.ip("link", "set", self._port(self.machines[name]), "down")

    def mend(self, name: str) -> None:
        self.switch.ip("link", "set", self._port(self.machines[name]), "up")

    def teardown(self) -> list[str]:
        """Everything the tier made, gone (processes in its namespaces killed)."""
        return sweep()

    @staticmethod
    def _port(machine: Machine) -> str:
        return f"pmh-{machine.name}"
