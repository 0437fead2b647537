"""Signatures pushed to real registries on 127.0.0.1, judged by notation v1.3.2 itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from holdca.errors import RecordMismatchError, RegistryError
from holdca.notation.envelope import Descriptor
from holdca.notation.oci import ARTIFACT_TYPE_NOTATION, referrers_tag, signature_manifest
from holdca.notation.trustpolicy import hold_trust_policy
from holdca.notation.truststore import write_trust_policy, write_trust_store
from holdca.registry import cosign_image, list_signatures, push_signature
from holdca.testing.atproto import TestRepo
from tests.hold.conftest import HOLD_DID
from tests.hold.served import Served
from tests.registry.servers import Registry, push_image
from tests.tools import require_notation


def _notation(config: Path, *argv: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="holdca-notation-cache-") as cache:
        env = {**os.environ, "NOTATION_CONFIG": str(config), "NOTATION_CACHE": cache}
        proc = subprocess.run(
            [require_notation(), *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    return proc.returncode == 0, proc.stdout + proc.stderr


def _notation_config(served: Served, tmp_path: Path) -> Path:
    """A notation config trusting the hold's root, strict, revocation from the hold."""
    config = tmp_path / "notation"
    write_trust_store(config, "hold", [served.ca.certificate])
    write_trust_policy(config, hold_trust_policy(store="hold"))  # strict, OCSP/CRL checked
    return config


def _signed_image(
    served: Served, registry: Registry, tmp_path: Path, repository: str, content: bytes
) -> tuple[Descriptor, TestRepo, str, str]:
    with registry.client() as client:
        image = push_image(client, repository, tmp_path, content)
    user = served.net.add(TestRepo.create())
    uri = user.put_manifest(image.digest, hold_did=HOLD_DID)
    return image, user, uri, f"{registry.host}/{repository}@{image.digest}"


@pytest.mark.parametrize("kind", ["distribution", "referrers-api"])
def test_notation_verifies_signatures_pulled_from_the_registry(
    kind: str, served: Served, registry: Registry, api_registry: Registry, tmp_path: Path
) -> None:
    target = registry if kind == "distribution" else api_registry
    repository = f"holdca/{kind}"
    image, user, uri, ref = _signed_image(served, target, tmp_path, repository, kind.encode())
    config = _notation_config(served, tmp_path)
    ok, out = _notation(config, "verify", "--insecure-registry", ref)
    assert not ok, out  # nothing pushed yet
    assert "no signature is associated" in out, out
    with target.client() as client:
        tagged = cosign_image(
            served.ca,
            f"{target.host}/{repository}:v1",  # by tag: resolved to the digest
            record_uri=uri,
            did=user.did,
            now=datetime.now(UTC),
            client=client,
        )
        assert tagged.image.digest == image.digest
        assert tagged.subject == image
        assert tagged.signature.form == "tag-schema"  # neither registry answers OCI-Subject
        ok, out = _notation(config, "verify", "--insecure-registry", ref)
        assert ok, out
        # a second signature keeps the first discoverable, for notation and for us
        second = cosign_image(
            served.ca, ref, record_uri=uri, did=user.did, now=datetime.now(UTC), client=client,
            resign=True,
        )  # fmt: skip
        form, listed = list_signatures(client, repository, image.digest)
    assert form == ("tag-schema" if kind == "distribution" else "referrers-api")
    digests = {tagged.signature.manifest.digest, second.signature.manifest.digest}
    assert {d.digest for d in listed} == digests
    assert all(d.artifact_type == ARTIFACT_TYPE_NOTATION for d in listed)
    ok, out = _notation(config, "ls", "--insecure-registry", ref)
    assert ok, out
    assert all(d in out for d in digests), out
    ok, out = _notation(config, "verify", "--insecure-registry", ref)
    assert ok, out
    # revocation really comes from the served hold: revoke both leaves and notation refuses
    for signed in (tagged, second):
        served.ca.revoke(serial=signed.response.serial, reason="superseded", now=datetime.now(UTC))
    ok, out = _notation(config, "verify", "-v", "--insecure-registry", ref)
    assert not ok, out
    assert "revoked" in out, out


def test_tag_schema_index_is_merged_and_the_old_one_deleted(
    registry: Registry, tmp_path: Path
) -> None:
    repository = "holdca/merge"
    with registry.client() as client:
        image = push_image(client, repository, tmp_path, b"merge")
        first = _fake_signature(client, repository, image, 1)
        assert first.index is not None
        second = _fake_signature(client, repository, image, 2)
        assert second.index is not None
        # the first index is gone (deletes are enabled), the tag lists both entries
        assert client.get_manifest(repository, first.index.digest) is None
        reply = client.get_manifest(repository, referrers_tag(image.digest))
        assert reply is not None
        index = json.loads(reply.body)
        assert [m["digest"] for m in index["manifests"]] == [
            first.manifest.digest,
            second.manifest.digest,
        ]
        assert index["manifests"][0]["artifactType"] == ARTIFACT_TYPE_NOTATION
        assert "io.cncf.notary.x509chain.thumbprint#S256" in index["manifests"][0]["annotations"]
        # pushing the same signature again changes nothing
        again = _fake_signature(client, repository, image, 2)
        assert again.index == second.index


