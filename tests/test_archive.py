"""The archive copy of a delivery: the exact bytes, under the SHA-256 of the bytes archived."""
from __future__ import annotations

import errno
import hashlib
import os
import stat

import pytest

from pipelines import delivery

DATA = os.urandom(50_000) + b"\n" * 3  # (not a multiple of the pieces below)


@pytest.fixture(params=["in the kernel", "through memory", "through memory after a piece in the kernel"])
def copy_path(request, monkeypatch):
    """Pieces of 4 KiB; copy_file_range as it is, refused at once, or refused after its first piece."""
    monkeypatch.setattr(delivery, "KERNEL_CHUNK", 4096)
    monkeypatch.setattr(delivery, "CHUNK", 4096)
    real, calls = os.copy_file_range, []

    def refused(*args):
        calls.append(args)
        if request.param == "through memory" or len(calls) > 1:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(*args)
    if request.param != "in the kernel":
        monkeypatch.setattr(delivery.os, "copy_file_range", refused)
    return request.param


@pytest.mark.parametrize("data", [DATA, b""], ids=["file", "empty file"])
def test_a_file_is_archived_byte_for_byte_under_its_sha256(tmp_path, copy_path, data):
    src = tmp_path / "CUTRU_01_20261113_001.csv"
    src.write_bytes(data)
    archived = delivery.archive(src, tmp_path / "archive")
    assert archived.sha256 == hashlib.sha256(data).hexdigest()
    assert archived.path == tmp_path / "archive" / archived.sha256 and archived.size == len(data)
    assert archived.path.read_bytes() == data
    assert stat.S_IMODE(archived.path.stat().st_mode) == 0o444
    assert sorted(p.name for p in (tmp_path / "archive").iterdir()) == [archived.sha256]  # no temporary file left


def test_the_same_bytes_delivered_again_keep_their_one_archive_copy(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_bytes(DATA)
    second.write_bytes(DATA)
    one, two = delivery.archive(first, tmp_path / "archive"), delivery.archive(second, tmp_path / "archive")
    assert one == two and [p.name for p in (tmp_path / "archive").iterdir()] == [one.sha256]
