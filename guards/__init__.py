"""Guard chain for the mesh: policies a security team owns, fast detectors, streaming guards, audit.

The router mounts `guards.grpc_adapter.guard_inference_servicer` around its servicer and serves
`guards.policy_service.PolicyServicer`; nothing here imports the router.
"""
