"""Where a store root lives: a local (or mounted NFS) directory, or an object-store prefix.

Covered: plain paths and ``file://`` URIs (local), ``s3://bucket/prefix`` and
``gs://bucket/prefix`` (object storage, see :mod:`factory.store.object_files`). Any other URI
scheme (``hdfs://``, ``az://``, ``http://``, …) is rejected with a message naming the
supported ones, so a typo never turns into a local folder called ``./hdfs:``.
:class:`ObjectSettings` says how to reach an object store (endpoint, region, plain http for a
local emulator); it never holds credentials.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from factory.store.errors import StoreError

OBJECT_SCHEMES = ("s3", "gs")
"""Object stores the snapshot store commits to (conditional writes: create-if-absent, if-match)."""
LOCAL_SCHEMES = ("file",)
URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$")


@dataclass(frozen=True)
class Location:
    """A parsed store root: ``scheme`` is "local", "s3" or "gs"; ``root`` is an absolute path
    (local) or ``SCHEME://bucket[/prefix]`` without a trailing slash (object storage)."""

    scheme: str
    root: str

    @property
    def is_local(self) -> bool:
        return self.scheme == "local"


def parse_root(root: str) -> Location:
    """Parse and normalise a store root; ValueError for an unsupported scheme or a URI without a bucket."""
    match = URI.match(root)
    if not match:
        return Location("local", os.path.abspath(root))
    scheme = match.group(1).lower()
    if scheme in LOCAL_SCHEMES:
        parts = urlsplit(root)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file:// root {root!r} names a host; use file:///absolute/path")
        return Location("local", os.path.abspath(parts.path))
    if scheme not in OBJECT_SCHEMES:
        supported = ", ".join(f"{s}://" for s in OBJECT_SCHEMES + LOCAL_SCHEMES)
        raise ValueError(f"unsupported URI scheme {scheme}:// in {root!r}: use a local path or {supported}")
    bucket, _, prefix = root[len(match.group(0)):].partition("/")
    if not BUCKET.match(bucket):
        raise ValueError(f"{root!r} has no valid bucket name (expected {scheme}://bucket/prefix)")
    prefix = "/".join(part for part in prefix.split("/") if part)
    if any(part in (".", "..") for part in prefix.split("/")):
        raise ValueError(f"{root!r}: '.' and '..' are not allowed in an object-store prefix")
    return Location(scheme, f"{scheme}://{bucket}/{prefix}" if prefix else f"{scheme}://{bucket}")


@dataclass(frozen=True)
class ObjectSettings:
    """How to reach the object store (no secrets: those come from the environment).

    Unset values fall back to ``AWS_ENDPOINT_URL`` / ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``)
    / ``AWS_ALLOW_HTTP``, then to the provider's defaults."""

    endpoint_url: str | None = None
    region: str | None = None
    allow_http: bool = False

    def resolved(self) -> "ObjectSettings":
        env = os.environ
        endpoint = self.endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        region = self.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        allow_http = self.allow_http or env.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true")
        if endpoint and urlsplit(endpoint).scheme == "http" and not allow_http:
            raise StoreError(f"endpoint {endpoint} is plain http: set store.allow_http (or AWS_ALLOW_HTTP=true)")
        return ObjectSettings(endpoint, region, allow_http)
