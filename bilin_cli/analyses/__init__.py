"""The analyses behind the commands; each returns plain data and prints nothing."""
