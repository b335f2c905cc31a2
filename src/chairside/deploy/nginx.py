"""The nginx configuration in front of N cloud servers (`chairside deploy nginx-config`).

A complete file, run as ``nginx -p PREFIX -c FILE``: the pid file, the logs and every temp
folder are relative to PREFIX, so one folder holds an instance (the tests start several).

What it does, and why (docs/operations.md walks an operator through it):

- **Balancing**: one ``upstream`` with every app server, ``least_conn`` (a long poll of the
  changes feed or an upload holds a connection for long: counting connections spreads better
  than taking turns), keep-alive connections to the servers. Only idempotent requests are
  retried on another server when one is down (nginx's default: a tus PATCH is never replayed
  by nginx, the client resumes it from the offset).
- **Uploads stream**: ``proxy_request_buffering off`` and no body size limit (the app checks
  ``Upload-Length`` and answers problem+json), so a 1 GB PATCH is not spooled to nginx's disk.
- **Media bytes bypass Python** when the servers run with ``CHAIRSIDE_OFFLOAD=nginx``: the app
  authorises the read (scopes, audit record), decides the answer (304, 416, which range) and
  answers ``X-Accel-Redirect`` to one of two internal locations naming the blob's file: ``range``
  sends the client's one Range, ``whole`` ignores it (the app decided on the whole file). Each
  answers the app's strong ETag (the SHA-256) and no Last-Modified, so Range, If-Range and ETag
  behave as without nginx (tests/scaleout run the same HTTP checks both ways).
- **TLS** when a certificate is given: TLS 1.2 at least, 1.3 preferred (a client that speaks it
  gets it), HSTS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from chairside.media.ranges import ACCEL_RANGE, ACCEL_WHOLE

__all__ = ["NginxOptions", "render", "upstream_address"]


@dataclass(frozen=True)
class NginxOptions:
    listen: int
    upstreams: Sequence[str]
    blob_dir: Path | None = None  # the filesystem blob store the servers share; None: no byte offload
    tls_cert: Path | None = None
    tls_key: Path | None = None
    host: str = ""  # the address to listen on; "" = every address
    user: str | None = None  # the workers' user when nginx starts as root
    worker_processes: str = "auto"
    s3_endpoint: str | None = None  # the S3 store's endpoint (http[s]://host:port): nginx fetches presigned URLs


def upstream_address(url: str) -> str:
    """`http://127.0.0.1:8001` -> `127.0.0.1:8001` (an nginx `server` address); a bare host:port is kept."""
    parts = urlsplit(url if "//" in url else f"http://{url}")
    if parts.scheme not in ("http", "") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"an upstream is an app server's http://HOST:PORT, not {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or 80}"


_NOT_HERE = ("このアドレスにはページがありません。URL をご確認ください。 / There is nothing at this address; "
             "check the URL.")


def _quote(value: str) -> str:
    if any(c in value for c in '"\\\n;{}$'):
        raise ValueError(f"not usable in an nginx configuration: {value!r}")
    return f'"{value}"'


_S3_ERROR = ("保存先のストレージから読めませんでした。しばらくして開き直してください。 / "
             "The storage could not be read; open the item again in a moment.")


def _s3_offload(endpoint: str) -> str:
    """Internal locations proxying to a presigned URL of the S3 store (CHAIRSIDE_OFFLOAD=nginx, an S3 blob store).

    The app answers `X-Accel-Redirect: /_chairside_s3/{range|whole}/BUCKET/KEY?X-Amz-…`; nginx sends the
    signed request to the endpoint with the Host it was signed for, the client's one Range (or none), and
    nothing else of the client's (no Authorization, cookies or validators: the app decided the answer). The
    answer carries the app's strong ETag; S3's own validators and headers are hidden."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"the S3 endpoint is http[s]://HOST[:PORT], not {endpoint!r}")
    signed_host = parts.netloc  # what botocore signed: host[:port] as written in the endpoint URL
    tls = "\n            proxy_ssl_server_name on;" if parts.scheme == "https" else ""
    blocks = []
    for kind, ranges in (("range", "$http_range"), ("whole", '""')):
        blocks.append(f"""        location ~ "^/_chairside_s3/{kind}(?<s3_path>/[^?]*/(?<blob_sha>[0-9a-f]{{64}}))$" {{
            internal;
            proxy_pass {parts.scheme}://chairside_s3$s3_path$is_args$args;{tls}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {_quote(signed_host)};
            proxy_set_header Range {ranges};
            proxy_set_header If-Range "";
            proxy_set_header If-None-Match "";
            proxy_set_header If-Modified-Since "";
            proxy_set_header If-Match "";
            proxy_set_header If-Unmodified-Since "";
            proxy_set_header Authorization "";
            proxy_set_header Cookie "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_hide_header ETag;
            proxy_hide_header Last-Modified;
            proxy_hide_header Accept-Ranges;
            proxy_hide_header Content-Type;
            proxy_hide_header Server;
            proxy_hide_header x-amz-request-id;
            proxy_hide_header x-amz-id-2;
            proxy_hide_header x-amz-meta-sha256;
            proxy_hide_header x-amz-version-id;
            proxy_intercept_errors on;
            error_page 400 403 404 500 502 503 504 = @chairside_s3_error;
            add_header ETag "\\"$blob_sha\\"";
        }}""")
    return f"""
        # Media bytes of an S3 store after the app authorised the read: a presigned URL, never reachable from outside.
{chr(10).join(blocks)}
        location @chairside_s3_error {{
            default_type application/problem+json;
            if ($upstream_status = "") {{  # asked from outside: these locations are internal
                return 404 '{{"type":"about:blank","title":"Not Found","status":404,"detail":"{_NOT_HERE}"}}';
            }}
            return 503 '{{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"{_S3_ERROR}"}}';
        }}
"""


