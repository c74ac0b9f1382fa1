"""Strict input models and JSON numbers: an integer field takes a number with no fraction as the integer it is.

JSON has one number type and JSON Schema counts ``1447.0`` as an integer, so a client (or a generated one,
or schemathesis) may send it for an ``"type": "integer"`` field. ``InputModel`` converts it before pydantic's
strict check; everything else strict mode refuses (``1.5``, ``true``, ``"12"``) stays refused, the field's
bounds still apply to the converted value, and the schema of the field is unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field, ValidationError

from nimbus_api.api.openapi_export import export_openapi  # imports every request body model
from nimbus_api.kit.schemas import InputModel, PatchModel, StrictModel, _integer_field, not_null


class _Limits(StrictModel):
    limit: Annotated[int, Field(ge=1, le=100_000)]
    quota: Annotated[int, Field(ge=0)] | None = None
    days: list[Annotated[int, Field(ge=0, le=6)]] = []
    rate: float = 1.0
    either: int | float = 0


class _Patch(PatchModel):
    port: Annotated[int, Field(ge=1, le=65535)] | None = not_null()


def _error(body: dict[str, Any], model: type[InputModel] = _Limits) -> tuple[tuple[str | int, ...], str]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    (error,) = caught.value.errors()
    return tuple(error["loc"]), error["type"]


@pytest.mark.parametrize(("sent", "taken"), [(1447.0, 1447), (1447, 1447), (1e3, 1000), (100_000.0, 100_000)])
def test_a_number_with_no_fraction_is_the_integer_it_is(sent: Any, taken: int) -> None:
    limit = _Limits.model_validate({"limit": sent}).limit
    assert limit == taken
    assert type(limit) is int


@pytest.mark.parametrize("sent", [1.5, 1447.000001, True, False, "12", "12.0", None, [12], {"n": 12}])
def test_anything_else_is_not_an_integer(sent: Any) -> None:
    assert _error({"limit": sent}) == (("limit",), "int_type")


def test_the_bounds_apply_to_the_converted_number() -> None:
    assert _error({"limit": 0.0}) == (("limit",), "greater_than_equal")
    assert _error({"limit": 100_001.0}) == (("limit",), "less_than_equal")
    assert _error({"limit": 1e300}) == (("limit",), "less_than_equal")


def test_optional_integers_list_items_and_patches_convert_too() -> None:
    model = _Limits.model_validate({"limit": 1, "quota": 7.0, "days": [0.0, 6.0, 3]})
    assert (model.quota, model.days) == (7, [0, 6, 3])
    assert all(type(v) is int for v in (model.quota, *model.days))
    assert _Limits.model_validate({"limit": 1, "quota": None}).quota is None
    assert _error({"limit": 1, "days": [1, 2.5]}) == (("days", 1), "int_type")
    assert _Patch.model_validate({"port": 587.0}).port == 587
    assert _error({"port": None}, _Patch) == (("port",), "value_error")


def test_a_number_field_keeps_the_number_it_was_given() -> None:
    model = _Limits.model_validate({"limit": 1, "rate": 2.0, "either": 2.0})
    assert type(model.rate) is float
    assert type(model.either) is float  # int | float: 2.0 is a valid float, nothing to convert


def test_the_schema_still_declares_an_integer_with_its_bounds() -> None:
    properties = _Limits.model_json_schema()["properties"]
    assert properties["limit"] == {"maximum": 100_000, "minimum": 1, "title": "Limit", "type": "integer"}
    assert properties["days"]["items"] == {"maximum": 6, "minimum": 0, "type": "integer"}


def _subclasses(cls: type[InputModel]) -> list[type[InputModel]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def _declares_an_integer(schema: Any) -> bool:
    if isinstance(schema, dict):
        return schema.get("type") == "integer" or any(_declares_an_integer(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_declares_an_integer(v) for v in schema)
    return False


def test_every_integer_field_of_a_request_body_takes_a_number_with_no_fraction() -> None:
    """A field the document declares an integer in some shape the conversion does not reach (a map's
    values, say) would refuse ``3.0``, which the document allows: such a field must be handled first."""
    export_openapi()
    models = {m for m in _subclasses(InputModel) if m.__module__.startswith("nimbus_api.")}
    fields = [
        (model, name)
        for model in models
        for name, schema in model.model_json_schema(ref_template="{model}")["properties"].items()
        if _declares_an_integer({k: v for k, v in schema.items() if k != "$defs"})
    ]
    assert len(fields) > 15  # the walk reaches the account, campaign and workspace bodies
    assert [f"{m.__name__}.{n}" for m, n in fields if not _integer_field(m, n)] == []
