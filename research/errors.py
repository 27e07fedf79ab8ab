"""Config errors, below every layer: a config that cannot run as given.

Every layer checks configs (the data layer its statistics against the images,
the train layer the work directory and the run's length), and launch.py prints
each such refusal as its one line, so the one check helper lives here.
"""


class ConfigError(ValueError):
  """A config that cannot run as given; the message names the key and the fix.

  launch.py prints it as one line (no traceback), wherever it is raised:
  validation, the checks that need the data, or the work directory's record.
  """


class DataNotFound(FileNotFoundError):
  """The data a config names is not on this machine; the message says how to get it.

  launch.py prints it as one line, like ConfigError.
  """


def require(ok: bool, key: str, value, why: str) -> None:
  """The one config check: raises ConfigError "config.<key>=<value>: <why>" unless ok.

  `why` says what the value must be (and so how to fix it).
  """
  if not ok:
    raise ConfigError(f"config.{key}={value!r}: {why}")
