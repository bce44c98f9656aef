"""The API's only parser: DRF's JSON parser, hardened against hostile bodies."""

from __future__ import annotations

from typing import IO, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """``application/json`` bodies only, and a 400 (never a 500) for any that cannot be read.

    DRF's parser turns ``ValueError`` into a 400 but lets ``RecursionError`` through: a body of
    a few hundred thousand ``[`` crashed the view with a 500. Accepting JSON only also means
    a cross-site ``<form>`` cannot post to the API (it would need a CORS preflight).
    """

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
