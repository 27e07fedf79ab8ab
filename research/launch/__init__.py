"""Running experiments: from a config file to a work directory with a report."""
