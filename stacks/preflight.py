"""Preflight: what a cloud stack needs before anything is submitted, checked in seconds.

Each check is local or a single short call (no long network retries), so a run that
cannot work fails here, listing every problem with its fix, instead of minutes later in
a half-submitted pipeline.
"""

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from urllib.parse import urlparse

from stacks.registry import StackSpec, stack_values_file
from xray.io.paths import is_relative_path, is_uri

_ECR = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_GCP_REGISTRY = re.compile(r"^([a-z0-9-]+-docker\.pkg\.dev/[^/]+/[^/]+|([a-z]+\.)?gcr\.io/[^/]+)$")
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


@dataclass
class Check:
    """One preflight check: what was checked, and the fix when it failed."""

    name: str
    ok: bool
    detail: str = ""


def _cloud(spec: StackSpec) -> str:
    flavors = {c.flavor for c in spec.components}
    return "aws" if {"sagemaker", "s3", "aws"} & flavors else "gcp"


def _unset(spec: StackSpec, value: str) -> str | None:
    """The unset variable whose placeholder ``value`` contains, if any."""
    found = [n for n, p in spec.placeholders.items() if p and p in value]
    return max(found, key=lambda n: len(spec.placeholders[n]), default=None)


def check_variables(spec: StackSpec) -> Check:
    """Every ``${VARIABLE}`` the stack file needs is set (env or values file)."""
    unset = [n for n in spec.placeholders if not n.startswith("ZenML secret")]
    if not unset:
        return Check("account values", True)
    example = f"stacks/{spec.key.split('-')[0]}.env.example"
    return Check(
        "account values",
        False,
        f"unset: {', '.join(unset)}. Export them, or copy {example} to "
        f"{stack_values_file(spec.key).relative_to(stack_values_file(spec.key).parents[1])} "
        "and fill it in (the README's stack section says what each one is).",
    )


def check_server() -> Check:
    """A deployed ZenML server is connected (remote steps report to it)."""
    from zenml.client import Client

    store = Client().zen_store
    if store.type.value != "rest":
        return Check(
            "ZenML server",
            False,
            "this client uses a local store, which SageMaker/Vertex steps cannot reach. "
            "Deploy a ZenML server (README: 'A ZenML server') and connect: "
            "`zenml login https://<your-zenml-server>`.",
        )
    host = urlparse(store.url).hostname or ""
    if host in _LOOPBACK:
        return Check(
            "ZenML server",
            False,
            f"connected to {store.url}, which is this machine (`zenml login --local`); "
            "cloud steps cannot reach it. `zenml login https://<your-zenml-server>`.",
        )
    return Check("ZenML server", True, store.url)


