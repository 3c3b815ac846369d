"""Config section of the snapshot store (``store:`` in a run config)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from factory.sections import Section
from factory.store.location import parse_root

DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class StoreConfig(Section):
    """Where and how a run's dataset snapshot is committed."""

    root: str
    """Local directory, s3://bucket/prefix or gs://bucket/prefix holding every dataset in ROOT/DATASET (required)."""
    dataset: str
    """Dataset name; snapshots of one dataset share version numbers and the LATEST pointer."""
    rows_per_file: int = 100_000
    """Caps rows per Parquet part so readers (Ray, DuckDB) get several files to parallelise over."""
    row_group_rows: int = 4_096
    """Rows per row group: long reasoning rows (~8 KB) make ~32 MB groups, which readers stream comfortably."""
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    """Parquet codec; zstd compresses reasoning text well and every reader supports it."""
    compression_level: int | None = None
    """Codec level (None = codec default); higher trades commit time for smaller snapshots."""
    keep_dropped_side_table: bool = True
    """Keep rejected rows (with drop_reason) in a "dropped" side table so filters can be audited."""
    gc_staging_after_s: float = 86_400.0
    """Staging dirs of crashed writers idle this long are deleted when the next writer begins."""
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    """S3-compatible endpoint (MinIO, Ceph, a local emulator); None = AWS_ENDPOINT_URL or the provider's default."""
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]+$")
    """Bucket region for s3:// roots; None = AWS_REGION / AWS_DEFAULT_REGION or the client's default."""
    allow_http: bool = False
    """Permit a plain-http endpoint_url (a local emulator); credentials always come from the environment."""

    @field_validator("root")
    @classmethod
    def _supported_root(cls, value: str) -> str:
        parse_root(value)
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset_name(cls, value: str) -> str:
        if not DATASET_NAME.match(value):
            raise ValueError(f"dataset must match {DATASET_NAME.pattern} (it becomes a directory name)")
        return value

    @field_validator("rows_per_file", "row_group_rows")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be > 0")
        return value

    @field_validator("gc_staging_after_s")
    @classmethod
    def _non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must be >= 0")
        return value

    @model_validator(mode="after")
    def _row_groups_fit_files(self) -> "StoreConfig":
        if self.row_group_rows > self.rows_per_file:
            raise ValueError("row_group_rows must be <= rows_per_file (a row group never spans files)")
        return self

    @model_validator(mode="after")
    def _plain_http_is_explicit(self) -> "StoreConfig":
        if self.endpoint_url and self.endpoint_url.startswith("http://") and not self.allow_http:
            raise ValueError("endpoint_url is plain http: set allow_http: true (for a local emulator only)")
        return self
