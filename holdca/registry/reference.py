"""Image references (``REGISTRY/REPO@sha256:...`` or ``:tag``) and registry credentials.

:func:`parse_image_reference` accepts the distribution reference grammar restricted to
what holdca signs: an explicit registry host (a name with a dot or a port, or
``localhost``), a lowercase repository path, and a tag or a ``sha256:`` digest (a digest
wins when both are given, as docker does: ``repo:tag@sha256:...``). There is no default
registry (``docker.io``) and no default tag: a signature must name what it signs.

:class:`RegistryCredentials` holds a username and password; its ``repr`` never shows the
password. :func:`credentials_from_env` reads ``HOLDCA_REGISTRY_USERNAME`` and
``HOLDCA_REGISTRY_PASSWORD``, or else the ``auths`` entry of a docker ``config.json``
(``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``). Credential helpers
(``credsStore``, ``credHelpers``) are not run.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from holdca.errors import ConfigError, MalformedInputError

__all__ = [
    "ImageReference",
    "RegistryCredentials",
    "credentials_from_env",
    "parse_image_reference",
]

_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_MAX_CONFIG = 1024 * 1024


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference.

    Attributes:
        registry: ``host[:port]`` as written (the HTTP authority).
        repository: the repository path, e.g. ``holdca/demo``.
        tag: the tag, or ``None``.
        digest: the ``sha256:`` digest, or ``None`` (a digest wins over a tag).
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """The digest if there is one, else the tag (what a manifest URL ends with)."""
        ref = self.digest or self.tag
        assert ref is not None  # parse_image_reference guarantees one of them
        return ref

    def with_digest(self, digest: str) -> ImageReference:
        """This reference pinned to ``digest`` (the tag dropped)."""
        return ImageReference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        suffix = f"@{self.digest}" if self.digest else f":{self.tag}"
        return f"{self.registry}/{self.repository}{suffix}"


def parse_image_reference(text: str) -> ImageReference:
    """Parse ``REGISTRY/REPO@sha256:<hex>``, ``REGISTRY/REPO:tag`` or both.

    Raises:
        MalformedInputError: no registry host, a bad repository, tag or digest, or
            neither a tag nor a digest.
    """
    if len(text) > 1024:
        raise MalformedInputError("image reference: longer than 1024 characters")
    name, _, digest = text.partition("@")
    if "/" not in name:
        raise MalformedInputError(
            f"image reference {text!r}: give the registry, e.g. localhost:5000/repo@sha256:..."
        )
    registry, _, path = name.partition("/")
    if not (_HOST.fullmatch(registry) and ("." in registry or ":" in registry)) and (
        registry != "localhost"
    ):
        raise MalformedInputError(
            f"image reference {text!r}: {registry!r} is not a registry host (it needs a dot "
            "or a port, or is localhost; there is no default registry)"
        )
    tag: str | None = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise MalformedInputError(f"image reference {text!r}: invalid tag {tag!r}")
    if not _REPOSITORY.fullmatch(path) or len(path) > 255:
        raise MalformedInputError(f"image reference {text!r}: invalid repository {path!r}")
    if digest and not _DIGEST.fullmatch(digest):
        raise MalformedInputError(
            f"image reference {text!r}: the digest must be sha256:<64 lowercase hex>"
        )
    if not digest and tag is None:
        raise MalformedInputError(f"image reference {text!r}: give a :tag or an @sha256: digest")
    return ImageReference(registry, path, None if digest else tag, digest or None)


@dataclass(frozen=True)
class RegistryCredentials:
    """A username and password (or token) for a registry; the password never prints."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        """The ``Authorization: Basic`` value."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def credentials_from_env(
    registry: str, env: Mapping[str, str] | None = None
) -> RegistryCredentials | None:
    """Credentials for ``registry`` from the environment, or ``None``.

    ``HOLDCA_REGISTRY_USERNAME`` and ``HOLDCA_REGISTRY_PASSWORD`` (both, or neither)
    win; else the ``auths[registry]`` entry (``auth`` = base64 ``user:password``, or
    ``username`` and ``password``) of ``$DOCKER_CONFIG/config.json`` or
    ``~/.docker/config.json`` when that file exists.

    Raises:
        ConfigError: only one of the two variables is set, or the docker config file is
            unreadable, not JSON, or its entry for ``registry`` is malformed (the message
            names the file and setting, never the secret).
    """
    env = os.environ if env is None else env
    user, password = env.get("HOLDCA_REGISTRY_USERNAME"), env.get("HOLDCA_REGISTRY_PASSWORD")
    if (user is None) != (password is None):
        raise ConfigError(
            "HOLDCA_REGISTRY_USERNAME and HOLDCA_REGISTRY_PASSWORD go together: set both"
        )
    if user is not None and password is not None:
        return RegistryCredentials(user, password)
    directory = env.get("DOCKER_CONFIG")
    if directory:
        path = Path(directory) / "config.json"
    elif env.get("HOME"):
        path = Path(env["HOME"]) / ".docker" / "config.json"
    else:
        return None
    if not path.is_file():
        return None
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_CONFIG + 1)
        if len(data) > _MAX_CONFIG:
            raise ConfigError(f"{path}: larger than {_MAX_CONFIG} bytes")
        document = json.loads(data)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None
    auths = document.get("auths") if isinstance(document, dict) else None
    entry = auths.get(registry) if isinstance(auths, dict) else None
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: auths[{registry!r}] is not an object")
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            decoded = base64.b64decode(entry["auth"], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(f"{path}: auths[{registry!r}].auth is not base64") from None
        name, sep, secret = decoded.partition(":")
        if not sep:
            raise ConfigError(f"{path}: auths[{registry!r}].auth is not base64 'user:password'")
        return RegistryCredentials(name, secret)
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return RegistryCredentials(entry["username"], entry["password"])
    return None
