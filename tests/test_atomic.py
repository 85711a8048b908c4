"""The one atomic writer (ssad.core.atomic): a file is the old one or the new one, never half of either."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ssad.core.atomic import atomic_path, write_text_atomic


def test_a_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "results.md"
    write_text_atomic(target, "old\n")
    write_text_atomic(target, "new\n", durable=True)
    assert target.read_text() == "new\n"
    assert [p.name for p in target.parent.iterdir()] == ["results.md"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "thresholds.json"
    write_text_atomic(target, "{}\n")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text('{"half')
        raise RuntimeError("disk full")
    assert target.read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["thresholds.json"]


def test_writers_that_go_by_the_suffix_write_the_target_itself(tmp_path: Path) -> None:
    target = tmp_path / "references.npz"
    with atomic_path(target) as tmp:
        np.savez(tmp, ids=np.array(["fan/id_00"]))  # numpy adds .npz to a name without it
    with np.load(target) as npz:
        assert npz["ids"].tolist() == ["fan/id_00"]
    assert [p.name for p in tmp_path.iterdir()] == ["references.npz"]
