"""Where photos come from before import: a folder of class folders or a zip of them, read with caps on sizes, counts and
compression so that a hostile file costs little."""

import io
import re
import stat
import zipfile
import zlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from maskdet.bundle.pixels import file_size_problem
from maskdet.core.errors import StoreError
from maskdet.core.imageio import BadImage
from maskdet.core.text import printable

IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
MAX_ENTRY_BYTES = 64 * 2**20  # one photo file or zip entry: far above any camera's JPEG, read whole into memory
MAX_ARCHIVE_ENTRIES = 100_000  # entries of one zip: an import of that many photos already takes hours
MAX_ARCHIVE_BYTES = 16 * 2**30  # a zip's declared unpacked size: MAX_ARCHIVE_ENTRIES photos of 160 KB (1 megapixel)
MAX_BATCH_BYTES = 256 * 2**20  # file bytes plus decoded RGB an import or evaluation batch holds (bounds its memory)
MAX_DIRECTORY_BYTES = 32 * 2**20  # a zip's central directory, which zipfile holds as ~0.5 KB a record before any check
# The compression methods read. Python's zipfile decompresses bzip2 and LZMA a whole read at a time with no output
# limit, so a few KB of them can expand to gigabytes in one call, whatever size the entry declares.
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
METHOD_NAMES = {9: "Deflate64", zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 93: "Zstandard"}


@dataclass(frozen=True)
class Candidate:
    """One file offered for import: where it came from, its label, and a way to read its bytes."""

    name: str
    label: str
    read: Callable[[], bytes]
    stored_size: int | None = None  # bytes it takes compressed in its zip; None: its own size

    def arrived_size(self, data: bytes) -> int:
        """Bytes the file took as it arrived: they bound the decoded pixels and the face search it may cost."""
        return min(len(data), self.stored_size or len(data))


def folder_candidates(folder: Path) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Files of a folder of class folders at any depth (label = the file's parent folder, as in a zip), and the
    entries rejected before reading."""
    folder = Path(folder)
    candidates, rejected = [], []
    for path, relative in folder_entries(folder):
        name = printable(str(relative))
        problem = "not inside a class folder" if len(relative.parts) < 2 else file_problem(path, folder)
        if problem:
            rejected.append((name, problem))
            continue
        candidates.append(Candidate(name, printable(relative.parts[-2]), lambda path=path: read_file(path)))
    return candidates, rejected


def folder_entries(folder: Path) -> list[tuple[Path, Path]]:
    """(path, path relative to the folder) of each file of a folder at any depth, in order; hidden and ignored files
    left out, none checked yet (file_problem)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StoreError(f"Folder not found: {folder}")
    entries = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not (path.is_dir() or path.name in IGNORED_NAMES or any(p.startswith(".") for p in relative.parts)):
            entries.append((path, relative))
    return entries


def file_problem(path: Path, folder: Path | None = None, max_bytes: int | None = None) -> str | None:
    """Why a photo file is not read, checked before reading it (None: it may be read): it is not a regular file
    (a FIFO would block forever, a link to /dev/zero would fill the memory), it is larger than max_bytes (None:
    MAX_ENTRY_BYTES), or it is a link out of the `folder` it was found in."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError) as error:
        return f"cannot be read ({getattr(error, 'strerror', None) or error})"
    if folder is not None and path.is_symlink() and not target.is_relative_to(folder.resolve()):
        return "symbolic link to outside the folder"
    return file_size_problem(target, MAX_ENTRY_BYTES if max_bytes is None else max_bytes)


def read_photo_file(path: Path) -> bytes:
    """A photo named on its own (predict, a single-file import), read as a folder's photos are: its bytes, or a
    BadImage saying why it is not read (file_problem)."""
    problem = file_problem(Path(path))
    if problem:
        raise BadImage(problem)
    return read_file(Path(path))


def read_file(path: Path, max_bytes: int | None = None) -> bytes:
    """A checked file's bytes, never more than max_bytes (None: MAX_ENTRY_BYTES; the file may have grown since
    file_problem)."""
    max_bytes = MAX_ENTRY_BYTES if max_bytes is None else max_bytes
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadImage(f"file larger than {max_bytes // 2**20} MiB")
    return data


def zip_source(source):
    """A zip given as a path, bytes or a file object, as zipfile opens it; a path to no file is a StoreError."""
    if isinstance(source, bytes):
        return io.BytesIO(source)
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise StoreError(f"No such file: {source}.")
    return source


def open_zip(source) -> zipfile.ZipFile:
    """A zip archive from a path or file object, refused (StoreError) when its central directory is larger than
    MAX_DIRECTORY_BYTES before zipfile reads it; zipfile.BadZipFile or OSError when it is not a zip."""
    with open(source, "rb") if isinstance(source, (str, Path)) else nullcontext(source) as file:
        end = zipfile._EndRecData(file)  # zipfile's own reader of the end record (zip64 too); private but long stable
    if end and end[zipfile._ECD_SIZE] > MAX_DIRECTORY_BYTES:
        raise StoreError(f"The zip's table of contents is {end[zipfile._ECD_SIZE] / 2**20:.0f} MiB, more than "
                         f"{MAX_ARCHIVE_ENTRIES:,} photos need: split it into smaller zips.")
    return zipfile.ZipFile(source)


def check_archive(archive: zipfile.ZipFile) -> None:
    """Refuse (StoreError), before any entry is read, a zip with too many entries, too large a declared unpacked size,
    or entries whose data overlap: that is a zip bomb, many entries unpacking the same compressed bytes."""
    infos = archive.infolist()
    if len(infos) > MAX_ARCHIVE_ENTRIES:
        raise StoreError(f"The zip has {len(infos):,} entries; the limit is {MAX_ARCHIVE_ENTRIES:,}. Split it into "
                         "smaller zips.")
    declared = sum(info.file_size for info in infos)
    if declared > MAX_ARCHIVE_BYTES:
        raise StoreError(f"The zip unpacks to {declared / 2**30:,.1f} GiB; the limit is {MAX_ARCHIVE_BYTES // 2**30} "
                         "GiB. Split it into smaller zips.")
    infos = sorted(infos, key=lambda info: info.header_offset)
    starts = [info.header_offset for info in infos[1:]] + [archive.start_dir]  # the central directory follows the last
    if any(data_end(info) > start for info, start in zip(infos, starts)):
        raise StoreError("The zip's entries overlap one another, which only a zip bomb does: it was refused. Zip the "
                         "class folders again with an ordinary zip tool.")


def data_end(info: zipfile.ZipInfo) -> int:
    """Where an entry's local header and data end, at the least (its local header may carry more extra fields)."""
    name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
    return info.header_offset + 30 + len(name) + info.compress_size


