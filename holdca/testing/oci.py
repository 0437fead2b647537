"""Tiny OCI images for tests and demos: one config, one layer, one manifest, tagged.

Example::

    from holdca.notation.oci import OCILayout
    from holdca.testing.oci import build_test_image

    layout = OCILayout.create(tmp_path / "layout")
    image = build_test_image(layout, tag="v1")   # Descriptor of the image manifest
"""

from __future__ import annotations

import json

from holdca.notation.envelope import Descriptor
from holdca.notation.oci import MEDIA_TYPE_OCI_MANIFEST, OCILayout

__all__ = ["CONFIG_MEDIA_TYPE", "LAYER_MEDIA_TYPE", "build_test_image"]

CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


def build_test_image(
    layout: OCILayout,
    *,
    tag: str | None = "v1",
    content: bytes = b"holdca test image\n",
    title: str = "hello.txt",
) -> Descriptor:
    """Store a one-layer image in ``layout`` and return its manifest descriptor.

    Different ``content`` gives a different manifest digest, so a test can build several
    images in one layout.

    Raises:
        ValueError: invalid tag.
    """
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
        separators=(",", ":"),
    ).encode()
    layer = Descriptor.for_content(
        LAYER_MEDIA_TYPE, content, {"org.opencontainers.image.title": title}
    )
    layout.put_blob(config)
    layout.put_blob(content)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": Descriptor.for_content(CONFIG_MEDIA_TYPE, config).to_json(),
        "layers": [layer.to_json()],
    }
    data = json.dumps(manifest, separators=(",", ":")).encode()
    return layout.add_manifest(data, MEDIA_TYPE_OCI_MANIFEST, tag=tag)
