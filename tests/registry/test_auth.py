"""Basic (htpasswd) and Bearer token auth against distribution v3.0.0; client inputs."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from holdca.errors import ConfigError, MalformedInputError, RegistryError
from holdca.registry import (
    RegistryClient,
    RegistryCredentials,
    credentials_from_env,
    parse_challenge,
    parse_image_reference,
)
from tests.registry.servers import TokenServer, distribution, htpasswd_block, push_image


def test_basic_auth_htpasswd(tmp_path: Path) -> None:
    with distribution(tmp_path / "r", auth=htpasswd_block(tmp_path, "alice", "s3cret")) as reg:
        with RegistryClient(reg.host, insecure=True) as anonymous:
            with pytest.raises(RegistryError, match="no credentials") as info:
                anonymous.push_blob("holdca/basic", b"blob")
            assert info.value.status == 401
        wrong = RegistryCredentials("alice", "wrong")
        with RegistryClient(reg.host, insecure=True, credentials=wrong) as client:
            with pytest.raises(RegistryError, match="refused") as refused:
                client.push_blob("holdca/basic", b"blob")
            assert "wrong" not in str(refused.value)
        right = RegistryCredentials("alice", "s3cret")
        with RegistryClient(reg.host, insecure=True, credentials=right) as client:
            image = push_image(client, "holdca/basic", tmp_path, b"basic")
            fetched = client.get_manifest("holdca/basic", image.digest)
            assert fetched is not None
            assert len(fetched.body) == image.size


def test_bearer_token_challenge(tmp_path: Path) -> None:
    tokens = TokenServer("bob", "t0ken-pass")
    with tokens.serving(tmp_path) as auth, distribution(tmp_path / "r", auth=auth) as reg:
        anonymous = RegistryClient(reg.host, insecure=True)
        with anonymous, pytest.raises(RegistryError, match="token endpoint answered 401"):
            anonymous.has_blob("holdca/token", "sha256:" + "0" * 64)
        creds = RegistryCredentials("bob", "t0ken-pass")
        with RegistryClient(reg.host, insecure=True, credentials=creds) as client:
            image = push_image(client, "holdca/token", tmp_path, b"token")
            assert client.get_manifest("holdca/token", image.digest) is not None
    # the registry's challenges named its service and the scopes asked for
    assert {r.get("service") for r in tokens.requests} == {tokens.service}
    scopes = {r.get("scope", "") for r in tokens.requests}
    assert any(set(s.rsplit(":", 1)[-1].split(",")) == {"pull", "push"} for s in scopes), scopes


def test_https_is_the_default(tmp_path: Path) -> None:
    """Without insecure=True the client speaks TLS, also to 127.0.0.1: a plain registry fails."""
    with distribution(tmp_path / "r") as reg, RegistryClient(reg.host) as client:
        assert client.base.startswith("https://")
        with pytest.raises(RegistryError):
            client.has_blob("holdca/tls", "sha256:" + "0" * 64)


def test_deadline(tmp_path: Path) -> None:
    with distribution(tmp_path / "r") as reg, reg.client() as client:  # noqa: SIM117
        with client.deadline(0), pytest.raises(RegistryError, match="deadline"):
            client.has_blob("holdca/deadline", "sha256:" + "0" * 64)


@pytest.mark.parametrize(
    "text",
    ["repo@sha256:" + "a" * 64, "registry/repo", "host.example/Repo:v1", "h.example/r@sha256:00",
     "h.example/r:bad tag"],
)  # fmt: skip
def test_bad_image_references(text: str) -> None:
    with pytest.raises(MalformedInputError):
        parse_image_reference(text)


def test_image_references() -> None:
    digest = "sha256:" + "b" * 64
    ref = parse_image_reference(f"localhost:5000/a/b:v1@{digest}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "localhost:5000",
        "a/b",
        None,
        digest,
    )
    tagged = parse_image_reference("reg.example.com/app:v2")
    assert (tagged.repository, tagged.reference) == ("app", "v2")


def test_challenge_parsing() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "reg",
                      "scope": "repository:a/b:pull,push"}  # fmt: skip
    with pytest.raises(RegistryError):
        parse_challenge("B3arer realm=x")


def test_credentials_from_env_and_docker_config(tmp_path: Path) -> None:
    env = {"HOLDCA_REGISTRY_USERNAME": "u", "HOLDCA_REGISTRY_PASSWORD": "p"}
    creds = credentials_from_env("r.example", env)
    assert creds == RegistryCredentials("u", "p")
    assert "p" not in repr(creds).replace("password", "").replace("RegistryCredentials", "")
    with pytest.raises(ConfigError, match="go together"):
        credentials_from_env("r.example", {"HOLDCA_REGISTRY_USERNAME": "u"})
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"r.example": {"auth": base64.b64encode(b"dock:pw").decode()}}})
    )
    docker = {"DOCKER_CONFIG": str(tmp_path)}
    assert credentials_from_env("r.example", docker) == RegistryCredentials("dock", "pw")
    assert credentials_from_env("other.example", docker) is None
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config\.json"):
        credentials_from_env("r.example", docker)
