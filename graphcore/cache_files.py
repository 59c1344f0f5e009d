"""Small-file operations the cache needs, on a local disk or any fsspec filesystem.

The cache's commit protocol rests on two primitives:

* `write_atomic(path, data)`: readers see the old content or the new, never a torn file
  (temp file + rename locally; a single PUT on object stores, which is atomic there);
* `publish(path, data)`: create `path` only if it does not exist yet and say whether we did.
  Locally this is exclusive (`os.link` of a complete temp file fails if the name exists).
  Object stores offer no portable create-if-absent, so there it is check-then-PUT: two
  racing writers may both "win", and the later PUT replaces the earlier one. The cache is
  built so that this is harmless (both payloads describe complete data).
"""
from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable
from typing import Any

from .liveness import writer_tag

TEMP_PREFIX = ".tmp-"  # temp files of earlier versions, next to their target


class LocalFiles:
    """Plain POSIX files (fast paths, exclusive create, fsync when `durable`).

    Temp files go to `temp_dir` (on the same filesystem, so a link or rename publishes them),
    named `<writer tag>-<random>-<name>`: a killed writer's are found by listing one small
    folder and swept once its process is gone (graphcore/liveness.py)."""

    is_local = True

    def __init__(self, durable: bool = False, temp_dir: str | None = None) -> None:
        self.durable = durable
        self.temp_dir = temp_dir

    def read(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        out = {}
        for p in paths:
            data = self.read(p)
            if data is not None:
                out[p] = data
        return out

    def _write_temp(self, path: str, data: bytes, durable: bool) -> str:
        folder, name = os.path.split(path)
        if self.temp_dir is not None:
            folder, name = self.temp_dir, f"{writer_tag()}-{os.urandom(8).hex()}-{name}"
        else:
            name = f"{TEMP_PREFIX}{os.urandom(16).hex()}-{name}"
        tmp = os.path.join(folder, name)
        try:
            f = open(tmp, "xb")
        except FileNotFoundError:  # the folder's first file (checked lazily: one syscall saved per write)
            os.makedirs(folder, exist_ok=True)
            f = open(tmp, "xb")
        with f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        return tmp

    def _sync_dir(self, folder: str) -> None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _into_folder(op: Any, tmp: str, path: str) -> None:
        """`op(tmp, path)`, creating the target's folder if it is the folder's first file."""
        try:
            op(tmp, path)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            op(tmp, path)

    def write_atomic(self, path: str, data: bytes, durable: bool = False) -> None:
        tmp = self._write_temp(path, data, durable)
        try:
            self._into_folder(os.replace, tmp, path)
        except BaseException:
            self.remove(tmp)
            raise
        if durable:
            self._sync_dir(os.path.dirname(path))

    def overwrite(self, path: str, data: bytes) -> None:
        """Rewrite a small file in place (created atomically if absent). For hints such as
        last-use times: a reader racing the write may see a mix of old and new bytes, and a
        new inode per write (what `write_atomic` costs) would be the dearest part."""
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            self.write_atomic(path, data)
            return
        try:
            os.write(fd, data)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def publish(self, path: str, data: bytes) -> bool:
        tmp = self._write_temp(path, data, durable=self.durable)
        try:
            self._into_folder(os.link, tmp, path)  # atomic and exclusive: fails if `path` exists
            created = True
        except FileExistsError:
            created = False
        except OSError:  # a filesystem without hard links: fall back to check-then-rename
            created = not os.path.exists(path)
            if created:
                os.replace(tmp, path)
        finally:
            self.remove(tmp)
        if created and self.durable:
            self._sync_dir(os.path.dirname(path))
        return created

    def sync_tree(self, path: str) -> None:
        """fsync every file and folder under `path` (so a ref never outlives its data)."""
        if not self.durable:
            return
        for folder, _, names in os.walk(path, topdown=False):
            for n in names:
                fd = os.open(os.path.join(folder, n), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self._sync_dir(folder)
        self._sync_dir(os.path.dirname(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def list_names(self, folder: str) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def remove_tree(self, path: str) -> None:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(path):  # rmtree can race with a writer adding files; one retry
            shutil.rmtree(path, ignore_errors=True)

    def remove_empty_dir(self, path: str) -> None:
        try:
            os.rmdir(path)
        except OSError:
            pass

    def move_tree(self, source: str, dest: str) -> None:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.rename(source, dest)

    def put_file(self, local: str, path: str) -> None:
        """Copy a local file to `path`, atomically (a temp copy renamed into place)."""
        import shutil

        tmp = self._write_temp(path, b"", durable=False)
        try:
            shutil.copyfile(local, tmp)
            self._into_folder(os.replace, tmp, path)
        finally:
            self.remove(tmp)

    def get_file(self, path: str, local: str) -> None:
        import shutil

        shutil.copyfile(path, local)

    def tree_size(self, path: str) -> int:
        total = 0
        for folder, _, names in os.walk(path):
            for n in names:
                try:
                    total += os.stat(os.path.join(folder, n)).st_size
                except FileNotFoundError:
                    pass
        return total

    def mtime(self, path: str) -> float | None:
        try:
            return os.stat(path).st_mtime
        except FileNotFoundError:
            return None


class FsspecFiles:
    """Any fsspec filesystem (memory://, s3://, gcs://, ...)."""

    is_local = False

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def read(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        paths = list(paths)
        if not paths:
            return {}
        got = self.fs.cat(paths, on_error="omit")  # concurrent on async filesystems (s3, gcs)
        by_stripped = {self.fs._strip_protocol(p): p for p in paths}
        return {by_stripped.get(self.fs._strip_protocol(k), k): v for k, v in got.items()}

    def write_atomic(self, path: str, data: bytes, durable: bool = False) -> None:
        self.fs.pipe_file(path, data)

    overwrite = write_atomic  # one PUT either way

    def publish(self, path: str, data: bytes) -> bool:
        if self.fs.exists(path):
            return False
        self.fs.pipe_file(path, data)
        return True

    def sync_tree(self, path: str) -> None:
        pass  # an acknowledged PUT is durable on object stores

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def list_names(self, folder: str) -> list[str]:
        self.fs.invalidate_cache(folder)  # other processes write here too
        try:
            entries = self.fs.ls(folder, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    def remove(self, path: str) -> None:
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass

    def remove_tree(self, path: str) -> None:
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass

    def remove_empty_dir(self, path: str) -> None:
        try:
            if not self.fs.ls(path, detail=False):
                self.fs.rmdir(path)
        except (OSError, NotImplementedError):
            pass  # object stores have no real folders

    def move_tree(self, source: str, dest: str) -> None:
        self.fs.invalidate_cache(source)
        self.fs.mv(source, dest, recursive=True)  # copy + delete on object stores

    def put_file(self, local: str, path: str) -> None:
        self.fs.put_file(local, path)  # an object appears only once complete

    def get_file(self, path: str, local: str) -> None:
        self.fs.get_file(path, local)

    def tree_size(self, path: str) -> int:
        try:
            return int(self.fs.du(path, total=True))
        except FileNotFoundError:
            return 0

    def mtime(self, path: str) -> float | None:
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        for field in ("mtime", "LastModified", "last_modified", "updated", "created"):
            value = info.get(field)
            if isinstance(value, _dt.datetime):
                return value.timestamp()
            if isinstance(value, (int, float)):
                return float(value)
        return None
