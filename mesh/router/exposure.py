"""Whether a router may start on the addresses it was given, in the transport it was given.

A router reachable from other machines in plaintext carries every tenant's prompts and API keys
in the clear; without a registration token its registry is also closed to nodes only by mode
off. So such a router refuses to start (PLAINTEXT_OFF_LOOPBACK) unless router.tls serves TLS,
a registration token is configured, or `router.insecure: true` says it is meant. The HTTP
front follows the same rule with its own `router.http.tls`. Checked at start, before binding,
because `--listen` and the token's environment variable are only known then.
"""

from __future__ import annotations

from mesh.config import RouterConfig
from mesh.config.tls import plaintext_exposed
from mesh.contract.tls import refuse_plaintext_off_loopback

SWITCH = "router.insecure: true"


def refuse_plaintext_router(config: RouterConfig, listen: str) -> None:
    """Raise PlaintextOffLoopback for a listener exposed in plaintext (see the module doc).

    Reads the registration token when a door is exposed (TokenUnavailable names a broken
    source).
    """
    doors = [("the router", listen, config.tls)]
    if config.http.listen is not None:
        doors.append(("the router's HTTP front", config.http.listen, config.http.tls))
    exposed = [door for door in doors if plaintext_exposed(door[1], door[2], config.insecure)]
    if not exposed or config.registry.resolved_mode()[1] is not None:
        return
    what, address, tls = exposed[0]
    refuse_plaintext_off_loopback(
        what,
        address,
        tls,
        insecure=False,
        also="and without a registration token",
        switch=SWITCH,
    )
