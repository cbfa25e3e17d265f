"""Strict JSON for saved states: non-finite floats by name, fields of a checked type.

``Evaluator.to_dict`` and the checkpoints of ``evaluate_files`` write floats that may be NaN or
infinite (a row holding NaN makes the sums NaN) as the names JavaScript and Python's json module
give them, so that ``json.dumps(state, allow_nan=False)`` works; reading a state back checks
the type of every field.
"""

import math

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _is_of(value, types):
    """Whether the JSON value `value` is of `types`, a tuple (a bool is not an int)."""
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def encode_float(x):
    """`x` as a strict JSON value: itself when finite, else its name in ``NON_FINITE``."""
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def encode_floats(values):
    """The floats of the array `values` as a list of strict JSON values."""
    return [encode_float(x) for x in values.tolist()]


def decode_float(value, where):
    """A float from ``encode_float``'s output (a plain NaN or infinity is taken too)."""
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    if not _is_of(value, (int, float)):
        raise ValueError(f"{where} must hold numbers (or \"NaN\", \"Infinity\", "
                         f"\"-Infinity\"), got {value!r}")
    return float(value)


def typed_field(mapping, key, types, description):
    """``mapping[key]``, which must be of `types` (a bool is not taken as an int).

    Raises
    ------
    KeyError
        `key` is missing.
    ValueError
        ``"{key} must be {description}, got {value!r}"``.
    """
    value = mapping[key]
    if not _is_of(value, types if isinstance(types, tuple) else (types,)):
        raise ValueError(f"{key} must be {description}, got {value!r}")
    return value


def float_fields(state, key, names):
    """The floats of the dict ``state[key]``, which must have exactly the keys `names`."""
    fields = typed_field(state, key, dict, "a dict")
    if set(fields) != set(names):
        raise ValueError(f"{key} must have the keys {', '.join(names)}, got "
                         f"{', '.join(map(str, fields))}")
    return [decode_float(fields[name], f"{key}.{name}") for name in names]
