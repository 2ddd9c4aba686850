import pytest


@pytest.fixture(autouse=True)
def _isolated(clean_state: None) -> None:
    """Integration tests share the database: each one leaves it empty."""
