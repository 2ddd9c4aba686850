from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, PlainSerializer

T = TypeVar("T")

#: Times go out as ISO 8601 with an explicit offset (stored values are UTC).
AwareDatetime = Annotated[
    datetime,
    PlainSerializer(lambda v: v.isoformat(), return_type=str, when_used="json"),
]


class ORMModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, rows: Sequence[Any], total: int, *, limit: int, offset: int) -> Self:
        """A page of `rows` (ORM objects), each validated as the item type."""
        item_type = cls.model_fields["items"].annotation.__args__[0]  # type: ignore[union-attr]
        return cls(
            items=[item_type.model_validate(row) for row in rows],
            total=total,
            limit=limit,
            offset=offset,
        )