def _fake_signature(client: object, repository: str, image: Descriptor, n: int) -> object:
    """A signature manifest for an opaque envelope (the registry does not parse it)."""
    envelope = f"opaque envelope {n}".encode()
    manifest = signature_manifest(
        envelope, image, chain=[b"not a certificate"], created=datetime(2026, 1, 1, tzinfo=UTC)
    )
    return push_signature(client, repository, image, envelope, manifest=manifest)  # type: ignore[arg-type]


_RACER = """
import sys, json
from datetime import UTC, datetime
from holdca.notation.envelope import Descriptor
from holdca.notation.oci import signature_manifest
from holdca.registry import RegistryClient, push_signature
host, repository, subject, n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
image = Descriptor.from_json(subject)
envelope = f"racing envelope {n}".encode()
when = datetime(2026, 1, 1, tzinfo=UTC)
manifest = signature_manifest(envelope, image, chain=[b"x"], created=when)
sys.stdin.read(1)  # start together
with RegistryClient(host, insecure=True) as client:
    print(push_signature(client, repository, image, envelope, manifest=manifest).manifest.digest)
"""


def test_concurrent_writers_keep_every_entry(registry: Registry, tmp_path: Path) -> None:
    """Processes (no shared lock) racing on one subject's index: every entry survives."""
    repository = "holdca/race"
    with registry.client() as client:
        image = push_image(client, repository, tmp_path, b"race")
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _RACER,
                registry.host,
                repository,
                json.dumps(image.to_json()),
                str(n),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write("go")
        racer.stdin.close()
    pushed = set()
    for racer in racers:
        assert racer.stdout is not None
        assert racer.stderr is not None
        out, err = racer.stdout.read(), racer.stderr.read()
        assert racer.wait(120) == 0, err
        pushed.add(out.strip())
    with registry.client() as client:
        form, listed = list_signatures(client, repository, image.digest)
    assert form == "tag-schema"
    assert {d.digest for d in listed} == pushed
    assert len(pushed) == 4


def test_listing_an_unknown_repository(registry: Registry, api_registry: Registry) -> None:
    """distribution's 404 page is no NAME_UNKNOWN: the tag schema is tried (nothing there);
    a referrers API answering NAME_UNKNOWN is an error, as in notation."""
    digest = "sha256:" + "0" * 64
    with registry.client() as client:
        assert list_signatures(client, "holdca/never-pushed", digest) == ("tag-schema", [])
    with api_registry.client() as client, pytest.raises(RegistryError, match="NAME_UNKNOWN"):
        list_signatures(client, "holdca/never-pushed", digest)


def test_cosign_refuses_an_image_the_registry_lacks(served: Served, registry: Registry) -> None:
    with registry.client() as client, pytest.raises(RegistryError, match="no such manifest"):
        cosign_image(
            served.ca,
            f"{registry.host}/holdca/none:v9",
            record_uri="at://did:plc:x/io.atcr.manifest/y",
            did="did:plc:x",
            now=datetime.now(UTC),
            client=client,
        )


def test_the_registry_must_hold_the_descriptor_the_hold_signs(
    served: Served, registry: Registry, tmp_path: Path
) -> None:
    """The record proof still gates the registry path: a record for another digest fails."""
    image, user, _, ref = _signed_image(served, registry, tmp_path, "holdca/other", b"other")
    other_uri = user.put_manifest("sha256:" + "1" * 64, hold_did=HOLD_DID)
    with registry.client() as client, pytest.raises(RecordMismatchError, match=image.digest):
        cosign_image(
            served.ca, ref, record_uri=other_uri, did=user.did, now=datetime.now(UTC),
            client=client,
        )  # fmt: skip


@pytest.mark.parametrize("kind", ["distribution", "referrers-api"])
def test_a_cose_signature_pushed_to_the_registry_verifies(
    kind: str, served: Served, registry: Registry, api_registry: Registry, tmp_path: Path
) -> None:
    from holdca.notation.cose import MEDIA_TYPE_COSE  # noqa: PLC0415
    from holdca.notation.formats import SignatureFormat  # noqa: PLC0415

    target = registry if kind == "distribution" else api_registry
    repository = f"holdca/cose-{kind}"
    _, user, uri, ref = _signed_image(
        served, target, tmp_path, repository, b"cose " + kind.encode()
    )
    config = _notation_config(served, tmp_path)
    with target.client() as client:
        done = cosign_image(
            served.ca, ref, record_uri=uri, did=user.did, now=datetime.now(UTC), client=client,
            signature_format=SignatureFormat.COSE,
        )  # fmt: skip
        manifest = client.get_manifest(repository, done.signature.manifest.digest)
    assert done.response.signature_format is SignatureFormat.COSE
    assert manifest is not None
    assert json.loads(manifest.body)["layers"][0]["mediaType"] == MEDIA_TYPE_COSE
    ok, out = _notation(config, "verify", "--insecure-registry", ref)
    assert ok, out  # strict, with OCSP/CRL from the served hold
    served.ca.revoke(serial=done.response.serial, reason="superseded", now=datetime.now(UTC))
    ok, out = _notation(config, "verify", "--insecure-registry", ref)
    assert not ok, out
