"""A test script that lives in a file: read again at each run, with the local modules it imports.

``test_script()`` in the interactive shell, and each run of ``--watch``, run the file's
current text, so an edit needs no new driver and no new boot.  Python modules the script
imports from its own directory (a ``helpers.py`` beside it) are part of the script: when
one of them changed, every such module is dropped from ``sys.modules``, and the script's
own ``import`` statements load them afresh (dropping all, not reloading one, keeps a helper
that imports another from holding the old one).

The script's directory is put at the end of ``sys.path`` so that those imports work
whatever the working directory is (never the Nix store: a script built by nix has no
helpers beside it, and the store is too big a directory to search).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from types import ModuleType

from .errors import DriverError

NIX_STORE = Path("/nix/store")


def _digest(path: Path) -> bytes | None:
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None


class ScriptFile:
    """The script at ``path``, whose text ``text`` the driver runs now."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path.resolve()
        self.directory = self.path.parent
        self.text = text
        self._modules: dict[str, tuple[Path, bytes | None]] = {}
        """The local modules seen so far: name -> (file, digest of what was loaded)."""
        self._driver_modules = set(sys.modules)
        """What was imported before any run (the driver itself): never the script's."""
        if self.directory != NIX_STORE and str(self.directory) not in sys.path:
            sys.path.append(str(self.directory))

    @classmethod
    def of(cls, path: str, text: str) -> ScriptFile | None:
        """The script file, if ``text`` is what the file at ``path`` holds (a script given
        as a string, or a file that says something else, has no file to read again)."""
        try:
            if Path(path).is_file() and Path(path).read_text() == text:
                return cls(Path(path), text)
        except (OSError, UnicodeDecodeError):
            pass
        return None

    def reread(self) -> str | None:
        """The file's text, if it changed since the text the driver runs now."""
        try:
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise DriverError(f"cannot read the test script again: {exc}") from None
        if text == self.text:
            return None
        self.text = text
        return text

    def changed(self) -> bool:
        """Whether the file now says something else than the text the driver runs."""
        try:
            return self.path.read_text() != self.text
        except (OSError, UnicodeDecodeError):
            return True

    def _local(self) -> dict[str, ModuleType]:
        """The modules a run imported whose file is in the script's directory (or below it)."""
        found = {}
        for name, module in list(sys.modules.items()):
            if name in self._driver_modules:
                continue
            file = getattr(module, "__file__", None)
            if not file or not file.endswith(".py"):
                continue
            path = Path(file).resolve()
            if self.directory in path.parents and "site-packages" not in path.parts:
                found[name] = module
        return found

    def note_modules(self) -> None:
        """Remember the local modules a run imported, as their files are now."""
        for name, module in self._local().items():
            if name not in self._modules:
                path = Path(module.__file__ or "").resolve()
                self._modules[name] = (path, _digest(path))

    def changed_modules(self) -> list[str]:
        """The local modules whose file changed since it was loaded."""
        return sorted(name for name, (path, digest) in self._modules.items() if _digest(path) != digest)

    def forget_modules(self) -> list[str]:
        """Drop every local module, so that the next run imports them afresh; their names."""
        names = sorted(set(self._modules) | set(self._local()))
        for name in names:
            sys.modules.pop(name, None)
        self._modules.clear()
        return names

    def files(self) -> list[Path]:
        """The script and the local modules it imported: what a change to means a new run."""
        return [self.path, *sorted({path for path, _ in self._modules.values()})]
