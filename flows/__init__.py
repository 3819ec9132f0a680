"""I/O and orchestration: settings, HTTP and files, Prefect flows, the CLI.

The only package that touches the network, the file system, environment
variables or Prefect. It stays thin: it fetches, calls `transforms` to turn
bytes into records and `warehouse` to store them.
"""
