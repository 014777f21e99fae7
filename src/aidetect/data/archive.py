"""Getting archives onto disk safely: atomic, idempotent extraction and Kaggle downloads."""

import os
import shutil
import stat
import zipfile
from pathlib import Path

from aidetect.config import ConfigError
from aidetect.faults import point


class UnsafeArchiveError(ValueError):
    pass


def _tmp_sibling(dest: Path, tag: str) -> Path:
    return dest.parent / f".{dest.name}.{tag}-{os.getpid()}"


def clean_stale(dest: Path) -> None:
    """Remove temp folders an interrupted earlier run left beside ``dest``.

    Callers hold the data folder's lock (a FileLock beside it), so no live
    process is writing to these."""
    for p in dest.parent.glob(f".{dest.name}.*-*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def safe_extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract a zip into ``dest``, all or nothing.

    The archive is unpacked into a hidden sibling folder and renamed into place only when
    complete, so an interrupted run leaves no half-extracted ``dest``; a second call finds
    ``dest`` and returns at once. Entries with absolute paths, ``..`` or symlinks, which
    would write outside ``dest``, are refused before anything is written.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.is_dir():
        return dest
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(dest)
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for m in members:
            mode = m.external_attr >> 16
            name = m.filename.replace("\\", "/")
            if name.startswith("/") or ".." in name.split("/") or (len(name) > 1 and name[1] == ":"):
                raise UnsafeArchiveError(f"{archive}: entry {m.filename!r} would escape the target folder; refusing to extract")
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(f"{archive}: entry {m.filename!r} is a symlink; refusing to extract")
        tmp = _tmp_sibling(dest, "extracting")
        try:
            zf.extractall(tmp)
            point("extract:before_rename")
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


KAGGLE_HELP = """\
No Kaggle credentials found, so the dataset {dataset} cannot be downloaded.
Either:
  - put your API token file at ~/.kaggle/kaggle.json (from kaggle.com -> Settings -> API ->
    'Create New Token'; chmod 600 it), or point KAGGLE_CONFIG_DIR at the folder holding it;
  - or set the environment variables KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN);
  - or, offline, pass the archive you already have: data.archive=/path/to/cifake.zip
    (a folder holding train/ and test/ works too)."""


def kaggle_credentials_present() -> bool:
    env = os.environ
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    cfg = Path(env.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    return (cfg / "kaggle.json").is_file() or (cfg / "access_token").is_file()


def kaggle_download(dataset: str, dest_dir: str | Path, api=None) -> Path:
    """Download a Kaggle dataset archive into ``dest_dir`` atomically; returns the zip's path.

    ``api`` is a ``kaggle.api.KaggleApi``-like object (injected in tests). The real one is
    imported lazily because importing ``kaggle`` authenticates as a side effect.
    """
    dest_dir = Path(dest_dir)
    final = dest_dir / (dataset.split("/")[-1] + ".zip")
    if final.is_file():
        return final
    if api is None:
        if not kaggle_credentials_present():
            raise ConfigError(KAGGLE_HELP.format(dataset=dataset))
        from kaggle.api.kaggle_api_extended import KaggleApi
        api = KaggleApi()
        try:
            api.authenticate()
        except SystemExit:  # the client exit()s on bad credentials
            raise ConfigError(KAGGLE_HELP.format(dataset=dataset)) from None
    clean_stale(final)
    tmp = _tmp_sibling(final, "download")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        api.dataset_download_files(dataset, path=str(tmp), unzip=False, quiet=False)
        got = list(tmp.glob("*.zip"))
        if len(got) != 1:
            raise RuntimeError(f"Kaggle download of {dataset} produced {[p.name for p in got]}, expected one .zip")
        os.replace(got[0], final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
