"""TLS settings shared by every server and every channel of the mesh.

A server's `tls:` names its certificate, its key and, for mutual TLS, the CA its clients'
certificates must chain to; a channel's names the CA that verifies the server and the
certificate it presents. Only paths are config: the files are read when a server starts and
read again when they change (mesh.contract.tls), so a rotated certificate needs no restart.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from mesh.config.common import StrictModel, is_loopback


class ServerTls(StrictModel):
    """TLS for one server: its certificate and key, and a client CA for mutual TLS."""

    cert_file: Path = Field(
        ..., description="PEM certificate chain the server presents (leaf first)"
    )
    key_file: Path = Field(..., description="PEM private key of that certificate")
    client_ca_file: Path | None = Field(
        default=None,
        description="PEM CA certificate(s) clients' certificates must chain to; set: mutual "
        "TLS, a client without such a certificate is refused during the handshake",
    )

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate from `client_ca_file`."""
        return self.client_ca_file is not None


class ClientTls(StrictModel):
    """TLS for a channel this process opens: how to verify the server, what to present."""

    ca_file: Path | None = Field(
        default=None,
        description="PEM CA certificate(s) the server's certificate must chain to; default: "
        "the system's roots",
    )
    cert_file: Path | None = Field(
        default=None, description="PEM certificate presented to servers that ask (mutual TLS)"
    )
    key_file: Path | None = Field(default=None, description="PEM private key of cert_file")
    server_name: str | None = Field(
        default=None,
        min_length=1,
        description="the name the server's certificate must hold, when it is not the host "
        "dialled (nodes registered by pod IP, all with one certificate name)",
    )

    @model_validator(mode="after")
    def _pair(self) -> ClientTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


def plaintext_refusal(what: str, listen: str, *, also: str = "", switch: str) -> str:
    """Why a server on `listen` will not start in plaintext (one line, the fix included);
    `switch` names the setting that allows it anyway."""
    unless = f" {also}" if also else ""
    return (
        f"{what} would listen on {listen}, which other machines can reach, without TLS{unless}: "
        f"configure its tls (cert_file, key_file, client_ca_file), or set {switch} to serve "
        "plaintext there on purpose"
    )


def plaintext_exposed(listen: str, tls: ServerTls | None, insecure: bool) -> bool:
    """Whether a server on `listen` would serve plaintext off loopback without `insecure`."""
    return tls is None and not insecure and not is_loopback(listen)
