"""write_atomic: readers of a file being rewritten see the old text or the new one, whole."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cd4ml.files import write_atomic


def test_a_reader_never_sees_half_a_file_and_no_temporary_file_stays(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    texts = ["a" * 200_000, "b" * 300_000]
    write_atomic(path, texts[0])
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(path.read_text(encoding="utf-8"))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(200):
        write_atomic(path, texts[i % 2])
    stop.set()
    reader.join()
    assert seen <= set(texts)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "champion.json"
    write_atomic(path, "old")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "\ud800")  # a lone surrogate cannot be written as UTF-8
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["champion.json"]
