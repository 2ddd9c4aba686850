"""Every model, imported so that the mappers and Alembic see them all."""

from app.models.activity_log import Action, ActivityLog
from app.models.base import Base
from app.models.file_upload import FileUpload, UploadStatus
from app.models.payment_transaction import PaymentStatus, PaymentTransaction
from app.models.revoked_session import RevokedSession
from app.models.user import User

__all__ = [
    "Action",
    "ActivityLog",
    "Base",
    "FileUpload",
    "PaymentStatus",
    "PaymentTransaction",
    "RevokedSession",
    "UploadStatus",
    "User",
]
