"""The object-storage backend of the commit protocol (``s3://``, and ``gs://`` through the same
layer), using the stores' conditional writes through ``obstore``.

Covered, with the same operations as :mod:`factory.store.local_files`:

- ``create`` (the version claim): a PUT with ``If-None-Match: *`` (obstore ``mode="create"``);
  exactly one writer's PUT succeeds, the others get "already exists";
- ``swap`` (``LATEST``): a PUT with ``If-Match: <e-tag>`` (obstore ``mode={"e_tag", "version"}``),
  or create-if-absent when there is no LATEST yet;
- ``place`` does not move anything (objects cannot be renamed); the staged parts stay where the
  writer put them and ``publish`` copies them server-side (no bytes through this process) into
  ``snapshots/VERSION/`` with ``_manifest.json`` last, then deletes the staging prefix. A version
  is visible only once its manifest exists, so a crash mid-copy shows nothing, and the next
  writer's roll-forward (same copies, idempotent) completes it.

Parquet bytes (driver writes, Ray ``write_parquet``, every reader) go through a pyarrow
filesystem built from the same settings (``arrow_fs``). Credentials are never taken from config:
both clients read the provider's usual environment (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, web-identity, container and instance roles;
``GOOGLE_APPLICATION_CREDENTIALS`` for GCS). Not covered: S3 server-side copies of objects over
5 GB (keep ``rows_per_file`` so that parts stay below), and ``gs://`` is untested here (no local
GCS emulator with conditional writes).
"""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import AlreadyExistsError, PreconditionError

from factory.store.errors import StoreError
from factory.store.layout import CHUNK, INCOMING, MANIFEST, MOVES
from factory.store.location import Location, ObjectSettings

STREAM_CHUNK = 2 * CHUNK


