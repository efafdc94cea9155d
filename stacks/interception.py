"""Replacing a few attributes of ZenML and the cloud SDKs for the length of a block: how the
dry run and the rehearsal stop ZenML's real submission where it would reach a cloud."""

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def patched(patches: list[tuple[Any, str, Any]], module: str) -> Iterator[None]:
    """Sets each ``(owner, name, replacement)`` for the block, then restores it (an
    inherited attribute is deleted again, so the base class's applies).

    Args:
        patches: What to replace: a class or module, an attribute name, the replacement.
        module: The module that holds the interceptions, named in the error.

    Raises:
        RuntimeError: An attribute no longer exists: the pinned version moved it.
    """
    missing = [
        f"{getattr(owner, '__name__', owner)}.{name}"
        for owner, name, _ in patches
        if not hasattr(owner, name)
    ]
    if missing:
        raise RuntimeError(
            f"The pinned ZenML or cloud SDK moved {', '.join(missing)}; see {module}."
        )
    own = [(owner, name, vars(owner).get(name)) for owner, name, _ in patches]
    try:
        for owner, name, replacement in patches:
            setattr(owner, name, replacement)
        yield
    finally:
        for owner, name, original in own:
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
