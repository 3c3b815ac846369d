"""Default dataset card (README.md) of a snapshot, rendered from its manifest.

Covered: the Hugging Face front matter naming the data files, the store's counts, and the
pipeline's manifest keys ``counts``, ``drops``, ``lineage``, ``dedup`` and ``decontam`` when
present, the schema table and loading snippets. The pipeline may pass its
own card text to ``commit`` instead; the store then writes that text unchanged.
"""

from __future__ import annotations

import json

from factory.store.parts import schema_from_record
from factory.store.columns import schema_table


def _table(mapping: dict, key: str, value: str) -> str:
    lines = [f"| {key} | {value} |", "|---|---|"]
    for name, item in mapping.items():
        shown = item if isinstance(item, (int, float, str)) else json.dumps(item, sort_keys=True)
        lines.append(f"| {name} | {shown} |")
    return "\n".join(lines) + "\n"


def _section(title: str, mapping: dict | None, key: str, value: str) -> str:
    if not mapping:
        return ""
    if isinstance(mapping, dict):
        return f"\n## {title}\n\n{_table(mapping, key, value)}"
    return f"\n## {title}\n\n```json\n{json.dumps(mapping, indent=2, sort_keys=True)}\n```\n"


def render_card(manifest: dict) -> str:
    """Markdown dataset card for ``manifest`` (a complete manifest, as written to the snapshot)."""
    data_files = "\n".join(f"    - {entry['path']}" for entry in manifest["files"])
    lineage = dict(manifest.get("lineage") or {})
    lineage["code_version"] = manifest["code_version"]
    side = {name: table["num_rows"] for name, table in manifest.get("side_tables", {}).items()}
    name, version = manifest["dataset"], manifest["version"]
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path:
{data_files}
---

# {name} {version}

Reasoning-distillation dataset produced by distill-factory: one row per kept teacher sample.

- rows: **{manifest['num_rows']}** in {len(manifest['files'])} Parquet file(s)
- parent snapshot: {manifest['parent'] or 'none'}
- created: {manifest['created_at']}
{_section("Side tables", side, "table", "rows")}{_section("Rows per stage", manifest.get("counts"), "stage", "rows")}\
{_section("Drop reasons", manifest.get("drops"), "reason", "rows")}\
{_section("Lineage", lineage, "what", "value")}{_section("Dedup", manifest.get("dedup"), "stat", "value")}\
{_section("Decontamination", manifest.get("decontam"), "stat", "value")}
## Schema

{schema_table(schema_from_record(manifest["schema"]))}
## Loading

The files are listed, with row counts and sha256, in `_manifest.json`.

```python
import json, pathlib
snap = pathlib.Path("{version}")  # this directory
files = [str(snap / f["path"]) for f in json.loads((snap / "_manifest.json").read_text())["files"]]

import pandas as pd; df = pd.concat(pd.read_parquet(f) for f in files)
import duckdb; duckdb.sql(f"SELECT count(*) FROM read_parquet({{files}})")
import datasets; ds = datasets.load_dataset("parquet", data_files=files, split="train")
import ray; ds = ray.data.read_parquet(files)
```

Within distill-factory: `factory.store.SnapshotStore(root, "{name}").get("{version}").read()`
(`root` a path or an `s3://bucket/prefix`; for object storage see distill-factory's docs/object-storage.md).
"""
