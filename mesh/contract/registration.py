"""The registry protocol's shared words: the registration lease and why a router refuses a node.

Router and nodes both import this, so the metadata key and the refusal reasons cannot drift.

A registration lease binds a routing-table entry to whoever registered it. The router answers a
successful Register with a fresh random lease in the `x-mesh-registration-lease` trailing
metadata (or echoes the one presented, when it refreshes that holder's entry); Heartbeat,
Deregister and a refreshing Register of that node id must present it. With one shared
registration token every node holds the same token, so the token alone cannot stop one node
(or anyone, in open mode) from deregistering or re-pointing another's entry; the lease can.
The router keeps only the lease's SHA-256.
"""

from __future__ import annotations

# A name, not a secret: the metadata key the lease travels in.
LEASE_HEADER = "x-mesh-registration-lease"

# ErrorInfo reasons of RegistryService refusals (the token ones live in mesh.router.registry_auth:
# NODE_TOKEN_MISSING, NODE_TOKEN_REJECTED).
REGISTRATION_DISABLED = "REGISTRATION_DISABLED"
"""PERMISSION_DENIED: the router takes no registrations (router.registry.mode off)."""
NODE_ID_STATIC = "NODE_ID_STATIC"
"""ALREADY_EXISTS (Register) / PERMISSION_DENIED (Heartbeat, Deregister): a static upstream's id."""
NODE_ID_TAKEN = "NODE_ID_TAKEN"
"""ALREADY_EXISTS: another holder's live registration has this id (RetryInfo: until its TTL)."""
NOT_REGISTRATION_OWNER = "NOT_REGISTRATION_OWNER"
"""PERMISSION_DENIED: Heartbeat or Deregister without the lease of that node's registration."""
REGISTRY_RATE_LIMITED = "REGISTRY_RATE_LIMITED"
"""RESOURCE_EXHAUSTED: this peer made too many registry writes (RetryInfo: when to retry)."""
REGISTRY_FULL = "REGISTRY_FULL"
"""RESOURCE_EXHAUSTED: the table holds router.registry.max_registered_nodes registered nodes."""
REGISTRATION_TOO_LARGE = "REGISTRATION_TOO_LARGE"
"""INVALID_ARGUMENT: a registry message above its size limit, refused before it is parsed."""
