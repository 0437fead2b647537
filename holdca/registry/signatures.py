"""Notation signatures in a registry: push one, list them (both referrer forms).

:func:`push_signature` uploads the ``{}`` config blob and the envelope blob, then the
signature manifest (its ``subject`` is the image) by digest. A registry with the
referrers API answers that PUT with ``OCI-Subject``; otherwise the signature is added to
the referrers tag schema index ``sha256-<hex>`` (an image index whose entries carry
``artifactType`` and the manifest's annotations) by read-modify-write:

1. read the index (absent: empty) and its digest; done if the entry is listed;
2. re-read the tag just before writing and start again if its digest changed;
3. PUT the merged index under the tag, then re-read it (three times over 0.4 s) and
   start again if an entry is missing: a concurrent writer replaced the index after
   step 2. Entries seen in any read are kept, so a writer that sees another's entry
   dropped by an overwrite puts it back.

Distribution has no conditional PUT, so a writer whose PUT lands between another's
step 2 and 3 can still drop that writer's entry once its checks are done; within one
process, writers of the same subject are serialised by a lock. Replicas pushing for the
same image should serialise per subject too (see docs/notation.md). The old index is
then deleted by digest when the registry allows deletes (as notation does).

:func:`list_signatures` finds signatures as notation v1.3.2 does: ``GET
/v2/<repo>/referrers/<digest>?artifactType=application/vnd.cncf.notary.signature``
first; a ``404`` whose error code is not ``NAME_UNKNOWN``, or a ``200`` whose
Content-Type is not the OCI image index type, falls back to the tag schema.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

from holdca.errors import MalformedInputError, RegistryError
from holdca.notation.envelope import MEDIA_TYPE_JWS, Descriptor
from holdca.notation.oci import (
    ARTIFACT_TYPE_NOTATION,
    EMPTY_JSON,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    referrers_index,
    referrers_tag,
    signature_manifest,
)
from holdca.registry.client import Fetched, RegistryClient

__all__ = [
    "ENVELOPE_MEDIA_TYPES",
    "PushedSignature",
    "ReferrersForm",
    "list_signatures",
    "push_signature",
]

ENVELOPE_MEDIA_TYPES = (MEDIA_TYPE_JWS, "application/cose")
"""The envelope media types notation reads (the layer's mediaType selects the parser)."""

ReferrersForm = Literal["referrers-api", "tag-schema"]

_ATTEMPTS = 8
_MAX_PAGES = 32
_SETTLE = (0.0, 0.1, 0.3)  # pauses before each re-read that confirms a write survived
_locks: dict[tuple[str, str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class PushedSignature:
    """The result of :func:`push_signature`.

    Attributes:
        manifest: the signature manifest's descriptor (with artifactType and annotations,
            as listed in a referrers index).
        form: ``"referrers-api"`` (the registry answered ``OCI-Subject``) or
            ``"tag-schema"`` (the ``sha256-<hex>`` index was written).
        index: the tag-schema index's descriptor after the write, or ``None``.
    """

    manifest: Descriptor
    form: ReferrersForm
    index: Descriptor | None = None


def _subject_lock(client: RegistryClient, repository: str, digest: str) -> threading.Lock:
    key = (client.registry, repository, digest)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _check_manifest(
    manifest: bytes, envelope: bytes, subject: Descriptor, media_type: str
) -> dict[str, Any]:
    try:
        parsed = json.loads(manifest)
        layers = parsed["layers"]
        layer = Descriptor.from_json(layers[0], "signature layer")
        target = Descriptor.from_json(parsed["subject"], "subject")
    except (ValueError, KeyError, IndexError, TypeError, MalformedInputError) as exc:
        raise MalformedInputError(f"not a signature manifest ({exc})") from None
    if len(layers) != 1 or not layer.same_content(Descriptor.for_content(media_type, envelope)):
        raise MalformedInputError(
            f"the signature manifest's one layer must be the {media_type} envelope"
        )
    if not target.same_content(subject):
        raise MalformedInputError("the signature manifest's subject is not the image")
    return dict(parsed)


def push_signature(
    client: RegistryClient,
    repository: str,
    subject: Descriptor,
    envelope: bytes,
    *,
    media_type: str = MEDIA_TYPE_JWS,
    manifest: bytes | None = None,
) -> PushedSignature:
    """Push ``envelope`` as a notation signature of ``subject`` to ``repository``.

    ``manifest`` is the signature manifest (e.g. ``CosignResponse.signature_manifest``);
    without it one is built with :func:`~holdca.notation.oci.signature_manifest` (JWS
    only). It must have exactly one layer, the envelope with ``media_type``, and
    ``subject`` as its subject.

    Raises:
        ValueError: ``media_type`` is not an envelope type notation reads, or a COSE
            envelope without its ``manifest``.
        MalformedInputError: ``manifest`` does not carry ``envelope`` for ``subject``.
        JWSFormatError: no ``manifest`` and ``envelope`` is not a Notation JWS envelope.
        RegistryError: the registry refused, or the tag-schema index could not be updated.
    """
    if media_type not in ENVELOPE_MEDIA_TYPES:
        raise ValueError(f"media_type must be one of {ENVELOPE_MEDIA_TYPES}, not {media_type!r}")
    target = Descriptor(subject.media_type, subject.digest, subject.size)
    if manifest is None:
        if media_type != MEDIA_TYPE_JWS:
            raise ValueError(f"a {media_type} envelope needs its signature manifest")
        manifest = signature_manifest(envelope, target)
    parsed = _check_manifest(manifest, envelope, target, media_type)
    client.push_blob(repository, EMPTY_JSON)
    client.push_blob(repository, envelope)
    descriptor = Descriptor.for_content(MEDIA_TYPE_OCI_MANIFEST, manifest)
    reply = client.put_manifest(repository, descriptor.digest, manifest, MEDIA_TYPE_OCI_MANIFEST)
    artifact_type = parsed.get("artifactType") or parsed["config"]["mediaType"]
    annotations = parsed.get("annotations")
    entry = Descriptor(
        descriptor.media_type,
        descriptor.digest,
        descriptor.size,
        annotations if isinstance(annotations, dict) else None,
        artifact_type,
    )
    if reply.headers.get("oci-subject") == target.digest:
        return PushedSignature(entry, "referrers-api")
    with _subject_lock(client, repository, target.digest):
        index = _add_to_tag_index(client, repository, target.digest, entry)
    return PushedSignature(entry, "tag-schema", index)


def _read_tag_index(
    client: RegistryClient, repository: str, tag: str
) -> tuple[Descriptor | None, list[Descriptor]]:
    reply = client.get_manifest(repository, tag)
    if reply is None:
        return None, []
    found = Descriptor.for_content(MEDIA_TYPE_OCI_INDEX, reply.body)
    document = client.get_json(reply, f"referrers index {tag}")
    if document.get("mediaType", MEDIA_TYPE_OCI_INDEX) != MEDIA_TYPE_OCI_INDEX:
        raise RegistryError(f"{client.registry}: tag {tag} is not an OCI image index")
    manifests = document.get("manifests") or []
    try:
        return found, [Descriptor.from_json(m, f"{tag} entry") for m in manifests]
    except (MalformedInputError, TypeError):
        raise RegistryError(f"{client.registry}: referrers index {tag} is malformed") from None


def _digest_of(descriptor: Descriptor | None) -> str | None:
    return None if descriptor is None else descriptor.digest


def _add_to_tag_index(
    client: RegistryClient, repository: str, subject_digest: str, entry: Descriptor
) -> Descriptor:
    tag = referrers_tag(subject_digest)
    # every entry seen in any read is kept: a writer that finds an entry it saw earlier
    # gone (dropped by a concurrent overwrite) puts it back with its own
    seen: dict[str, Descriptor] = {}
    for attempt in range(_ATTEMPTS):
        if attempt:
            time.sleep(0.02 * attempt)
        old, entries = _read_tag_index(client, repository, tag)
        for item in [*entries, entry]:
            seen.setdefault(item.digest, item)
        listed = {e.digest for e in entries}
        missing = [e for e in seen.values() if e.digest not in listed]
        wrote = False
        if missing:
            merged = referrers_index([*entries, *missing])
            if _digest_of(_read_tag_index(client, repository, tag)[0]) != _digest_of(old):
                continue  # changed since we read it: merge again
            client.put_manifest(repository, tag, merged, MEDIA_TYPE_OCI_INDEX)
            wrote = True
        current = _still_listed(client, repository, tag, set(seen))
        if current is None:
            continue  # a concurrent writer replaced our index: merge again
        if wrote and old is not None and old.digest != current.digest:
            # the outdated index, if deletes are allowed; best effort, as in notation
            # (left behind, it is only garbage for the registry's collector)
            with contextlib.suppress(RegistryError):
                client.delete_manifest(repository, old.digest)
        return current
    raise RegistryError(
        f"{client.registry}: the referrers index {tag} kept changing under concurrent "
        f"writers; gave up after {_ATTEMPTS} attempts"
    )


def _still_listed(
    client: RegistryClient, repository: str, tag: str, digests: set[str]
) -> Descriptor | None:
    """The index's descriptor if it lists all ``digests`` now and a moment later."""
    current: Descriptor | None = None
    for pause in _SETTLE:
        time.sleep(pause)
        current, entries = _read_tag_index(client, repository, tag)
        if current is None or not digests <= {e.digest for e in entries}:
            return None
    return current


def list_signatures(
    client: RegistryClient, repository: str, subject_digest: str
) -> tuple[ReferrersForm, list[Descriptor]]:
    """The notation signature manifests of ``subject_digest`` and where they were found.

    Entries are filtered on ``artifactType`` unless the registry says it filtered
    (``OCI-Filters-Applied: artifactType``); referrers pages (``Link: <...>;
    rel="next"``) are followed, at most 32.

    Raises:
        MalformedInputError: ``subject_digest`` is not a sha256 digest.
        RegistryError: the repository is unknown (``NAME_UNKNOWN``), another error
            status, or a malformed index.
    """
    tag = referrers_tag(subject_digest)
    query = urllib.parse.urlencode({"artifactType": ARTIFACT_TYPE_NOTATION})
    url: str | None = f"/v2/{repository}/referrers/{subject_digest}?{query}"
    found: list[Descriptor] = []
    for _ in range(_MAX_PAGES):
        if url is None:
            return "referrers-api", found
        reply = client.request(
            "GET",
            url,
            scope=f"repository:{repository}:pull",
            headers={"Accept": MEDIA_TYPE_OCI_INDEX},
            limit=4 * 1024 * 1024,
        )
        if (reply.status == 404 and reply.error_code() != "NAME_UNKNOWN") or (
            reply.status == 200 and reply.media_type != MEDIA_TYPE_OCI_INDEX
        ):
            if found:
                raise RegistryError(f"{client.registry}: referrers API stopped mid-listing")
            return "tag-schema", _notation_entries(_read_tag_index(client, repository, tag)[1])
        if reply.status != 200:
            raise client.fail(reply, f"GET referrers of {subject_digest}")
        document = client.get_json(reply, "referrers response")
        try:
            entries = [Descriptor.from_json(m, "referrer") for m in document.get("manifests") or []]
        except (MalformedInputError, TypeError):
            raise RegistryError(f"{client.registry}: malformed referrers response") from None
        filtered = "artifacttype" in reply.headers.get("oci-filters-applied", "").lower()
        found.extend(entries if filtered else _notation_entries(entries))
        url = _next_link(client, reply)
    raise RegistryError(f"{client.registry}: more than {_MAX_PAGES} pages of referrers")


def _notation_entries(entries: list[Descriptor]) -> list[Descriptor]:
    return [e for e in entries if e.artifact_type == ARTIFACT_TYPE_NOTATION]


def _next_link(client: RegistryClient, reply: Fetched) -> str | None:
    link = reply.headers.get("link")
    if not link:
        return None
    for part in link.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            return urllib.parse.urljoin(client.base + "/", target.strip().strip("<>"))
    return None
