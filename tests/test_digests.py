"""Inbox files are hashed once per (path, size, modification time)."""
import hashlib
import os

from pipelines import digests


def test_a_file_is_hashed_once_and_again_when_it_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("COREHUB_HOME", str(tmp_path / "home"))
    f = tmp_path / "CUTRU_01_20261120_001.csv"
    f.write_bytes(b"a,b\n1,2\n")
    hashed = []
    real = digests.sha256_file
    monkeypatch.setattr(digests, "sha256_file", lambda p: hashed.append(str(p)) or real(p))

    first = digests.sha256_of([f])
    second = digests.sha256_of([f])
    assert first == second == {str(f): hashlib.sha256(b"a,b\n1,2\n").hexdigest()}
    assert hashed == [str(f)]

    f.write_bytes(b"a,b\n1,3\n")  # changed in place: another size or mtime
    os.utime(f, ns=(1, 1))
    assert digests.sha256_of([f]) == {str(f): hashlib.sha256(b"a,b\n1,3\n").hexdigest()}
    assert hashed == [str(f), str(f)]


def test_a_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("COREHUB_HOME", str(tmp_path / "home"))
    f = tmp_path / "x.csv"
    f.write_bytes(b"x")
    (tmp_path / "home" / "cache").mkdir(parents=True)
    (tmp_path / "home" / "cache" / "digests.json").write_text("{not json")
    assert digests.sha256_of([f]) == {str(f): hashlib.sha256(b"x").hexdigest()}
