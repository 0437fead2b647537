"""Notation signature artifacts and OCI image layouts.

:func:`signature_manifest` builds the OCI image manifest that carries one envelope, in
the form notation v1.3.2 reads (``ManifestForm.LEGACY``: ``config.mediaType``
``application/vnd.cncf.notary.signature``, config ``{}``, one ``application/jose+json``
layer, ``subject``, thumbprint and creation annotations) or the ``artifactType`` form
(empty config ``application/vnd.oci.empty.v1+json``) that notation v2 and registries with
the referrers API also accept. notation v1.3.x sees only the legacy form in an OCI layout,
so that is the default. :func:`referrers_index` and :func:`referrers_tag` build the
referrers tag schema index (tag ``sha256-<hex>``).

:class:`OCILayout` reads and writes OCI image layouts (``oci-layout``, ``index.json``,
``blobs/sha256``): blobs are written atomically (temporary file + rename), index.json is
replaced atomically under an exclusive ``flock`` of the layout directory, so concurrent
writers in several processes do not lose entries.

Example::

    layout = OCILayout(path)
    desc = layout.attach_signature("v1", envelope_bytes)
    for sig in layout.signatures_of("v1"):
        print(sig.manifest_descriptor.digest, len(sig.envelope))
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from holdca._fs import atomic_write
from holdca.errors import MalformedInputError
from holdca.notation._codec import format_time, strict_json
from holdca.notation.envelope import (
    MEDIA_TYPE_JWS,
    CertificateOrDER,
    Descriptor,
    chain_thumbprints,
    parse_envelope,
)

__all__ = [
    "ARTIFACT_TYPE_NOTATION",
    "EMPTY_JSON",
    "MAX_MANIFEST_SIZE",
    "MEDIA_TYPE_EMPTY",
    "MEDIA_TYPE_OCI_INDEX",
    "MEDIA_TYPE_OCI_MANIFEST",
    "THUMBPRINT_ANNOTATION",
    "AttachedSignature",
    "ManifestForm",
    "OCILayout",
    "referrers_index",
    "referrers_tag",
    "signature_manifest",
]

MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_EMPTY = "application/vnd.oci.empty.v1+json"
ARTIFACT_TYPE_NOTATION = "application/vnd.cncf.notary.signature"
THUMBPRINT_ANNOTATION = "io.cncf.notary.x509chain.thumbprint#S256"
CREATED_ANNOTATION = "org.opencontainers.image.created"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
EMPTY_JSON = b"{}"
"""The config blob of a signature manifest (both forms)."""

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
"""Largest manifest or index read (notation's limit)."""

_MAX_ENVELOPE = 32 * 1024 * 1024
_DIGEST = re.compile(r"sha256:([a-f0-9]{64})")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


class ManifestForm(enum.Enum):
    """Which signature manifest form to write."""

    LEGACY = "legacy"
    """config.mediaType = application/vnd.cncf.notary.signature (notation v1 and v2)."""
    ARTIFACT_TYPE = "artifactType"
    """artifactType + empty config (notation v2, registries with the referrers API)."""


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _manifest_head(form: ManifestForm) -> str:
    """The manifest's members before ``layers`` (constant per form), with a trailing comma."""
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_MANIFEST}
    if form is ManifestForm.ARTIFACT_TYPE:
        manifest["artifactType"] = ARTIFACT_TYPE_NOTATION
        manifest["config"] = Descriptor.for_content(MEDIA_TYPE_EMPTY, EMPTY_JSON).to_json()
    else:
        manifest["config"] = Descriptor.for_content(ARTIFACT_TYPE_NOTATION, EMPTY_JSON).to_json()
    return _json(manifest).decode("ascii")[:-1] + ","


_MANIFEST_HEADS = {form: _manifest_head(form) for form in ManifestForm}


