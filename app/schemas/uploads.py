from __future__ import annotations

from typing import Any

from pydantic import Field

from app.models import UploadStatus
from app.schemas.common import AwareDatetime, ORMModel


class FileUploadRead(ORMModel):
    id: int
    user: int = Field(validation_alias="user_id")
    file: str = Field(description="Path of the stored copy, relative to the media root")
    filename: str = Field(description="The name you uploaded it as (sanitised)")
    upload_time: AwareDatetime
    status: UploadStatus
    word_count: int | None
    size: int
    sha256: str
    content_type: str
    error: str | None
    completed_at: AwareDatetime | None


class ActivityRead(ORMModel):
    id: int
    user: int = Field(validation_alias="user_id")
    action: str
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    timestamp: AwareDatetime
