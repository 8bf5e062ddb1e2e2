import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from spotrun.probes import Health, answer
from spotrun.s3errors import PermanentStoreError, explain
from spotrun.s3store import split_uri
from spotrun.store import StoreError, open_store
from spotrun.transferlog import progress_line

pytestmark = pytest.mark.unit


def test_s3_uris_split_and_bad_ones_are_named() -> None:
    assert split_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    assert split_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(StoreError, match="names no bucket"):
        split_uri("s3:///prefix")
    with pytest.raises(StoreError, match="scheme 'gs' is not one of"):
        open_store("gs://bucket/x")


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "PutObject")


@pytest.mark.parametrize(
    ("error", "permanent", "text"),
    [
        (_client_error("SignatureDoesNotMatch"), True, "credentials rejected"),
        (_client_error("NoSuchBucket"), True, "bucket does not exist"),
        (_client_error("SlowDown"), False, "throttling"),
        (EndpointConnectionError(endpoint_url="http://x:1"), False, "endpoint unreachable"),
    ],
)
def test_s3_failures_become_one_line_naming_uri_cause_and_fix(
    error: Exception, permanent: bool, text: str
) -> None:
    explained = explain(error, "s3://b/p", "http://x:1")
    assert isinstance(explained, PermanentStoreError) is permanent
    assert text in str(explained) and "s3://b/p at http://x:1" in str(explained)
    assert "\n" not in str(explained)


def test_probes_follow_the_sidecar_health() -> None:
    health = Health()
    assert answer(health, "/startupz")[0] == 503 and answer(health, "/healthz")[0] == 200
    health.started = True
    assert answer(health, "/startupz") == (200, "restored")
    assert answer(health, "/readyz") == (200, "ok")
    health.problem = "credentials rejected"
    assert answer(health, "/readyz") == (503, "degraded: credentials rejected")


def test_progress_line_shows_bytes_rate_and_eta() -> None:
    line = progress_line("uploading step-1", 512 * 2**20, 1024 * 2**20, 2.0)
    assert "512/1024 MiB" in line and "268 MB/s" in line and "ETA 2s" in line
