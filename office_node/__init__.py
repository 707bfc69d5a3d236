"""The office node: the daemon an office or centre runs (HTTP API, web page, local
store, officer accounts), and the ``blo`` command."""
