"""Flags shared by `mesh node`, `mesh bridge`, `mesh router`, `mesh up` and the client commands.

One definition per flag. Where a config field exists, the flag's default is that field's
default (`FieldDefault`), so no default is written twice; flags that only set a field when
given default to None and leave the default to the model.

This module imports no config model at the top: `mesh <group> --help` imports the group's
module, and with it these decorators, and the pydantic configs cost 0.2-0.7 s to import here.
"""

from __future__ import annotations

import enum
import functools
import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from mesh.contract.node_token import DEFAULT_TOKEN_ENV

if TYPE_CHECKING:
    from pydantic import BaseModel

    from mesh.config import ClientTls, MeshConfig, Tier

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound="BaseModel")

METRICS_OFF = "off"
# Seconds in-flight requests get on SIGTERM: no config field holds them, so they live here.
ROUTER_GRACE_S = 5.0
NODE_GRACE_S = 10.0
# Where `mesh up` serves the OpenAI-compatible HTTP front when neither mesh.yaml nor a flag says
# (`mesh router` serves none unless told): the one-command mesh answers OpenAI clients at once.
MESH_UP_HTTP_LISTEN = "127.0.0.1:8080"
HTTP_LISTEN_ENV = "MESH_HTTP_LISTEN"  # e.g. `off` where many meshes share a machine (tests)


class FieldDefault:
    """The default of a config field ("module:Model", "field"), looked up only when needed.

    Given as an option's `default`, click calls it while parsing and prints `str()` of it in
    --help (only plain functions show as "(dynamic)"), so the model is imported then, not when
    the command's module is. Works for pydantic models and dataclasses. Options using it must
    name their `type`: click would otherwise guess the type from this object.
    """

    def __init__(self, model_path: str, field: str) -> None:
        self.model_path = model_path
        self.field = field

    def __call__(self) -> Any:
        module_name, _, class_name = self.model_path.partition(":")
        model = getattr(importlib.import_module(module_name), class_name)
        fields = getattr(model, "model_fields", None)
        value = fields[self.field].default if fields is not None else getattr(model, self.field)
        # click.Choice matches an enum by member name (SMALL), the config by value (small).
        return value.value if isinstance(value, enum.Enum) else value

    def __str__(self) -> str:
        return str(self())

    def __repr__(self) -> str:
        return f"FieldDefault({self.model_path!r}, {self.field!r})"


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several options as one decorator, shown in --help in the order given."""

    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


# --- configuration ------------------------------------------------------------------------
def config_option(
    *, required: bool = False, help: str = "mesh.yaml. Default: the built-in one-node mesh."
) -> Callable[[F], F]:
    """`--config PATH`; the command receives `config_path: str | None`."""
    return click.option(
        "--config",
        "config_path",
        required=required,
        type=click.Path(dir_okay=False),
        default=None,
        help=help,
    )


def load_mesh_config(config_path: str | None) -> MeshConfig:
    """The config a `--config` names, else the built-in default (ConfigError names the fault)."""
    from mesh.config import default_config, load_config

    return load_config(config_path) if config_path else default_config()


def config_from_flags(model: type[M], fields: Mapping[str, Any]) -> M:
    """Validate flags as a config model; a bad value is a ConfigError naming the field only."""
    from pydantic import ValidationError

    from mesh.config import ConfigError
    from mesh.config.bridges import describe_errors

    try:
        return model.model_validate(dict(fields))
    except ValidationError as exc:  # pydantic's own text would echo the values given
        raise ConfigError(describe_errors(exc)) from None


# --- servers ------------------------------------------------------------------------------
def listen_option(*, default: str | None, help: str) -> Callable[[F], F]:
    """`--listen HOST:PORT`, the address a server binds."""
    return click.option(
        "--listen", metavar="HOST:PORT", default=default, show_default=default is not None,
        help=help,
    )  # fmt: skip


def _parse_http_listen(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    """host:port, `off`, or None when not given (the command then picks its default)."""
    if value is None:
        return None
    from mesh.config import HTTP_OFF
    from mesh.config.router import http_listen_value

    try:
        return http_listen_value(value) or HTTP_OFF
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not host:port (port 0 picks a free one) or {HTTP_OFF}"
        ) from None


def http_listen_option(*, default_help: str) -> Callable[[F], F]:
    """`--http-listen ADDR|off`: the OpenAI-compatible HTTP front. The command receives
    `http_listen: str | None` (None: not given) and passes it to `with_http_listen`."""
    return click.option(
        "--http-listen", metavar="ADDR|off", default=None, callback=_parse_http_listen,
        envvar=HTTP_LISTEN_ENV, show_envvar=True,
        help=f"OpenAI-compatible HTTP front (/v1/chat/completions), or off. {default_help}",
    )  # fmt: skip


def with_http_listen(config: MeshConfig, flag: str | None, *, default: str | None) -> MeshConfig:
    """The config with its HTTP front decided: the flag, else mesh.yaml's `router.http.listen`
    if it sets one (null / off included), else `default`."""
    from mesh.config import HTTP_OFF

    http = config.router.http
    if flag is not None:
        listen = None if flag == HTTP_OFF else flag
    elif "listen" in http.model_fields_set:
        return config
    else:
        listen = default
    router = config.router.model_copy(update={"http": http.model_copy(update={"listen": listen})})
    return config.model_copy(update={"router": router})


def grace_option(default: float) -> Callable[[F], F]:
    """`--grace SECONDS` given to in-flight requests on SIGTERM."""
    return click.option(
        "--grace",
        default=default,
        show_default=True,
        help="Seconds in-flight requests get on stop.",
    )


def node_id_option(default_hint: str) -> Callable[[F], F]:
    return click.option("--node-id", default=None, help=f"Default: {default_hint}.")


def tier_option(
    *, default: Tier | FieldDefault | None, help: str | None = None
) -> Callable[[F], F]:
    """`--tier`, one of the config's Tier values."""
    from mesh.config import Tier

    return click.option(
        "--tier",
        type=click.Choice([t.value for t in Tier]),
        default=default,
        show_default=default is not None,
        help=help,
    )


