"""make serving-image's checks before any build: Docker missing or silent, no BuildKit
plugin, no production version (the image build itself: tests/containers)."""

from types import SimpleNamespace

import pytest

import application.serving_image as serving_image


def _fake_run(codes: dict[str, int]):
    def run(command, **_kwargs):
        return SimpleNamespace(returncode=codes.get(command[1], 0), stdout="", stderr="")

    return run


def test_no_docker_command_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving_image.shutil, "which", lambda _name: None)
    with pytest.raises(serving_image.ImageBuildError, match="apt-get install docker.io"):
        serving_image.docker_environment()


def test_a_silent_engine_says_how_to_start_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving_image.shutil, "which", lambda _name: "/usr/bin/docker")
    monkeypatch.setattr(serving_image.subprocess, "run", _fake_run({"info": 1}))
    with pytest.raises(serving_image.ImageBuildError, match="No Docker engine answers"):
        serving_image.docker_environment()


def test_without_buildx_the_classic_builder_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving_image.shutil, "which", lambda _name: "/usr/bin/docker")
    monkeypatch.delenv("DOCKER_BUILDKIT", raising=False)
    monkeypatch.setattr(serving_image.subprocess, "run", _fake_run({"buildx": 1}))
    assert serving_image.docker_environment()["DOCKER_BUILDKIT"] == "0"
    monkeypatch.setattr(serving_image.subprocess, "run", _fake_run({}))
    assert "DOCKER_BUILDKIT" not in serving_image.docker_environment()


def test_no_production_version_is_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    assert serving_image.main(["--model-name", "never_trained_model"]) == 1
    err = capsys.readouterr().err
    assert "No production version of model 'never_trained_model'" in err
