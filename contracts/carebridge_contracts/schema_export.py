"""Write or check the committed JSON Schemas.

    python -m carebridge_contracts.schema_export            # (re)write contracts/schemas/
    python -m carebridge_contracts.schema_export --check    # CI: fail on breaking or stale

Writing refuses to overwrite a schema with a breaking change: publish a new
event version instead (or pass --allow-breaking before anything has shipped).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from carebridge_contracts._schemas import (
    ENVELOPE_SCHEMA_FILE,
    SCHEMA_DIR,
    JsonSchema,
    envelope_schema,
    event_schema,
    expected_schemas,
    load,
    render,
    schema_filename,
)
from carebridge_contracts.compat import check_all, check_compatible
from carebridge_contracts.errors import IncompatibleSchemaChange

__all__ = [
    "ENVELOPE_SCHEMA_FILE",
    "SCHEMA_DIR",
    "JsonSchema",
    "envelope_schema",
    "event_schema",
    "expected_schemas",
    "main",
    "schema_filename",
    "stale_schemas",
    "write_schemas",
]


def write_schemas(schema_dir: Path | None = None, *, allow_breaking: bool = False) -> list[Path]:
    """Write every schema whose content changed; return the paths written.

    Raises `IncompatibleSchemaChange` (and writes nothing) if a committed schema
    would change in a breaking way, unless `allow_breaking`.
    """
    directory = schema_dir or SCHEMA_DIR
    expected = expected_schemas()
    if not allow_breaking:
        problems = [
            f"{filename.removesuffix('.json')}: {problem}"
            for filename, schema in expected.items()
            if (directory / filename).is_file()
            for problem in check_compatible(load(directory / filename), schema)
        ]
        if problems:
            raise IncompatibleSchemaChange(problems)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, schema in expected.items():
        path = directory / filename
        text = render(schema)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def stale_schemas(schema_dir: Path | None = None) -> list[str]:
    """Committed schemas whose text differs from what the models generate."""
    directory = schema_dir or SCHEMA_DIR
    return [
        f"{filename.removesuffix('.json')}: committed schema is out of date"
        for filename, schema in expected_schemas().items()
        if (directory / filename).is_file()
        and (directory / filename).read_text(encoding="utf-8") != render(schema)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m carebridge_contracts.schema_export",
        description="Write the committed JSON Schemas of the event contracts, or check them.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 on breaking or stale schemas"
    )
    parser.add_argument("--schema-dir", type=Path, default=SCHEMA_DIR)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="with --check, also compare against this directory (e.g. the merge base's schemas)",
    )
    parser.add_argument(
        "--allow-breaking", action="store_true", help="overwrite schemas despite breaking changes"
    )
    args = parser.parse_args(argv)
    schema_dir: Path = args.schema_dir

    if args.check:
        breaking = check_all(schema_dir)
        if args.baseline is not None:
            breaking += [p for p in check_all(args.baseline, allow_new=True) if p not in breaking]
        stale = stale_schemas(schema_dir)
        for problem in breaking:
            print(f"BREAKING {problem}")
        for problem in stale:
            print(f"STALE    {problem} (run: {parser.prog})")
        return 1 if breaking or stale else 0

    try:
        written = write_schemas(schema_dir, allow_breaking=args.allow_breaking)
    except IncompatibleSchemaChange as exc:
        print(exc, file=sys.stderr)
        print(
            "Add a new model class with the next event_version instead "
            "(or pass --allow-breaking if the old version never shipped).",
            file=sys.stderr,
        )
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