def price_options(
    *, input_default: FieldDefault | None, output_default: FieldDefault | None
) -> Callable[[F], F]:
    """`--price-in` / `--price-out`, USD per million tokens."""
    return _stack(
        click.option(
            "--price-in", type=float, default=input_default,
            show_default=input_default is not None, help="USD per 1M prompt tokens.",
        ),
        click.option(
            "--price-out", type=float, default=output_default,
            show_default=output_default is not None, help="USD per 1M completion tokens.",
        ),
    )  # fmt: skip


# A node or bridge joining a router. Unset flags stay None so the config's own defaults (and
# its "was this set?" rule for the token source) apply.
registration_options: Callable[[F], F] = _stack(
    click.option(
        "--router", "router_address", metavar="ADDR", default=None,
        help="Router whose registry this node joins. Default: none (static upstream lists only).",
    ),
    click.option(
        "--advertise", metavar="ADDR", default=None,
        help="Address the router dials. Default: the bound address.",
    ),
    click.option(
        "--heartbeat-interval", type=float, show_default=True,
        default=FieldDefault("mesh.config:NodeConfig", "heartbeat_interval_s"),
        help="Seconds between load reports, until the router states its own.",
    ),
    click.option(
        "--router-token-env", metavar="VAR", default=None,
        help=f"Variable holding the router's registration token. Default: {DEFAULT_TOKEN_ENV}, "
        "sent only when set.",
    ),
    click.option(
        "--router-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="File holding the router's registration token.",
    ),
)  # fmt: skip


# --- TLS ----------------------------------------------------------------------------------
_PEM = click.Path(dir_okay=False, path_type=Path)

# A node's or bridge's own server (NodeConfig.tls) and its plaintext switch. The command
# receives tls_cert, tls_key, tls_client_ca and insecure, and passes the first three to
# `server_tls_fields`.
server_tls_options: Callable[[F], F] = _stack(
    click.option("--tls-cert", type=_PEM, default=None,
                 help="PEM certificate this server presents (TLS). Rotated files are used live."),
    click.option("--tls-key", type=_PEM, default=None, help="PEM key of --tls-cert."),
    click.option("--tls-client-ca", type=_PEM, default=None,
                 help="Mutual TLS: callers need a certificate from this CA (the mesh's)."),
    click.option("--insecure", is_flag=True,
                 help="Serve plaintext on an address off loopback on purpose (refused without)."),
)  # fmt: skip

# A node's or bridge's channel to the router it registers with (NodeConfig.router_tls). The
# command receives router_tls_ca, router_tls_cert, router_tls_key, router_tls_server_name and
# passes them to `client_tls_fields`.
router_tls_options: Callable[[F], F] = _stack(
    click.option("--router-tls-ca", type=_PEM, default=None,
                 help="Register over TLS: the CA the router's certificate must chain to."),
    click.option("--router-tls-cert", type=_PEM, default=None,
                 help="Certificate presented to the router (the node certificate)."),
    click.option("--router-tls-key", type=_PEM, default=None, help="PEM key of --router-tls-cert."),
    click.option("--router-tls-server-name", metavar="NAME", default=None,
                 help="Name the router's certificate must hold, if not the host dialled."),
)  # fmt: skip


