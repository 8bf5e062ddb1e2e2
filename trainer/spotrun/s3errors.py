"""Turn boto3/botocore failures into one line naming the cause, the URI and the fix."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from .store import StoreError

_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403"}
_TRANSIENT = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500"}


class PermanentStoreError(StoreError):
    """Retrying will not help until someone changes credentials, bucket or endpoint."""


def explain(error: BaseException, uri: str, endpoint: str | None) -> StoreError:
    where = f"{uri}" + (f" at {endpoint}" if endpoint else "")
    if isinstance(error, NoCredentialsError):
        return PermanentStoreError(
            f"{where}: no S3 credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "(from a Secret), a web identity (IRSA) or an AWS profile"
        )
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError):
        return StoreError(
            f"{where}: S3 endpoint unreachable ({type(error).__name__}); check the endpoint URL "
            "and the network"
        )
    if isinstance(error, ReadTimeoutError):
        return StoreError(f"{where}: S3 endpoint stopped answering ({error})")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return PermanentStoreError(
                f"{where}: bucket does not exist; create it or fix checkpoint.storage.uri"
            )
        if code in _CREDENTIALS:
            return PermanentStoreError(
                f"{where}: credentials rejected; check the Secret's "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the bucket policy"
            )
        if code in _TRANSIENT:
            return StoreError(f"{where}: S3 is throttling or failing ({code}); retrying")
        return StoreError(f"{where}: S3 error {code}: {error}")
    if isinstance(error, BotoCoreError):
        return StoreError(f"{where}: {error}")
    return StoreError(f"{where}: {type(error).__name__}: {error}")
