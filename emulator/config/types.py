"""Small value types of scenario and topology files: durations, comparisons, CIDRs, names."""
from __future__ import annotations

import ipaddress
import operator
import re
from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, PlainValidator, WithJsonSchema

from emulator.config.limits import MAX_DURATION_SECONDS

_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_PATTERN = r"^((\d+(\.\d*)?|\.\d+)(ms|s|m|h))+$|^\d+(\.\d+)?$"


def is_dns_label(name: str) -> bool:
    """True for a DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters."""
    return len(name) <= 63 and bool(_DNS_LABEL_RE.match(name))


def is_dns_subdomain(name: str) -> bool:
    """True for a DNS-1123 subdomain (dot-separated labels, at most 253 characters)."""
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN_RE.match(name))


def _check_dns_label(name: str) -> str:
    """Validator: a DNS-1123 label."""
    if not is_dns_label(name):
        raise ValueError(f"{name!r} is not a valid name: use lowercase letters, digits and '-', "
                         "starting and ending with a letter or digit, at most 63 characters")
    return name


DnsLabel = Annotated[str, AfterValidator(_check_dns_label)]


def parse_duration(value: Any) -> float:
    """`500ms`, `2s`, `1m`, `1m30s` or a number of seconds -> float seconds (>= 0)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use e.g. 500ms, 2s, 1m or a number of seconds")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"invalid duration {value!r}: use e.g. 500ms, 2s, 1m "
                                 "or a number of seconds") from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"invalid duration {value!r}: use e.g. 500ms, 2s, 1m or a number of seconds")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"invalid duration {value!r}: must be a finite number >= 0")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {value!r} is longer than the limit of {MAX_DURATION_SECONDS:g} s "
                         "(MAX_DURATION_SECONDS)")
    return seconds


Duration = Annotated[
    float,
    PlainValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": DURATION_PATTERN},
                              {"type": "number", "minimum": 0}],
                    "description": "seconds, or text like 500ms, 2s, 1m"}),
]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, ">": operator.gt, "<": operator.lt,
}
_COMPARISON_RE = re.compile(r"^\s*(>=|<=|==|>|<)\s*([-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)\s*$")
COMPARISON_PATTERN = r"^\s*(>=|<=|==|>|<)\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"


@dataclass(frozen=True)
class Comparison:
    """A bound such as `>= 0.99`: `holds(value)` tells whether a measured value meets it."""

    op: str
    value: float

    def holds(self, measured: float) -> bool:
        """True when `measured OP value`."""
        return _OPS[self.op](measured, self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"

    @classmethod
    def parse(cls, text: Any) -> "Comparison":
        """`">= 1.0"` -> Comparison(">=", 1.0); ValueError otherwise."""
        if isinstance(text, Comparison):
            return text
        m = _COMPARISON_RE.match(text) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"invalid comparison {text!r}: write \"OP NUMBER\" with OP one of "
                             ">=, >, <=, <, == (e.g. \">= 0.99\")")
        return cls(m.group(1), float(m.group(2)))


ComparisonField = Annotated[
    Comparison,
    PlainValidator(Comparison.parse),
    PlainSerializer(str),
    WithJsonSchema({"type": "string", "pattern": COMPARISON_PATTERN}),
]


def parse_cidr(value: Any) -> ipaddress.IPv4Network:
    """`10.4.0.0/14` -> IPv4Network; host bits must be zero."""
    if isinstance(value, ipaddress.IPv4Network):
        return value
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"invalid CIDR {value!r}: write an IPv4 network like 10.4.0.0/14")
    try:
        return ipaddress.IPv4Network(value.strip())
    except ValueError as exc:
        raise ValueError(f"invalid CIDR {value!r}: {exc}") from None


Cidr = Annotated[
    ipaddress.IPv4Network,
    PlainValidator(parse_cidr),
    PlainSerializer(str),
    WithJsonSchema({"type": "string", "format": "ipv4network"}),
]


def _no_bool(value: Any) -> Any:
    """Reject YAML booleans where a number is expected (pydantic would read true as 1)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


NoBool = BeforeValidator(_no_bool)


def _whole_number(value: Any) -> Any:
    """Reject booleans and floats where a whole number is expected (YAML reads 1e9 as a float)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {str(value).lower()}")
    if isinstance(value, float):
        raise ValueError(f"expected a whole number, got {value!r} (a float)")
    return value


WholeNumber = BeforeValidator(_whole_number)
