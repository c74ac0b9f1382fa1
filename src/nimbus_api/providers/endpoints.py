from __future__ import annotations

from fastapi import APIRouter

from nimbus_api.api.deps import AuthContext
from nimbus_api.kit.problems import problem_responses
from nimbus_api.providers.presets import PRESETS, ProviderPreset

router = APIRouter(prefix="/v1/providers", tags=["providers"], responses=problem_responses(401))


@router.get("", name="providers_list", summary="List provider presets")
async def providers_list(_: AuthContext) -> list[ProviderPreset]:
    """Connection presets for well-known services: host, port, mode, username hint and notes."""
    return PRESETS
