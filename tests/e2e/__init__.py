"""Package marker: keeps this directory's conftest.py from replacing tests/conftest.py as the module `conftest`."""