def _s3_upstream(endpoint: str | None) -> str:
    if endpoint is None:
        return ""
    parts = urlsplit(endpoint)
    assert parts.hostname is not None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"""
    upstream chairside_s3 {{
        server {host}:{port};
        keepalive 32;
    }}
"""


def render(options: NginxOptions) -> str:
    if not options.upstreams:
        raise ValueError("at least one upstream app server is needed")
    if (options.tls_cert is None) != (options.tls_key is None):
        raise ValueError("TLS needs both a certificate and its key")
    if not 0 < options.listen < 65536:
        raise ValueError(f"not a port: {options.listen}")
    servers = "\n".join(f"        server {upstream_address(u)} max_fails=3 fail_timeout=5s;" for u in options.upstreams)
    listen = f"{options.host}:{options.listen}" if options.host else str(options.listen)
    tls = ""
    if options.tls_cert is not None and options.tls_key is not None:
        listen += " ssl"
        tls = f"""
        ssl_certificate {_quote(str(options.tls_cert.resolve()))};
        ssl_certificate_key {_quote(str(options.tls_key.resolve()))};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers off;
        ssl_session_cache shared:chairside_tls:10m;
        ssl_session_timeout 1d;
        ssl_session_tickets off;
        add_header Strict-Transport-Security "max-age=31536000" always;
"""
    offload = ""
    if options.blob_dir is not None:
        root = _quote(str(options.blob_dir.resolve()))[:-1] + '/$blob_path"'
        common = """            internal;
            default_type application/octet-stream;
            etag off;
            if_modified_since off;
            add_header ETag "\\"$blob_sha\\"";
            add_header Last-Modified "";"""
        blob = r"(?<blob_path>[0-9a-f]{2}/[0-9a-f]{2}/(?<blob_sha>[0-9a-f]{64}))$" + '"'
        offload = f"""
        # Media bytes after the app authorised the read (CHAIRSIDE_OFFLOAD=nginx): never reachable from outside.
        location ~ "^{ACCEL_RANGE}/{blob} {{
{common}
            alias {root};
            max_ranges 1;
        }}
        location ~ "^{ACCEL_WHOLE}/{blob} {{
{common}
            alias {root};
            max_ranges 0;
        }}
"""
    if options.s3_endpoint is not None:
        offload += _s3_offload(options.s3_endpoint)
    user = f"user {options.user};\n" if options.user else ""
    return f"""# Made by `chairside deploy nginx-config`; run as: nginx -p PREFIX -c THIS_FILE (docs/operations.md)
{user}worker_processes {options.worker_processes};
pid nginx.pid;
error_log logs/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log logs/access.log;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    default_type application/octet-stream;
    server_tokens off;
    sendfile on;
    sendfile_max_chunk 2m;
    tcp_nopush on;
    keepalive_timeout 65s;

    upstream chairside {{
        least_conn;
{servers}
        keepalive 64;
    }}
{_s3_upstream(options.s3_endpoint)}
    server {{
        listen {listen};
{tls}
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_read_timeout 300s;
        proxy_send_timeout 300s;
        proxy_next_upstream error timeout;
        proxy_next_upstream_tries 2;

        location / {{
            proxy_pass http://chairside;
        }}
        location = /metrics {{  # scraped on each app server's own address, never from outside
            default_type application/problem+json;
            return 404 '{{"type":"about:blank","title":"Not Found","status":404,"detail":"{_NOT_HERE}"}}';
        }}
{offload}    }}
}}
"""
