"""The customer profile's HTTP shapes (served by the accounts function): the body and the views."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from finfaas.platform.http import StrictModel
from finfaas.services.customers.model import ProfileReceipt, StoredProfile


class ProfileBody(StrictModel):
    """The whole profile; lengths here only bound the input, the rules are checked after normalising."""

    name: str = Field(min_length=1, max_length=400)
    national_id: str = Field(min_length=1, max_length=64)
    phone: str = Field(min_length=1, max_length=40)


class ProfileSaved(BaseModel):
    customer_id: str
    updated_at: datetime


class ProfileView(BaseModel):
    customer_id: str
    name: str
    national_id: str
    phone: str
    updated_at: datetime


def profile_saved(receipt: ProfileReceipt) -> ProfileSaved:
    return ProfileSaved(customer_id=receipt.customer_id, updated_at=_utc(receipt.updated_at_s))


def profile_view(stored: StoredProfile) -> ProfileView:
    """The decrypted profile, for this response only."""
    profile = stored.profile
    return ProfileView(customer_id=stored.customer_id, name=profile.name, national_id=profile.national_id,
                       phone=profile.phone, updated_at=_utc(stored.updated_at_s))


def _utc(epoch_seconds: int) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, UTC)
