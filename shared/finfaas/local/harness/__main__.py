"""Entry point: `python -m finfaas.local.harness --function-dir DIR (--port N | --listen-fd FD)`."""

import sys

from finfaas.local.harness.launch import main

if __name__ == "__main__":
    sys.exit(main())
