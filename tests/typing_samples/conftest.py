# The samples are for the type checker only: importing them would register their handlers.
collect_ignore_glob = ["*.py"]
