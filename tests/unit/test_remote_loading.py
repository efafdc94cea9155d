"""Loading from s3:// and gs:// against local emulators (moto, gcp-storage-emulator)."""

import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import gcsfs
import pytest
import s3fs
from conftest import free_port
from gcp_storage_emulator.server import create_server

from xray.io.loading import DataError, listing_version, load_images


def _upload(tree: Path, bucket: str, prefix: str, endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)
    for path in tree.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(tree).as_posix()}")


def test_s3_load_matches_local_load(kaggle_tree: Path, s3_endpoint: str) -> None:
    (kaggle_tree / "train" / "NORMAL" / "broken.jpeg").write_bytes(b"nope")
    _upload(kaggle_tree, "xrays", "chest_xray", s3_endpoint)
    local = load_images(str(kaggle_tree), min_images=10)
    remote = load_images("s3://xrays/chest_xray", min_images=10)
    assert remote.fingerprint() == local.fingerprint()
    assert remote.paths == local.paths and remote.origins == local.origins
    assert [s.path for s in remote.skipped] == ["train/NORMAL/broken.jpeg"]
    before = listing_version("s3://xrays/chest_xray")
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket="xrays", Key="chest_xray/train/NORMAL/IM-0100-0001.jpeg", Body=b"changed"
    )
    assert listing_version("s3://xrays/chest_xray") != before


def test_missing_bucket_prefix_is_a_clear_error(s3_endpoint: str) -> None:
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="empty")
    with pytest.raises(DataError, match="s3://empty/nothing does not exist"):
        load_images("s3://empty/nothing")


def test_unreachable_server_fails_fast_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    s3fs.S3FileSystem.clear_instance_cache()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    start = time.perf_counter()
    with pytest.raises(DataError, match="Cannot read the data folder s3://xrays/data.*credentials"):
        load_images("s3://xrays/data")
    assert time.perf_counter() - start < 30


@pytest.fixture
def gcs_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    gcsfs.GCSFileSystem.clear_instance_cache()
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="xrays")
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    yield endpoint
    server.stop()
    gcsfs.GCSFileSystem.clear_instance_cache()


def test_gcs_load_matches_local_load(single_folder: Path, gcs_endpoint: str) -> None:
    fs = gcsfs.GCSFileSystem(token="anon")
    fs.put(str(single_folder), "xrays/data", recursive=True)
    local = load_images(str(single_folder))
    remote = load_images("gs://xrays/data")
    assert remote.fingerprint() == local.fingerprint()
    assert remote.paths == local.paths
    with pytest.raises(DataError, match="gs://xrays/missing does not exist"):
        load_images("gs://xrays/missing")
