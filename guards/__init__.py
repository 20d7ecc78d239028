"""Guard chain for the mesh: policies a security team owns, fast detectors, streaming guards, audit.

Transport-neutral: the router's pipeline calls `guards.guarded_request.GuardedRequest` (input and
output chains, audit) and `guards.streaming.StreamGuard` (the hold-back window) from its guard
stages, and serves `guards.policy_service.PolicyServicer`; nothing here imports the router.
"""
