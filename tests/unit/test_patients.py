import pytest

from xray.logic.patients import parse_patient_id, patient_id_or_file, pneumonia_subtype


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person1000_virus_1681.jpeg", "person1000"),
        ("PNEUMONIA/person1950_bacteria_4881.jpeg", "person1950"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("im-0115-0002.JPEG", "IM-0115"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("IM-0429-0001-0002.jpeg", "IM-0429"),
        ("NORMAL2-IM-0587-0001-0001.jpeg", "NORMAL2-IM-0587"),
    ],
)
def test_parses_kaggle_names(name: str, patient: str) -> None:
    assert parse_patient_id(name) == patient


@pytest.mark.parametrize("name", ["scan_01.png", "person12.jpeg", "IM-0115.jpeg", "x.jpeg"])
def test_unknown_names_have_no_patient(name: str) -> None:
    assert parse_patient_id(name) is None


def test_unparsed_name_is_its_own_patient() -> None:
    assert patient_id_or_file("NORMAL/scan_01.png") == ("file:NORMAL/scan_01.png", False)
    assert patient_id_or_file("IM-0001-0001.jpeg") == ("IM-0001", True)


def test_subtype_from_name() -> None:
    assert pneumonia_subtype("person1_bacteria_1.jpeg") == "bacteria"
    assert pneumonia_subtype("person1_virus_1.jpeg") == "virus"
    assert pneumonia_subtype("IM-0001-0001.jpeg") is None
