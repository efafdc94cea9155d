"""The cloud's services, on 127.0.0.1: what a rehearsal (``run.py --rehearse``) runs behind
a cloud stack so that no account is needed and nothing leaves the machine.

- a real ZenML server (``zenml login --local``), which the step containers reach;
- an S3 emulator (moto) or a GCS emulator (gcp-storage-emulator) as the artifact store;
- a real ``mlflow server`` that checks the credentials of its basic-auth app, which the
  steps read from the stack's ZenML secret.

Each service is a child process on a free loopback port, ready before it is returned and
stopped (its whole process group) when the :class:`Services` context ends.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
BUCKET = "xray-rehearsal"
MLFLOW_USER = "xray-rehearsal"
# Credentials of the S3 emulator, passed to each step container as the role would.
S3_KEYS = {"AWS_ACCESS_KEY_ID": "rehearsal", "AWS_SECRET_ACCESS_KEY": "rehearsal"}


class ServiceError(RuntimeError):
    """A loopback service did not start; the message names it and ends with its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _bin(name: str) -> str:
    """A console script of this environment (beside the running interpreter)."""
    return str(Path(sys.executable).with_name(name))


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


@contextmanager
def _process(
    name: str,
    command: list[str],
    port: int,
    log: Path,
    env: dict[str, str],
    ready: Callable[[], bool] | None = None,
    timeout: float = 120,
) -> Iterator[None]:
    """Starts ``command`` in its own process group, waits until ``ready`` (default: the
    port accepts connections), and stops the group afterwards."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        check = ready or (lambda: _answers(port))
        deadline = time.monotonic() + timeout
        while not check():
            if process.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {process.returncode}" if process.poll() else "timed out"
                tail = log.read_text(errors="replace")[-2000:]
                raise ServiceError(f"The {name} ({' '.join(command[:3])} ...) {state}:\n{tail}")
            time.sleep(0.3)
        yield
    finally:
        stop_group(process, 20)


def stop_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stops a process started with ``start_new_session=True`` and everything it
    started: SIGTERM to its group, SIGKILL after ``timeout`` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Services:
    """The loopback services of one rehearsal, and what clients need to reach them.

    Attributes:
        root: Folder for the services' data and logs.
        env: Variables for this process and every step container: the emulator's
            endpoint and credentials (what a cloud role or service account provides).
        bucket_uri: ``s3://xray-rehearsal`` or ``gs://xray-rehearsal``.
        mlflow_uri: The tracking server's URL.
        mlflow_password: The password of :data:`MLFLOW_USER` (for the ZenML secret).
        zenml_url: The ZenML server's URL.
    """

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    bucket_uri: str = ""
    mlflow_uri: str = ""
    mlflow_password: str = ""
    zenml_url: str = ""


def _start_s3(stack: ExitStack, services: Services) -> None:
    port = free_port()
    command = [_bin("moto_server"), "-H", LOOPBACK, "-p", str(port)]
    stack.enter_context(
        _process("S3 emulator", command, port, services.root / "s3.log", {**os.environ})
    )
    endpoint = f"http://{LOOPBACK}:{port}"
    services.env.update(
        S3_KEYS,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        AWS_EC2_METADATA_DISABLED="true",
    )
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=BUCKET)
    services.bucket_uri = f"s3://{BUCKET}"


def _start_gcs(stack: ExitStack, services: Services) -> None:
    port = free_port()
    command = [
        _bin("gcp-storage-emulator"),
        "start",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--default-bucket",
        BUCKET,
        "--in-memory",
        "--quiet",
    ]
    stack.enter_context(
        _process("GCS emulator", command, port, services.root / "gcs.log", {**os.environ})
    )
    services.env.update(
        STORAGE_EMULATOR_HOST=f"http://{LOOPBACK}:{port}",
        # No metadata server and no credentials file here: anonymous access to the emulator.
        # gcsfs' experimental zonal/HNS bucket probe speaks gRPC, which the emulator does not.
        GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
        NO_GCE_CHECK="True",
        GCE_METADATA_HOST=f"{LOOPBACK}:1",
        GCE_METADATA_IP=f"{LOOPBACK}:1",
    )
    services.bucket_uri = f"gs://{BUCKET}"


def _start_mlflow(stack: ExitStack, services: Services) -> None:
    root = services.root / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    services.mlflow_password = secrets.token_urlsafe(16)
    auth = root / "basic_auth.ini"
    auth.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        f"admin_username = {MLFLOW_USER}\n"
        f"admin_password = {services.mlflow_password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    auth.chmod(0o600)
    port = free_port()
    command = [
        _bin("mlflow"),
        "server",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        "1",
        "--app-name",
        "basic-auth",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(auth),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32),  # CSRF of the auth app
    }
    stack.enter_context(
        _process("MLflow server", command, port, services.root / "mlflow.log", env, timeout=180)
    )
    services.mlflow_uri = f"http://{LOOPBACK}:{port}"


def _start_zenml(stack: ExitStack, services: Services) -> None:
    """``zenml login --local`` on a free port, for the ZenML config this process uses
    (``ZENML_CONFIG_PATH``, set by the caller); ``zenml logout --local`` at the end."""
    port = free_port()
    login = [_bin("zenml"), "login", "--local", "--port", str(port), "--ip-address", LOOPBACK]
    env = {**os.environ, "ZENML_AUTO_OPEN_DASHBOARD": "false"}
    log = services.root / "zenml-server.log"
    with log.open("ab") as out:
        started = subprocess.run(login, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300)
    stack.callback(
        subprocess.run,
        [_bin("zenml"), "logout", "--local"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    if started.returncode != 0:
        raise ServiceError(
            f"The ZenML server (zenml login --local) exited with {started.returncode}:\n"
            + log.read_text(errors="replace")[-2000:]
        )
    services.zenml_url = f"http://{LOOPBACK}:{port}"


@contextmanager
def cloud_services(storage: str, root: Path) -> Iterator[Services]:
    """Starts the loopback services a cloud stack needs; stops them on exit.

    Call it with ``ZENML_CONFIG_PATH`` pointing at a throw-away folder: the ZenML server
    is logged in there, so this process's ZenML client uses it.

    Args:
        storage: ``s3`` or ``gcs``: which emulator holds the artifacts and the data.
        root: Folder for the services' data and logs (created).

    Yields:
        Where the services are and the environment that reaches them.

    Raises:
        ServiceError: If a service did not start (its log's end is in the message).
    """
    root.mkdir(parents=True, exist_ok=True)
    services = Services(root=root)
    with ExitStack() as stack:
        (_start_s3 if storage == "s3" else _start_gcs)(stack, services)
        _start_mlflow(stack, services)
        _start_zenml(stack, services)
        yield services