def path_parts(name: str) -> list[str]:
    """A zip entry's path as its folder and file names (zips from Windows tools may separate them with backslashes)."""
    return [part for part in name.replace("\\", "/").split("/") if part]


def zip_candidates(archive: zipfile.ZipFile) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Image entries of a zip of class folders (label = the entry's parent folder); hostile entries rejected, and a
    hostile archive refused (check_archive)."""
    candidates, rejected = [], []
    for info, parts in zip_entries(archive):
        problem = entry_problem(info) or ("not inside a class folder" if len(parts) < 2 else None)
        if problem:
            rejected.append((info.filename, problem))
        else:
            candidates.append(Candidate(info.filename, parts[-2], lambda info=info: read_entry(archive, info),
                                        info.compress_size))
    return candidates, rejected


def zip_entries(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, list[str]]]:
    """(entry, path_parts) of each file entry of a zip, in order, once the archive is checked (check_archive);
    __MACOSX, hidden and ignored files left out, the entries themselves not checked yet (entry_problem)."""
    check_archive(archive)
    entries = []
    for info in archive.infolist():
        parts = path_parts(info.filename)
        # hidden (._ AppleDouble files, .git/) as a folder import skips them; ".." is not hidden: entry_problem says
        hidden = any(part.startswith(".") and part.strip(".") for part in parts)
        if not (info.is_dir() or not parts or parts[0] == "__MACOSX" or parts[-1] in IGNORED_NAMES or hidden):
            entries.append((info, parts))
    return entries


def entry_problem(info: zipfile.ZipInfo, max_bytes: int = MAX_ENTRY_BYTES) -> str | None:
    """Why a zip entry is not read, checked before reading it (None: it may be read)."""
    name = info.filename
    parts = path_parts(name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path in archive"
    if ".." in parts:
        return "path escapes the archive ('..')"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link in archive"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    if info.compress_type not in ZIP_METHODS:
        method = METHOD_NAMES.get(info.compress_type, f"number {info.compress_type}")
        return (f"entry cannot be decompressed (compression method {method} is not supported: zip it again with "
                "standard compression)")
    if info.file_size > max_bytes:
        return f"entry larger than {max_bytes // 2**20} MiB"
    return None


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The entry's bytes. zipfile stops at the declared size (checked before by entry_problem): data that unpacks to
    more is cut there, and its checksum then fails."""
    try:
        with archive.open(info) as handle:
            return handle.read(info.file_size)
    except (NotImplementedError, zlib.error, EOFError, zipfile.BadZipFile, OSError) as error:
        raise BadImage(f"entry cannot be decompressed ({error})") from None


def fill_batch(candidates: list[Candidate], decode: Callable[[Candidate], tuple | None]) -> tuple[list, int]:
    """Decode candidates in order until the batch holds MAX_BATCH_BYTES of file bytes and pixels, which bounds the
    memory of an import or an evaluation: `decode` gives (entry, bytes it holds), or None for a candidate left out.
    Returns the entries and how many candidates were taken."""
    batch, held = [], 0
    for taken, candidate in enumerate(candidates, start=1):
        decoded = decode(candidate)
        if decoded is None:
            continue
        entry, size = decoded
        batch.append(entry)
        held += size
        if held >= MAX_BATCH_BYTES:
            return batch, taken
    return batch, len(candidates)
