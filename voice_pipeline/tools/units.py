"""Unit conversions said aloud: "how many miles is 10 km", "convert 30 celsius to fahrenheit", "5 kg in pounds".

Length, mass, volume, speed and temperature. The answer says both amounts in words, rounded to
what a listener can use ("about six point two one miles").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from voice_pipeline.spoken_numbers import say_value
from voice_pipeline.tools.registry import Tool, ToolContext, ToolResult, tool_from_function
from voice_pipeline.tools.said import NUMBER, number


@dataclass(frozen=True)
class Unit:
    name: str  # singular, as said
    plural: str
    kind: str  # length | mass | volume | speed | temperature
    factor: float  # to the kind's base unit (metre, kilogram, litre, metre per second; kelvin below)
    offset: float = 0.0  # temperature only: base = value * factor + offset


_UNITS = [
    (Unit("kilometer", "kilometers", "length", 1000.0), "kilometers? kilometres? km kms k"),
    (Unit("mile", "miles", "length", 1609.344), "miles? mi"),
    (Unit("meter", "meters", "length", 1.0), "meters? metres? m"),
    (Unit("foot", "feet", "length", 0.3048), "feet foot ft"),
    (Unit("inch", "inches", "length", 0.0254), "inch inches"),
    (Unit("centimeter", "centimeters", "length", 0.01), "centimeters? centimetres? cm cms"),
    (Unit("millimeter", "millimeters", "length", 0.001), "millimeters? millimetres? mm"),
    (Unit("yard", "yards", "length", 0.9144), "yards? yd yds"),
    (Unit("kilogram", "kilograms", "mass", 1.0), "kilograms? kilogrammes? kilos? kg kgs"),
    (Unit("pound", "pounds", "mass", 0.45359237), "pounds? lbs? lb"),
    (Unit("gram", "grams", "mass", 0.001), "grams? grammes? g"),
    (Unit("ounce", "ounces", "mass", 0.028349523125), "ounces? oz"),
    (Unit("stone", "stone", "mass", 6.35029318), "stones? st"),
    (Unit("liter", "liters", "volume", 1.0), "liters? litres? l"),
    (Unit("milliliter", "milliliters", "volume", 0.001), "milliliters? millilitres? ml"),
    (Unit("gallon", "gallons", "volume", 3.785411784), "gallons? gal"),
    (Unit("cup", "cups", "volume", 0.2365882365), "cups?"),
    (Unit("pint", "pints", "volume", 0.473176473), "pints?"),
    (Unit("kilometer per hour", "kilometers per hour", "speed", 1000.0 / 3600.0),
     "kilometers? per hour|kilometres? per hour|km per hour|kph|kmh|km h"),
    (Unit("mile per hour", "miles per hour", "speed", 1609.344 / 3600.0), "miles? per hour|mph"),
    (Unit("meter per second", "meters per second", "speed", 1.0), "meters? per second|metres? per second"),
    (Unit("degree Celsius", "degrees Celsius", "temperature", 1.0, 273.15), "(?:degrees? )?(?:celsius|centigrade|c)"),
    (Unit("degree Fahrenheit", "degrees Fahrenheit", "temperature", 5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
     "(?:degrees? )?(?:fahrenheit|f)"),
    (Unit("kelvin", "kelvin", "temperature", 1.0, 0.0), "(?:degrees? )?kelvins?"),
]
UNITS = {unit.name: unit for unit, _ in _UNITS}


def _alternation(spelling: str) -> str:
    return spelling if "|" in spelling or "(" in spelling else "|".join(spelling.split())


_NAMES = [(re.compile(rf"(?:{_alternation(spelling)})"), unit) for unit, spelling in _UNITS]
_ANY_UNIT = "(?:" + "|".join(f"(?:{_alternation(s)})" for _, s in sorted(_UNITS, key=lambda u: -len(u[1]))) + ")"
_A = rf"(?P<amount>{NUMBER}|an?) (?P<source>{_ANY_UNIT})"
_B = rf"(?P<target>{_ANY_UNIT})"
_FORMS = [re.compile(form) for form in (
    rf"(?:how many|how much) {_B} (?:is|are|in|make|makes|is there in|are there in|are in|in) {_A}",
    rf"(?:how many|how much) {_B} (?:is|are) there in {_A}",
    rf"(?:please )?(?:can you )?(?:convert|change|turn) {_A} (?:to|into|in) {_B}",
    rf"(?:what is|what are|how much is|how much are|how many is|how far is|how heavy is|how hot is|how cold is)? ?{_A} (?:in|to|into|as) {_B}",
    rf"{_A} (?:is|are|equals|is equal to) (?:how many|how much|what in) {_B}",
)]


def _unit(said: str) -> Unit | None:
    return next((unit for pattern, unit in _NAMES if pattern.fullmatch(said)), None)


def parse(said: str, _context: ToolContext | None = None) -> dict[str, Any] | None:
    for form in _FORMS:
        match = form.fullmatch(said)
        if match is None:
            continue
        source, target = _unit(match["source"]), _unit(match["target"])
        if source is None or target is None or source.kind != target.kind or source == target:
            return None
        amount = 1.0 if match["amount"] in ("a", "an") else number(match["amount"])
        return {"amount": amount, "source_unit": source.name, "target_unit": target.name}
    return None


def _say_amount(value: float, unit: Unit) -> str:
    places = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    rounded = round(value, places)
    name = unit.name if rounded == 1 else unit.plural
    return f"{say_value(rounded, places)} {name}"


def convert_units(amount: float, source_unit: Annotated[str, "e.g. kilometer, mile, pound, degree Celsius"],
                  target_unit: Annotated[str, "a unit of the same kind"]) -> ToolResult:
    """Convert an amount between units of length, mass, volume, speed or temperature."""
    source, target = UNITS.get(source_unit), UNITS.get(target_unit)
    if source is None or target is None or source.kind != target.kind:
        return ToolResult("I can't convert between those units.")
    value = (amount * source.factor + source.offset - target.offset) / target.factor
    places = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    about = "" if abs(value - round(value, places)) < 1e-9 else "about "
    said = f"{_say_amount(amount, source)} is {about}{_say_amount(value, target)}."
    return ToolResult(said[0].upper() + said[1:])


TOOL: Tool = tool_from_function(convert_units, parse=parse)
