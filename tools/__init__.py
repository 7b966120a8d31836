"""Maintainers' scripts that regenerate files kept in the repository; not shipped."""
