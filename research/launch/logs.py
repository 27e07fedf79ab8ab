"""Console logging: our progress lines, not the libraries' chatter."""

import logging as py_logging

from absl import logging

# Libraries that log every checkpoint file operation at INFO.
_CHATTY = ("/orbax/", "/tensorflow_datasets/", "/jax/_src/", "/grain/")


class _DropLibraryInfo(py_logging.Filter):

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or not any(
        part in record.pathname for part in _CHATTY)


def quiet_library_logs() -> None:
  """Keeps INFO lines from this project, WARNING and above from everyone."""
  logging.get_absl_handler().addFilter(_DropLibraryInfo())
