"""Ordered, recorded SQL migrations: the files of a package's folder, named ``NNNN_name.sql``.

The warehouse (DuckDB) and the inbox (SQLite or PostgreSQL) each apply their own, in their own
way; what a migration is, and how the files are found and ordered, is written once here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


class MigrationError(RuntimeError):
    pass


def available_migrations(package: str) -> list[Migration]:
    """Every ``NNNN_name.sql`` file in the package's folder, in version order."""
    found = []
    for entry in resources.files(package).iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            if not version.isdigit():
                raise MigrationError(f"migration file {entry.name} must start with a number")
            found.append(Migration(int(version), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {versions}")
    return found


def pending_migrations(
    available: list[Migration], done: dict[int, str], what: str
) -> list[Migration]:
    """The migrations of ``available`` not in ``done`` (version -> checksum), in order.

    Refuses a migration edited after it was applied, and a database that has migrations this
    code does not know: newer code upgraded it, and older code writing it (a worker not
    restarted, a rollback) would write rows the newer schema's readers count as settled.
    """
    known = {migration.version for migration in available}
    unknown = sorted(set(done) - known)
    if unknown:
        raise MigrationError(
            f"{what} has {_counted('migration', unknown)} that this careloop does not"
            f" know (it knows up to {max(known, default=0)}): a newer careloop upgraded it; run"
            " that version, or restore a backup from before the upgrade"
        )
    for migration in available:
        if migration.version in done and done[migration.version] != migration.checksum:
            raise MigrationError(
                f"{what} migration {migration.version}_{migration.name} changed after it was"
                " applied; add a new migration instead of editing an applied one"
            )
    return [migration for migration in available if migration.version not in done]


def _counted(noun: str, versions: list[int]) -> str:
    """ "migration 31" or "migrations 31, 32"."""
    return f"{noun}{'s' if len(versions) > 1 else ''} {', '.join(map(str, versions))}"
