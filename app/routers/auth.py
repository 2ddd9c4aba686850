from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from app import uow
from app.deps import (
    CurrentUser,
    SessionDep,
    SettingsDep,
    ThrottleDep,
    client_address,
)
from app.errors import (
    Conflict,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
    TooManyRequests,
    responses,
)
from app.schemas.users import MeRead, TokenRead, UserCreate, UserRead
from app.services import auth as auth_service
from app.services import entitlement
from app.services.users import create_user

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post(
    "/register/",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=responses(Conflict, InvalidInput),
)
async def register(body: UserCreate, session: SessionDep) -> UserRead:
    """Create an account. Weak passwords and malformed names are refused with 422."""
    user = await create_user(
        session, username=body.username, password=body.password, email=body.email
    )
    await uow.commit(session)
    return UserRead.model_validate(user)


@router.post(
    "/token/",
    response_model=TokenRead,
    responses=responses(InvalidCredentials, TooManyRequests),
)
async def token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
    throttle: ThrottleDep,
) -> TokenRead:
    """OAuth2 password flow (what Swagger's Authorize button uses): form fields
    `username` and `password`; answers a bearer JWT."""
    user = await auth_service.authenticate(
        session,
        throttle,
        username=form.username,
        password=form.password,
        address=client_address(request),
    )
    await uow.commit(session)
    access_token, expires_in = auth_service.issue_token(user, settings)
    return TokenRead(access_token=access_token, expires_in=expires_in)


@router.get("/me/", response_model=MeRead, responses=responses(InvalidToken))
async def me(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> MeRead:
    allowance = await entitlement.allowance(session, user.id, settings)
    return MeRead(
        **UserRead.model_validate(user).model_dump(),
        can_upload=allowance.can_upload,
        uploads_remaining=allowance.uploads_remaining,
    )