def signature_manifest(
    envelope: bytes,
    subject: Descriptor,
    *,
    form: ManifestForm = ManifestForm.LEGACY,
    created: datetime | None = None,
    chain: Sequence[CertificateOrDER] | None = None,
    media_type: str = MEDIA_TYPE_JWS,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """The OCI image manifest carrying ``envelope`` as a signature of ``subject``.

    ``annotations`` are extra manifest annotations (unsigned: e.g. the transparency-log
    index, ``io.atcr.log.index``), written after the two standard ones; notation ignores
    annotations it does not know.

    ``media_type`` is the envelope's: ``application/jose+json`` (JWS) or
    ``application/cose`` (:mod:`holdca.notation.cose`).

    The thumbprint annotation lists lowercase SHA-256 hex of each ``x5c`` certificate,
    leaf first; ``org.opencontainers.image.created`` is ``created`` or the envelope's
    signing time. The config blob (``EMPTY_JSON``) and the envelope blob must be stored
    beside it.

    A signer that has just built ``envelope`` passes its ``chain`` and ``created`` (the
    signing time) so the envelope is not parsed again; otherwise both come from parsing it.
    ``chain`` elements are :class:`x509.Certificate` or their DER ``bytes`` (DER saves
    re-encoding: it is hashed as given); they are not checked against the envelope.

    Raises:
        JWSFormatError: ``envelope`` is not a Notation JWS envelope (when parsed).
        MalformedInputError: a COSE ``envelope`` that is not one notation reads.
        ValueError: ``chain`` given without ``created``, ``created`` is naive, an
            unknown ``media_type``, or an extra annotation that redefines a standard one.
        TypeError: a ``chain`` element is neither a certificate nor bytes.
    """
    if chain is not None:
        if created is None:
            raise ValueError("signature_manifest(chain=...) needs created= (the signing time)")
        thumbprints = chain_thumbprints(chain)
        when = created
    elif media_type == MEDIA_TYPE_JWS:
        parsed = parse_envelope(envelope)
        thumbprints = parsed.thumbprints
        when = created or parsed.signing_time
    elif media_type == "application/cose":
        from holdca.notation.cose import parse_cose_envelope  # noqa: PLC0415 - cbor2 extra

        cose = parse_cose_envelope(envelope)
        thumbprints = chain_thumbprints(cose.chain)
        when = created or cose.signing_time
    else:
        raise ValueError(f"unknown envelope media type {media_type!r}")
    head = _MANIFEST_HEADS[
        ManifestForm.ARTIFACT_TYPE if form is ManifestForm.ARTIFACT_TYPE else ManifestForm.LEGACY
    ]
    # Formatted directly, byte-identical to json.dumps of the manifest object in field
    # order. The thumbprints are hex and the annotation holds their JSON list as a string
    # (hence the escaped quotes); subject's mediaType and digest are grammar-checked by
    # Descriptor and contain no character JSON escapes.
    listed = ",".join([f'\\"{t}\\"' for t in thumbprints])
    extra = ""
    for key, value in (annotations or {}).items():
        if key in {THUMBPRINT_ANNOTATION, CREATED_ANNOTATION}:
            raise ValueError(f"annotation {key!r} is set by signature_manifest itself")
        extra += f",{json.dumps(key)}:{json.dumps(value)}"
    return (
        f'{head}"layers":[{{"mediaType":"{media_type}",'
        f'"digest":"sha256:{hashlib.sha256(envelope).hexdigest()}","size":{len(envelope)}}}],'
        f'"subject":{{"mediaType":"{subject.media_type}","digest":"{subject.digest}",'
        f'"size":{int(subject.size)}}},'
        f'"annotations":{{"{THUMBPRINT_ANNOTATION}":"[{listed}]",'
        f'"{CREATED_ANNOTATION}":"{format_time(when)}"{extra}}}}}'
    ).encode()


def referrers_tag(digest: str) -> str:
    """The referrers tag schema tag of ``digest``: ``sha256-<hex>``.

    Raises:
        MalformedInputError: not a ``sha256:`` digest.
    """
    if not _DIGEST.fullmatch(digest):
        raise MalformedInputError(f"invalid sha256 digest {digest!r}")
    return digest.replace(":", "-", 1)


def referrers_index(entries: Sequence[Descriptor]) -> bytes:
    """An OCI image index listing referrers (each entry should carry ``artifact_type``)."""
    return _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_INDEX,
            "manifests": [e.to_json() for e in entries],
        }
    )


def _manifest_artifact_type(manifest: dict[str, Any]) -> str | None:
    artifact_type = manifest.get("artifactType")
    if isinstance(artifact_type, str):
        return artifact_type
    config = manifest.get("config")
    if isinstance(config, dict) and isinstance(config.get("mediaType"), str):
        return str(config["mediaType"])
    return None


@dataclass(frozen=True)
class AttachedSignature:
    """A signature found in a layout: its manifest and the envelope bytes."""

    manifest_descriptor: Descriptor
    manifest: dict[str, Any]
    envelope_media_type: str
    envelope: bytes


