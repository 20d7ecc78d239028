"""The content-safety guard's categories and bounds, as a policy file is checked against them.

Apart from content_safety.py (numpy, the model files) so that checking a policy, or running
one without this guard, imports neither.
"""

from __future__ import annotations

CATEGORIES = ("violence", "weapons", "self_harm", "sexual_minors", "hate", "illegal_activity")
MAX_WINDOWS = 64  # ~10 KB of prose judged sentence by sentence; past it, sampled
