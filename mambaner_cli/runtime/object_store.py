"""Corpus runs on object stores: inputs and outputs named by URI (``s3://bucket/pubmed/``, ``gs://…``,
``hdfs://…``: any file system that ``pyarrow.fs.FileSystem.from_uri`` opens), for both engines.

Only the corpus run (:mod:`mambaner_cli.runtime.corpus`) calls this module; readers and writers stay
local-file code. An input on a store is copied to a local temporary file and tagged there; its output is
written locally, as always, then uploaded under its final name in one request: an object store makes an
object visible only when its upload is complete, so the output is as atomic there as a rename is on a
disk. Credentials and the endpoint come from the store's usual settings (for S3: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` for an S3-compatible server, or
``?endpoint_override=HOST:PORT&scheme=http`` in the URI), read by pyarrow in whichever process touches the
store: the driver, worker processes and Ray actors alike.
"""

from __future__ import annotations

import fnmatch
import functools
import posixpath
import shutil
from typing import TYPE_CHECKING

from mambaner_cli import formats

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

_CHUNK = 1 << 20


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URI of a store (``scheme://…``) rather than a local path; ``file://`` is local
    only in name, and is handled as a store too (pyarrow opens it)."""
    scheme, separator, _ = path.partition("://")
    return bool(separator) and scheme.isidentifier()


def _open(uri: str) -> tuple[FileSystem, str]:
    """The file system of ``uri`` and the path in it (``bucket/key`` on S3), one file system per bucket
    and query kept for the process: making one costs a request (S3 looks up the bucket's region)."""
    from pyarrow.fs import FileSystem

    base, _, query = uri.partition("?")
    scheme, rest = base.split("://", 1)
    if scheme == "file":
        return FileSystem.from_uri(base)
    bucket = rest.split("/", 1)[0]
    return _filesystem(f"{scheme}://{bucket}" + (f"?{query}" if query else "")), rest


@functools.lru_cache(maxsize=16)
def _filesystem(root: str) -> FileSystem:
    from pyarrow.fs import FileSystem

    return FileSystem.from_uri(root)[0]


def _base(uri: str) -> str:
    """``uri`` without its query (``?endpoint_override=…``), which belongs to the store, not the path."""
    return uri.split("?", 1)[0]


def join(directory: str, name: str) -> str:
    """``name`` inside the store directory ``directory`` (its query, if any, kept at the end)."""
    base, _, query = directory.partition("?")
    return base.rstrip("/") + "/" + name + (f"?{query}" if query else "")


def basename(uri: str) -> str:
    return posixpath.basename(_base(uri).rstrip("/"))


def stat(uri: str) -> tuple[int, int] | None:
    """A stored file's size and modification time (ns; a second's resolution on S3), None when it is not
    there (or is a directory)."""
    from pyarrow.fs import FileType

    filesystem, path = _open(uri)
    info = filesystem.get_file_info(path)
    if info.type != FileType.File:
        return None
    return info.size, info.mtime_ns or 0


def list_inputs(pattern: str, exclude_under: str | None = None) -> list[str]:
    """The input files a URI names, sorted: itself if it is a file; every file under it with an input
    extension, recursively (hidden names left out), if it is a prefix ("directory"); the matches of a glob
    (``*``, ``?``, ``[``) in its last part. Files under ``exclude_under`` (the run's output) are left out;
    a URI that matches nothing is kept, to be reported as missing, as a local path is."""
    from pyarrow.fs import FileSelector, FileType

    base, _, query = pattern.partition("?")
    suffix = f"?{query}" if query else ""
    scheme = base.split("://", 1)[0] + "://"
    filesystem, path = _open(pattern)
    glob = any(char in posixpath.basename(path) for char in "*?[")
    folder = posixpath.dirname(path) if glob else path.rstrip("/")
    info = filesystem.get_file_info(folder)
    if not glob and info.type == FileType.File:
        return [pattern]
    if info.type != FileType.Directory:
        return [pattern]
    found = filesystem.get_file_info(FileSelector(folder, recursive=not glob))
    names = sorted(entry.path for entry in found if entry.type == FileType.File)
    if glob:
        names = [name for name in names if fnmatch.fnmatch(name, path)]
    else:
        names = [name for name in names if not posixpath.basename(name).startswith(".")
                 and formats.is_input_file(posixpath.basename(name))]
    outside = _base(exclude_under).rstrip("/").split("://", 1)[-1] + "/" if exclude_under else None
    names = [name for name in names if not (outside and name.startswith(outside))]
    return [scheme + name + suffix for name in names] or ([pattern] if glob else [])


def download(uri: str, local: str) -> None:
    filesystem, path = _open(uri)
    with filesystem.open_input_stream(path) as source, open(local, "wb") as target:
        shutil.copyfileobj(source, target, _CHUNK)


def upload(local: str, uri: str) -> None:
    """Copy a local file to ``uri`` in one upload (a partial object never shows on an object store)."""
    filesystem, path = _open(uri)
    with open(local, "rb") as source, filesystem.open_output_stream(path) as target:
        shutil.copyfileobj(source, target, _CHUNK)


def read_bytes(uri: str) -> bytes | None:
    """A stored file's bytes, None when it is not there."""
    if stat(uri) is None:
        return None
    filesystem, path = _open(uri)
    with filesystem.open_input_stream(path) as source:
        return source.read()


def write_bytes(uri: str, data: bytes) -> None:
    filesystem, path = _open(uri)
    with filesystem.open_output_stream(path) as target:
        target.write(data)
