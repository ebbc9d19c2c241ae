"""The auth function's HTTP shapes for customers: the sign-up body and view, and the error table."""

from __future__ import annotations

from pydantic import BaseModel, Field

from finfaas.platform.errors import ErrorSpec
from finfaas.platform.http import StrictModel
from finfaas.services.auth.errors import InvalidUsername, RefreshStoreUnavailable, UsernameTaken, WeakPassword
from finfaas.services.auth.model import SignedUp
from finfaas.services.customers.errors import CustomerStoreUnavailable

ERRORS = {
    UsernameTaken: ErrorSpec(409, UsernameTaken.code, "Username taken"),
    InvalidUsername: ErrorSpec(422, InvalidUsername.code, "Invalid username"),
    WeakPassword: ErrorSpec(422, WeakPassword.code, "Weak password"),
    CustomerStoreUnavailable: ErrorSpec(503, "customer_store_unavailable", "Customer store unavailable"),
    RefreshStoreUnavailable: ErrorSpec(503, "token_store_unavailable", "Token store unavailable"),
}


class SignUpBody(StrictModel):
    """Lengths here only bound the input; the username rules and password policy come after."""

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)


class SignedUpView(BaseModel):
    customer_id: str
    username: str


def signed_up_view(signed_up: SignedUp) -> SignedUpView:
    return SignedUpView(customer_id=signed_up.customer_id, username=signed_up.username)
