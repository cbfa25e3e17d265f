"""The error of evaluation from files."""


class EvalFileError(ValueError):
    """A problem with an input file or a checkpoint; the message names the file."""
