"""Parse and validate a policy document; every error names file:line, field path and reason."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import yaml
from pydantic import ValidationError

from guards.errors import InvalidPolicy, UnknownGuard
from guards.hooks import Guard
from guards.policy_model import GuardSpec, Policy
from guards.registry import build_guard


@dataclass(frozen=True)
class BuiltGuard:
    """A policy entry with its constructed guard."""

    spec: GuardSpec
    guard: Guard
    roles: frozenset[str] = frozenset()  # the turns it reads (input stage); set from the spec

    def __post_init__(self) -> None:
        if not self.roles:
            object.__setattr__(self, "roles", frozenset(self.spec.roles))


@dataclass
class LoadedPolicy:
    """A validated policy with every guard built (base list and every tenant's list)."""

    policy: Policy
    version: str
    yaml_text: str
    source: str
    applied_at: dt.datetime
    guards_by_tenant: dict[str, list[BuiltGuard]] = field(default_factory=dict)

    def guards_for(self, tenant: str) -> list[BuiltGuard]:
        return self.guards_by_tenant.get(tenant) or self.guards_by_tenant[""]

    @property
    def policy_id(self) -> str:
        """A stable name for spans and logs: the file's stem ("default"), else the source."""
        name = PurePath(self.source).stem if self.source.endswith((".yaml", ".yml")) else ""
        return name or self.source


def _line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """1-based line of the YAML node at a pydantic loc (the deepest node that exists)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(
                (
                    v
                    for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part)
                ),
                None,
            )
            if match is None:
                break
            node = match
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _field(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _parse(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidPolicy.at(source, line, "", f"not valid YAML: {problem}") from None
    except RecursionError:  # PyYAML composes recursively: "[[[[..." 1,000 deep ends here
        raise InvalidPolicy.at(source, None, "", "not valid YAML: nested too deeply") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidPolicy.at(source, 1, "", "the policy must be a mapping at the top level")
    return data, root


def _build_all(policy: Policy, root: yaml.Node | None, source: str) -> dict[str, list[BuiltGuard]]:
    """Build every guard now, so a bad parameter fails the load instead of a request."""
    out: dict[str, list[BuiltGuard]] = {}
    locations: dict[int, tuple[int | str, ...]] = {}
    for i, spec in enumerate(policy.guards):
        locations[id(spec)] = ("guards", i)
    for tenant, override in policy.tenants.items():
        for i, spec in enumerate(override.replace):
            locations[id(spec)] = ("tenants", tenant, "replace", i)
        for i, spec in enumerate(override.add):
            locations[id(spec)] = ("tenants", tenant, "add", i)
    built: dict[int, BuiltGuard] = {}
    for tenant in ["", *policy.tenants]:
        guards: list[BuiltGuard] = []
        for spec in policy.guards_for(tenant):
            if id(spec) not in built:
                built[id(spec)] = BuiltGuard(
                    spec, _build_one(spec, root, source, locations[id(spec)])
                )
            guards.append(built[id(spec)])
        out[tenant] = guards
    return out


def _build_one(
    spec: GuardSpec, root: yaml.Node | None, source: str, loc: tuple[int | str, ...]
) -> Guard:
    try:
        return build_guard(spec.use, spec.params, spec.action_enum)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = (*loc, "params", *err["loc"])
        raise InvalidPolicy.at(source, _line_of(root, where), _field(where), err["msg"]) from None
    except (UnknownGuard, ImportError, AttributeError) as exc:
        where = (*loc, "use")
        raise InvalidPolicy.at(
            source, _line_of(root, where), _field(where), str(exc).splitlines()[0][:300]
        ) from None
    except (ValueError, TypeError) as exc:
        where = (*loc, "params")
        raise InvalidPolicy.at(
            source, _line_of(root, where), _field(where), str(exc).splitlines()[0][:300]
        ) from None
    except Exception as exc:  # a third-party validator's constructor can raise anything
        where = (*loc, "params")
        raise InvalidPolicy.at(
            source, _line_of(root, where), _field(where), f"{type(exc).__name__}: {exc}"[:300]
        ) from None


def load_policy(text: str, source: str = "<policy>") -> LoadedPolicy:
    """Validate a YAML policy and build its guards; raises InvalidPolicy with file:line on error."""
    data, root = _parse(text, source)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        raise InvalidPolicy.at(source, _line_of(root, loc), _field(loc), err["msg"]) from None
    return LoadedPolicy(
        policy=policy,
        version=policy.version(),
        yaml_text=text,
        source=source,
        applied_at=dt.datetime.now(dt.UTC),
        guards_by_tenant=_build_all(policy, root, source),
    )
