"""A run's work directory: owned by one process, its config and data checked on every start.

    with own_workdir(args.workdir) as workdir:         # lock; temporaries of killed writes removed
        new = check_config(workdir, config)            # refuses other flags, a damaged config.json
        ... load the data, check the flags fit it ...
        begin(workdir, config, data_fingerprint(data.source, arrays), new)   # config.json, data.json

config.json (the flags that decide the results) and data.json (the data's file names, sizes and
sha256 of what was read) are written only once every check passed, so a refused run leaves nothing
behind (`own_workdir` removes a folder it created for a run that did not start), and the corrected
command then runs. A later start with other flags or other data is refused with one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib

import numpy as np

from nasjax.experiment.cli import UsageError
from nasjax.io import atomic_write_bytes, remove_temporaries, sha256_of_arrays

CONFIG, DATA, LOCK = "config.json", "data.json", "lock"


class WorkdirLock:
    """An exclusive lock file holding the owner's pid; a lock left by a dead process is taken over."""

    def __init__(self, workdir: pathlib.Path):
        self.path = workdir / LOCK

    def __enter__(self):
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            text = self.path.read_text().strip()
            pid = int(text) if text.isdigit() else 0
            if pid and pid != os.getpid() and _alive(pid):  # our own pid: a dead owner's, reused
                raise UsageError(f"{self.path.parent} is used by a running process (pid {pid}); "
                                 "wait for it or use another folder") from None
            self.path.unlink()
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def own_workdir(path: str | os.PathLike, flag: str = "--workdir"):
    """The work directory `path` (created if needed), locked by this process for the duration of the
    context, with the temporaries that killed writes left there removed. If the context raises
    before anything but the lock was written, the folders created for it are removed again."""
    workdir = pathlib.Path(path)
    if not str(path).strip():
        raise UsageError(f"{flag} must name a folder, got an empty path")
    if workdir.exists() and not workdir.is_dir():
        raise UsageError(f"{flag} {workdir} is a file, not a folder")
    created = [p for p in (workdir, *workdir.parents) if not p.exists()]
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with WorkdirLock(workdir):
            remove_temporaries(workdir)
            yield workdir
    except BaseException:
        for folder in created:  # innermost first; stops at the first that holds something
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def check_config(workdir: pathlib.Path, config: dict) -> bool:
    """Whether config.json is still to be written (a new run); UsageError if it holds other flags, is
    damaged, or is missing from a folder that holds a run's files."""
    path = workdir / CONFIG
    if not path.exists():
        held = sorted(p.name for p in workdir.iterdir() if p.name != LOCK)
        if held:
            raise UsageError(f"{path} is missing but {workdir} holds a run's files ({', '.join(held[:5])}): "
                             "restore config.json, or move the folder away to start again")
        return True
    try:
        saved = json.loads(path.read_bytes())
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise UsageError(f"{path} is damaged ({type(e).__name__}); restore it, or move {workdir} away to "
                         "start again") from None
    if saved != config:
        diff = {k: (saved.get(k), config.get(k)) for k in sorted(set(saved) | set(config))
                if saved.get(k) != config.get(k)}
        raise UsageError(f"{workdir} holds a run with other flags {diff} (saved, given); "
                         "use another folder")
    return False


def data_fingerprint(source: str, *arrays: np.ndarray) -> dict:
    """What identifies a run's data: for a local source ("local:<folder>", as the loaders report it),
    the names and sizes of the folder's files; the sha256 of `arrays` (what was read)."""
    files = {}
    if source.startswith("local:"):
        folder = pathlib.Path(source.removeprefix("local:"))
        files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    return {"files": files, "sha256": sha256_of_arrays(*arrays)}


def begin(workdir: pathlib.Path, config: dict, fingerprint: dict, new: bool) -> None:
    """Start (or resume) the run: UsageError if data.json records other data; else config.json (a
    new run) and data.json (if absent) are written."""
    path = workdir / DATA
    if path.exists():
        try:
            saved = json.loads(path.read_bytes())
        except ValueError:
            raise UsageError(f"{path} is damaged; restore it, or move {workdir} away to start "
                             "again") from None
        if saved != fingerprint:
            what = [k for k in ("files", "sha256") if saved.get(k) != fingerprint[k]]
            raise UsageError(f"{workdir} holds a run on other data (its {' and '.join(what)} differ, see "
                             f"{path}); resume it with the same data, or use another folder")
    if new:
        atomic_write_bytes(workdir / CONFIG, (json.dumps(config, indent=2, allow_nan=False) + "\n").encode())
    if not path.exists():
        atomic_write_bytes(path, (json.dumps(fingerprint, indent=2) + "\n").encode())


def finished(workdir: pathlib.Path, marker: str, files: tuple[str, ...] = (),
             keys: tuple[str, ...] = ()) -> tuple[bool, str | None]:
    """(whether the run in `workdir` is finished and its summary complete, what is wrong with it).

    A run is finished once `marker` (a JSON object, written last) exists; it is complete when the
    marker parses and holds `keys`, and `files` exist. A damaged or incomplete summary is
    (False, what is missing): the caller writes it again from the run's logs."""
    path = workdir / marker
    if not path.exists():
        return False, None
    try:
        summary = json.loads(path.read_bytes())
        if not isinstance(summary, dict):
            raise ValueError
    except ValueError:
        return False, f"{path} is damaged"
    problems = [f"{path} lacks {k!r}" for k in keys if k not in summary]
    problems += [f"{workdir / name} is missing" for name in files if not (workdir / name).exists()]
    return not problems, "; ".join(problems) or None
