"""A real S3-compatible server for the store tests (not a test module): moto's server mode on
127.0.0.1, on a free port, with one bucket; stopped on exit.

While it runs, the environment holds fake credentials, the endpoint (AWS_ENDPOINT_URL,
AWS_ALLOW_HTTP) and AWS_EC2_METADATA_DISABLED, set before any client exists, so that the store,
writer subprocesses and Ray workers started meanwhile reach it and no client looks for
instance credentials anywhere else. The previous environment is restored afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",  # moto accepts any credentials
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextlib.contextmanager
def moto_s3(bucket: str) -> Iterator[str]:
    """Run the server with ``bucket``; yields its endpoint URL (http://127.0.0.1:PORT)."""
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    saved = dict(os.environ)
    os.environ.update(S3_ENV)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"})
        pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True).create_dir(bucket)
        yield endpoint
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)