class OCILayout:
    """An OCI image layout directory (read and write).

    Raises (constructor):
        MalformedInputError: ``path`` is not an OCI image layout.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open an existing layout (see :meth:`create` for a new one)."""
        self.path = Path(path)
        try:
            marker = strict_json(
                (self.path / "oci-layout").read_bytes(), "oci-layout", MalformedInputError
            )
        except FileNotFoundError:
            raise MalformedInputError(f"{self.path} is not an OCI layout (no oci-layout)") from None
        if not isinstance(marker, dict) or marker.get("imageLayoutVersion") != "1.0.0":
            raise MalformedInputError(f"{self.path}: unsupported oci-layout")

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> OCILayout:
        """Create an empty layout at ``path`` (or open it if it already is one)."""
        root = Path(path)
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        if not (root / "oci-layout").exists():
            atomic_write(root / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        if not (root / "index.json").exists():
            atomic_write(root / "index.json", b'{"schemaVersion":2,"manifests":[]}')
        return cls(root)

    def __repr__(self) -> str:
        return f"<OCILayout {str(self.path)!r}>"

    # --- blobs ---

    def _blob_path(self, digest: str) -> Path:
        match = _DIGEST.fullmatch(digest)
        if match is None:
            raise MalformedInputError(f"unsupported digest {digest!r} (sha256 only)")
        return self.path / "blobs" / "sha256" / match.group(1)

    def put_blob(self, data: bytes) -> str:
        """Store ``data`` atomically; return its ``sha256:`` digest (no-op if present)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self._blob_path(digest)
        if not path.exists():
            atomic_write(path, data)
        return digest

    def get_blob(self, digest: str, max_size: int = _MAX_ENVELOPE) -> bytes:
        """Read a blob and check its digest.

        Raises:
            MalformedInputError: missing, too large, or its content does not hash to it.
        """
        path = self._blob_path(digest)
        try:
            size = path.stat().st_size
            if size > max_size:
                raise MalformedInputError(f"blob {digest} is {size} bytes, over {max_size}")
            data = path.read_bytes()
        except FileNotFoundError:
            raise MalformedInputError(f"blob {digest} not found in {self.path}") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise MalformedInputError(f"blob {digest} does not match its digest")
        return data

    # --- index.json ---

    def index(self) -> dict[str, Any]:
        """The parsed index.json.

        Raises:
            MalformedInputError: not a valid image index.
        """
        data = (self.path / "index.json").read_bytes()
        if len(data) > MAX_MANIFEST_SIZE:
            raise MalformedInputError("index.json is too large")
        index = strict_json(data, "index.json", MalformedInputError)
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise MalformedInputError("index.json is not an OCI image index")
        return index

    def manifests(self) -> list[Descriptor]:
        """The descriptors listed in index.json (with their annotations)."""
        return [Descriptor.from_json(m, "index.json entry") for m in self.index()["manifests"]]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _add_to_index(self, descriptor: Descriptor, tag: str | None) -> None:
        with self._locked():
            self._add_to_index_unlocked(descriptor, tag)

    def _add_to_index_unlocked(self, descriptor: Descriptor, tag: str | None) -> None:
        index = self.index()
        entries: list[dict[str, Any]] = []
        for entry in index["manifests"]:
            annotations = entry.get("annotations") or {}
            if tag is not None and annotations.get(REF_NAME_ANNOTATION) == tag:
                continue  # the tag moves to the new descriptor
            if entry.get("digest") == descriptor.digest and tag is None:
                return  # already listed
            entries.append(entry)
        entry_json = descriptor.to_json()
        if tag is not None:
            annotations = dict(entry_json.get("annotations", {}))
            annotations[REF_NAME_ANNOTATION] = tag
            entry_json["annotations"] = annotations
        entries.append(entry_json)
        index["manifests"] = entries
        atomic_write(self.path / "index.json", _json(index))

    def add_manifest(
        self, manifest: bytes, media_type: str = MEDIA_TYPE_OCI_MANIFEST, *, tag: str | None = None
    ) -> Descriptor:
        """Store ``manifest`` and list it in index.json (tagged ``tag`` if given).

        Raises:
            ValueError: invalid tag.
        """
        if tag is not None and not _TAG.fullmatch(tag):
            raise ValueError(f"invalid tag {tag!r}")
        self.put_blob(manifest)
        descriptor = Descriptor.for_content(media_type, manifest)
        self._add_to_index(descriptor, tag)
        return descriptor

    def resolve(self, reference: str) -> Descriptor:
        """The descriptor of a tag or ``sha256:`` digest listed in index.json.

        Raises:
            MalformedInputError: nothing in index.json has that tag or digest.
        """
        for entry in self.index()["manifests"]:
            annotations = entry.get("annotations") or {}
            if (
                entry.get("digest") == reference
                or annotations.get(REF_NAME_ANNOTATION) == reference
            ):
                found = Descriptor.from_json(entry, "index.json entry")
                return Descriptor(found.media_type, found.digest, found.size)
        raise MalformedInputError(f"{reference!r} is not in {self.path}/index.json")

    def read_manifest(self, descriptor: Descriptor) -> dict[str, Any]:
        """Read and parse a manifest or index blob.

        Raises:
            MalformedInputError: missing, too large, or not a JSON object.
        """
        data = self.get_blob(descriptor.digest, MAX_MANIFEST_SIZE)
        manifest = strict_json(data, f"manifest {descriptor.digest}", MalformedInputError)
        if not isinstance(manifest, dict):
            raise MalformedInputError(f"manifest {descriptor.digest} is not a JSON object")
        return manifest

    # --- signatures ---

    def attach_signature(
        self,
        subject: str | Descriptor,
        envelope: bytes,
        *,
        form: ManifestForm = ManifestForm.LEGACY,
        referrers_tag_index: bool = True,
        media_type: str = MEDIA_TYPE_JWS,
        annotations: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Attach ``envelope`` as a signature of ``subject`` (a tag, digest or descriptor).

        ``media_type``: the envelope's (``application/jose+json`` or ``application/cose``).
        ``annotations``: extra signature-manifest annotations (see :func:`signature_manifest`).

        Stores the config, envelope and signature manifest blobs, lists the manifest in
        index.json and, with ``referrers_tag_index``, adds it to the ``sha256-<hex>``
        referrers tag index (as notation's own layouts do).

        Returns:
            The signature manifest's descriptor.

        Raises:
            MalformedInputError: unknown subject.
            JWSFormatError: ``envelope`` is not a Notation JWS envelope.
        """
        target = subject if isinstance(subject, Descriptor) else self.resolve(subject)
        target = Descriptor(target.media_type, target.digest, target.size)
        manifest = signature_manifest(
            envelope, target, form=form, media_type=media_type, annotations=annotations
        )
        self.put_blob(EMPTY_JSON)
        self.put_blob(envelope)
        descriptor = self.add_manifest(manifest)
        if referrers_tag_index:
            parsed = json.loads(manifest)
            entry = Descriptor(
                descriptor.media_type,
                descriptor.digest,
                descriptor.size,
                parsed["annotations"],
                ARTIFACT_TYPE_NOTATION,
            )
            self._add_referrer_to_tag_index(target.digest, entry)
        return descriptor

    def _add_referrer_to_tag_index(self, subject_digest: str, entry: Descriptor) -> None:
        tag = referrers_tag(subject_digest)
        with self._locked():
            existing: list[Descriptor] = []
            for item in self.index()["manifests"]:
                annotations = item.get("annotations") or {}
                if annotations.get(REF_NAME_ANNOTATION) == tag:
                    old = self.read_manifest(Descriptor.from_json(item))
                    existing = [Descriptor.from_json(m) for m in old.get("manifests", [])]
            if any(e.digest == entry.digest for e in existing):
                return
            index_bytes = referrers_index([*existing, entry])
            self.put_blob(index_bytes)
            self._add_to_index_unlocked(
                Descriptor.for_content(MEDIA_TYPE_OCI_INDEX, index_bytes), tag
            )

    def signatures_of(self, subject: str | Descriptor) -> list[AttachedSignature]:
        """The Notation signatures of ``subject`` found the way notation finds them.

        A signature is a manifest listed in index.json whose ``subject`` equals the target
        (mediaType, digest, size), whose artifact type (``artifactType`` or, for the legacy
        form, ``config.mediaType``) is the Notation signature type, with exactly one layer.

        Raises:
            MalformedInputError: unknown subject or a malformed signature manifest.
        """
        target = subject if isinstance(subject, Descriptor) else self.resolve(subject)
        found = []
        for entry in self.manifests():
            if entry.media_type != MEDIA_TYPE_OCI_MANIFEST:
                continue
            manifest = self.read_manifest(entry)
            if _manifest_artifact_type(manifest) != ARTIFACT_TYPE_NOTATION:
                continue
            try:
                manifest_subject = Descriptor.from_json(manifest.get("subject"), "subject")
            except MalformedInputError:
                continue
            if not manifest_subject.same_content(target):
                continue
            layers = manifest.get("layers")
            if not isinstance(layers, list) or len(layers) != 1:
                raise MalformedInputError(
                    f"signature manifest {entry.digest} must have exactly one layer"
                )
            layer = Descriptor.from_json(layers[0], "signature layer")
            envelope = self.get_blob(layer.digest, _MAX_ENVELOPE)
            found.append(
                AttachedSignature(
                    Descriptor(entry.media_type, entry.digest, entry.size),
                    manifest,
                    layer.media_type,
                    envelope,
                )
            )
        return found
