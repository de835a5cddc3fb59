"""`--model-options`, read once for every command that takes it (`embed`, `eval`, `probe`): a JSON object of
`load_model` keyword arguments, or one line saying what to give instead (BadInput, exit 2 on the command line).
Torch-free, like the command-line modules that import it."""

from __future__ import annotations

import json

from hear_maeast.errors import BadInput

MODEL_OPTIONS_EXAMPLE = '{"layer": 4}'  # a real option of hear_maeast.load_model (tests/test_eval_tasks.py checks it)
JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def parse_model_options(text: str) -> dict:
    """--model-options: a JSON object, passed to MODULE.load_model as keyword arguments."""
    try:
        options = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"--model-options {text!r} is not valid JSON ({e}); expected an object such as "
                       f"'{MODEL_OPTIONS_EXAMPLE}'") from None
    if not isinstance(options, dict):
        raise BadInput(f"--model-options must be a JSON object such as '{MODEL_OPTIONS_EXAMPLE}', got {text!r} "
                       f"(a JSON {JSON_TYPES.get(type(options), type(options).__name__)})")
    return options
