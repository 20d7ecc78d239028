"""Parse and validate a policy document; every error names file:line, field path and reason.

A policy arrives from whoever holds an admin key, or from a file the watcher reloads, so the
loader treats it as hostile until it is accepted: its size, nesting depth and size after
alias expansion are bounded while the YAML is composed, before any Python object is built
(a 606-byte anchor bomb once expanded to 4 GB in the version hash), and a `use: module:Class`
is checked against the operator's allow-list (`router.guards.validator_modules`) before
anything is imported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import ConstructorError

from guards.errors import InvalidPolicy, UnknownGuard
from guards.hooks import Guard
from guards.policy_model import GuardSpec, Policy
from guards.registry import build_guard, check_use
from mesh.config import GuardSettings, field_default

DEFAULT_VALIDATOR_MODULES: tuple[str, ...] = field_default(GuardSettings, "validator_modules")
# The shipped policy is 1.5 KB and 40 YAML nodes; a large one (a JSON schema, a banned-word
# list of thousands) stays far below these.
MAX_POLICY_BYTES = 1 << 20
MAX_DEPTH = 64  # mappings and sequences inside each other, after alias expansion too
MAX_NODES = 100_000  # YAML nodes after alias expansion


@dataclass(frozen=True)
class LoadRules:
    """What the operator lets a policy be and load; set in mesh.yaml, never by the policy."""

    validator_modules: tuple[str, ...] = DEFAULT_VALIDATOR_MODULES
    max_bytes: int = MAX_POLICY_BYTES
    max_depth: int = MAX_DEPTH
    max_nodes: int = MAX_NODES

    @classmethod
    def of(cls, settings: GuardSettings) -> LoadRules:
        return cls(validator_modules=tuple(settings.validator_modules))


DEFAULT_RULES = LoadRules()


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


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML past a bound: too deep, too big once expanded, or self-referring."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses nesting past `max_depth` while composing (its composer
    recurses: 1,000 levels of "[" ended in RecursionError), and names the node whose value no
    Python object can hold (a date like 2024-02-30, an integer of 5,000 digits) instead of
    letting a bare ValueError escape."""

    def __init__(self, text: str, max_depth: int) -> None:
        super().__init__(text)
        self._depth = 0
        self._max_depth = max_depth

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > self._max_depth:
                raise _Refused(
                    problem=f"nested deeper than {self._max_depth} levels",
                    problem_mark=self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConstructorError(
                problem=f"cannot read this value: {str(exc).splitlines()[0][:200]}",
                problem_mark=node.start_mark,
            ) from None


def _expanded(root: yaml.Node, rules: LoadRules) -> None:
    """Refuse a node graph whose tree, once every alias is expanded, is too big or too deep,
    or which refers to itself. Each node is visited once (sizes are memoised), so the check
    costs what the text costs, not what its expansion would."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, height) of its expansion
    visiting: set[int] = set()
    too_deep = f"nested deeper than {rules.max_depth} levels once aliases are expanded"

    def visit(node: yaml.Node, depth: int, parent: yaml.Node) -> tuple[int, int]:
        """(nodes, height) of `node` expanded; errors name the line of `parent`, where an
        alias to `node` is used (an alias has no node of its own to point at)."""
        known = sizes.get(id(node))
        if known is None:
            if id(node) in visiting:
                raise _Refused(problem="an alias refers to itself", problem_mark=parent.start_mark)
            if depth > rules.max_depth:
                raise _Refused(problem=too_deep, problem_mark=node.start_mark)
            visiting.add(id(node))
            count, height = 1, 1
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            for child in children:
                c, h = visit(child, depth + 1, node)
                count += c
                height = max(height, h + 1)
            visiting.discard(id(node))
            known = sizes[id(node)] = (count, height)
            if count > rules.max_nodes:
                raise _Refused(
                    problem=f"{count:,} YAML nodes once aliases are expanded; "
                    f"at most {rules.max_nodes:,}",
                    problem_mark=node.start_mark,
                )
        elif depth + known[1] - 1 > rules.max_depth:
            raise _Refused(problem=too_deep, problem_mark=parent.start_mark)
        return known

    visit(root, 1, root)


def _check_size(text: str, source: str, max_bytes: int) -> None:
    if len(text) <= max_bytes // 4:  # no UTF-8 character takes more than 4 bytes
        return
    raw = text.encode("utf-8", errors="replace")
    if len(raw) > max_bytes:
        line = raw[:max_bytes].count(b"\n") + 1
        raise InvalidPolicy.at(
            source, line, "", f"larger than {max_bytes:,} bytes ({len(raw):,}); refused unread"
        )


def read_policy_file(path: str | Path, rules: LoadRules = DEFAULT_RULES) -> str:
    """A policy file's text: InvalidPolicy (with the line) when it is too large or not UTF-8;
    OSError when it cannot be read. Reads at most one byte past the limit."""
    p = Path(path)
    with p.open("rb") as f:
        raw = f.read(rules.max_bytes + 1)
    if len(raw) > rules.max_bytes:
        line = raw[: rules.max_bytes].count(b"\n") + 1
        raise InvalidPolicy.at(
            str(p), line, "", f"larger than {rules.max_bytes:,} bytes; refused unread"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidPolicy.at(
            str(p),
            line,
            "",
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
        ) from None


def _parse(text: str, source: str, rules: LoadRules) -> tuple[Any, yaml.Node | None]:
    _check_size(text, source, rules.max_bytes)
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text, rules.max_depth)  # rejects unprintable characters
        root = loader.get_single_node()
        data = None
        if root is not None:
            _expanded(root, rules)  # before anything is built from the nodes
            data = loader.construct_document(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if not isinstance(exc, _Refused):
            problem = f"not valid YAML: {problem}"
        raise InvalidPolicy.at(source, line, "", problem) from None
    except RecursionError:  # kept as a last line: the depth bound should end it first
        raise InvalidPolicy.at(source, None, "", "not valid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidPolicy.at(source, 1, "", "the policy must be a mapping at the top level")
    return data, root


def _locations(policy: Policy) -> list[tuple[GuardSpec, tuple[int | str, ...]]]:
    """Every guard spec of the document (base and tenants) with its field path."""
    out: list[tuple[GuardSpec, tuple[int | str, ...]]] = [
        (spec, ("guards", i)) for i, spec in enumerate(policy.guards)
    ]
    for tenant, override in policy.tenants.items():
        out += [
            (spec, ("tenants", tenant, "replace", i)) for i, spec in enumerate(override.replace)
        ]
        out += [(spec, ("tenants", tenant, "add", i)) for i, spec in enumerate(override.add)]
    return out


def _check_uses(policy: Policy, root: yaml.Node | None, source: str, rules: LoadRules) -> None:
    """Every `use` is a built-in or an allow-listed `module:Class`, checked for the whole
    document before any guard is built: a refused policy imports nothing."""
    for spec, loc in _locations(policy):
        try:
            check_use(spec.use, rules.validator_modules)
        except UnknownGuard as exc:
            where = (*loc, "use")
            raise InvalidPolicy.at(source, _line_of(root, where), _field(where), str(exc)) from None


def _build_all(
    policy: Policy, root: yaml.Node | None, source: str, rules: LoadRules
) -> dict[str, list[BuiltGuard]]:
    """Build every guard now, so a bad parameter fails the load instead of a request."""
    out: dict[str, list[BuiltGuard]] = {}
    locations = {id(spec): loc for spec, loc in _locations(policy)}
    built: dict[int, BuiltGuard] = {}
    for tenant in ["", *policy.tenants]:
        guards: list[BuiltGuard] = []
        for spec in policy.guards_for(tenant):
            if id(spec) not in built:
                built[id(spec)] = BuiltGuard(
                    spec, _build_one(spec, root, source, locations[id(spec)], rules)
                )
            guards.append(built[id(spec)])
        out[tenant] = guards
    return out


def _build_one(
    spec: GuardSpec,
    root: yaml.Node | None,
    source: str,
    loc: tuple[int | str, ...],
    rules: LoadRules,
) -> Guard:
    try:
        return build_guard(spec.use, spec.params, spec.action_enum, rules.validator_modules)
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


def load_policy(
    text: str, source: str = "<policy>", rules: LoadRules = DEFAULT_RULES
) -> LoadedPolicy:
    """Validate a YAML policy and build its guards; raises InvalidPolicy with file:line on error.

    CPU-bound and possibly slow (a validator's import, a model's weights): callers on an event
    loop run it in a thread."""
    data, root = _parse(text, source, rules)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        raise InvalidPolicy.at(source, _line_of(root, loc), _field(loc), err["msg"]) from None
    _check_uses(policy, root, source, rules)
    return LoadedPolicy(
        policy=policy,
        version=policy.version(),
        yaml_text=text,
        source=source,
        applied_at=dt.datetime.now(dt.UTC),
        guards_by_tenant=_build_all(policy, root, source, rules),
    )
