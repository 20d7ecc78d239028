"""The secrets guard's copy of detect-secrets' plugin regexes (secret_plugin_patterns.py) is
what the installed detect-secrets has, and reading it imports neither detect-secrets nor what
detect-secrets imports (guards/gen_secret_patterns.py says why)."""

from __future__ import annotations

import importlib
import subprocess
import sys

from guards import gen_secret_patterns
from guards.detectors import secret_plugin_patterns
from guards.detectors.secrets import OWN_PATTERNS, PLUGINS, SecretsDetector


def test_the_committed_patterns_are_the_installed_detect_secrets_ones() -> None:
    # An upgrade of detect-secrets that changes a plugin fails here: run `make secret-patterns`.
    committed = gen_secret_patterns.TARGET.read_text(encoding="utf-8")
    assert committed == gen_secret_patterns.render()


def test_the_guard_compiles_each_plugin_pattern_as_detect_secrets_does() -> None:
    for kind, (module, name) in gen_secret_patterns.PLUGINS.items():
        plugin = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), name)
        theirs = [(p.pattern, p.flags) for p in plugin.denylist]
        assert [(p.pattern, p.flags) for p in PLUGINS[kind]] == theirs, kind
        assert secret_plugin_patterns.PLUGIN_PATTERNS[kind][0] == name


def test_plugin_patterns_still_find_their_secrets() -> None:
    detector = SecretsDetector()
    aws = "AKIA" + "Q" * 4 + "7" * 12
    slack = "xoxb-" + "1234567890-" * 2 + "abcdefghij"
    assert [f.type for f in detector.find(f"key {aws} and {slack}")] == [
        "AWS_ACCESS_KEY",
        "SLACK_TOKEN",
    ]
    assert "AWS_ACCESS_KEY" not in OWN_PATTERNS  # found by the plugin's own pattern


def test_the_guard_imports_no_detect_secrets_requests_or_multiprocessing() -> None:
    code = (
        "import sys, guards.detectors.secrets as s\n"
        "s.SecretsDetector().find('password: hunter2x')\n"
        "print([m for m in ('detect_secrets', 'requests', 'multiprocessing') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
