"""The router front node: routing table, policies, resilience, cache and money."""
