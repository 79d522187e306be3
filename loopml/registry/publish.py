"""`loopml publish`: copy a registry's versions to another store (e.g. a local store to S3 on deploy).

A deploy must never overwrite what the destination decided. Publishing therefore:

* copies only the versions missing at the destination, in the registry's own order (claim the
  number, artifacts, reference, then ``version.json`` last), so a reader there never sees half a one;
* refuses, before copying anything, a version number that exists there with different artifacts
  (compared by SHA-256) or that is claimed there by a registration that never completed;
* never touches the destination's aliases or ledger: its champion moves only through
  ``loopml promote`` (or rollback) against that store, with a ledger entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from loopml.registry.records import VersionClaim
from loopml.registry.registry import ModelVersion, Registry, RegistryError
from loopml.storage import Store, records
from loopml.storage.layout import now_utc, version_claim_key, version_dir, version_json

__all__ = ["publish", "PublishReport", "PublishRefused"]


class PublishRefused(RegistryError):
    """The destination holds a different version under a number being published: nothing was copied."""


@dataclass
class PublishReport:
    """The version numbers copied, and those the destination already held (identical)."""

    copied: list[int] = field(default_factory=list)
    already_there: list[int] = field(default_factory=list)


def _conflict(source: Registry, dest: Registry, n: int) -> str | None:
    """Why number ``n`` cannot be published, or None when it is absent or identical there."""
    there = dest.store.url(version_dir(n))
    if not dest.store.exists(version_json(n)):
        if dest.store.exists(version_claim_key(n)):
            return (f"version {n} is claimed at {there} by a registration that has not completed "
                    "(`loopml doctor --repair` there removes it once abandoned)")
        return None
    mine, theirs = source.get(n).record.fingerprint, dest.get(n).record.fingerprint
    if mine != theirs:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        return f"version {n} exists at {there} with different artifacts ({', '.join(diff)} differ by SHA-256)"
    return None


def _copy(source: Registry, dest: Registry, version: ModelVersion) -> None:
    n, base = version.number, version_dir(version.number)
    claim = VersionClaim(claimed_at=now_utc(), owner=f"publish from {source.store.uri}")
    if not records.write_new(dest.store, version_claim_key(n), claim):
        raise PublishRefused(f"version {n} was claimed at {dest.store.url(base)} while publishing: "
                             "something registers there; publish again to compare")
    for name, info in version.record.artifacts.items():
        dest.store.put(info.key, source.artifact(version, name))  # checked by SHA-256
    if version.record.reference:
        dest.store.put(version.record.reference, source.store.get(version.record.reference))
    if not records.write_new(dest.store, version_json(n), version.record):  # last: the version exists
        raise PublishRefused(f"version {n} appeared at {dest.store.url(base)} while publishing")


def publish(source: Store, dest: Store, dry_run: bool = False,
            say: Callable[[str], None] = lambda _: None) -> PublishReport:
    """Copy the versions ``dest`` lacks from ``source`` (``say`` reports each); refuse, copying nothing,
    when a number is taken there by something else. ``dry_run``: report, copy nothing."""
    src, dst = Registry(source), Registry(dest)
    numbers = src.versions()
    if not numbers:
        raise RegistryError(f"nothing to publish: no versions in the registry at {source.uri}")
    conflicts = [c for n in numbers if (c := _conflict(src, dst, n))]
    if conflicts:
        raise PublishRefused("refusing to publish, nothing was copied: " + "; ".join(conflicts))
    report = PublishReport()
    for n in numbers:
        if dest.exists(version_json(n)):
            report.already_there.append(n)
            continue
        version = src.get(n)
        say(f"{'would copy' if dry_run else 'copy'} version {n} ({', '.join(version.record.artifacts)}) -> {dest.url(version_dir(n))}")
        if not dry_run:
            _copy(src, dst, version)
        report.copied.append(n)
    return report
