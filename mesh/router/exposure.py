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
from mesh.contract.tls import refuse_plaintext_off_loopback

SWITCH = "router.insecure: true"


def refuse_plaintext_router(config: RouterConfig, listen: str) -> None:
    """Raise PlaintextOffLoopback for a listener exposed in plaintext (see the module doc).

    Reads the registration token (TokenUnavailable names a broken source).
    """
    if config.insecure:
        return
    _, token = config.registry.resolved_mode()
    if token is not None:
        return
    also = "and without a registration token"
    refuse_plaintext_off_loopback(
        "the router", listen, config.tls, insecure=False, also=also, switch=SWITCH
    )
    if config.http.listen is not None:
        refuse_plaintext_off_loopback(
            "the router's HTTP front",
            config.http.listen,
            config.http.tls,
            insecure=False,
            also=also,
            switch=SWITCH,
        )