def server_tls_fields(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> dict[str, Path | None] | None:
    """The `tls:` section from the server TLS flags; None when none was given."""
    if cert is None and key is None and client_ca is None:
        return None
    given = {"cert_file": cert, "key_file": key, "client_ca_file": client_ca}
    return {name: value for name, value in given.items() if value is not None}


def client_tls_fields(
    ca: Path | None, cert: Path | None, key: Path | None, server_name: str | None
) -> dict[str, Path | str] | None:
    """A channel's TLS section (ClientTls) from its flags; None when none was given."""
    given = {"ca_file": ca, "cert_file": cert, "key_file": key, "server_name": server_name}
    fields = {name: value for name, value in given.items() if value is not None}
    return fields or None


def client_tls_options(f: F) -> F:
    """`--tls-ca`, `--tls-cert`, `--tls-key`, `--tls-server-name` (or $MESH_TLS_CA, …) of a
    client command. The command receives `tls: ClientTls | None`: None, plaintext, when none
    is given; any of them, TLS (with the system's roots when no CA is named)."""

    @functools.wraps(f)
    def with_tls(
        *args: Any,
        tls_ca: Path | None,
        tls_cert: Path | None,
        tls_key: Path | None,
        tls_server_name: str | None,
        **kwargs: Any,
    ) -> Any:
        fields = client_tls_fields(tls_ca, tls_cert, tls_key, tls_server_name)
        tls: ClientTls | None = None
        if fields is not None:
            from mesh.config import ClientTls

            tls = config_from_flags(ClientTls, fields)
        return f(*args, tls=tls, **kwargs)

    options = _stack(
        click.option("--tls-ca", type=_PEM, default=None, envvar="MESH_TLS_CA", show_envvar=True,
                     help="Connect over TLS, verifying the server against this CA."),
        click.option("--tls-cert", type=_PEM, default=None, envvar="MESH_TLS_CERT",
                     show_envvar=True, help="Client certificate, for servers wanting mutual TLS."),
        click.option("--tls-key", type=_PEM, default=None, envvar="MESH_TLS_KEY",
                     show_envvar=True, help="PEM key of --tls-cert."),
        click.option("--tls-server-name", metavar="NAME", default=None,
                     help="Name the server's certificate must hold, if not the host dialled."),
    )  # fmt: skip
    return options(cast(F, with_tls))


def _parse_metrics_listen(_ctx: click.Context, _param: click.Parameter, value: str) -> str | None:
    """host:port, or None for `off`; checked by the same validator as the config key."""
    from pydantic import ValidationError

    from mesh.config.telemetry import TelemetrySettings

    if value.strip().lower() == METRICS_OFF:
        return None
    try:
        TelemetrySettings(prometheus_listen=value)
    except ValidationError:
        raise click.BadParameter(
            f"{value!r} is not host:port (port 0 picks a free one) or {METRICS_OFF}"
        ) from None
    return value


# Where Prometheus /metrics is served by a node or bridge started without mesh.yaml (the router
# and `mesh up` read telemetry.prometheus_listen): a second process on the same machine must be
# able to pick another port (0: a free one, printed in the ready line) or none. The command
# receives `metrics_listen: str | None`.
metrics_listen_option: Callable[[F], F] = click.option(
    "--metrics-listen",
    metavar="ADDR|off",
    type=str,
    default=FieldDefault("mesh.config.telemetry:TelemetrySettings", "prometheus_listen"),
    show_default=True,
    callback=_parse_metrics_listen,
    help="Prometheus /metrics address (port 0: a free one), or off.",
)


# --- clients ------------------------------------------------------------------------------
def target_option(*names: str, help: str = "Router address.") -> Callable[[F], F]:
    """The server a client command talks to; `names` keep each command's existing flag."""
    return click.option(
        *(names or ("--target",)), "target", metavar="HOST:PORT", type=str,
        default=FieldDefault("mesh.config:RouterConfig", "listen"), show_default=True, help=help,
    )  # fmt: skip


api_key_option: Callable[[F], F] = click.option(
    "--api-key",
    envvar="MESH_API_KEY",
    default=None,
    show_envvar=True,
    help="The tenant's API key (prefer the variable: argv shows in `ps`).",
)


def json_option(help: str) -> Callable[[F], F]:
    """`--json`; the command receives `as_json: bool`."""
    return click.option("--json", "as_json", is_flag=True, help=help)
