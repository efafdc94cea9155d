"""Patient identifiers parsed from Kermany/Kaggle chest X-ray file names.

Several images of one patient exist in the data set; a split that puts one patient on
both sides leaks. The file names carry the patient:

- ``person1000_bacteria_2931.jpeg`` / ``person1000_virus_1681.jpeg`` -> ``person1000``
- ``IM-0115-0001.jpeg`` and ``IM-0429-0001-0002.jpeg`` -> ``IM-0115``, ``IM-0429``
- ``NORMAL2-IM-1427-0001.jpeg`` -> ``NORMAL2-IM-1427``

Names that match none of these (a user's own data) make each image its own patient.
"""

import re
from pathlib import PurePosixPath

_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)_\d+$", re.IGNORECASE),
    re.compile(r"^((?:NORMAL2-)?IM-\d+)(?:-\d+)+$", re.IGNORECASE),
)


def parse_patient_id(file_name: str) -> str | None:
    """Returns the patient id carried by a Kaggle file name, or None if it carries none.

    Args:
        file_name: A file name or path; only the stem is used.

    Returns:
        The normalised patient id (``person1000``, ``IM-0115``, ``NORMAL2-IM-1427``), or
        None when the name follows no known pattern.
    """
    stem = PurePosixPath(file_name).stem
    for pattern in _PATTERNS:
        match = pattern.match(stem)
        if match:
            patient = match.group(1)
            return patient.lower() if patient.lower().startswith("person") else patient.upper()
    return None


def patient_id_or_file(file_name: str) -> tuple[str, bool]:
    """Returns ``(patient_id, parsed)``; an unparsable name becomes its own patient.

    Args:
        file_name: A file name or path relative to the data root.

    Returns:
        The patient id and whether it was parsed from a known naming pattern. For an
        unknown pattern the id is ``file:<path>`` so that it can never collide with a
        parsed one.
    """
    patient = parse_patient_id(file_name)
    if patient is not None:
        return patient, True
    return f"file:{file_name}", False


def pneumonia_subtype(file_name: str) -> str | None:
    """Returns ``bacteria`` or ``virus`` for a PNEUMONIA file name that says so, else None."""
    stem = PurePosixPath(file_name).stem.lower()
    for subtype in ("bacteria", "virus"):
        if f"_{subtype}_" in stem:
            return subtype
    return None
