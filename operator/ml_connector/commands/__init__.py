"""One module per ``ml-connector`` subcommand; each exposes ``command``."""
