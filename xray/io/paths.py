"""The one rule for data locations: a URI (``s3://``, ``gs://``...) or a local path."""

from pathlib import Path


def is_uri(location: str) -> bool:
    """Whether ``location`` is a URI (``s3://bucket/x``, ``gs://...``) rather than a path."""
    return "://" in location


def is_relative_path(location: str) -> bool:
    """Whether ``location`` is a relative local path (resolved against a project root)."""
    return not is_uri(location) and not Path(location).is_absolute()


def resolve_location(location: str, root: str | Path) -> str:
    """``location`` with a relative local path made absolute under ``root``.

    Args:
        location: A URI, an absolute path or a path relative to ``root``.
        root: The project root (locally) or the image's working directory (in a cloud
            step): where the shipped sample ``data/sample`` lies in both.

    Returns:
        URIs and absolute paths unchanged; relative paths joined to ``root``.
    """
    return str(Path(root) / location) if is_relative_path(location) else location


LOCAL_SCHEME = "file://"  # how fsspec's local file system names a path


def read_location(uri: str) -> bytes:
    """The content of the file at an fsspec URL, as the listings name files
    (``fs.unstrip_protocol``): a local ``file://`` one is read directly, without
    fsspec's layers (0.03 against 0.16 ms per file), any other through fsspec.

    Raises:
        OSError: When the file cannot be read (missing, no permission, network error).
    """
    if uri.startswith(LOCAL_SCHEME):
        with open(uri[len(LOCAL_SCHEME) :], "rb") as handle:
            return handle.read()
    import fsspec

    with fsspec.open(uri, "rb") as handle:
        return handle.read()
