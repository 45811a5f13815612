"""Reading the bytes behind a location: files on disk and URLs on allowed hosts.

A location is named by its key, ``file:/abs/path`` or ``url:https://host/path``, the same strings
Backstage writes into ``backstage.io/managed-by-location``. Outbound reads are refused unless the
host is in ``backend.reading.allow`` (Backstage's format and matching: exact ``host[:port]``, or
``*.suffix`` for subdomains, optionally limited to path prefixes), and every read has a size limit.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import unquote, urljoin, urlsplit

if TYPE_CHECKING:
    import httpx

DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # the default of catalog.maxFileBytes


class ReadError(Exception):
    """A location could not be read; ``not_found`` separates "gone" from "failed"."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


class NotAllowedError(ReadError):
    """The read was refused by policy (host not allowed, path outside the location's folder)."""


@dataclass(frozen=True)
class AllowRule:
    """One entry of ``backend.reading.allow``."""

    host: str
    paths: tuple[str, ...] | None = None

    def matches(self, url: str) -> bool:
        """Backstage's rule: compare ``host[:port]`` exactly or by ``*.`` suffix, then paths."""
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2].lower()
        if self.host.startswith("*."):
            if not host.endswith(self.host[1:].lower()):
                return False
        elif host != self.host.lower():
            return False
        if self.paths is None:
            return True
        # Decode first, so that /pub/%2e%2e/private is judged as /private, as servers see it.
        path = posixpath.normpath(unquote(parts.path) or "/")
        return any(
            path == prefix.rstrip("/") or path.startswith(prefix.rstrip("/") + "/")
            for prefix in self.paths
        )


def location_key(type_: str, target: str) -> str:
    """The key of a location, as in ``backstage.io/managed-by-location``."""
    return f"{type_}:{target}"


def split_key(key: str) -> tuple[str, str]:
    """``("file", "/abs/path")`` from ``"file:/abs/path"``."""
    type_, _, target = key.partition(":")
    return type_, target


