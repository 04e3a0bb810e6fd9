"""Files end to end with the official OpenAI SDK through a data plane: upload (a 3 MiB
random binary and a JSONL), list with auto-pagination, download byte-identical, delete,
retrieve after delete (404); then the same through an S3 store (moto) with encryption on:
the object sits under the generated key, sealed, and a file over 10 MiB goes up in
multipart parts; hostile uploads through a data plane are refused quickly (a declared 10 GB
body, bytes before the first boundary).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from cluster import Cluster, request
from conftest import free_port, stop_process, tcp_accepts, wait_until

DEMO_KEY = "sk-demo.my-secret"
FILES_KEY = "ERERERERERERERERERERERERERERERERERERERERERE="  # base64 of 32 bytes 0x11
BUCKET = "omg-files"
PREFIX = "gateway/files"


def client(cluster: Cluster, index: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=cluster.v1(index), api_key=DEMO_KEY, max_retries=0, timeout=60)


@pytest.fixture
def cluster(tmp_path, request):
    c = Cluster(tmp_path)
    request.node.omg_cluster = c
    try:
        yield c.start()
    finally:
        c.close()


def test_the_openai_sdk_uploads_lists_downloads_and_deletes_files(cluster: Cluster):
    api = client(cluster)
    binary = os.urandom(3 * 1024 * 1024)
    blob = api.files.create(file=("blob.bin", binary), purpose="assistants")
    assert blob.id.startswith("file-") and blob.object == "file"
    assert blob.bytes == len(binary) and blob.status == "processed"
    assert blob.filename == "blob.bin" and blob.purpose == "assistants"
    jsonl = b"".join(
        b'{"custom_id": "r%d", "method": "POST", "url": "/v1/chat/completions", '
        b'"body": {"model": "mock-chat", "messages": [{"role": "user", "content": "hi"}]}}\n' % i
        for i in range(3))
    batch = api.files.create(file=("input.jsonl", jsonl), purpose="batch")
    assert batch.purpose == "batch" and batch.expires_at is not None  # batch files expire (30 days)
    extra = [api.files.create(file=(f"f{i}.txt", b"x" * i), purpose="user_data").id for i in range(3)]

    # Iterating a page of 2 follows `after` over every page (5 files: 3 pages).
    listed = [f.id for f in api.files.list(limit=2)]
    assert listed == list(reversed([blob.id, batch.id, *extra])), "newest first, each once"
    assert [f.id for f in api.files.list(purpose="batch")] == [batch.id]

    assert api.files.retrieve(blob.id).bytes == len(binary)
    assert api.files.content(blob.id).read() == binary
    assert api.files.content(batch.id).read() == jsonl

    assert api.files.delete(blob.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        api.files.retrieve(blob.id)
    with pytest.raises(openai.NotFoundError):
        api.files.content(blob.id)

    # Client mistakes are OpenAI-shaped 4xx.
    with pytest.raises(openai.BadRequestError) as refused:
        api.files.create(file=("x.jsonl", b"{}"), purpose="batch_output")
    assert refused.value.body["param"] == "purpose"
    with pytest.raises(openai.BadRequestError):
        api.files.list(limit=101)

    # The admin API sees the tenant's files.
    tenant = cluster.tenant_id("demo")
    status, page = cluster.admin("GET", f"/admin/tenants/{tenant}/files?limit=100")
    assert status == 200, page
    assert {f["id"] for f in page["data"]} == {batch.id, *extra}


@pytest.fixture
def moto(tmp_path):
    """A moto S3 server (from this venv) on a free port, with the bucket created."""
    import boto3

    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    log = open(tmp_path / "moto.log", "ab")
    proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: tcp_accepts("127.0.0.1", port), 30, 0.1), "moto_server did not start"
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        s3.create_bucket(Bucket=BUCKET)
        yield endpoint, s3
    finally:
        stop_process(proc, timeout=10)


def test_files_in_s3_are_sealed_under_generated_keys(tmp_path, request, moto):
    endpoint, s3 = moto
    files_yaml = f"""\
files:
  storage: s3
  encryption_key: "{FILES_KEY}"
  s3:
    bucket: {BUCKET}
    prefix: {PREFIX}
    region: us-east-1
    endpoint: "{endpoint}"
    force_path_style: true
    allow_http: true
    access_key_id: test
    secret_access_key: test
"""
    (tmp_path / "cluster").mkdir()
    c = Cluster(tmp_path / "cluster", dataplanes=1, files_yaml=files_yaml, upload_body_timeout_s=60)
    request.node.omg_cluster = c
    try:
        c.start()
        api = client(c)
        tenant = c.tenant_id("demo")
        big = os.urandom(12 * 1024 * 1024 + 3)
        small = b'{"hello": "world"}\n'
        for name, data in [("../../big.bin", big), ("small.jsonl", small)]:
            f = api.files.create(file=(name, data), purpose="assistants")
            assert f.bytes == len(data) and f.filename == name
            assert api.files.content(f.id).read() == data
            key = f"{PREFIX}/{tenant}/{f.id}"
            head = s3.head_object(Bucket=BUCKET, Key=key)
            stored = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert stored.startswith(b"OMGSEAL1") and data not in stored
            assert hashlib.sha256(stored).digest() != hashlib.sha256(data).digest()
            if data is big:
                # A multipart upload's ETag is `<md5 of part md5s>-<parts>`.
                assert "-" in head["ETag"], head["ETag"]
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
        keys = sorted(o["Key"] for o in listed.get("Contents", []))
        assert all(k.startswith(f"{PREFIX}/{tenant}/file-") for k in keys), keys
        assert len(keys) == 2, keys
        # Deleting removes the object.
        f = api.files.list(limit=1).data[0]
        assert api.files.delete(f.id).deleted is True
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
        assert len(listed.get("Contents", [])) == 1
    finally:
        c.close()


def raw_status(port: int, head: bytes, body: bytes = b"") -> str:
    """Sends a request head (and part of a body) and reads the status line of the answer,
    which must come without the rest of the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer.split(b"\r\n", 1)[0].decode(errors="replace")


def test_hostile_uploads_through_a_dataplane_are_refused_quickly(cluster: Cluster):
    port = cluster.dp_ports[0][0]
    boundary = "b0undary"
    head = (f"POST /v1/files HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {DEMO_KEY}\r\n"
            f"content-type: multipart/form-data; boundary={boundary}\r\n")
    # A declared 10 GB body: 413 before it is sent.
    started = time.monotonic()
    status = raw_status(port, (head + "content-length: 10737418240\r\n\r\n").encode())
    assert " 413 " in status, status
    assert time.monotonic() - started < 10
    # Bytes before the first boundary: 400, OpenAI-shaped.
    status, error, _ = request("POST", f"{cluster.v1(0)}/files", b"junk\r\n--b0undary--\r\n", {
        "authorization": f"Bearer {DEMO_KEY}",
        "content-type": f"multipart/form-data; boundary={boundary}"})
    assert status == 400, error
    assert error["error"]["type"] == "invalid_request_error" and error["error"]["param"] == "file"
    api = client(cluster)
    assert [f.id for f in api.files.list()] == []
