"""Write an audiofolder metadata.csv that holds one group (a speaker, say) out as the test split.

The new folder holds only ``metadata.csv``: its ``file_name`` entries point back at the source
folder's files, and its ``split`` column says ``test`` for the held-out group and ``train`` for
everyone else, so ``data.split.column=split`` trains without that group (validation is carved
out of train by ``data.split.validation_size``)::

    python scripts/hold_out_group.py ../shared/data/real-speech-dev/recordings \\
        data/holdout-jackson --column speaker --value jackson
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path


def hold_out(source: Path, target: Path, column: str, value: str) -> int:
    """Write ``target/metadata.csv``; return how many rows were held out."""
    with (source / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    if column not in fields:
        raise SystemExit(f"{source / 'metadata.csv'} has no column {column!r} ({fields})")
    held = [row for row in rows if row[column] == value]
    if not held:
        raise SystemExit(f"no row of {source / 'metadata.csv'} has {column}={value!r}")
    target.mkdir(parents=True, exist_ok=True)
    relative = Path(os.path.relpath(source.resolve(), target.resolve()))
    with (target / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, [*fields, "split"])
        writer.writeheader()
        for row in rows:
            split = "test" if row[column] == value else "train"
            file_name = (relative / row["file_name"]).as_posix()
            writer.writerow({**row, "file_name": file_name, "split": split})
    return len(held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="audiofolder with metadata.csv")
    parser.add_argument("target", type=Path, help="folder for the new metadata.csv")
    parser.add_argument("--column", default="speaker", help="the group column")
    parser.add_argument("--value", required=True, help="the group held out as test")
    args = parser.parse_args()
    held = hold_out(args.source, args.target, args.column, args.value)
    where = args.target / "metadata.csv"
    print(f"wrote {where}: {held} rows of {args.column}={args.value} as test")


if __name__ == "__main__":
    main()
