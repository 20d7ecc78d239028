"""API keys to tenants."""

from __future__ import annotations

import pytest

from mesh.config import ApiKeyConfig, AuthSettings
from mesh.contract.errors import Code, MeshError
from mesh.router.auth import ApiKeyAuth, api_key_from_metadata, hash_api_key


def _auth() -> ApiKeyAuth:
    keys = [
        ApiKeyConfig(name="team-a", sha256=hash_api_key("sk-aaa"), tenant="acme"),
        ApiKeyConfig(name="ops", sha256=hash_api_key("sk-admin"), tenant="ops", admin=True),
    ]
    return ApiKeyAuth(AuthSettings(api_keys=keys).api_keys)


def test_no_keys_means_default_tenant() -> None:
    auth = ApiKeyAuth([])
    assert not auth.enabled
    assert auth.authenticate(None).tenant == "default"
    assert auth.authenticate("anything").tenant == "default"
    assert not ApiKeyAuth([], anonymous_admin=False).authenticate(None).admin


def test_known_keys_map_to_tenants_and_scope() -> None:
    auth = _auth()
    p = auth.authenticate("sk-aaa")
    assert (p.tenant, p.admin, p.key_name) == ("acme", False, "team-a")
    assert auth.authenticate("sk-admin").admin
    with pytest.raises(MeshError) as err:
        auth.require_admin(p)
    assert err.value.code is Code.PERMISSION_DENIED
    auth.require_admin(auth.authenticate("sk-admin"))


@pytest.mark.parametrize("key", [None, "", "sk-aab", "sk-aaa "])
def test_missing_or_unknown_key_is_unauthenticated(key: str | None) -> None:
    with pytest.raises(MeshError) as err:
        _auth().authenticate(key)
    assert err.value.code is Code.UNAUTHENTICATED


def test_key_from_metadata_and_hash_only_config() -> None:
    assert api_key_from_metadata([("X-Api-Key", "k1")]) == "k1"
    assert api_key_from_metadata([("authorization", b"Bearer k2")]) == "k2"
    assert api_key_from_metadata([("other", "x")]) is None
    assert _auth().authenticate_metadata([("x-api-key", "sk-aaa")]).tenant == "acme"
    with pytest.raises(ValueError, match="64 hex"):
        ApiKeyConfig(name="bad", sha256="sk-plaintext-key", tenant="t")
