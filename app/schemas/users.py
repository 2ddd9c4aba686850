from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import BaseModel, Field, field_validator, model_validator

from app.schemas.common import AwareDatetime, ORMModel
from app.usernames import MAX_CANONICAL_LENGTH, canonical_username

#: Besides letters, their marks and digits (any script): these.
USERNAME_PUNCTUATION = frozenset("_.@+-")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "passw0rd",
        "12345678",
        "123456789",
        "1234567890",
        "qwertyuiop",
        "qwerty123",
        "iloveyou",
        "11111111",
        "00000000",
        "abcdefgh",
        "abc12345",
        "letmein1",
        "welcome1",
        "sunshine",
        "football",
        "baseball",
        "superman",
        "trustno1",
    }
)

Username = Annotated[str, Field(min_length=3, max_length=150, examples=["rahim"])]
Password = Annotated[str, Field(min_length=8, max_length=1024, examples=["a long passphrase"])]


def validate_username(value: str) -> str:
    """The name as it will be shown (surrounding whitespace removed). Letters, digits and
    @ . + - _ only, judged after NFKC (so full-width letters are letters; spaces, controls
    and invisible characters are refused); its canonical form must be non-empty."""
    value = value.strip()
    allowed = all(
        c in USERNAME_PUNCTUATION or unicodedata.category(c)[0] in "LMN"
        for c in unicodedata.normalize("NFKC", value)
    )
    if not value or not allowed:
        raise ValueError("may contain only letters, digits and @ . + - _")
    canonical = canonical_username(value)
    if not canonical or unicodedata.category(canonical[0])[0] == "M":
        raise ValueError("must start with a letter, a digit or @ . + - _")
    if len(canonical) > MAX_CANONICAL_LENGTH:
        raise ValueError(f"is longer than {MAX_CANONICAL_LENGTH} characters once normalised")
    return value


def validate_email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > 254 or not EMAIL_RE.match(value):
        raise ValueError("is not a valid email address")
    return value


def password_problem(password: str, username: str) -> str | None:
    """Why a password is too weak, or None."""
    if len(password) < 8:
        return "must be at least 8 characters"
    if not password.strip():
        return "must not be blank"
    if password.isdigit():
        return "must not be only digits"
    if password.casefold() in _COMMON_PASSWORDS:
        return "is too common"
    if username and password.casefold() == username.casefold():
        return "must differ from the username"
    return None


class UserCreate(BaseModel):
    username: Username
    password: Password
    email: str | None = Field(default=None, max_length=254, examples=["rahim@example.com"])

    _username = field_validator("username")(validate_username)
    _email = field_validator("email")(validate_email)

    @model_validator(mode="after")
    def _strong_password(self) -> UserCreate:
        problem = password_problem(self.password, self.username)
        if problem:
            raise ValueError(f"password {problem}")
        return self


class UserRead(ORMModel):
    id: int
    username: str
    email: str | None
    is_active: bool
    is_staff: bool
    is_superuser: bool
    date_joined: AwareDatetime


class MeRead(UserRead):
    can_upload: bool
    uploads_remaining: int | None = Field(
        description="Uploads left; null means unlimited (one payment unlocks uploading for good)"
    )


class TokenRead(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
