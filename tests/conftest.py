"""Test isolation and synthetic data.

ZenML reads its config location when it is first imported, so the isolated store is set
up here, before any test module imports zenml: the tests never touch the user's ZenML
config, stacks or MLflow store.
"""

import os
import sys
import tempfile
from pathlib import Path

_ISOLATED = Path(tempfile.mkdtemp(prefix="xray-tests-"))
os.environ["ZENML_CONFIG_PATH"] = str(_ISOLATED / "zenml-config")
os.environ["ZENML_REPOSITORY_PATH"] = str(_ISOLATED / "zenml-repo")
os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
os.environ.setdefault("ZENML_ENABLE_RICH_TRACEBACK", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["KERAS_HOME"] = str(_ISOLATED / "keras-home")  # no cached ImageNet weights
os.environ["BENTOML_HOME"] = str(_ISOLATED / "bentoml")  # models and Bentos of the tests
os.environ["XRAY_PREDICTION_LOG_DIR"] = str(_ISOLATED / "prediction-log")  # the service's log
os.environ.pop("XRAY_PREDICTION_LOG_URL", None)
# gcsfs' experimental zonal/HNS bucket probe speaks gRPC, which the local GCS emulator
# used by the gs:// tests does not; real GCS works either way.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import subprocess  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import pytest  # noqa: E402

from synthetic import make_kaggle_tree, make_single_folder  # noqa: E402


@pytest.fixture(scope="session")
def isolated_dir() -> Path:
    """The session's private folder (ZenML config, repository, Keras home)."""
    return _ISOLATED


@pytest.fixture
def kaggle_tree(tmp_path: Path) -> Path:
    """A small synthetic data set in the Kaggle layout (train/val/test x 2 classes)."""
    return make_kaggle_tree(tmp_path / "chest_xray", per_class={"train": 8, "val": 2, "test": 4})


@pytest.fixture
def single_folder(tmp_path: Path) -> Path:
    """A small synthetic data set as a single {NORMAL,PNEUMONIA} folder."""
    return make_single_folder(tmp_path / "xrays", per_class=12)


from stacks.emulators import free_port  # noqa: E402,F401  (the tests' free loopback port)


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with the AWS environment pointing at it."""
    import s3fs
    from moto.server import ThreadedMotoServer

    s3fs.S3FileSystem.clear_instance_cache()  # instances remember the previous endpoint
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    yield endpoint
    server.stop()


_SERVER_OUTPUT: dict[str, int] = {}  # url -> file descriptor of a running server's output


def server_output(url: str, limit: int = 6000) -> str:
    """The last ``limit`` characters a server of :func:`bento_server` has printed so far
    (read without moving the file offset the server writes at)."""
    fd = _SERVER_OUTPUT[url]
    size = os.fstat(fd).st_size
    start = max(0, size - 4 * limit)
    return os.pread(fd, size - start, start).decode(errors="replace")[-limit:]


@contextmanager
def bento_server(
    env: dict[str, str], launcher: bool = False, extra: tuple[str, ...] = ()
) -> Iterator[str]:
    """`bentoml serve` of ``bentos/`` on a free port of 127.0.0.1, ready (``/readyz``)
    within 120 s or the test fails; stopped (the whole process group) afterwards.

    With ``launcher``, started as a user serves production: ``python -m application.serve``
    (which resolves the production version, then becomes ``bentoml serve``); ``extra``
    are more options of the command. The server's output is in :func:`server_output`
    while it runs, and its tail goes to the test's report (captured stderr) when the
    test fails while the server runs."""
    from application.serve import wait_until_ready
    from stacks.emulators import stop_group

    port = free_port()
    address = ["--host", "127.0.0.1", "--port", str(port)]
    command = ["-m", "application.serve"] if launcher else ["-m", "bentoml", "serve"]
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [sys.executable, *command, *extra, *address],
            cwd=PROJECT_ROOT if launcher else PROJECT_ROOT / "bentos",
            env=env,
            start_new_session=True,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        _SERVER_OUTPUT[url] = output.fileno()
        try:
            if not wait_until_ready(url, 120, lambda: process.poll() is None):
                pytest.fail(
                    f"bentoml serve was not ready within 120 s (exit {process.poll()}):\n"
                    f"{server_output(url, 3000)}"
                )
            try:
                yield url
            except BaseException:  # the server's side of a failed test, in its report
                stop_group(process, 30)
                print(f"--- bentoml serve output ---\n{server_output(url)}", file=sys.stderr)
                raise
        finally:
            stop_group(process, 30)
            del _SERVER_OUTPUT[url]


CONTAINER_BASE_IMAGE = os.environ.get("XRAY_SERVING_BASE_IMAGE") or "xray-python:3.11-bookworm"


def docker(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``docker ARGS`` with its output captured as text (the container suite)."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def base_image() -> str:
    """The container suite's Python 3.11 base image, built from Debian packages when
    missing (about 2 min), trusting this machine's CA certificates so that pip and uv
    inside reach PyPI through a TLS-intercepting proxy."""
    from application.serving_image import docker_environment

    docker_environment()  # fails with what to do when there is no engine
    if docker("image", "inspect", CONTAINER_BASE_IMAGE).returncode != 0:
        env = dict(os.environ)
        system_ca = Path("/etc/ssl/certs/ca-certificates.crt")
        if system_ca.is_file():
            env.setdefault("XRAY_EXTRA_CA_CERTS", str(system_ca))
        built = subprocess.run(
            [str(PROJECT_ROOT / "scripts" / "base_image.sh"), CONTAINER_BASE_IMAGE],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert built.returncode == 0, built.stderr[-3000:]
        assert built.stdout.strip().splitlines()[-1] == CONTAINER_BASE_IMAGE  # the tag, last
    return CONTAINER_BASE_IMAGE
