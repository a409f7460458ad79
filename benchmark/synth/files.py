"""What a generation wrote, so that replacing it deletes exactly that.

A generation lists every file it wrote in ``generated_files.txt``. A later generation with other parameters
into the same folder deletes those files only: a notebook or figure a user keeps in the folder stays where it is,
and one in the way of a new file stops the replacement before anything is deleted. The list is read as
untrusted (a data folder may be received): a line that leads outside the folder, or through a link, is refused.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

from benchmark.errors import DataError, StoreError
from benchmark.store import atomic_write_text, inside

LIST = "generated_files.txt"


def write_list(staging: Path) -> None:
    """List every file in ``staging`` (this list included) in ``staging/LIST``, written as the generation's other
    files are: the staging folder is moved into place only once it is complete."""
    files = {path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file()} | {LIST}
    (staging / LIST).write_text("".join(f"{name}\n" for name in sorted(files)), encoding="utf-8")


def is_generation(out: Path) -> bool:
    """Whether ``out`` holds a list of generated files (a generation, or a replacement that was interrupted)."""
    return (out / LIST).is_file()


def install(staging: Path, out: Path, marker: str) -> None:
    """Move the generation in ``staging`` into ``out`` in place of the one there, deleting only the files that one
    listed; ``marker`` (what makes a generation look complete) is removed first and moved in last, so a kill
    in between leaves a folder that is regenerated, never one that looks complete."""
    if out.exists() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        staging.rename(out)
        return
    old = _read_list(out)
    new = set(_read_list(staging))
    kept = _not_listed(out, old)
    in_the_way = sorted(name for name in kept if name in new or any(parent in new for parent in _parents(name)))
    if in_the_way:
        raise DataError(f"{out}: the new generation would write over {', '.join(in_the_way[:5])}, which no "
                        f"generation wrote ({LIST} does not list them), so nothing was replaced. Move them out of "
                        "the folder, or generate into another one.")
    (out / marker).unlink(missing_ok=True)
    # Until the new list is in place, the folder's list names both generations' files: a kill now leaves
    # nothing of either that a later replacement would not find.
    atomic_write_text(out / LIST, "".join(f"{name}\n" for name in sorted(set(old) | new)))
    for name in old:
        if name != LIST:
            _remove(out, name)
    for name in sorted(new - {LIST, marker}):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, out / name)
    os.replace(staging / LIST, out / LIST)
    os.replace(staging / marker, out / marker)
    shutil.rmtree(staging)  # only the emptied folders are left in it


def _read_list(root: Path) -> list[str]:
    """The names ``root/LIST`` holds, each checked to lie inside ``root``; a folder without one is refused, as the
    files its generation wrote cannot be told from files added since."""
    path = root / LIST
    if not path.is_file():
        raise DataError(f"{root} holds a synthetic generation without {LIST} (made before generations listed their "
                        "files), so its files cannot be told from files added since, and it is not replaced. Move "
                        "anything of yours out of it and delete the folder; the next run generates it again.")
    names = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        name = PurePosixPath(line)
        if not line or name.is_absolute() or ".." in name.parts or name.as_posix() != line:
            raise DataError(f"{path}, line {number}: {line!r} is not a path inside the folder; nothing was replaced")
        try:
            inside(root, root / name)
        except StoreError as error:
            raise DataError(f"{path}, line {number}: {error}; nothing was replaced") from None
        names.append(line)
    return names


def _not_listed(root: Path, listed: list[str]) -> set[str]:
    """Files and links under ``root`` (links not followed) that ``listed`` does not name."""
    found = set()
    for folder, folders, files in os.walk(root):
        for name in files + [entry for entry in folders if Path(folder, entry).is_symlink()]:
            found.add(Path(folder, name).relative_to(root).as_posix())
    return found - set(listed)


def _parents(name: str) -> list[str]:
    return [parent.as_posix() for parent in PurePosixPath(name).parents if parent != PurePosixPath(".")]


def _remove(root: Path, name: str) -> None:
    """Delete ``root/name`` if it is a regular file, then each folder above it that this leaves empty."""
    path = root / name
    if not path.is_file() or path.is_symlink():
        return
    path.unlink()
    for parent in PurePosixPath(name).parents:
        folder = root / parent
        if folder == root or any(folder.iterdir()):
            return
        folder.rmdir()