class ObjectFiles:
    """Store files under ``location.root`` (``s3://bucket/prefix``); see the module docstring."""

    io_threads = 16

    def __init__(self, location: Location, settings: ObjectSettings = ObjectSettings()):
        self.scheme = location.scheme
        self.root = location.root
        self.bucket = urlsplit(location.root).netloc
        self.settings = settings.resolved()
        self._store = _obstore(self.scheme, self.bucket, self.settings)
        self.arrow_fs = _arrow_fs(self.scheme, self.settings)
        self._conditional_puts_checked = False

    @property
    def storage_options(self) -> dict:
        """fsspec ``storage_options`` (s3fs / gcsfs) for pandas and HF ``datasets``."""
        client = {}
        if self.settings.endpoint_url:
            client["endpoint_url"] = self.settings.endpoint_url
        if self.settings.region:
            client["region_name"] = self.settings.region
        return {"client_kwargs": client} if client and self.scheme == "s3" else {}

    # paths ------------------------------------------------------------------------------------

    def join(self, base: str, *parts: str) -> str:
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])

    def relative(self, path: str, base: str) -> str:
        prefix = base.rstrip("/") + "/"
        if not path.startswith(prefix):
            raise ValueError(f"{path} is not under {base}")
        return path[len(prefix):]

    def arrow_path(self, path: str) -> str:
        """``s3://bucket/key`` → ``bucket/key``, the form pyarrow filesystems take."""
        return path.split("://", 1)[1]

    def _key(self, path: str) -> str:
        return self.relative(path, f"{self.scheme}://{self.bucket}")

    # reads ------------------------------------------------------------------------------------

    def ensure_dirs(self, *paths: str) -> None:
        """Nothing to do: object stores have no directories."""

    def names(self, directory: str) -> list[str]:
        key = self._key(directory)
        listed = obstore.list_with_delimiter(self._store, key)
        paths = list(listed["common_prefixes"]) + [o["path"] for o in listed["objects"]]
        return sorted({p.rsplit("/", 1)[-1] for p in paths if p != key})

    def _objects(self, directory: str) -> list[dict]:
        """Every object under ``directory`` (streamed listing), without pyarrow's zero-byte
        directory markers."""
        key = self._key(directory)
        objects = [meta for batch in obstore.list(self._store, key) for meta in batch]
        dirs = {path.rsplit("/", i)[0] for path in (o["path"] for o in objects) for i in range(1, path.count("/") + 1)}
        return [o for o in objects if o["path"] != key and o["path"] not in dirs]

    def walk(self, directory: str) -> list[str]:
        prefix = self._key(directory) + "/"
        found = []
        for meta in self._objects(directory):
            rel = meta["path"][len(prefix):]
            if not any(part.startswith((".", "_")) for part in rel.split("/")[:-1]):
                found.append(rel)
        return sorted(found)

    def exists(self, path: str) -> bool:
        try:
            obstore.head(self._store, self._key(path))
        except FileNotFoundError:
            return False
        return True

    def size(self, path: str) -> int:
        return obstore.head(self._store, self._key(path))["size"]

    def read_bytes(self, path: str) -> bytes:
        return bytes(obstore.get(self._store, self._key(path)).bytes())

    def read_versioned(self, path: str) -> tuple[bytes | None, object]:
        try:
            result = obstore.get(self._store, self._key(path))
        except FileNotFoundError:
            return None, None
        token = {k: result.meta[k] for k in ("e_tag", "version") if result.meta.get(k) is not None}
        return bytes(result.bytes()), token

    def sha256(self, path: str, sync: bool = False) -> str:
        """sha256 of the object, streamed in 2 MiB chunks (``sync`` is moot: a PUT is durable)."""
        digest = hashlib.sha256()
        for chunk in obstore.get(self._store, self._key(path)).stream(min_chunk_size=STREAM_CHUNK):
            digest.update(chunk)
        return digest.hexdigest()

    def newest_mtime(self, directory: str) -> float:
        return max((o["last_modified"].timestamp() for o in self._objects(directory)), default=0.0)

    # writes -----------------------------------------------------------------------------------

    def write(self, path: str, data: bytes) -> None:
        obstore.put(self._store, self._key(path), data)

    def create(self, path: str, data: bytes) -> bool:
        try:
            obstore.put(self._store, self._key(path), data, mode="create")
        except AlreadyExistsError:
            return False
        return True

    def swap(self, path: str, data: bytes, token: object) -> bool:
        if token is None:
            return self.create(path, data)
        try:
            obstore.put(self._store, self._key(path), data, mode=token)
        except (PreconditionError, FileNotFoundError):
            return False
        return True

    def check_conditional_puts(self, directory: str) -> None:
        """Once per client: StoreError unless the store refuses a second create-if-absent PUT and
        an if-match PUT with a wrong e-tag. A store that ignored those headers would let two
        writers claim one version; this probe (a hidden object in ``directory``) catches it."""
        if self._conditional_puts_checked:
            return
        probe = self.join(directory, f".conditional-put-probe-{uuid.uuid4().hex}")
        try:
            honoured = self.create(probe, b"1") and not self.create(probe, b"2") \
                and not self.swap(probe, b"3", {"e_tag": '"not-the-current-etag"'})
        finally:
            obstore.delete(self._store, self._key(probe))
        if not honoured:
            raise StoreError(f"{self.root} does not honour conditional PUTs (If-None-Match / If-Match): "
                             "commits there would not be atomic; use a store that supports them")
        self._conditional_puts_checked = True

    def place(self, source: str, target: str) -> bool:
        """Objects are not renamed: ``publish`` copies ``source`` once, to the published name."""
        return False

    def publish(self, staged_dir: str, target: str, moves: dict[str, str]) -> None:
        """Copy the staged card and ``moves`` ({relative target: relative staged source}) into
        ``target``, then the manifest (the point where readers see the version), then delete the
        staging prefix. Idempotent, and safe beside a concurrent roll-forward of the same version."""
        if not self.exists(self.join(target, MANIFEST)):
            staged_prefix = self._key(staged_dir) + "/"
            rest = [o["path"][len(staged_prefix):] for o in self._objects(staged_dir)]
            rest = [rel for rel in rest if not rel.startswith(f"{INCOMING}/") and rel not in (MOVES, MANIFEST)]
            pairs = [(rel, rel) for rel in rest] + [(source, dest) for dest, source in sorted(moves.items())]
            with ThreadPoolExecutor(self.io_threads) as pool:
                done = list(pool.map(lambda pair: self._copy(staged_dir, target, *pair), pairs))
            if all(done):
                self._copy(staged_dir, target, MANIFEST, MANIFEST)
        self.remove_tree(staged_dir)

    def _copy(self, staged_dir: str, target: str, source: str, dest: str) -> bool:
        """Server-side copy; False if the source is gone because another writer finished publishing."""
        try:
            obstore.copy(self._store, self._key(self.join(staged_dir, source)),
                                   self._key(self.join(target, dest)))
        except FileNotFoundError:
            if self.exists(self.join(target, MANIFEST)):
                return False
            raise StoreError(f"claimed staging {staged_dir} lost {source} before {target} was published") from None
        return True

    def remove_tree(self, directory: str) -> None:
        """Delete every object under ``directory`` (batched deletes), including the "dir/" marker
        objects pyarrow's ``create_dir`` (Ray's ``write_parquet``) leaves, which obstore's
        normalised paths cannot name; nothing to do when there is none."""
        try:
            self.arrow_fs.delete_dir(self.arrow_path(directory))
        except FileNotFoundError:
            pass


def _obstore(scheme: str, bucket: str, settings: ObjectSettings):
    from obstore.store import GCSStore, S3Store

    if scheme == "gs":
        return GCSStore(bucket)
    config = {}
    if settings.endpoint_url:
        config["endpoint"] = settings.endpoint_url
    if settings.region:
        config["region"] = settings.region
    return S3Store(bucket, config=config, client_options={"allow_http": settings.allow_http})


def _arrow_fs(scheme: str, settings: ObjectSettings):
    import pyarrow.fs as pafs

    if scheme == "gs":
        return pafs.GcsFileSystem()
    kwargs = {}
    if settings.endpoint_url:
        kwargs["endpoint_override"] = settings.endpoint_url
        kwargs["scheme"] = urlsplit(settings.endpoint_url).scheme or "https"
    if settings.region:
        kwargs["region"] = settings.region
    return pafs.S3FileSystem(**kwargs)