class Reader:
    """Reads files and allowed URLs, with a size limit; one instance per ingestion pass."""

    def __init__(
        self,
        allow: Sequence[AllowRule] = (),
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = 10.0,
    ) -> None:
        self.allow = tuple(allow)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        """The HTTP client, made on the first URL read: httpx costs 50 ms of every start-up
        (its command-line module imports rich and pygments), and most catalogs are files."""
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
        return self._client

    def close(self) -> None:
        """Release the HTTP connection pool."""
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_url(self, url: str) -> None:
        """Raise :class:`NotAllowedError` unless ``url`` is http(s) on an allowed host."""
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise NotAllowedError(f"Unsupported URL scheme in {url}; expected http or https")
        if not any(rule.matches(url) for rule in self.allow):
            raise NotAllowedError(
                f"Reading from {url} is not allowed. You may need to configure "
                "an integration for the target host, or add it to the configured list of "
                "allowed hosts at 'backend.reading.allow'"
            )

    def read(self, key: str) -> bytes:
        """The bytes at a location key."""
        type_, target = split_key(key)
        if type_ == "file":
            return self._read_file(target)
        if type_ == "url":
            return self._read_url(target)
        raise ReadError(f"Unsupported location type '{type_}' in {key}")

    def read_lines(self, key: str) -> Iterator[str]:
        """The text at a location key as lines; a file is streamed, not read whole.

        The size limit and the existence of the file are checked before the first line, so that
        a caller sees :class:`ReadError` at once rather than half-way through.
        """
        type_, target = split_key(key)
        if type_ != "file":
            text = self.read(key).decode("utf-8", errors="replace")
            return iter(text.splitlines(keepends=True))
        self._check_file(target)
        try:
            handle = open(target, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError as exc:
            raise ReadError(f"{target} could not be read: {exc.strerror}") from exc
        return _lines(handle)

    def _check_file(self, path: str) -> None:
        """Only regular files within the size limit: ``/dev/zero`` or a FIFO never are."""
        if "\x00" in path:  # the system refuses it with a ValueError, not an OSError
            raise ReadError(f"{path!r} contains a NUL character")
        try:
            info = os.stat(path)
        except FileNotFoundError as exc:
            raise ReadError(f"{path} does not exist", not_found=True) from exc
        except OSError as exc:
            raise ReadError(f"{path} could not be read: {exc.strerror}") from exc
        if stat.S_ISDIR(info.st_mode):
            raise ReadError(f"{path} is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise ReadError(f"{path} is not a regular file")
        if info.st_size > self.max_bytes:
            raise ReadError(f"{path} is {info.st_size} bytes, over the limit of {self.max_bytes}")

    def _read_file(self, path: str) -> bytes:
        self._check_file(path)
        try:
            with open(path, "rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except OSError as exc:
            raise ReadError(f"{path} could not be read: {exc.strerror}") from exc
        if len(data) > self.max_bytes:
            raise ReadError(f"{path} is over the limit of {self.max_bytes} bytes")
        return data

    def _read_url(self, url: str) -> bytes:
        self.check_url(url)
        import httpx

        try:
            with self.client.stream("GET", url) as response:
                if response.status_code == 404:
                    raise ReadError(f"{url} was not found (HTTP 404)", not_found=True)
                if response.status_code >= 400:
                    raise ReadError(f"{url} could not be read (HTTP {response.status_code})")
                if 300 <= response.status_code < 400:
                    raise ReadError(f"{url} redirects; give the final address instead")
                chunks: list[bytes] = []
                total = 0
                for chunk in response.iter_bytes():
                    total += len(chunk)
                    if total > self.max_bytes:
                        raise ReadError(f"{url} is over the limit of {self.max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise ReadError(f"{url} could not be read: {exc}") from exc

    @staticmethod
    def expand_file_target(target: str) -> list[str]:
        """The files a ``file`` target names: itself, or the sorted matches of its glob.

        As in Backstage (node-glob's defaults): ``**`` does not descend into symlinked folders,
        and a wildcard matches a name that starts with a dot (``.git``) only when its pattern
        part starts with one. The standard library's recursive glob follows links: a link back
        up the tree made one file match forty times, two such links made the pass never end.
        Hidden and linked folders are skipped while walking, not filtered after.
        """
        if not glob.has_magic(target):
            return [target]
        if target.endswith("/"):  # names folders only, and folders are not read
            return []
        parts = Path(target).parts
        fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
        base = os.path.join(*parts[:fixed]) if fixed else ""
        pattern = list(parts[fixed:])
        if pattern[-1] == "**":  # files at any depth, as in node-glob
            pattern.append("*")
        found = {path for path in _glob(base, pattern) if os.path.isfile(path)}
        return sorted(found)


def _glob(folder: str, pattern: Sequence[str]) -> Iterator[str]:
    """Paths under ``folder`` matching ``pattern`` (path parts; see ``expand_file_target``)."""
    if not pattern:
        yield folder
        return
    head, rest = pattern[0], pattern[1:]
    if not glob.has_magic(head):
        path = os.path.join(folder, head)
        if os.path.lexists(path):
            yield from _glob(path, rest)
        return
    try:
        entries = list(os.scandir(folder or "."))
    except OSError:  # not a folder, gone, or not readable: no match
        return
    if head == "**":
        yield from _glob(folder, rest)  # no folder at all
        for entry in entries:
            if not entry.name.startswith(".") and _real_folder(entry):
                yield from _glob(os.path.join(folder, entry.name), pattern)
        return
    for entry in entries:
        if fnmatch.fnmatchcase(entry.name, head) and (
            head.startswith(".") or not entry.name.startswith(".")
        ):
            yield from _glob(os.path.join(folder, entry.name), rest)


def _real_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _lines(handle: TextIO) -> Iterator[str]:
    with handle:
        yield from handle


def resolve_relative(base_key: str, ref: str, *, confine_to: str | None = None) -> str:
    """The location key of ``ref`` read from the file at ``base_key``.

    Absolute URLs stand as they are; other references are relative to the file. For files,
    ``confine_to`` is a folder the result must stay inside, so that a catalog file cannot reach
    ``/etc/passwd`` with ``$text: ../../../etc/passwd``.
    """
    if "\x00" in ref:
        raise ReadError(f"{ref!r} contains a NUL character")
    if urlsplit(ref).scheme in ("http", "https"):
        return location_key("url", ref)
    type_, target = split_key(base_key)
    if type_ == "url":
        return location_key("url", urljoin(target, ref))
    if type_ != "file":
        raise ReadError(f"Cannot resolve {ref} relative to {base_key}")
    path = Path(ref) if os.path.isabs(ref) else Path(target).parent / ref
    resolved = os.path.normpath(path)
    if confine_to is not None and not is_inside(resolved, confine_to):
        raise NotAllowedError(
            f"{ref} resolves to {resolved}, outside the location's folder {confine_to}"
        )
    return location_key("file", resolved)


def is_inside(path: str, folder: str) -> bool:
    """True when ``path`` is inside ``folder`` once symbolic links are followed, so that a
    link in a repository cannot reach the rest of the server."""
    real_folder = os.path.realpath(folder)
    return os.path.commonpath([real_folder, os.path.realpath(path)]) == real_folder
