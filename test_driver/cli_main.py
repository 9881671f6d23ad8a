"""``python -m test_driver.cli_main``: the same as the ``nixos-test-driver`` command."""

from .cli import main

if __name__ == "__main__":
    main()
