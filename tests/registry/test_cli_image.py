"""``holdca cosign --image REGISTRY/REPO@digest``: co-sign in a registry, from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from holdca.registry import list_signatures
from holdca.testing.atproto import TestRepo
from tests.cli_helpers import clean_environment, run, run_json
from tests.registry.servers import Registry, push_image

HOLD_DID = "did:web:hold.cli-registry.example.com"


@pytest.fixture
def home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Path:
    clean_environment(monkeypatch)
    monkeypatch.delenv("HOLDCA_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("HOLDCA_REGISTRY_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))
    h = tmp_path / "hold"
    run_json(capsys, "init", "--home", str(h), "--did", HOLD_DID, "--country", "US",
             "--state", "CA", "--org", "CLI Hold",
             "--crl-url", "http://127.0.0.1:9/ca.crl")  # fmt: skip
    return h


def test_cosign_an_image_in_a_registry(
    home: Path, registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with registry.client() as client:
        image = push_image(client, "alice/cli", tmp_path, b"cli registry image")
    repo = TestRepo.create(method="plc", curve="k256")
    uri = repo.put_manifest(image.digest, repository="alice/cli", hold_did=HOLD_DID)
    (tmp_path / "record.car").write_bytes(repo.get_record_car(uri))
    (tmp_path / "did.json").write_bytes(repo.did_document())
    files = ["--did-doc", str(tmp_path / "did.json"), "--car", str(tmp_path / "record.car")]
    tagged = f"{registry.host}/alice/cli:v1"
    # plain http only when asked for: without the flag the TLS handshake fails (exit 1)
    code, _, err = run(capsys, "cosign", "--home", str(home), *files, "--uri", uri,
                       "--image", tagged)  # fmt: skip
    assert code == 1
    assert "RegistryError" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    signed = run_json(capsys, "cosign", "--home", str(home), *files, "--uri", uri,
                      "--image", tagged, "--insecure-registry")  # fmt: skip
    assert signed["image"] == f"{registry.host}/alice/cli@{image.digest}"
    assert signed["referrers"] == "tag-schema"
    with registry.client() as client:
        _, listed = list_signatures(client, "alice/cli", image.digest)
    assert [d.digest for d in listed] == [signed["signatureManifest"]]


@pytest.mark.parametrize("image", ["no-registry-here", "host.example/r@sha256:12"])
def test_a_bad_image_reference_is_a_usage_error(
    image: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "cosign", "--home", str(home), "--uri",
                       "at://did:plc:x/io.atcr.manifest/y", "--image", image)  # fmt: skip
    assert code == 2
    assert "--image" in err
    assert "Traceback" not in err
