"""A local S3-protocol server for tests: moto's standalone server (``python -m moto.server``)
on a free 127.0.0.1 port, a real HTTP S3 API (conditional writes included), stopped by its
process id. It checks request signatures (``INITIAL_NO_AUTH_ACTION_COUNT``): its first three
requests create a user, the access key the tests use and its policy; after them a wrong
secret is refused (SignatureDoesNotMatch), as on AWS."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.loopback import free_port, running_server

SETUP_ACTIONS = 3  # unauthenticated requests: create the user, its key, its policy
ALLOW_ALL = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'


@dataclass
class S3Server:
    endpoint: str
    pid: int
    key_id: str
    secret: str

    def env(self) -> dict[str, str]:
        """The environment a process needs to reach this server (standard AWS variables)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def new_bucket(self) -> str:
        """A fresh bucket (one per test keeps tests apart)."""
        name = f"rf-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> None:
        """Write an object directly (test data, tampering behind rareflow's back)."""
        self.client().put_object(Bucket=bucket, Key=key, Body=data)

    def keys(self, bucket: str, prefix: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key_id,
                            aws_secret_access_key=self.secret, region_name="us-east-1")


def _test_user(endpoint: str) -> tuple[str, str]:
    """Create the tests' user and access key in the server's IAM (the unauthenticated
    setup requests)."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, aws_access_key_id="setup",
                       aws_secret_access_key="setup", region_name="us-east-1")
    iam.create_user(UserName="rareflow-tests")
    key = iam.create_access_key(UserName="rareflow-tests")["AccessKey"]
    iam.put_user_policy(UserName="rareflow-tests", PolicyName="all", PolicyDocument=ALLOW_ALL)
    return key["AccessKeyId"], key["SecretAccessKey"]


@contextlib.contextmanager
def running_s3_server(log: Path):
    """Start moto's server, wait until it answers, yield it, stop it by its pid."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true",
           "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}
    with running_server(command, port=port, log=log, env=env) as proc:
        endpoint = f"http://127.0.0.1:{port}"
        yield S3Server(endpoint, proc.pid, *_test_user(endpoint))
