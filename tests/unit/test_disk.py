"""The disk benchmark's counting: a hard-linked file's blocks count once."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.disk import allocated_bytes


def test_allocated_bytes_counts_a_hard_linked_file_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(os.urandom(64 * 1024))
    os.link(tmp_path / "a" / "f", tmp_path / "g")
    one = allocated_bytes([tmp_path / "a"])
    assert one >= 64 * 1024
    assert allocated_bytes([tmp_path / "a", tmp_path / "g"]) == one
    seen: set[tuple[int, int]] = set()
    assert allocated_bytes([tmp_path / "g"], seen) == one
    assert allocated_bytes([tmp_path / "a"], seen) == 0
