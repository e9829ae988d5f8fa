"""The example configs that ship with the package (``configs/quickstart.yaml`` and ``configs/quick_start/``).

In a source checkout they are the repository's top-level ``configs/`` folder; an installed package carries
a copy as package data in ``paddle_losses/configs/`` (setup.py copies the folder at build time), so the
default config and the quick-start configs work from any directory with no checkout.
"""
import shutil
from pathlib import Path

_HERE = Path(__file__).resolve().parent
DEFAULT_NAME = "quickstart.yaml"


def root():
    """The folder holding the shipped configs: the installed copy if there is one, else the checkout's."""
    for candidate in (_HERE / "configs", _HERE.parent / "configs"):
        if (candidate / DEFAULT_NAME).is_file():
            return candidate
    raise FileNotFoundError(f"no shipped configs found in {_HERE / 'configs'} or {_HERE.parent / 'configs'} "
                            f"(reinstall paddle_losses)")


def default_config():
    """Path of the default config (``quickstart.yaml``)."""
    return root() / DEFAULT_NAME


def names():
    """Every shipped config, as a path relative to the configs folder (``quick_start/arcmargin_ce.yaml``)."""
    base = root()
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*.yaml"))


def find(name):
    """The shipped config called ``name``: a relative path with or without ``configs/`` and ``.yaml``
    (``configs/quick_start/arcmargin_ce.yaml``, ``quick_start/arcmargin_ce``) or a bare file stem
    (``arcmargin_ce``). Returns None if there is none."""
    text = str(name).replace("\\", "/")
    if text.startswith("configs/"):
        text = text[len("configs/"):]
    if not text.endswith((".yaml", ".yml")):
        text += ".yaml"
    all_names = names()
    if text in all_names:
        return root() / text
    stems = [n for n in all_names if n.rsplit("/", 1)[-1] == text]
    return root() / stems[0] if len(stems) == 1 else None


def resolve(path):
    """``path`` if it exists, else the shipped config it names (``-c configs/quick_start/x.yaml`` run
    outside a checkout), else ``path`` unchanged so the loader reports the missing file."""
    if Path(path).exists():
        return str(path)
    shipped = find(path)
    return str(shipped) if shipped is not None else str(path)


def copy(name, dest=".", overwrite=False):
    """Copy the shipped config ``name`` (see :func:`find`; ``all`` copies every one, keeping the
    ``quick_start/`` folder) to ``dest`` (a folder, or a file name for a single config).

    Returns the written paths. Raises ``FileNotFoundError`` for an unknown name and ``FileExistsError``
    rather than overwrite a file unless ``overwrite``.
    """
    into_folder = str(dest).endswith(("/", "\\")) or Path(dest).is_dir()
    dest = Path(dest)
    if name == "all":
        pairs = [(root() / n, dest / n) for n in names()]
    else:
        src = find(name)
        if src is None:
            raise FileNotFoundError(f"no shipped config {name!r}; `paddle-losses configs list` shows them")
        pairs = [(src, dest / src.name if into_folder else dest)]
    if not overwrite:
        existing = [str(d) for _, d in pairs if d.exists()]
        if existing:
            raise FileExistsError(f"{', '.join(existing)} already exists (pass --force to overwrite)")
    for src, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return [dst for _, dst in pairs]
