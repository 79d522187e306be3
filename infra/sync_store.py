"""Copy a local loopml store folder to ``s3://bucket/prefix`` (AWS, LocalStack, MinIO, moto server).

boto3 honours ``AWS_ENDPOINT_URL``, so the same command publishes to AWS or to a local endpoint.
Order keeps readers safe, as the registry's own writers do: artifacts first, then each version's
``version.json`` (a version exists only once it is there), then the aliases (what the API serves).

    python infra/sync_store.py --from .loopml --to s3://my-bucket/loopml [--only registry] [--dry-run]
"""

from __future__ import annotations

import argparse
import hashlib
import mimetypes
import sys
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from loopml.storage.s3 import split_s3_uri  # noqa: E402

DEFAULT_ONLY = ("registry",)  # what the API reads; the API itself writes prediction-log/ and feedback/


def upload_order(rel: PurePosixPath) -> int:
    """0: artifacts and everything else, 1: version.json (commits a version), 2: aliases (switch traffic)."""
    if rel.parts[:2] == ("registry", "aliases"):
        return 2
    if rel.name == "version.json":
        return 1
    return 0


def plan(source: Path, only: tuple[str, ...]) -> list[PurePosixPath]:
    files = []
    for path in source.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or "__pycache__" in path.parts:
            continue
        rel = PurePosixPath(path.relative_to(source).as_posix())
        if only and rel.parts[0] not in only:
            continue
        files.append(rel)
    return sorted(files, key=lambda r: (upload_order(r), str(r)))


def unchanged(client, bucket: str, key: str, path: Path) -> bool:
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except client.exceptions.ClientError:
        return False
    if head.get("ContentLength") != path.stat().st_size:
        return False
    etag = head.get("ETag", "").strip('"')
    return "-" not in etag and etag == hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", default=".loopml", help="local store folder (default .loopml)")
    parser.add_argument("--to", dest="target", required=True, help="s3://bucket/prefix")
    parser.add_argument("--only", nargs="*", default=list(DEFAULT_ONLY),
                        help="top-level store folders to copy (default: registry); --only with no value copies all")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)

    source = Path(args.source)
    if not (source / "registry").is_dir():
        print(f"sync-store: {source} has no registry/ folder: is it a loopml store?", file=sys.stderr)
        return 2
    try:
        bucket, prefix = split_s3_uri(args.target)
    except ValueError as err:
        raise SystemExit(f"--to: {err}") from None
    files = plan(source, tuple(args.only))
    if not files:
        print(f"sync-store: nothing to copy from {source}", file=sys.stderr)
        return 2

    import boto3  # here, so --help works without it

    client = boto3.client("s3")
    copied = skipped = 0
    for rel in files:
        key = f"{prefix}/{rel}" if prefix else str(rel)
        path = source / rel
        if unchanged(client, bucket, key, path):
            skipped += 1
            continue
        print(f"{'would copy' if args.dry_run else 'copy'} {rel} -> s3://{bucket}/{key}")
        if not args.dry_run:
            content_type = mimetypes.guess_type(rel.name)[0] or "application/octet-stream"
            with path.open("rb") as body:
                client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        copied += 1
    print(f"sync-store: {copied} copied, {skipped} unchanged, to s3://{bucket}/{prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
