"""OCI signature manifests and OCI image layouts."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from holdca.errors import JWSFormatError, MalformedInputError
from holdca.notation import (
    Descriptor,
    ManifestForm,
    OCILayout,
    parse_envelope,
    referrers_tag,
    sign_envelope,
    signature_manifest,
)
from holdca.notation.oci import (
    ARTIFACT_TYPE_NOTATION,
    EMPTY_JSON,
    MEDIA_TYPE_EMPTY,
    MEDIA_TYPE_OCI_INDEX,
    THUMBPRINT_ANNOTATION,
)
from holdca.testing.oci import build_test_image
from tests.notation.helpers import CA, DID_A

NOW = datetime.now(UTC)


def _sign(ca: CA, image: Descriptor) -> bytes:
    key, chain = ca.leaf(DID_A, now=NOW)
    return sign_envelope(key, chain, image, now=NOW)


def test_signature_manifest_forms(root_ca: CA, tmp_path: Path) -> None:
    layout = OCILayout.create(tmp_path)
    image = build_test_image(layout)
    env = _sign(root_ca, image)
    legacy = json.loads(signature_manifest(env, image))
    assert "artifactType" not in legacy
    assert legacy["config"] == {
        "mediaType": ARTIFACT_TYPE_NOTATION,
        "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
        "size": 2,
    }
    assert legacy["layers"] == [
        {
            "mediaType": "application/jose+json",
            "digest": "sha256:" + hashlib.sha256(env).hexdigest(),
            "size": len(env),
        }
    ]
    assert legacy["subject"] == {
        "mediaType": image.media_type,
        "digest": image.digest,
        "size": image.size,
    }
    thumbs = json.loads(legacy["annotations"][THUMBPRINT_ANNOTATION])
    chain = parse_envelope(env).certificate_chain
    assert thumbs == [
        hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest() for c in chain
    ]
    assert legacy["annotations"]["org.opencontainers.image.created"].endswith("Z")
    modern = json.loads(signature_manifest(env, image, form=ManifestForm.ARTIFACT_TYPE))
    assert modern["artifactType"] == ARTIFACT_TYPE_NOTATION
    assert modern["config"]["mediaType"] == MEDIA_TYPE_EMPTY
    assert EMPTY_JSON == b"{}"
    with pytest.raises(JWSFormatError):
        signature_manifest(b"{}", image)


def test_attach_and_list_signatures(root_ca: CA, tmp_path: Path) -> None:
    layout = OCILayout.create(tmp_path / "layout")
    image = build_test_image(layout, tag="v1")
    other = build_test_image(layout, tag="v2", content=b"other\n")
    assert layout.resolve("v1") == image
    assert layout.resolve(image.digest) == image
    assert layout.signatures_of("v1") == []
    env1, env2 = _sign(root_ca, image), _sign(root_ca, image)
    d1 = layout.attach_signature("v1", env1)
    d2 = layout.attach_signature(image, env2, form=ManifestForm.ARTIFACT_TYPE)
    layout.attach_signature("v2", _sign(root_ca, other))
    sigs = layout.signatures_of("v1")
    assert [s.manifest_descriptor for s in sigs] == [d1, d2]
    assert [s.envelope for s in sigs] == [env1, env2]
    assert all(s.envelope_media_type == "application/jose+json" for s in sigs)
    # The referrers tag index lists both, with artifactType.
    tag_desc = layout.resolve(referrers_tag(image.digest))
    assert tag_desc.media_type == MEDIA_TYPE_OCI_INDEX
    entries = layout.read_manifest(tag_desc)["manifests"]
    assert [e["digest"] for e in entries] == [d1.digest, d2.digest]
    assert all(e["artifactType"] == ARTIFACT_TYPE_NOTATION for e in entries)
    # Attaching the same envelope again changes nothing.
    layout.attach_signature("v1", env1)
    assert len(layout.signatures_of("v1")) == 2
    # Only one tag entry per tag in index.json.
    tags = [
        (m.annotations or {}).get("org.opencontainers.image.ref.name") for m in layout.manifests()
    ]
    assert tags.count(referrers_tag(image.digest)) == 1
    assert tags.count("v1") == 1


def test_concurrent_attach_keeps_every_signature(root_ca: CA, tmp_path: Path) -> None:
    layout = OCILayout.create(tmp_path)
    image = build_test_image(layout)
    envelopes = [_sign(root_ca, image) for _ in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        descs = list(pool.map(lambda e: OCILayout(tmp_path).attach_signature("v1", e), envelopes))
    found = {s.manifest_descriptor.digest for s in layout.signatures_of("v1")}
    assert found == {d.digest for d in descs}
    tag_index = layout.read_manifest(layout.resolve(referrers_tag(image.digest)))
    assert {e["digest"] for e in tag_index["manifests"]} == found
    assert not [p for p in tmp_path.rglob(".holdca-*")]


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(MalformedInputError, match="not an OCI layout"):
        OCILayout(tmp_path)
    layout = OCILayout.create(tmp_path)
    with pytest.raises(MalformedInputError, match="not in"):
        layout.resolve("missing")
    digest = layout.put_blob(b"data")
    (tmp_path / "blobs/sha256" / digest[7:]).write_bytes(b"tampered")
    with pytest.raises(MalformedInputError, match="does not match"):
        layout.get_blob(digest)
    with pytest.raises(MalformedInputError):
        layout.get_blob("sha512:" + "0" * 128)
    with pytest.raises(ValueError, match="tag"):
        layout.add_manifest(b"{}", tag="bad tag")
    with pytest.raises(MalformedInputError):
        referrers_tag("sha256:XYZ")
