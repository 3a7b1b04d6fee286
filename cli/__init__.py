"""The ``shanakht`` command line: the top of the stack (it may start the server; nothing imports it)."""
