import pytest


@pytest.fixture(autouse=True)
def _isolated(request: pytest.FixtureRequest) -> None:
    """Integration tests share the database: each one runs in a transaction rolled back after
    it, or, if it reads committed data (see the `committed` fixture), empties the tables."""
    on_committed_data = "committed" in request.fixturenames or any(
        request.node.get_closest_marker(name) for name in ("worker", "committed")
    )
    request.getfixturevalue("clean_state" if on_committed_data else "rolled_back")