def check_credentials(spec: StackSpec) -> Check:
    """Cloud credentials resolve locally (no API call is made)."""
    if _cloud(spec) == "aws":
        os.environ.setdefault("AWS_METADATA_SERVICE_TIMEOUT", "1")
        os.environ.setdefault("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")
        import boto3

        session = boto3.Session()
        problems = []
        if session.get_credentials() is None:
            problems.append(
                "no AWS credentials: run `aws configure` or `aws sso login`, or export "
                "AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            )
        orchestrator = spec.component("orchestrator")
        region = (orchestrator.configuration.get("region") if orchestrator else None) or (
            session.region_name
        )
        if not region:
            problems.append("no AWS region: export AWS_DEFAULT_REGION (e.g. eu-west-1)")
        return Check("AWS credentials", not problems, "; ".join(problems) or str(region))
    os.environ.setdefault("GCE_METADATA_TIMEOUT", "1")
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        _credentials, project = google.auth.default()
    except DefaultCredentialsError:
        return Check(
            "Google Cloud credentials",
            False,
            "no Application Default Credentials: run `gcloud auth application-default "
            "login`, or export GOOGLE_APPLICATION_CREDENTIALS=<service-account key file>.",
        )
    return Check("Google Cloud credentials", True, project or "")


def check_storage_and_registry(spec: StackSpec) -> list[Check]:
    """The artifact store is a bucket URI and the registry URI has the cloud's shape."""
    checks = []
    store = spec.component("artifact_store")
    path = str(store.configuration.get("path", "")) if store else ""
    scheme = "s3://" if _cloud(spec) == "aws" else "gs://"
    if name := _unset(spec, path):
        checks.append(Check("artifact store", False, f"{name} is unset."))
    else:
        checks.append(
            Check(
                "artifact store",
                path.startswith(scheme),
                path if path.startswith(scheme) else f"'{path}' is not a {scheme} URI.",
            )
        )
    registry = spec.component("container_registry")
    uri = str(registry.configuration.get("uri", "")) if registry else ""
    pattern, example = (
        (_ECR, "123456789012.dkr.ecr.eu-west-1.amazonaws.com")
        if _cloud(spec) == "aws"
        else (_GCP_REGISTRY, "europe-west4-docker.pkg.dev/my-project/xray")
    )
    ok = bool(pattern.match(uri))
    detail = uri if ok else f"'{uri}' should look like {example}."
    if name := _unset(spec, uri):
        ok, detail = False, f"{name} is unset."
    checks.append(Check("container registry", ok, detail))
    return checks


def check_image_builder(spec: StackSpec) -> Check:
    """A container engine answers (local builder), or the builder is a remote service."""
    builder = spec.component("image_builder")
    if builder is None or builder.flavor != "local":
        return Check("image builder", builder is not None, builder.flavor if builder else "")
    fix = (
        "start Docker (Docker Desktop, or `sudo systemctl start docker`), or use a remote "
        f"builder: set image_builder's flavor to "
        f"'{'aws' if _cloud(spec) == 'aws' else 'gcp'}' in stacks/{spec.key}.yaml."
    )
    if shutil.which("docker") is None:
        return Check("image builder", False, f"no `docker` command: {fix}")
    try:
        subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return Check("image builder", False, f"`docker info` failed: {fix}")
    return Check("image builder", True, "docker")


def check_mlflow(spec: StackSpec, server_ok: bool) -> Check:
    """The MLflow tracking URI is a remote server, and its credentials secret exists."""
    tracker = spec.component("experiment_tracker")
    if tracker is None:
        return Check("MLflow", True, "no experiment tracker")
    uri = str(tracker.configuration.get("tracking_uri", ""))
    if name := _unset(spec, uri):
        return Check("MLflow", False, f"{name} is unset.")
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or (parsed.hostname or "") in _LOOPBACK:
        return Check(
            "MLflow",
            False,
            f"tracking URI '{uri}' is not a remote http(s) server the cloud steps can "
            "reach; set XRAY_MLFLOW_TRACKING_URI to your MLflow server's URL.",
        )
    missing = []
    if server_ok:
        from zenml.client import Client

        for name in spec.secret_references():
            try:
                Client().get_secret(name, allow_partial_name_match=False)
            except KeyError:
                missing.append(name)
    if missing:
        return Check(
            "MLflow",
            False,
            f"ZenML secret '{missing[0]}' is missing: `zenml secret create {missing[0]} "
            "--username=<mlflow user> --password=<mlflow password>`.",
        )
    return Check("MLflow", True, uri)


def check_data(spec: StackSpec, data_dir: str) -> Check:
    """Steps that run in the cloud can read the data (a bucket, or the shipped sample)."""
    orchestrator = spec.component("orchestrator")
    runs_remotely = orchestrator is not None and orchestrator.flavor != "local"
    if not runs_remotely or is_uri(data_dir) or is_relative_path(data_dir):
        return Check("data", True, data_dir)
    bucket = "s3://<bucket>" if _cloud(spec) == "aws" else "gs://<bucket>"
    copy = "aws s3 sync" if _cloud(spec) == "aws" else "gcloud storage rsync -r"
    return Check(
        "data",
        False,
        f"{data_dir} is on this machine, which the cloud steps cannot read. Upload it "
        f"(`{copy} {data_dir} {bucket}/chest_xray`) and pass --data {bucket}/chest_xray, "
        f"or use the `{spec.key.split('-')[0]}-hybrid` stack, whose data steps run here.",
    )


def preflight(spec: StackSpec, data_dir: str) -> list[Check]:
    """Runs every check for a remote stack; never stops at the first failure.

    Args:
        spec: The stack, loaded with ``placeholders=True`` so unset values are listed.
        data_dir: What the load step will read (relative: inside the project).

    Returns:
        All checks, passed and failed.
    """
    checks = [check_variables(spec)]
    server = check_server()
    checks.append(server)
    checks.append(check_credentials(spec))
    checks.extend(check_storage_and_registry(spec))
    checks.append(check_image_builder(spec))
    checks.append(check_mlflow(spec, server.ok))
    checks.append(check_data(spec, data_dir))
    return checks


def report(spec: StackSpec, checks: list[Check]) -> str:
    """The failed checks, one per line with its fix, under a one-line verdict."""
    failed = [c for c in checks if not c.ok]
    lines = [
        f"Preflight for stack '{spec.key}': {len(failed)} of {len(checks)} checks failed; "
        "nothing was submitted."
    ]
    lines += [f"  - {c.name}: {c.detail}" for c in failed]
    lines.append(
        f"Preview what would be submitted without any of it: "
        f"python run.py --stack {spec.key} --dry-run"
    )
    return "\n".join(lines)
