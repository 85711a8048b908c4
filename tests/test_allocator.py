"""The allocator policy (ssad.core.runtime): applied on glibc, left alone when the user says so."""

from __future__ import annotations

import sys

import pytest

from ssad.core.runtime import ALLOCATOR_ENV, tune_allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuning_takes_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ALLOCATOR_ENV, "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    assert tune_allocator() is True


@pytest.mark.parametrize(("name", "value"), [(ALLOCATOR_ENV, "default"), (ALLOCATOR_ENV, " Default "),
                                             ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1"),
                                             ("MALLOC_TRIM_THRESHOLD_", "1")])
def test_user_settings_leave_the_allocator_alone(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    assert tune_allocator() is False
