"""The Alembic history upgrades and downgrades cleanly, and matches the models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from tests.support import alembic, drop_database, recreate_database


@pytest.fixture
def scratch_url(database_url: str, run_dir: object) -> Iterator[str]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        scratch = url.set(database=str(make_url(database_url).database) + ".migrations")
    else:
        scratch = url.set(database=f"{url.database}_migrations")
    rendered = scratch.render_as_string(hide_password=False)
    recreate_database(rendered)
    yield rendered
    drop_database(rendered)


def test_upgrade_downgrade_upgrade_and_no_drift(scratch_url: str) -> None:
    alembic("upgrade", "head", database_url=scratch_url)
    # `check` fails if the models and the migrations disagree.
    alembic("check", database_url=scratch_url)
    alembic("downgrade", "base", database_url=scratch_url)
    current = alembic("current", database_url=scratch_url)
    assert "(head)" not in current.stdout
    alembic("upgrade", "head", database_url=scratch_url)
    assert "(head)" in alembic("current", database_url=scratch_url).stdout
